"""Load test and soak: the pure aggregation/report functions on constructed inputs, then one tiny
real load-test step and one tiny soak through the entry points."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from orchestrator import loadtest as lt
from shared.status import ProcessStatus, RateBudgetUse, StatusSnapshot, WorkerStatus

MB = 1024 * 1024


# --- parsing ---------------------------------------------------------------------------------

def test_parse_steps_sorts_and_dedups() -> None:
    assert lt.parse_steps("200", 2.0) == [lt.StepPlan(200, 2.0)]
    assert [p.symbols for p in lt.parse_steps("200,10, 50,10", 2.0)] == [10, 50, 200]


def test_parse_steps_takes_a_tick_rate_per_step() -> None:
    # make loadtest's sequence: 1,000 symbols at 1 tick/s, the others at the default rate.
    assert lt.parse_steps("10,100,200,500,1000@1", 2.0) == [
        lt.StepPlan(10, 2.0), lt.StepPlan(100, 2.0), lt.StepPlan(200, 2.0), lt.StepPlan(500, 2.0),
        lt.StepPlan(1000, 1.0)]


def test_parse_steps_takes_an_arrival_model_per_step() -> None:
    # make loadtest's sequence: the default (independent) rows and the lockstep burst case at 200 x 2/s.
    assert lt.parse_steps("10,200:lockstep,200,1000@1", 2.0) == [
        lt.StepPlan(10, 2.0, "independent"), lt.StepPlan(200, 2.0, "independent"),
        lt.StepPlan(200, 2.0, "lockstep"), lt.StepPlan(1000, 1.0, "independent")]
    assert lt.parse_steps("50,1000@1:independent", 2.0, "lockstep") == [
        lt.StepPlan(50, 2.0, "lockstep"), lt.StepPlan(1000, 1.0, "independent")]


@pytest.mark.parametrize("bad", ["", "0", "ten", "10,-5", str(lt.MAX_SYMBOLS + 1), "10@0", "10@x", "10@1000",
                                 "10:poisson", "10@1:", "10:lockstep@1",
                                 ",".join(str(i) for i in range(1, lt.MAX_STEPS + 2))])
def test_parse_steps_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        lt.parse_steps(bad, 2.0)


def test_synthetic_symbols_are_the_venue_names() -> None:
    assert lt.synthetic_symbols(3) == ["SYN_0001", "SYN_0002", "SYN_0003"]


@pytest.mark.parametrize("argv", [["--symbols", "0"], ["--symbols", "3", "--tick-rate", "0"],
                                  ["--symbols", "3", "--duration", "-1"], ["--symbols", "3", "--name", "../x"],
                                  ["--symbols", "3", "--arrivals", "bursty"],
                                  ["--no-such-flag"]])
def test_main_loadtest_bad_input_exits_2(argv: list[str], tmp_path: Path) -> None:
    assert lt.main_loadtest([*argv, "--results-dir", str(tmp_path)]) == 2
    assert not list(tmp_path.iterdir())  # nothing was run, nothing written


def test_main_soak_bad_input_exits_2(tmp_path: Path) -> None:
    assert lt.main_soak(["--symbols", "5", "--duration", "10", "--sample-interval", "60",
                         "--results-dir", str(tmp_path)]) == 2


# --- latency merge ---------------------------------------------------------------------------

def pts(p50: float, p99: float, p999: float) -> list[tuple[float, float]]:
    return [(0.5, p50), (0.99, p99), (0.999, p999)]


def test_merge_of_identical_workers_is_their_percentiles() -> None:
    out = lt.merge_quantiles([(10.0, pts(100, 200, 300))] * 5, (0.5, 0.99, 0.999))
    assert out == pytest.approx([100, 200, 300], rel=1e-6)


def test_merge_of_two_workers_is_the_mixture() -> None:
    a, b = pts(100, 200, 300), pts(1000, 2000, 3000)
    p50, p99 = lt.merge_quantiles([(1.0, a), (1.0, b)], (0.5, 0.99))
    # Mixture CDF at x in [100, 200]: (0.5 + 0.49 (x-100)/100 + 0.5 x/1000) / 2 = 0.5 -> x = 183.33
    assert p50 == pytest.approx(183.333, rel=1e-4)
    # The fleet p99 lies between the workers' p99s and below the worst one.
    assert p99 is not None and 200 < p99 < 2000


def test_merge_weights_move_the_result_towards_the_heavier_worker() -> None:
    a, b = pts(100, 200, 300), pts(1000, 2000, 3000)
    light = lt.merge_quantiles([(1.0, a), (1.0, b)], (0.5,))[0]
    heavy_b = lt.merge_quantiles([(1.0, a), (9.0, b)], (0.5,))[0]
    assert heavy_b is not None and light is not None and heavy_b > light


def test_merge_handles_ties_missing_and_empty() -> None:
    # p99 == p99.9 (few samples) must not break interpolation; None/NaN points are skipped.
    out = lt.merge_quantiles([(1.0, [(0.5, 50.0), (0.99, 80.0), (0.999, 80.0)]),
                              (1.0, [(0.5, None), (0.99, float("nan"))]),
                              (0.0, pts(1, 2, 3))], (0.5, 0.99, 0.999))
    assert out[0] == pytest.approx(50.0) and out[1] == pytest.approx(80.0) and out[2] == pytest.approx(80.0, rel=1e-6)
    assert lt.merge_quantiles([], (0.5, 0.99)) == [None, None]


def test_merge_is_monotone_in_q() -> None:
    workers = [(float(i + 1), pts(100 + 10 * i, 400 + 50 * i, 900 + 90 * i)) for i in range(50)]
    qs = [0.1, 0.5, 0.9, 0.99, 0.999]
    merged = lt.merge_quantiles(workers, qs)
    out = [q for q in merged if q is not None]
    assert len(out) == len(qs) and out == sorted(out)
    assert out[-2] <= max(w[1][1][1] for w in workers)  # fleet p99 <= worst worker's p99


# --- CPU and slopes --------------------------------------------------------------------------

def test_cpu_percent_by_kind_differences_and_groups() -> None:
    before = {1: 10.0, 2: 5.0, 3: 5.0, 4: 100.0}
    after = {1: ("supervisor", 11.0), 2: ("worker", 6.0), 3: ("worker", 5.5), 5: ("worker", 0.5)}
    # pid 4 died in the window (lost); pid 5 started in it (all of its CPU counts).
    out = lt.cpu_percent_by_kind(before, after, wall_s=10.0)
    assert out == {"supervisor": 10.0, "worker": 20.0}
    assert lt.cpu_percent_by_kind(before, after, wall_s=0.0) == {}


def test_cpu_per_tick() -> None:
    # 50% of one core for 10 s = 5 CPU s; over 1000 ticks = 5000 us a tick
    out = lt.cpu_per_tick({"worker": 50.0, "pool": 10.0, "loadtest": 5.0}, wall_s=10.0, ticks=1000)
    assert out == {"worker": 5000.0, "pool": 1000.0, "tree": 6000.0}
    assert lt.cpu_per_tick({"worker": 50.0}, wall_s=10.0, ticks=0) == {}


def test_slope_per_hour() -> None:
    ts = [0.0, 600.0, 1200.0, 1800.0]
    assert lt.slope_per_hour(ts, [50.0, 50.5, 51.0, 51.5]) == pytest.approx(3.0)
    assert lt.slope_per_hour(ts, [50.0, 50.0, 50.0, 50.0]) == pytest.approx(0.0)
    assert lt.slope_per_hour([0.0, 1.0], [1.0, 2.0]) is None
    assert lt.slope_per_hour([5.0, 5.0, 5.0], [1.0, 2.0, 3.0]) is None


def test_summarise_slopes_flags_leaking_workers() -> None:
    ts = [0.0, 1800.0, 3600.0]
    series = {
        "worker:SYN_0001:11": ("worker", ts, [40.0, 40.1, 40.2], [10.0, 10.0, 10.0]),
        "worker:SYN_0002:12": ("worker", ts, [40.0, 42.0, 44.0], [10.0, 12.0, 14.0]),
        "gateway:gateway:13": ("gateway", ts, [50.0, 50.0, 50.0], [20.0, 20.0, 20.0]),
        "worker:SYN_0003:14": ("worker", ts[:2], [40.0, 90.0], [1.0, 2.0]),  # too short: skipped
    }
    kinds, flagged = lt.summarise_slopes(series, flag_above=1.0)
    by = {k.kind: k for k in kinds}
    assert by["worker"].processes == 2
    assert by["worker"].rss_slope_mb_per_h_max == pytest.approx(4.0)
    assert by["gateway"].rss_slope_mb_per_h_max == pytest.approx(0.0)
    assert [f.process for f in flagged] == ["worker:SYN_0002:12"]


# --- targets, diagnosis, reports -------------------------------------------------------------

def make_step(**kw: object) -> lt.StepResult:
    base: dict[str, object] = dict(
        symbols=200, tick_rate=2.0, bar_seconds=2.0, pool_size=0, duration_s=20.0, settle_s=40.0,
        all_signalled=True, startup_s=12.0, startup_worker_max_s=3.0, tick_to_signal_p50_us=900.0,
        tick_to_signal_p99_us=3000.0, tick_to_signal_p999_us=4000.0, tick_to_signal_p50_us_median_worker=900.0,
        tick_to_signal_p99_us_worst_worker=4500.0, tick_to_signal_p999_us_worst_worker=6000.0,
        order_rtt_p50_us=None, order_rtt_p99_us=None, order_rtt_p99_us_worst_worker=None,
        ticks_expected=8000, ticks_sent=8000, ticks_received=7990, ticks_dropped=0, ticks_dropped_total=0,
        ticks_late=None, signals=7900, signals_per_s=395.0, cpu_cores=2,
        cpu_percent_by_kind={"worker": 60.0, "pool": 20.0, "gateway": 10.0}, cpu_percent_tree=90.0,
        cpu_us_per_tick_by_kind={"worker": 200.0, "pool": 80.0, "gateway": 60.0, "tree": 340.0},
        machine_cpu_percent=100.0, outside_cpu_percent=10.0, pool_busy_fraction_max=0.2,
        pool_requests=7900, pool_batches=80, pool_mean_batch=98.75, pool_max_batch=100, pool_cpu_ms_per_batch=5.0,
        loop_lag_ms_median=1.0, loop_lag_ms_max=3.0, worker_uss_bytes_median=10 * MB,
        worker_uss_bytes_max=11 * MB, worker_pss_bytes_median=14 * MB, worker_pss_bytes_max=15 * MB,
        total_pss_bytes=3000 * MB, memory_by_kind=[], restarts=0, restart_reasons={}, quarantined=0,
        startup_cpu_percent_by_kind={"worker": 150.0}, startup_machine_cpu_percent=190.0,
        budget_breaches=0, budget_notes=[],
        loadavg_at_launch=[0.5, 0.5, 0.5], samples=[])
    base.update(kw)
    return lt.StepResult(**base)  # type: ignore[arg-type]  # base: a mixed-type dict of StepResult fields


def snapshot(**kw: Any) -> StatusSnapshot:
    return StatusSnapshot(run_dir="/r", mode="paper", venue="paper", supervisor_pid=1, started_at=0.0,
                          uptime_s=1.0, **kw)


def row(kind: str, name: str, **kw: Any) -> ProcessStatus:
    return ProcessStatus(**{"kind": kind, "name": name, "pid": 7, "state": "running", "uptime_s": 1.0,
                            "restarts": 0, "load": None, "rss_mb": None, "uss_mb": None, "cpu_percent": None, **kw})


def worker_row(symbol: str, state: str) -> WorkerStatus:
    return WorkerStatus(symbol=symbol, pid=9, state=state, uptime_s=1.0, restarts=0, rss_mb=None, uss_mb=None,
                        cpu_percent=None, budget="ok", heartbeat_age_s=None, first_signal_after_launch_s=None)


def test_restart_reasons_come_from_the_status_documents_typed_tally() -> None:
    # Out of order on purpose: the report lists the most frequent cause first.
    snap = snapshot(restarts_by_cause={"pool: exited with code -N": 1, "worker: no heartbeat for Ns (hung)": 2},
                    workers=[worker_row("SYN_0001", "quarantined"), worker_row("SYN_0002", "running")],
                    processes=[row("pool", "pool-0", state="backoff")])
    reasons, quarantined = lt.restart_reasons(snap)
    assert reasons == {"worker: no heartbeat for Ns (hung)": 2, "pool: exited with code -N": 1}
    assert list(reasons)[0] == "worker: no heartbeat for Ns (hung)" and quarantined == 1
    assert lt.restart_reasons(None) == ({}, 0)  # the supervisor never answered


def test_restart_reasons_survive_the_status_documents_json() -> None:
    """What the load test reads over the control socket: the supervisor's tally, through JSON."""
    snap = snapshot(restarts_by_cause={"worker: budget tick_to_signal_p99 Nus > Nus": 3})
    again = msgspec.json.decode(msgspec.json.encode(snap), type=StatusSnapshot)
    assert lt.restart_reasons(again) == ({"worker: budget tick_to_signal_p99 Nus > Nus": 3}, 0)


