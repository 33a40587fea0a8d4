"""The signal series from the helper process (`signals_ahead`) is the series the loop computes
itself: whole results hash to the pinned digests, over many chunk boundaries and several symbols
(chunks arriving for one symbol while the loop waits for another), and the helper never outlives
the run."""

from __future__ import annotations

import os
import signal

import numpy as np
import psutil
import pytest

import shared.backtest.loop as loop
from shared.backtest import run_backtest
from shared.backtest.series_ahead import SeriesAhead, SeriesAheadError
from shared.config import Config
from shared.marketdata import Candles, synthetic_candles

from .test_golden import CASES, GOLDEN, _specs, digest


def _helpers() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "_serve" in " ".join(p.cmdline())]


class _Counted(SeriesAhead):
    made = 0

    def __init__(self, *a: object, **k: object) -> None:
        super().__init__(*a, **k)  # type: ignore[arg-type]  # SeriesAhead's own arguments, passed through
        _Counted.made += 1


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # small chunks: a few thousand bars cross dozens of chunk boundaries (and use the helper); the
    # helper's first chunk shorter still, its later ones joined from pieces of that length
    monkeypatch.setattr(loop, "CHUNK_BARS", 256)
    monkeypatch.setattr(loop, "FIRST_CHUNK_BARS", 64)
    monkeypatch.setattr(loop, "SeriesAhead", _Counted)
    _Counted.made = 0


@pytest.mark.parametrize("case", ["three-symbols-churn", "eth-trailing", "bench-4"])
def test_the_helpers_series_gives_the_pinned_result(case: str) -> None:
    cfg, data = CASES[case]
    r = run_backtest(cfg, data, specs=_specs(data), balance_usd=10_000.0, signals_ahead=True)
    assert _Counted.made == 1 and r.summary.fills > 0
    assert digest(r) == GOLDEN[case]
    assert not _helpers()


def test_an_interrupted_run_ends_the_helper() -> None:
    data = {f"SYN_000{n}": synthetic_candles(f"SYN_000{n}", 6000, seed=7) for n in (1, 2)}
    calls = iter(range(10**6))
    r = run_backtest(Config(), data, specs=_specs(data), balance_usd=10_000.0, signals_ahead=True,
                     should_stop=lambda: next(calls) >= 3)
    assert _Counted.made == 1 and r.interrupted and 0 < r.bars < 2 * 6000
    assert not _helpers()


def test_a_dead_helper_is_an_error_not_a_hang() -> None:
    c = synthetic_candles("SYN_0001", 3000, seed=7)
    ticks = np.stack([c.open, c.high, c.low, c.close], axis=1)
    inputs: dict[str, tuple[Candles, np.ndarray]] = {"SYN_0001": (c, ticks)}
    with SeriesAhead(Config().signal, 0, 256, inputs) as ahead:
        chunks = ahead.chunks("SYN_0001")
        next(chunks)  # the first chunk, from the helper
        (helper,) = _helpers()
        os.kill(helper.pid, signal.SIGKILL)
        with pytest.raises(SeriesAheadError, match="helper was killed by SIGKILL"):
            for _ in chunks:
                pass
    assert not _helpers()


def test_closing_during_a_long_send_of_the_inputs_ends_the_sending_thread_quietly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """close() while the start-up thread is still inside the inputs' send (a helper that does not
    read: stopped here, slow or stuck in real life): the send ends at once, nothing escapes the
    thread, and the pipe's descriptor is closed only once the thread is done with it. (Before,
    close() closed the pipe under the blocked send, which ended only when the helper was killed,
    then wrote its rest to a closed handle: a TypeError escaped the thread.)"""
    import threading

    import shared.backtest.series_ahead as series_ahead

    monkeypatch.setattr(series_ahead, "JOIN_TIMEOUT_S", 1.0)  # the stopped helper is killed sooner
    escaped: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", escaped.append)
    c = synthetic_candles("SYN_0001", 400_000, seed=7)  # ~30 MB of inputs: far beyond the socket's buffer
    inputs: dict[str, tuple[Candles, np.ndarray]] = {"SYN_0001": (c, np.stack([c.open, c.high, c.low, c.close], 1))}
    ahead = SeriesAhead(Config().signal, 0, 256, inputs)
    (helper,) = _helpers()
    helper.suspend()  # it reads nothing more: the send blocks once the socket's buffer is full
    sending = ahead._starting
    assert sending is not None
    sending.join(0.5)
    assert sending.is_alive(), "the inputs' send should still be under way"
    ahead.close()
    sending.join(5.0)
    assert not sending.is_alive()
    assert [(e.exc_type, str(e.exc_value)) for e in escaped] == []
    assert not _helpers()


def test_no_process_to_be_had_computes_the_series_in_the_loops_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the helper cannot start (no process to be had: EAGAIN at the process limit), the run
    computes the same series in its own process instead of failing."""
    import errno
    import subprocess

    def no_process(*a: object, **k: object) -> subprocess.Popen[bytes]:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    cfg, data = CASES["bench-4"]
    r = run_backtest(cfg, data, specs=_specs(data), balance_usd=10_000.0, signals_ahead=True)
    assert _Counted.made == 0 and digest(r) == GOLDEN["bench-4"]
    assert not _helpers()


def test_the_helpers_chunks_are_a_short_first_then_full_ones_of_the_same_series() -> None:
    """The first chunk is short (the run waits for every symbol's first), the later ones are
    joined from pieces of that length, and together they are `iter_series`'s series bit for bit."""
    from shared.signals.series import iter_series

    c = synthetic_candles("SYN_0001", 1000, seed=7)
    ticks = np.stack([c.open, c.high, c.low, c.close], axis=1)
    with SeriesAhead(Config().signal, 0, 256, {"SYN_0001": (c, ticks)}, first_bars=64) as ahead:
        got = list(ahead.chunks("SYN_0001"))
    assert [len(x.bar_ts) for x in got] == [64, 256, 256, 256, 168]
    (whole,) = iter_series(Config().signal, "SYN_0001", c, ticks=ticks, chunk_bars=1000)
    for field, want in zip(whole._fields, whole, strict=True):
        joined = np.concatenate([getattr(x, field) for x in got])
        assert joined.dtype == want.dtype and joined.tobytes() == want.tobytes(), field
    assert not _helpers()


def test_the_helper_starts_without_importing_the_loop() -> None:
    """The run waits for the helper's start-up (every symbol's first chunk is its): the helper
    imports the signal engine, not the backtest package's loop, matching engine and bot."""
    import subprocess
    import sys
    from pathlib import Path

    import shared.backtest.series_ahead as series_ahead

    probe = series_ahead._HELPER.replace(
        "_serve(int(sys.argv[1]))", "print(sorted(m for m in sys.modules if m.startswith('shared.')))")
    assert probe != series_ahead._HELPER
    r = subprocess.run([sys.executable, "-c", probe, "-1", str(Path(series_ahead.__file__).resolve().parent)],
                       capture_output=True, text=True, timeout=60, check=True)
    loaded = eval(r.stdout)  # noqa: S307  # the list the probe printed
    assert "shared.backtest.series_ahead" in loaded and "shared.signals.series" in loaded
    assert not [m for m in loaded if m.startswith(("shared.backtest.loop", "shared.matching", "shared.trading"))]
