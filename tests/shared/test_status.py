"""The status document's renderings: what an operator reads in the terminal and in logs."""

from __future__ import annotations

import msgspec

from shared.status import StatusSnapshot, WorkerStatus, render_lines, render_table


def worker(symbol: str, **kw: object) -> WorkerStatus:
    base = dict(symbol=symbol, pid=10, state="running", uptime_s=5.0, restarts=0, last_price=615.5, bar_count=1100,
                signal="UP", confidence=0.75, votes={"trend": "UP"}, tick_to_signal_p50_us=800.0,
                tick_to_signal_p99_us=1500.0, tick_to_signal_p999_us=None, signals=9, ticks=9, ticks_dropped=0,
                loop_lag_ms=1.0, rss_mb=46.0, uss_mb=10.5, cpu_percent=1.0, budget="ok", heartbeat_age_s=0.5,
                first_signal_after_launch_s=1.2, position=-160.0, open_orders=4, realized_pnl=1.5, fees=0.25,
                trading="trading")
    base.update(kw)
    return msgspec.convert(base, WorkerStatus)


def test_the_protective_stop_shows_where_it_rests_and_its_absence_shows_too() -> None:
    snap = StatusSnapshot(run_dir="run", mode="paper", venue="paper", supervisor_pid=1, started_at=0.0, uptime_s=5.0,
                          workers=[worker("BTCUSD", stop_price=624.5),
                                   worker("ETHUSD", stop_price=None, position=0.0,
                                          trading="stopped out: no new entries for 840 s")])
    table = render_table(snap).splitlines()
    btc = next(line for line in table if line.startswith("BTCUSD"))
    eth = next(line for line in table if line.startswith("ETHUSD"))
    assert "| stop 624.5" in btc and "stop" not in eth.split("|")[0]
    assert "| stopped out: no new entries for 840 s" in eth
    lines = render_lines(snap).splitlines()
    assert "stop=624.5" in lines[0] and "pos=-160" in lines[0] and "stop=-" in lines[1]
    doc = msgspec.json.decode(msgspec.json.encode(snap))
    assert [w["stop_price"] for w in doc["workers"]] == [624.5, None]


def test_order_management_down_is_said_first_in_the_table_and_the_lines() -> None:
    snap = StatusSnapshot(run_dir="run", mode="paper", venue="paper", supervisor_pid=1, started_at=0.0, uptime_s=5.0,
                          order_management="down: gateway failed (exited with code -9); restart 3 in 2s",
                          workers=[worker("BTCUSD", trading="not trading: order management down")])
    table = render_table(snap).splitlines()
    assert table[1] == ("ORDER MANAGEMENT DOWN: gateway failed (exited with code -9); restart 3 in 2s: "
                        "resting orders are not managed")
    lines = render_lines(snap).splitlines()
    assert lines[0] == table[1] and "trading='not trading: order management down'" in lines[1]
    assert msgspec.json.decode(msgspec.json.encode(snap))["order_management"].startswith("down: gateway")
    up = msgspec.structs.replace(snap, order_management="up")
    assert "ORDER MANAGEMENT" not in render_table(up) + render_lines(up)


def test_failing_storage_is_said_on_its_own_line() -> None:
    snap = StatusSnapshot(run_dir="run", mode="paper", venue="paper", supervisor_pid=1, started_at=0.0, uptime_s=5.0,
                          halted=True, halt_reason="storage: fill 7 not written: database or disk is full",
                          storage="failing: 3 fills waiting to be written; "
                                  "fill 7 not written: database or disk is full",
                          workers=[worker("BTCUSD")])
    line = "STORAGE FAILING: 3 fills waiting to be written; fill 7 not written: database or disk is full"
    assert line in render_table(snap).splitlines()
    lines = render_lines(snap).splitlines()
    assert lines[:2] == [line, "HALTED: storage: fill 7 not written: database or disk is full "
                               "(lift: orchestrate resume --all)"]


def test_a_halt_says_since_when_by_whom_and_how_to_lift_it_and_flatten_progress_shows() -> None:
    w = msgspec.structs.replace(worker("BTCUSD"), flatten="closing 3 contracts")
    snap = StatusSnapshot(run_dir="run", mode="paper", venue="paper", supervisor_pid=1, started_at=0.0, uptime_s=5.0,
                          halted=True, halt_reason="daily loss 600.00 reached the limit 500.00",
                          halted_at=1_700_000_000.0, halted_by="risk limits", workers=[w])
    want = ("HALTED since 2023-11-14 22:13:20 UTC by risk limits: daily loss 600.00 reached the limit 500.00 "
            "(lift: orchestrate resume --all)")
    assert want in render_table(snap) and want in render_lines(snap).splitlines()
    assert "flatten: closing 3 contracts" in render_table(snap)
    assert "flatten='closing 3 contracts'" in render_lines(snap)


def test_funding_shows_per_symbol_and_counts_in_net_pnl() -> None:
    snap = StatusSnapshot(run_dir="run", mode="paper", venue="paper", supervisor_pid=1, started_at=0.0, uptime_s=5.0,
                          workers=[worker("BTCUSD", funding=-0.75), worker("ETHUSD")])
    table = render_table(snap).splitlines()
    btc = next(line for line in table if line.startswith("BTCUSD"))
    eth = next(line for line in table if line.startswith("ETHUSD"))
    assert "| funding -0.75" in btc and "funding" not in eth
    assert " 0.50  ok" in btc and " 1.25  ok" in eth  # PNL: 1.5 realised - 0.25 fees (- 0.75 funding paid)
    lines = render_lines(snap).splitlines()
    assert "pnl=0.50 funding=-0.75" in lines[0] and "pnl=1.25 funding=0.00" in lines[1]
    assert msgspec.json.decode(msgspec.json.encode(snap))["workers"][0]["funding"] == -0.75
