"""The dashboard's server on real sockets, in process: a fake fleet behind the real aiohttp app and
a real SQLite ledger. Who may read and act, paging, reports, the history bounds."""

from __future__ import annotations

import asyncio
import math
import os
import socket
import stat
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from orchestrator import commands
from orchestrator.dashboard import AccountFacts, Dashboard, DashboardError, FleetSource, make_token
from orchestrator.dashboard.history import FleetHistory
from orchestrator.metrics import MetricsServer
from shared.config import DashboardConfig
from shared.messages import FillEvent, Funding, WorkerFigures
from shared.status import StatusSnapshot, WorkerStatus
from shared.store import HaltEvent, OrderEvent, Store, db_path
from shared.trading.pnl import Fill

SYMBOLS = ("BTCUSD", "ETHUSD")


def _figures(price: float = 100.0) -> WorkerFigures:
    return WorkerFigures(
        state="running", last_price=price, bar_count=1000, ticks=5, ticks_dropped=0, signals=3, signal="UP",
        confidence=0.6, votes={"trend": "UP"}, atr14=1.0, tick_to_signal_p50_us=10.0, tick_to_signal_p99_us=20.0,
        tick_to_signal_p999_us=30.0, tick_to_signal_count=3, loop_lag_ms=0.1, malformed=0, first_signal_mono_ns=1,
        position=3.0, grid_levels=(97.0, 98.0, 99.0), resting_orders=(("buy", "entry", 99.0, 3),),
        stop_price=95.0)


def _worker(sym: str) -> WorkerStatus:
    return WorkerStatus(symbol=sym, pid=1, state="running", uptime_s=1.0, restarts=0, last_price=100.0,
                        bar_count=1000, signal="UP", confidence=0.6, votes={}, tick_to_signal_p50_us=None,
                        tick_to_signal_p99_us=None, tick_to_signal_p999_us=None, signals=1, ticks=1,
                        ticks_dropped=0, loop_lag_ms=None, rss_mb=None, uss_mb=None, cpu_percent=None, budget="ok",
                        heartbeat_age_s=None, first_signal_after_launch_s=1.0, fees=0.25)


class FakeFleet:
    def __init__(self, run_dir: Path) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self.source = FleetSource(
            run_dir=run_dir, symbols=SYMBOLS, snapshot=self.snapshot, figures=lambda: {s: _figures() for s in SYMBOLS},
            account=lambda: AccountFacts(equity=9_900.0, day_start_equity=10_000.0, day_peak_equity=10_100.0),
            control=self.control)

    def snapshot(self) -> StatusSnapshot:
        return StatusSnapshot(run_dir="r", mode="paper", venue="paper", supervisor_pid=1, started_at=0.0,
                              uptime_s=1.0, halted=True, halt_reason="daily loss",
                              workers=[_worker(s) for s in SYMBOLS])

    async def control(self, cmd: str, req: dict[str, Any]) -> Any:
        self.commands.append((cmd, req))
        return {"ok": True, "message": f"{cmd}d {req.get('symbol', '')}"}


async def _serve(tmp_path: Path, cfg: DashboardConfig) -> tuple[MetricsServer, Dashboard, FakeFleet, str]:
    fleet = FakeFleet(tmp_path)
    dash = Dashboard(cfg, fleet.source, make_token(tmp_path / "dashboard.token"))
    server = MetricsServer(fleet.snapshot)
    port = await server.start("127.0.0.1", 0, dashboard=dash)
    dash.start()
    return server, dash, fleet, f"http://127.0.0.1:{port}"


async def _stop(server: MetricsServer, dash: Dashboard) -> None:
    await dash.stop()
    await server.stop()


def _ledger(tmp_path: Path) -> None:
    with Store(db_path(tmp_path)) as s:
        for i in range(7):
            s.record_order_event(OrderEvent(ts=float(i), symbol=SYMBOLS[i % 2],
                                            event="placed" if i % 3 else "cancelled", client_order_id=f"c{i}"))
            s.record_fill(Fill(fill_id=f"f{i}", ts=float(i), symbol=SYMBOLS[i % 2], side="buy" if i % 2 else "sell",
                               size=1, price="100", fee="0.01", contract_value="0.001"))
        # a halt before this supervisor started (the dashboard never saw it) and its lifting
        s.record_halt_event(HaltEvent(ts=1.0, event="halt", reason="daily loss 120 over 100", by="risk limits"))
        s.record_halt_event(HaltEvent(ts=2.0, event="clear", reason="daily loss 120 over 100", by="ann (pid 7)"))