def test_diagnosis_of_a_failed_start_shows_startup_cpu_and_restart_reasons() -> None:
    s = make_step(all_signalled=False, startup_s=None, restart_reasons={"worker: no heartbeat for Ns (hung)": 40},
                  quarantined=7)
    text = " ".join(lt.diagnose(s, lt.check_step(s, lt.Targets())))
    assert "during start-up the machine ran at 190%" in text and "worker 150%" in text
    assert "no heartbeat for Ns (hung) x40; 7 quarantined" in text


def test_a_step_meeting_every_target_has_no_miss() -> None:
    assert lt.check_step(make_step(), lt.Targets()) == []


def test_misses_say_by_how_much() -> None:
    s = make_step(tick_to_signal_p99_us=6500.0, worker_uss_bytes_max=13 * MB, ticks_dropped_total=4,
                  startup_s=20.0, restarts=1, budget_breaches=2, ticks_sent=7000)
    misses = {m.target: m for m in lt.check_step(s, lt.Targets())}
    assert misses["tick_to_signal_p99_us"].over_by == pytest.approx(1500.0)
    assert misses["worker_uss_mb"].over_by == pytest.approx(1.0)
    assert misses["ticks_dropped"].value == 4
    assert misses["startup_s"].over_by == pytest.approx(5.0)
    assert misses["restarts"].value == 1 and misses["budget_breaches"].value == 2
    assert misses["ticks_sent_ratio"].value == pytest.approx(0.875)


