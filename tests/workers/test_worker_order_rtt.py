"""The worker's order round trip: intents of the start-up minute are reported apart from the
steady state's, as the tick latency's warm-up is. Real Worker, real ring."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pytest

from shared.messages import IntentResult
from workers.runtime import ChildSpec
from workers.worker import LATENCY_WARMUP_S, Worker

S = 1_000_000_000  # ns


@pytest.fixture
def worker(worker_spec: Callable[..., ChildSpec]) -> Worker:
    return Worker(worker_spec())


def answer(worker: Worker, sent_ns: int, rtt_ms: float) -> None:
    """One intent sent at sent_ns, answered rtt_ms later."""
    worker.intent_seq += 1
    worker.intent_in_flight = (worker.intent_seq, sent_ns, time.monotonic())
    worker.on_intent_result(IntentResult(symbol="ETHUSD", seq=worker.intent_seq, cancelled=[], amended=[],
                                         placed=[], errors=[], sent_ns=0), sent_ns + int(rtt_ms * 1e6))
    assert worker.intent_in_flight is None


def test_start_up_intents_are_reported_apart_from_the_steady_state(worker: Worker) -> None:
    first = 1_000 * S
    worker.first_signal_mono_ns = first
    for i in range(50):  # the fleet's first grids, queued: 150 ms each
        answer(worker, first + i * S // 10, 150.0)
    figures = worker.trading_figures()
    assert math.isnan(figures["order_rtt_p50_us"]) and math.isnan(figures["order_rtt_p99_us"])
    assert figures["order_rtt_startup_p99_us"] == pytest.approx(150_000, rel=0.03)

    steady = first + int(LATENCY_WARMUP_S * S)
    for i in range(100):
        answer(worker, steady + i * S, 2.0)
    figures = worker.trading_figures()
    assert figures["order_rtt_p99_us"] == pytest.approx(2_000, rel=0.03)  # no start-up intent in it
    assert figures["order_rtt_startup_p50_us"] == pytest.approx(150_000, rel=0.03)  # kept, apart


def test_an_intent_before_the_first_signal_is_start_up(worker: Worker) -> None:
    answer(worker, 5 * S, 40.0)  # a halt's cancel before any valid signal
    figures = worker.trading_figures()
    assert figures["order_rtt_startup_p50_us"] == pytest.approx(40_000, rel=0.03)
    assert math.isnan(figures["order_rtt_p50_us"])



def test_an_intent_refused_unsent_for_rate_budget_has_no_ack_to_time(worker: Worker) -> None:
    """The gateway refused the whole intent before sending it (the symbol's share of the rate
    budget): it is not an order intent -> ack, so it stays out of the round trip figures."""
    worker.first_signal_mono_ns = 1_000 * S
    sent = worker.first_signal_mono_ns + int(LATENCY_WARMUP_S * S) + S
    worker.intent_seq += 1
    worker.intent_in_flight = (worker.intent_seq, sent, time.monotonic())
    worker.on_intent_result(IntentResult(symbol="ETHUSD", seq=worker.intent_seq, cancelled=[], amended=[], placed=[],
                                         errors=["c1: rate_budget_share: not sent"], sent_ns=0, unsent=1,
                                         retry_after_s=30.0), sent + 10**5)
    assert worker.intent_in_flight is None
    assert worker.order_rtt.lifetime.total == 0 and worker.order_rtt_startup.total == 0
    answer(worker, sent + 10 * S, 2.0)
    assert worker.order_rtt.lifetime.total == 1