async def test_loopback_reads_freely_but_actions_need_enabling_token_and_confirmation(tmp_path: Path) -> None:
    _ledger(tmp_path)
    server, dash, fleet, url = await _serve(tmp_path, DashboardConfig(actions=True))
    token = (tmp_path / "dashboard.token").read_text().strip()
    assert stat.S_IMODE(os.stat(tmp_path / "dashboard.token").st_mode) == 0o600
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/") as r:
                assert r.status == 200 and "uPlot.iife.min.js" in await r.text()
            async with s.get(url + "/static/vendor/uPlot.iife.min.js") as r:
                assert r.status == 200 and len(await r.read()) > 40_000
            async with s.get(url + "/metrics") as r:  # Prometheus keeps its endpoint
                assert r.status == 200 and "orchestrate_halted 1.0" in await r.text()
            async with s.get(url + "/api/symbol/BTCUSD") as r:
                doc = await r.json()
                assert doc["grid_levels"] == [97.0, 98.0, 99.0] and doc["stop_price"] == 95.0
                assert doc["resting_orders"] == [["buy", "entry", 99.0, 3]]
                assert [f["fill_id"] for f in doc["fills"]] == ["f0", "f2", "f4", "f6"]
            async with s.get(url + "/api/symbol/NOPE") as r:
                assert r.status == 404
            async with s.get(url + "/api/account") as r:
                a = await r.json()
                assert a["halted"] and a["halt_reason"] == "daily loss"
                assert a["drawdown_today"] == pytest.approx(200 / 10_100)
                assert a["drawdown_run"] >= a["drawdown_today"] and a["fees"] == 0.5
                assert a["funding"]["rows"] == [] and a["funding"]["total"] == "0"
                # the halt log from the ledger, newest first, with who set and lifted each
                assert [(x["event"], x["by"]) for x in a["halts"]] == [("clear", "ann (pid 7)"),
                                                                      ("halt", "risk limits")]
                assert a["halts"][1]["reason"] == "daily loss 120 over 100" and a["halts"][1]["ts"] == 1.0
            # Funding shows once the ledger has some (paid is negative), summed exactly.
            with Store(db_path(tmp_path)) as store:
                store.record_funding(Funding(funding_id="a", ts=1.0, symbol="BTCUSD", amount="-0.10"))
                store.record_funding(Funding(funding_id="b", ts=2.0, symbol="ETHUSD", amount="0.35"))
            async with s.get(url + "/api/account") as r:
                funding = (await r.json())["funding"]
            assert funding["total"] == "0.25" and len(funding["rows"]) == 2 and "amount" in funding["columns"]

            act = {"cmd": "pause", "symbol": "BTCUSD", "confirm": "BTCUSD"}
            async with s.post(url + "/api/action", json=act) as r:
                assert r.status == 401
            async with s.post(url + "/api/action", json=act, headers={"X-Dashboard-Token": "x" * 43}) as r:
                assert r.status == 401
            async with s.post(url + "/api/action", json={**act, "confirm": "ETHUSD"},
                              headers={"X-Dashboard-Token": token}) as r:
                assert r.status == 400 and "not confirmed" in (await r.json())["message"]
            async with s.post(url + "/api/action", json={"cmd": "halt", "confirm": "BTCUSD"},
                              headers={"X-Dashboard-Token": token}) as r:
                assert r.status == 400  # the account-wide ones need ALL typed back
            # A cookie alone (what a page on another site would send) cannot act.
            async with s.get(url + "/?token=" + token, allow_redirects=False) as r:
                assert r.status == 303 and "token" not in r.headers["Location"]
            async with s.post(url + "/api/action", json=act) as r:
                assert r.status == 401
            assert fleet.commands == []
            async with s.post(url + "/api/action", json=act, headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 200
            async with s.post(url + "/api/action", json={"cmd": "flatten", "confirm": "ALL"},
                              headers={"X-Dashboard-Token": token}) as r:
                assert r.status == 200
            # One symbol flattened (its name typed back), and the account resumed (the halt lifted).
            async with s.post(url + "/api/action", json={"cmd": "flatten", "symbol": "ETHUSD", "confirm": "ALL"},
                              headers={"X-Dashboard-Token": token}) as r:
                assert r.status == 400 and "not confirmed" in (await r.json())["message"]
            for act in ({"cmd": "flatten", "symbol": "ETHUSD", "confirm": "ETHUSD"},
                        {"cmd": "halt", "confirm": "ALL"}, {"cmd": "resume", "confirm": "ALL"}):
                async with s.post(url + "/api/action", json=act, headers={"X-Dashboard-Token": token}) as r:
                    assert r.status == 200, act
        assert fleet.commands == [("pause", {"cmd": "pause", "symbol": "BTCUSD"}),
                                  ("flatten", {"cmd": "flatten", "all": True}),
                                  ("flatten", {"cmd": "flatten", "symbols": ["ETHUSD"]}),
                                  ("halt", {"cmd": "halt", "reason": "from the dashboard"}),
                                  ("resume", {"cmd": "resume", "all": True})]
        # each is a request the supervisor's own parser takes (the one the CLI's commands go through)
        for cmd, req in fleet.commands:
            assert type(commands.parse({**req, "cmd": cmd})).__name__.lower() == cmd, req
    finally:
        await _stop(server, dash)


async def test_actions_off_by_default(tmp_path: Path) -> None:
    server, dash, fleet, url = await _serve(tmp_path, DashboardConfig())
    token = (tmp_path / "dashboard.token").read_text().strip()
    try:
        async with aiohttp.ClientSession() as s:
            async with s.post(url + "/api/action", json={"cmd": "pause", "symbol": "BTCUSD", "confirm": "BTCUSD"},
                              headers={"X-Dashboard-Token": token}) as r:
                assert r.status == 403 and "actions = true" in (await r.json())["message"]
        assert fleet.commands == []
    finally:
        await _stop(server, dash)


async def test_pages_of_order_events_and_fills_filter_and_follow_on(tmp_path: Path) -> None:
    _ledger(tmp_path)
    server, dash, _, url = await _serve(tmp_path, DashboardConfig())
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/api/orders?limit=3") as r:
                page1 = await r.json()
            assert [row["id"] for row in page1["rows"]] == [7, 6, 5] and page1["next_before"] == 5
            async with s.get(url + f"/api/orders?limit=3&before={page1['next_before']}") as r:
                assert [row["id"] for row in (await r.json())["rows"]] == [4, 3, 2]
            async with s.get(url + "/api/orders?symbol=ETHUSD&event=placed") as r:
                rows = (await r.json())["rows"]
            assert rows and all(x["symbol"] == "ETHUSD" and x["event"] == "placed" for x in rows)
            async with s.get(url + "/api/fills?side=buy&limit=2") as r:
                doc = await r.json()
            assert [f["fill_id"] for f in doc["rows"]] == ["f5", "f3"] and doc["next_before"] == 4
            async with s.get(url + "/api/fills?limit=0") as r:
                assert r.status == 400
            async with s.get(url + "/api/fills?before=x") as r:
                assert r.status == 400
    finally:
        await _stop(server, dash)


async def test_reports_listed_and_served_without_leaving_the_run_dir(tmp_path: Path) -> None:
    study = tmp_path / "optimize" / "s1"
    study.mkdir(parents=True)
    (study / "best.md").write_text("# best\n")
    (study / "secret.sqlite").write_text("no")
    (tmp_path / "venue.json").write_text("{}")
    server, dash, _, url = await _serve(tmp_path, DashboardConfig())
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/api/reports") as r:
                reports = (await r.json())["reports"]
            assert [(x["group"], x["name"], x["files"]) for x in reports] == [("optimize", "s1", ["best.md"])]
            async with s.get(url + "/reports/optimize/s1/best.md") as r:
                assert r.status == 200 and await r.text() == "# best\n"
            for bad in ("/reports/optimize/s1/secret.sqlite", "/reports/optimize/..%2F/venue.json",
                        "/reports/logs/s1/best.md", "/reports/optimize/s1/..%2F..%2Fvenue.json"):
                async with s.get(url + bad) as r:
                    assert r.status == 404, bad
    finally:
        await _stop(server, dash)


async def test_fleet_streams_live(tmp_path: Path) -> None:
    server, dash, _, url = await _serve(tmp_path, DashboardConfig())
    try:
        async with aiohttp.ClientSession() as s, s.get(url + "/api/stream") as r:
            assert r.headers["Content-Type"] == "text/event-stream"
            events = []
            async for line in r.content:
                if line.startswith(b"data: "):
                    events.append(line)
                if len(events) == 2:
                    break
            assert b'"symbol":"ETHUSD"' in events[1]
            # Shutting down with a live page open ends its stream at once, not after a timeout.
            import time
            t0 = time.monotonic()
            await _stop(server, dash)
            assert time.monotonic() - t0 < 1.0
            await asyncio.wait_for(r.content.read(), 2)  # the rest of the stream, to its end
            assert r.content.at_eof()
    finally:
        await _stop(server, dash)


def _non_loopback_ipv4() -> str | None:
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return str(a.address)
    return None


async def test_beyond_loopback_every_request_needs_the_token(tmp_path: Path) -> None:
    ip = _non_loopback_ipv4()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address to bind")
    server, dash, _, loop_url = await _serve(tmp_path, DashboardConfig(host=ip))
    token = (tmp_path / "dashboard.token").read_text().strip()
    try:
        assert dash.own_site
        port = await server.add_site(ip, 0)
        url = f"http://{ip}:{port}"
        # unsafe: accept cookies from an IP address, as browsers do
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            for path in ("/", "/api/fleet", "/metrics", "/static/app.js", "/api/symbol/BTCUSD"):
                async with s.get(url + path) as r:
                    assert r.status == 401, path
            async with s.get(url + "/api/fleet", headers={"X-Dashboard-Token": token}) as r:
                assert r.status == 200
            async with s.get(url + "/?token=wrong", allow_redirects=False) as r:
                assert r.status == 401
            async with s.get(url + "/?token=" + token) as r:  # the link sets a cookie, then pages open
                assert r.status == 200 and "uPlot" in await r.text()
            async with s.get(url + "/api/fleet") as r:
                assert r.status == 200
        async with aiohttp.ClientSession() as s, s.get(loop_url + "/api/fleet") as r:
            assert r.status == 200  # the loopback site stays as it was
    finally:
        await _stop(server, dash)


def test_token_from_the_environment_must_be_long(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATE_DASHBOARD_TOKEN", "short")
    with pytest.raises(DashboardError, match="too short"):
        make_token(tmp_path / "t")
    monkeypatch.setenv("ORCHESTRATE_DASHBOARD_TOKEN", "k" * 30)
    assert make_token(tmp_path / "t") == "k" * 30
    monkeypatch.delenv("ORCHESTRATE_DASHBOARD_TOKEN")
    a, b = make_token(tmp_path / "t"), make_token(tmp_path / "t")
    assert a != b and len(a) >= 40 and (tmp_path / "t").read_text().strip() == b


def test_history_is_bounded_and_keeps_the_newest() -> None:
    h = FleetHistory(tuple(f"S{i}" for i in range(1000)))
    assert h.points == 120
    for t in range(500):
        h.sample(float(t), {"S1": _figures(100.0 + t)})
    cols = h.symbols["S1"].as_columns()
    assert len(cols["ts"]) == 120 and cols["ts"][-1] == 499.0 and cols["price"][-1] == 599.0
    for t in range(5000):
        h.note_equity(float(t), 1.0 if t % 2 else math.nan)
    assert len(h.equity) <= 1800


async def test_fills_on_the_chart_are_bounded(tmp_path: Path) -> None:
    server, dash, _, url = await _serve(tmp_path, DashboardConfig())
    try:
        for i in range(1000):
            dash.on_fill(FillEvent(symbol="BTCUSD", sent_ns=0, fill=Fill(
                fill_id=str(i), symbol="BTCUSD", order_id="1", client_order_id="c", side="buy", size=1,
                price=str(100 + i), fee="0", contract_value="0.001", role="maker", ts=0.0)))
        await asyncio.sleep(0)
        async with aiohttp.ClientSession() as s, s.get(url + "/api/symbol/BTCUSD") as r:
            seen = (await r.json())["fills_seen"]
        assert len(seen) == 300 and seen[-1][2] == 1099.0
    finally:
        await _stop(server, dash)


def test_a_short_token_in_the_environment_refuses_the_run(tmp_path: Path) -> None:
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "--run-dir", str(tmp_path / "run"), "--no-display"],
                       env={**os.environ, "ORCHESTRATE_DASHBOARD_TOKEN": "short-secret"}, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "ORCHESTRATE_DASHBOARD_TOKEN is too short" in r.stderr
    assert "short-secret" not in r.stderr + r.stdout and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_run_serving_beyond_loopback_asks_every_request_for_the_token(start_run, tmp_path: Path) -> None:
    import json
    import urllib.error
    import urllib.request
    ip = _non_loopback_ipv4()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address to bind")
    cfg = tmp_path / "remote.toml"
    cfg.write_text(f'[dashboard]\nhost = "{ip}"\n[processes]\npool_size = 1\n')
    run = start_run(["--config", str(cfg), "--symbols", "BTCUSD"])
    doc = run.wait_for(lambda d: bool(d["dashboard_url"]), 60, "the dashboard served")
    url = doc["dashboard_url"]
    assert url.startswith(f"http://{ip}:") and url != doc["metrics_url"].removesuffix("metrics")
    assert (run.run_dir / "dashboard.url").read_text().strip() == url
    token = (run.run_dir / "dashboard.token").read_text().strip()
    for path in ("", "api/fleet", "metrics"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + path, timeout=5)
        assert err.value.code == 401, path
    req = urllib.request.Request(url + "api/fleet", headers={"X-Dashboard-Token": token})
    fleet = json.loads(urllib.request.urlopen(req, timeout=5).read())
    assert [w["symbol"] for w in fleet["status"]["workers"]] == ["BTCUSD"]
    # The metrics site stays on loopback as before: Prometheus scrapes it without a token.
    assert urllib.request.urlopen(doc["metrics_url"], timeout=5).status == 200
    run.terminate()
    assert run.proc.returncode == 0