def test_unmeasured_startup_and_latency_are_misses_not_passes() -> None:
    s = make_step(all_signalled=False, startup_s=None, tick_to_signal_p99_us=None)
    misses = {m.target: m for m in lt.check_step(s, lt.Targets())}
    assert misses["startup_s"].value is None and "signalled" in misses["startup_s"].note
    assert misses["tick_to_signal_p99_us"].over_by is None


def test_above_200_symbols_the_looser_latency_and_startup_targets_hold() -> None:
    t = lt.Targets()
    big = make_step(symbols=1000, tick_rate=1.0, tick_to_signal_p99_us=15_000.0, startup_s=45.0)
    assert lt.check_step(big, t) == []
    misses = {m.target: m for m in lt.check_step(make_step(symbols=1000, tick_rate=1.0,
                                                           tick_to_signal_p99_us=25_000.0, startup_s=70.0), t)}
    assert misses["tick_to_signal_p99_us"].limit == 20_000.0 and misses["tick_to_signal_p99_us"].over_by == 5000.0
    assert misses["startup_s"].limit == 60.0 and misses["startup_s"].over_by == pytest.approx(10.0)
    # ...and at 200 the tight ones still do.
    assert {m.target for m in lt.check_step(make_step(tick_to_signal_p99_us=15_000.0), t)} == {"tick_to_signal_p99_us"}


