"""The alert sender (orchestrator/alerts.py) against a real local HTTP receiver: submitting never
blocks whatever the receiver does, the queue is bounded, failures are counted and logged without
the URL's secrets; bad alert settings stop the command with exit 2 and never print the URL."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.alerts import AlertSender
from shared.alerts import Alert
from tests.orchestrator.test_alerts_e2e import PASSWORD, TOKEN, Receiver

REPO = Path(__file__).resolve().parents[2]


def _alert(i: int, body: str = "") -> Alert:
    return Alert(kind="quarantine", subject=str(i), title=f"alert {i}", body=body or f"body {i}")


def _wait(pred: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_alerts_arrive_redacted() -> None:
    r = Receiver().start()
    try:
        sender = AlertSender([r.url], ["APIKEY-0123456789"], queue_size=10, timeout_s=5)
        assert sender.submit(_alert(1, body=f"key APIKEY-0123456789 url {r.url} token {TOKEN}"))
        assert _wait(lambda: sender.sent == 1, 20)
        [msg] = r.messages
        assert msg["title"] == "alert 1"
        for secret in ("APIKEY-0123456789", TOKEN, PASSWORD):
            assert secret not in msg["message"]
        assert msg["message"].count("<hidden>") == 3
        sender.close()
    finally:
        r.stop()


@pytest.mark.parametrize("mode", ["hang", "500"])
def test_submit_never_blocks_the_queue_is_bounded_and_failures_are_counted(mode: str, caplog) -> None:
    r = Receiver(mode).start()
    try:
        sender = AlertSender([r.url], [], queue_size=5, timeout_s=1)
        caplog.set_level(logging.INFO)
        t0 = time.perf_counter()
        accepted = [sender.submit(_alert(i)) for i in range(200)]
        took = time.perf_counter() - t0
        # The thread takes at most one off the queue before we are done: 5 queued + 1 in flight.
        assert sum(accepted) <= 6 and sender.dropped >= 194, (sum(accepted), sender.dropped)
        assert took < 0.5, f"200 submits took {took:.3f} s"
        assert _wait(lambda: sender.failed >= 2, 30), (sender.failed, r.requests)
        assert sender.sent == 0 and r.requests >= 2
        text = "\n".join(r.getMessage() for r in caplog.records if r.name.split(".")[0] in ("alerts", "apprise"))
        assert "alert not delivered" in text and "alert queue full" in text
        assert TOKEN not in text and PASSWORD not in text
        t0 = time.perf_counter()
        sender.close(timeout_s=1.0)
        assert time.perf_counter() - t0 < 3.0  # a hung receiver does not hold the exit
    finally:
        r.stop()


def _orchestrate(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "alerts.toml"
    cfg.write_text("[alerts]\nenabled = true\n")
    base = {k: v for k, v in os.environ.items() if k != "ORCHESTRATE_ALERT_URLS"}
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", "--config", str(cfg), "--run-dir",
                           str(tmp_path / "run"), "--no-display"], cwd=REPO, env={**base, **env},
                          capture_output=True, text=True, timeout=60)


def test_alerts_on_without_urls_or_with_an_unknown_url_exit_2_without_printing_it(tmp_path: Path) -> None:
    r = _orchestrate(tmp_path, {})
    assert r.returncode == 2 and "ORCHESTRATE_ALERT_URLS" in r.stderr and "Traceback" not in r.stderr
    r = _orchestrate(tmp_path, {"ORCHESTRATE_ALERT_URLS": f"json://127.0.0.1/ok nosuchservice://{TOKEN}/x"})
    assert r.returncode == 2, r.stderr
    assert "URL 2 of 2 (scheme 'nosuchservice')" in r.stderr and "ORCHESTRATE_ALERT_URLS" in r.stderr
    assert TOKEN not in r.stderr + r.stdout and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "lock").exists()


def test_the_supervisor_hook_alerts_on_the_gateways_websocket_outage() -> None:
    """The supervisor's monitor pass reads the gateway's figures: order management 'up' but the
    account websocket down longer than gateway_down_after_s is a 'down' alert, then 'back'."""
    from orchestrator.alerts import SupervisorAlerts
    from shared.alerts import AlertsConfig
    from shared.messages import GatewayFigures
    from tests.orchestrator.test_deploy import _snapshot

    r = Receiver().start()
    try:
        alerts = SupervisorAlerts.start(AlertsConfig(enabled=True, gateway_down_after_s=1.0), [r.url])
        snap = _snapshot()
        down = GatewayFigures(ticks_published=0, symbols=1, source="exchange", requests=0, malformed=0,
                              ws_down_s=3.0)
        up = GatewayFigures(ticks_published=0, symbols=1, source="exchange", requests=0, malformed=0)
        alerts.monitor_pass(snap, down)
        time.sleep(1.1)
        alerts.monitor_pass(snap, down)
        alerts.monitor_pass(snap, up)
        assert _wait(lambda: len(r.messages) == 2, 20), r.messages
        assert [m["title"] for m in r.messages] == ["Order management down", "Order management back"]
        assert "account websocket is disconnected" in r.messages[0]["message"]
        alerts.close()
    finally:
        r.stop()
