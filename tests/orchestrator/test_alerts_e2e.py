"""Alerts end to end: the real `orchestrate` process tree on the paper venue, apprise's json://
pointed at an aiohttp receiver in the test. A halt and a triggered stop each reach it exactly
once with the symbol, price and reason; no secret is in any message or log; a receiver that
hangs or answers 500 does not stall the supervisor."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.orchestrator.test_trading_e2e import TIGHT

pytestmark = pytest.mark.slow

TOKEN = "T0KEN-9f8e7d6c5b4a"  # the URL's secret path, as a webhook token would be
PASSWORD = "p4ss-1a2b3c4d"


class Receiver:
    """An HTTP endpoint on 127.0.0.1 in its own thread: records what apprise posts, or hangs, or 500s."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.messages: list[dict[str, Any]] = []
        self.requests = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner
        self._release = asyncio.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _hook(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.mode == "hang":
            await self._release.wait()  # until the test ends
            return web.Response(status=503)
        if self.mode == "500":
            return web.Response(status=500, text="down")
        self.messages.append(await request.json())
        return web.Response(text="ok")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post(f"/hooks/{TOKEN}", self._hook)
        runner = self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> Receiver:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    @property
    def url(self) -> str:
        return f"json://alerts:{PASSWORD}@127.0.0.1:{self.port}/hooks/{TOKEN}"

    def stop(self) -> None:
        """Close the server (cancelling hung handlers), then its loop and thread."""
        self._loop.call_soon_threadsafe(self._release.set)
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def _env(url: str) -> dict[str, str]:
    return {"ORCHESTRATE_ALERT_URLS": url}


def _alerts_cfg(tmp_path: Path, extra: str) -> Path:
    cfg = tmp_path / "alerts.toml"
    cfg.write_text(extra + "[alerts]\nenabled = true\n")
    return cfg


def _secrets(run_dir: Path) -> list[str]:
    v = json.loads((run_dir / "venue.json").read_text())
    return [v["api_key"], v["api_secret"], TOKEN, PASSWORD]


def _assert_no_secret(run_dir: Path, texts: list[str]) -> None:
    secrets = _secrets(run_dir)
    logs = [p.read_text(errors="replace") for p in (run_dir / "logs").glob("*.log")]
    for text in texts + logs:
        for s in secrets:
            assert s not in text, f"secret {s[:4]}… leaked: {text[:300]}"


def _wait(pred: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


# make test-long: the gate's once-per-halt (test_the_gate_sends_the_same_alert_once_per_repeat_window...)
# and the halt text (test_stop_and_halt_texts_name_symbol_price_and_reason) are unit-tested in
# tests/shared/test_alerts.py, the supervisor-to-receiver delivery by the triggered-stop test below.
@pytest.mark.long
def test_a_halt_gives_exactly_one_alert_with_symbol_price_and_reason(start_run, tmp_path: Path,
                                                                    receiver: Receiver) -> None:
    cfg = _alerts_cfg(tmp_path, TIGHT.replace("[risk]\n", "[risk]\nmax_total_notional = 50.0\n"))
    run = start_run(["--config", str(cfg), "--symbols", "BTCUSD,ETHUSD", "--pool-size", "1"], env=_env(receiver.url))
    doc = run.wait_for(lambda d: d["halted"], 120, "the account-wide halt")
    _wait(lambda: any(m["title"] == "Trading halted" for m in receiver.messages), 30, "the halt alert")
    time.sleep(5.0)  # the halt is re-broadcast every pass: it must still be one alert
    halts = [m for m in receiver.messages if m["title"] == "Trading halted"]
    assert len(halts) == 1, halts
    body = halts[0]["message"]
    assert doc["halt_reason"] in body
    for w in doc["workers"]:
        assert w["symbol"] in body
    assert " at " in body and "no price yet" not in body, body  # each symbol with its last price
    doc = run.wait_for(lambda d: (d["alerts_sent"] or 0) >= 1, 10, "the sent alert counted in status")
    assert doc["alerts_failed"] == 0 and doc["alerts_dropped"] == 0
    run.terminate()
    _assert_no_secret(run.run_dir, [json.dumps(m) for m in receiver.messages])


def test_a_triggered_stop_gives_exactly_one_alert_per_stop(start_run, tmp_path: Path, receiver: Receiver) -> None:
    cfg = _alerts_cfg(tmp_path, TIGHT.replace("[grid]\n", "[grid]\nstop_atr_multiple = 0.05\nstop_cooldown_s = 3.0\n"))
    run = start_run(["--config", str(cfg), "--symbols", "BTCUSD,ETHUSD", "--pool-size", "1"], env=_env(receiver.url))
    _wait(lambda: any("protective stop triggered" in m["title"] for m in receiver.messages), 180,
          "a stop alert")
    for sym in ("BTCUSD", "ETHUSD"):
        assert run.cli("pause", sym).returncode == 0
    time.sleep(3.0)
    run.terminate()
    from shared.store import Store, db_path
    with Store(db_path(run.run_dir), readonly=True) as store:
        triggered = [e for e in store.order_events(limit=100_000) if e.event == "triggered"]
    stops = [m for m in receiver.messages if "protective stop triggered" in m["title"]]
    # one alert per triggered stop order, none twice
    assert sorted(m["title"].split(":")[0] for m in stops) == sorted(e.symbol for e in triggered), (stops, triggered)
    for m in stops:
        sym = m["title"].split(":")[0]
        ev = next(e for e in triggered if e.symbol == sym and f"triggered at {e.price}" in m["message"])
        assert f"{sym} stop {ev.side} {ev.size} triggered at {ev.price}" in m["message"]
        assert "Reason: stop_trigger" in m["message"]
    _assert_no_secret(run.run_dir, [json.dumps(m) for m in receiver.messages])


# "500" in make test-long: the hanging receiver is the harder case for the supervisor, and a 500's
# failure counting is tested on the sender itself (test_alerts_sender.py, both modes).
@pytest.mark.parametrize("mode", ["hang", pytest.param("500", marks=pytest.mark.long)])
def test_a_hanging_or_failing_receiver_does_not_stall_the_supervisor(start_run, tmp_path: Path, mode: str) -> None:
    """Every order rejected an alert (rejects_count = 1, no repeat window): the receiver hangs or
    500s on each; status keeps answering at once and the run stops cleanly."""
    bad = Receiver(mode).start()
    try:
        cfg = tmp_path / "bad.toml"
        cfg.write_text(TIGHT + "[alerts]\nenabled = true\nrejects_count = 1\nrepeat_after_s = 0\n"
                       "send_timeout_s = 1.0\nqueue_size = 5\n[testing]\nvenue_reject_probability = 0.5\n")
        run = start_run(["--config", str(cfg), "--symbols", "BTCUSD,ETHUSD", "--pool-size", "1"],
                        env={**_env(bad.url), "ORCHESTRATE_TEST_FAULTS": "1"})
        run.wait_for(lambda d: sum(w["order_errors"] for w in d["workers"]) >= 3, 120, "rejected orders")
        _wait(lambda: bad.requests >= 2, 60, "alerts reaching the bad receiver")
        worst = 0.0
        for _ in range(10):
            t0 = time.monotonic()
            assert run.status() is not None
            worst = max(worst, time.monotonic() - t0)
            time.sleep(0.3)
        # `status` is a fresh Python process (~0.3-1 s here); a stalled supervisor would add the
        # receiver's hang (1 s timeout per attempt, an hour for the hanging handler) to it.
        assert worst < 5.0, worst
        doc = run.wait_for(lambda d: (d["alerts_failed"] or 0) + (d["alerts_dropped"] or 0) >= 1, 30,
                           "undelivered alerts counted in status (and so in the metrics)")
        assert doc["alerts_sent"] == 0, doc["alerts_sent"]
        assert run.terminate() < 12.0
        log = (run.run_dir / "logs" / "supervisor.log").read_text()
        assert "alert not delivered" in log
        _assert_no_secret(run.run_dir, [])
    finally:
        bad.stop()


# make test-long (~35 s, the restart backoff is 3 s on purpose): the flapping-link and restart-storm
# rules are unit-tested in tests/shared/test_alerts.py, the delivery by the tests above.
@pytest.mark.long
def test_a_gateway_killed_three_times_gives_one_down_one_back_and_one_restart_storm(start_run, tmp_path: Path,
                                                                                    receiver: Receiver) -> None:
    """A flapping link: the gateway SIGKILLed three times (each outage longer than
    gateway_down_after_s, from the restart backoff) is one 'down', one 'back' and one restart storm."""
    cfg = tmp_path / "flap.toml"
    cfg.write_text("[supervision]\nbackoff_initial_s = 3.0\n"
                   "[alerts]\nenabled = true\ngateway_down_after_s = 1.0\nrestart_storm_count = 3\n"
                   "restart_storm_window_s = 600.0\n")
    run = start_run(["--config", str(cfg), "--symbols", "BTCUSD", "--pool-size", "1"], env=_env(receiver.url))

    def gateway(d: dict[str, Any]) -> dict[str, Any]:
        return next(p for p in d["processes"] if p["kind"] == "gateway")

    killed: set[int] = set()
    for _ in range(3):
        doc = run.wait_for(lambda d: gateway(d)["state"] == "running" and gateway(d)["pid"] not in killed
                           and d["order_management"] == "up", 60, "the gateway up")
        pid = gateway(doc)["pid"]
        os.kill(pid, signal.SIGKILL)
        killed.add(pid)
        run.wait_for(lambda d: d["order_management"].startswith("down"), 20, "order management down")
    run.wait_for(lambda d: d["order_management"] == "up", 60, "the gateway back")
    _wait(lambda: sum(m["title"] == "Order management back" for m in receiver.messages) >= 1, 20, "the 'back' alert")
    time.sleep(3.0)
    titles = [m["title"] for m in receiver.messages]
    assert titles.count("Order management down") == 1, titles
    assert titles.count("Order management back") == 1, titles
    assert titles.count("Restart storm") == 1, titles
    down = next(m["message"] for m in receiver.messages if m["title"] == "Order management down")
    assert "gateway failed" in down
    storm = next(m["message"] for m in receiver.messages if m["title"] == "Restart storm")
    assert "3 process restarts" in storm and "gateway gateway" in storm
    run.terminate()
    _assert_no_secret(run.run_dir, [json.dumps(m) for m in receiver.messages])