def test_cpu_per_tick_and_total_pss_are_targets() -> None:
    s = make_step(cpu_us_per_tick_by_kind={"worker": 900.0, "supervisor": 300.0, "tree": 1200.0},
                  total_pss_bytes=15 * 1024 * MB)
    misses = {m.target: m for m in lt.check_step(s, lt.Targets())}
    assert misses["cpu_us_per_tick"].over_by == pytest.approx(800.0)
    assert misses["total_pss_mb"].over_by == pytest.approx(1024.0)


def test_diagnosis_names_cpu_saturation_by_kind() -> None:
    s = make_step(tick_to_signal_p99_us=9000.0, machine_cpu_percent=195.0, cpu_percent_tree=180.0,
                  outside_cpu_percent=15.0, cpu_percent_by_kind={"worker": 120.0, "pool": 40.0, "gateway": 20.0})
    text = " ".join(lt.diagnose(s, lt.check_step(s, lt.Targets())))
    assert "CPU saturated" in text and "worker 120%" in text


def test_diagnosis_reports_other_load_on_a_shared_machine() -> None:
    s = make_step(outside_cpu_percent=80.0)
    assert any("other processes" in x for x in lt.diagnose(s, []))


def test_diagnosis_of_latency_with_idle_cpu_points_at_the_pool_batches() -> None:
    s = make_step(tick_to_signal_p99_us=8000.0, machine_cpu_percent=40.0, cpu_percent_tree=10.0,
                  cpu_us_per_tick_by_kind={"worker": 1500.0, "pool": 500.0, "gateway": 250.0, "tree": 2250.0})
    text = " ".join(lt.diagnose(s, lt.check_step(s, lt.Targets())))
    assert "not CPU-bound" in text and "mean 98.8" in text and "5.00 ms of pool CPU per batch" in text
    assert "CPU saturated" not in text and "2250 us of CPU" in text


def test_pool_counters_and_gateway_lag_read_the_typed_status_fields() -> None:
    snap = snapshot(processes=[
        row("pool", "pool-0", signal_requests=81, signal_batches=51, max_batch=3,
            note="requests 1 batches 1 max batch 1 symbols 3"),  # the note is for people: not read
        row("gateway", "gateway", loop_lag_ms=1.8, note="source exchange ticks 84 loop lag 9.9 ms"),
        row("pool", "pool-1", state="starting")])  # not reported yet: left out
    assert lt.pool_counters(snap) == {"pool-0": (81, 51, 3)}
    assert lt.gateway_loop_lag_ms(snap) == [1.8]
    assert lt.gateway_loop_lag_ms(snapshot(processes=[row("gateway", "gateway")])) == []


def test_the_window_counts_pool_requests_and_batches_from_typed_fields() -> None:
    def pools(req: int, bat: int, mx: int) -> StatusSnapshot:
        return snapshot(processes=[row("pool", "pool-0", signal_requests=req, signal_batches=bat, max_batch=mx)])
    s0, s1 = pools(100, 40, 5), pools(900, 140, 12)
    step = lt.figures._assemble(3, 2.0, 2.0, 1, 10.0, 0.0, 1.0, s0, s1, s1, {}, {}, 50.0, {}, [], [0.0], None, None)
    assert (step.pool_requests, step.pool_batches, step.pool_mean_batch, step.pool_max_batch) == (800, 100, 8.0, 12)


def test_the_window_counts_late_ticks_from_the_workers_typed_field() -> None:
    def late(n: int) -> StatusSnapshot:
        w = msgspec.structs.replace(worker_row("SYN_0001", "running"), ticks_late=n)
        return snapshot(workers=[w])
    step = lt.figures._assemble(1, 2.0, 2.0, 1, 10.0, 0.0, 1.0, late(3), late(10), late(10), {}, {}, 50.0, {}, [],
                                [0.0], None, None)
    assert step.ticks_late == 7
    unmeasured = lt.figures._assemble(1, 2.0, 2.0, 1, 0.0, 0.0, None, None, None, late(10), {}, {}, 0.0, {}, [],
                                      [0.0], "failed", None)
    assert unmeasured.ticks_late is None


def constructed_doc() -> lt.LoadtestDoc:
    steps = [make_step(symbols=n, tick_to_signal_p99_us=1000.0 + 20 * n) for n in (10, 50, 200)]
    steps.append(make_step(symbols=1000, tick_rate=1.0, tick_to_signal_p99_us=12_000.0))
    steps.insert(3, make_step(symbols=200, tick_to_signal_p99_us=7_500.0, arrivals="lockstep"))
    steps[2].misses = lt.check_step(make_step(tick_to_signal_p99_us=6000.0), lt.Targets())
    return lt.LoadtestDoc(name="unit", started_utc="2026-01-01T00:00:00+00:00",
                          command="orchestrate loadtest --symbols 10,50,200,1000@1",
                          machine=lt.Machine(cpus=2, git_commit="abc", loadavg=[0.1, 0.2, 0.3]), steps=steps,
                          stopped_at="200 symbols missed tick_to_signal_p99_us", notes=["a note"])


def test_markdown_has_a_summary_row_and_a_table_per_step() -> None:
    md = lt.loadtest_markdown(constructed_doc())
    assert md.count("\n| 200 | 2 | independent | 12.00 |") == 1
    assert md.count("\n| 1000 | 1 | independent | 12.00 |") == 1
    assert md.count("\n| 200 | 2 | lockstep | 12.00 |") == 1
    assert md.count("## 10 symbols at 2 ticks/s, independent arrivals") == 1
    assert md.count("## 200 symbols at 2 ticks/s, independent") == 1
    assert md.count("## 200 symbols at 2 ticks/s, lockstep") == 1
    assert "over by 1000 us" in md and "**Stopped:** " in md and "- a note" in md


def test_readme_table_puts_each_figure_beside_its_floor_and_target() -> None:
    rows = lt.readme_table(constructed_doc())
    assert rows[2].startswith("| floor (perf-floors.md) | | 0.123 / 0.182 / - |") and "| 75 | 6.2 |" in rows[2]
    by_step = {r.split(" |")[0]: r for r in rows[3:]}
    assert set(by_step) == {"| 10 x 2", "| 50 x 2", "| 200 x 2", "| 200 x 2, lockstep", "| 1000 x 1"}
    assert "| 0.90 / 7.50 / 4.00 | 5 |" in by_step["| 200 x 2, lockstep"]
    # 200 symbols: the 5 ms target; 1,000 symbols: 20 ms and 60 s of start-up
    assert "| 0.90 / 5.00 / 4.00 | 5 |" in by_step["| 200 x 2"]
    assert "12.0 (<= 60)" in by_step["| 1000 x 1"] and "| 0.90 / 12.00 / 4.00 | 20 |" in by_step["| 1000 x 1"]
    # CPU per tick by kind in the header's order (worker, pool, gateway, venue, supervisor, other), then the tree
    assert "| 200 / 80 / 60 / n/a / n/a / n/a | 340 (<= 400) | 11.0 (<= 12) |" in by_step["| 200 x 2"]


def test_the_json_report_reads_back_as_the_typed_document(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    paths = lt.write_reports(constructed_doc(), tmp_path, lt.loadtest_markdown, lt.loadtest_plots)
    back = msgspec.json.decode(Path(paths["json"]).read_bytes(), type=lt.LoadtestDoc)
    assert [s.symbols for s in back.steps] == [10, 50, 200, 200, 1000] and back.targets == lt.Targets()
    assert [s.arrivals for s in back.steps] == ["independent"] * 3 + ["lockstep", "independent"]
    assert back.steps[2].misses[0].target == "tick_to_signal_p99_us"


def test_reports_written_with_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    doc = constructed_doc()
    paths = lt.write_reports(doc, tmp_path, lt.loadtest_markdown, lt.loadtest_plots)
    assert Path(paths["json"]).name.startswith("unit-") and json.loads(Path(paths["json"]).read_text())["steps"]
    pngs = [Path(p) for k, p in paths.items() if k.startswith("plot")]
    assert {p.name.rsplit("-", 1)[1] for p in pngs} == {"latency.png", "cpu.png", "memory.png"}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert "![" in Path(paths["markdown"]).read_text()
    # A second run the same day does not overwrite the first.
    again = lt.write_reports(constructed_doc(), tmp_path, lt.loadtest_markdown, lt.loadtest_plots)
    assert again["json"] != paths["json"] and Path(paths["json"]).exists()


def test_reports_without_matplotlib_skip_plots_and_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now raises ImportError
    doc = constructed_doc()
    paths = lt.write_reports(doc, tmp_path, lt.loadtest_markdown, lt.loadtest_plots)
    assert not any(k.startswith("plot") for k in paths)
    assert any("matplotlib is not installed" in n for n in json.loads(Path(paths["json"]).read_text())["notes"])


# --- real runs -------------------------------------------------------------------------------

@pytest.mark.slow
def test_tiny_real_loadtest_json(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    rc = lt.main_loadtest(["--symbols", "3", "--tick-rate", "4", "--duration", "3", "--settle", "0", "--json",
                           "--run-dir", str(tmp_path / "run"), "--keep-going", "--name", "tiny"])
    assert rc == 0
    assert not list(cwd.iterdir())  # results go under the run dir, never the current directory
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "loadtest" and len(doc["steps"]) == 1
    s = doc["steps"][0]
    for key in ("symbols", "tick_rate", "duration_s", "tick_to_signal_p50_us", "tick_to_signal_p99_us", "ticks_sent",
                "ticks_dropped", "worker_uss_bytes_median", "worker_uss_bytes_max", "total_pss_bytes", "startup_s",
                "restarts", "order_rtt_p50_us", "order_rtt_p99_us", "cpu_percent_by_kind"):
        assert key in s, key
    assert s["symbols"] == 3 and s["tick_rate"] == 4.0 and s["bar_seconds"] == 1.0 and s["arrivals"] == "independent"
    assert s["error"] is None and s["all_signalled"] and s["startup_s"] > 0
    assert 0 < s["tick_to_signal_p50_us"] <= s["tick_to_signal_p99_us"] <= s["tick_to_signal_p999_us"]
    assert s["tick_to_signal_p99_us"] <= s["tick_to_signal_p99_us_worst_worker"]
    assert s["ticks_sent"] > 0 and s["ticks_received"] > 0 and s["signals"] > 0
    assert s["ticks_dropped_total"] == 0 and s["restarts"] == 0
    assert s["restart_reasons"] == {} and s["quarantined"] == 0 and s["ticks_late"] is not None
    # the pool's typed counters: every signal was a request served in some batch
    assert s["pool_requests"] > 0 and 0 < s["pool_batches"] <= s["pool_requests"] and s["pool_max_batch"] >= 1
    assert 0 < s["worker_uss_bytes_median"] <= s["worker_uss_bytes_max"]
    # the tree's PSS holds at least the workers' and the other kinds' processes
    assert s["total_pss_bytes"] >= 3 * s["worker_pss_bytes_median"]
    kinds = {m["kind"]: m["count"] for m in s["memory_by_kind"]}
    assert kinds["worker"] == 3 and kinds["gateway"] == 1 and kinds["supervisor"] == 1 and kinds["pool"] >= 1
    assert {"worker", "pool", "gateway", "supervisor"} <= set(s["cpu_percent_by_kind"])
    assert Path(doc["reports"]["json"]).parent == tmp_path / "run" / "results"
    assert Path(doc["reports"]["json"]).exists() and Path(doc["reports"]["markdown"]).exists()
    assert not (tmp_path / "run" / "step-3-4-independent" / "control.sock").exists()  # the tree was stopped
    assert doc["loadavg_at_end"] and doc["steps"][0]["cpu_us_per_tick_by_kind"]["tree"] > 0
    # Seconds after the start every order intent is a start-up one (the first grids): reported on
    # their own row, not in the steady state's round trip; the account's budget is Delta's.
    assert s["order_rtt_startup_p50_us"] > 0 and s["order_rtt_p50_us"] is None
    assert s["rate_budget_capacity"] == 10_000 and 0 <= s["rate_budget_left"] < 10_000
    assert s["order_errors"] is not None


@pytest.mark.slow
def test_tiny_real_soak(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = lt.main_soak(["--symbols", "2", "--duration", "4", "--sample-interval", "1", "--warmup", "0",
                       "--tick-rate", "4", "--json", "--run-dir", str(tmp_path / "run"),
                       "--results-dir", str(tmp_path / "results")])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"] is None and doc["samples"] == 5  # t = 0, 1, 2, 3, 4 s
    kinds = {k["kind"]: k for k in doc["kinds"]}
    assert kinds["worker"]["processes"] == 2 and kinds["worker"]["rss_slope_mb_per_h_median"] is not None
    assert {"gateway", "pool", "supervisor"} <= set(kinds)
    assert doc["loop_lag_ms"]["worker_max"] is not None and doc["restarts"] == 0
    assert doc["loop_lag_ms"]["gateway_max"] is not None  # the gateway's typed loop_lag_ms
    assert Path(doc["reports"]["markdown"]).read_text().startswith("# Soak")


def test_hop_means_difference_the_workers_counters_over_the_window() -> None:
    from orchestrator.loadtest.figures import hop_means
    from shared.latency import HopSums, TickHops
    from shared.status import StatusSnapshot, WorkerStatus

    def worker(symbol: str, pid: int, ticks: int, to_pool: float, slow: int, slow_to_pool: float) -> WorkerStatus:
        return WorkerStatus(symbol=symbol, pid=pid, state="running", uptime_s=1.0, restarts=0, rss_mb=None,
                            uss_mb=None, cpu_percent=None, budget="ok", heartbeat_age_s=0.1,
                            first_signal_after_launch_s=1.0,
                            tick_hops=TickHops(all=HopSums(ticks=ticks, to_pool_us=to_pool, compute_us=100.0 * ticks),
                                               slow=HopSums(ticks=slow, to_pool_us=slow_to_pool)))

    def snap(*ws: WorkerStatus) -> StatusSnapshot:
        return StatusSnapshot(run_dir="r", mode="paper", venue="paper", supervisor_pid=1, started_at=0.0,
                              uptime_s=1.0, workers=list(ws))

    s0 = snap(worker("A", 1, 10, 500.0, 1, 300.0), worker("B", 2, 50, 9e9, 5, 9e9))
    # A: 10 more ticks, 1,000 us more to the pool, one more slow tick of 900 us; B restarted (new pid):
    # its counters count from its start
    s1 = snap(worker("A", 1, 20, 1500.0, 2, 1200.0), worker("B", 3, 10, 1000.0, 1, 600.0))
    h = hop_means(s0, s1)
    assert h is not None
    assert (h.ticks, h.slow_ticks) == (20, 2)
    assert h.all_us["to_pool"] == pytest.approx(100.0) and h.all_us["compute"] == pytest.approx(100.0)
    assert h.slow_us["to_pool"] == pytest.approx(750.0)
    assert set(h.all_us) == {"gateway", "worker", "to_pool", "pool", "compute", "back"}
    assert hop_means(s1, s1) is None  # no tick in the window


def test_diagnosis_names_the_hops_the_slow_ticks_spent_their_time_in() -> None:
    from orchestrator.loadtest.figures import HopMeans

    s = make_step(tick_to_signal_p99_us=9000.0)
    s.tick_hops = HopMeans(ticks=1000, slow_ticks=12,
                           all_us={"gateway": 300.0, "worker": 60.0, "to_pool": 200.0, "pool": 50.0, "compute": 200.0,
                                   "back": 100.0},
                           slow_us={"gateway": 9000.0, "worker": 100.0, "to_pool": 6000.0, "pool": 100.0,
                                    "compute": 800.0, "back": 1000.0})
    lines = lt.diagnose(s, lt.check_step(s, lt.Targets()))
    slow = [x for x in lines if x.startswith("the slow ticks")]
    assert slow and "12 of 1000" in slow[0] and "to_pool 6000 us (75%)" in slow[0] and "back 1000 us (12%)" in slow[0]


def test_the_window_shows_what_the_rate_budget_bought_and_the_intents_that_waited() -> None:
    start = snapshot(rate_budget_use=RateBudgetUse(units_by_kind={"batch place": 2500, "reconcile": 1900},
                                                   intents=100, intents_waited=3, intents_wait_s=1.0))
    end = snapshot(rate_budget_use=RateBudgetUse(
        units_by_kind={"batch place": 2600, "reconcile": 1900, "fill read": 40, "cancel": 10}, intents=110,
        intents_waited=5, intents_wait_s=4.5, intents_wait_max_s=3.0, intents_refused=2, requests_waiting=7))
    b = lt.figures.budget_use(start, end)
    assert b is not None
    assert b.units_window == {"batch place": 100, "fill read": 40, "cancel": 10}  # biggest first, no zeros
    assert list(b.units_total) == ["batch place", "reconcile", "fill read", "cancel"]
    assert (b.intents_window, b.intents_waited_window, b.intents_wait_s_window, b.intents_refused_window) == (
        10, 2, 3.5, 2)
    assert (b.intents_wait_max_s, b.requests_waiting_end) == (3.0, 7)
    # a gateway restarted in the window counts from zero; no gateway figures: nothing known
    again = lt.figures.budget_use(end, start)
    assert again is not None and again.units_window["batch place"] == 2500 and again.intents_window == 100
    assert lt.figures.budget_use(snapshot(), end) is None


def test_the_report_says_plainly_when_no_intent_was_answered_after_the_start_up_minute() -> None:
    use = lt.figures.BudgetUse(units_window={}, units_total={"batch place": 3675, "reconcile": 1900},
                               intents_window=8, intents_waited_window=0, intents_wait_s_window=0.0,
                               intents_refused_window=8, intents_wait_max_s=0.002, requests_waiting_end=30)
    rows = {r[0]: r[1] for r in lt.report.step_table(make_step(budget_use=use), lt.Targets())}
    assert rows["order intent -> ack p50 / p99, steady state (us)"] == ("none: no order intent was answered after the "
                                                                         "start-up minute (8 intents executed by the "
                                                                         "gateway in the window)")
    assert rows["account rate units spent in the window (0), by kind"] == "none"
    assert rows["account rate units since start (5,575), by kind"] == "batch place 3,675, reconcile 1,900"
    assert rows["order intents in the window: executed / waited for budget (s in all) / quotes refused for budget"] \
        == "8 / 0 (0.0 s) / 8"
    answered = {r[0]: r[1] for r in lt.report.step_table(
        make_step(order_rtt_p50_us=900.0, order_rtt_p99_us=4000.0), lt.Targets())}
    assert answered["order intent -> ack p50 / p99, steady state (us)"] == "900.0 / 4,000.0"
    assert answered["account rate units by kind"] == "n/a (no gateway figures)"
