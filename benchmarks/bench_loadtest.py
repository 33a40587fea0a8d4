"""Load-test figures for `make bench` (issue 6): one 10-symbol step of the whole tree at 2 ticks/s,
each figure beside perf-floors' anchor and issue 6's target. The full stepped load test with its
reports is `orchestrate loadtest` (orchestrator/loadtest.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from orchestrator.loadtest import MB, Floors, Targets, check_step, run_step
from workers.worker import LATENCY_WARMUP_S

from .harness import print_table, row

_F = Floors()  # perf-floors.md anchors: one home, shared with the load test's reports
FLOOR_RTT_P50_US = _F.tick_to_signal_p50_us
FLOOR_RTT_P99_US = _F.tick_to_signal_p99_us
FLOOR_CPU_PER_TICK_US = _F.cpu_us_per_tick
FLOOR_FORKSERVER_USS_MB = _F.worker_uss_mb


def main(symbols: int = 10, tick_rate: float = 2.0, duration_s: float = 30.0) -> list[dict[str, Any]]:
    t = Targets()
    with tempfile.TemporaryDirectory(prefix="dgo-bench-lt-") as tmp:
        # Settle past the workers' start-up minute, which they drop from their latency windows then:
        # the window read at the end holds steady state only.
        s = run_step(symbols, tick_rate, duration_s, LATENCY_WARMUP_S, 0, Path(tmp) / "run", 30.0 + 0.2 * symbols)
    if s.failed or not s.all_signalled:
        raise RuntimeError(f"{symbols}-symbol step failed: {s.error}")
    misses = {m.target for m in check_step(s, t)}
    tag = f"{symbols} sym @{tick_rate:g}/s"
    rows = [
        row(f"{tag}: start-up to first signal on all (s)", s.startup_s or 0.0, "s", None, "", target=t.startup_s),
        row(f"{tag}: tick-to-signal p50, fleet (us)", s.tick_to_signal_p50_us or 0.0, "us", FLOOR_RTT_P50_US,
            "round-trip floor"),
        row(f"{tag}: tick-to-signal p99, fleet (us)", s.tick_to_signal_p99_us or 0.0, "us", FLOOR_RTT_P99_US,
            "round-trip floor", target=t.tick_to_signal_p99_us),
        row(f"{tag}: CPU per tick, whole tree (us)", s.cpu_us_per_tick_by_kind.get("tree", 0.0), "us",
            FLOOR_CPU_PER_TICK_US, "bare pipeline"),
        row(f"{tag}: worker USS, max (MB)", (s.worker_uss_bytes_max or 0) / MB, "MB", FLOOR_FORKSERVER_USS_MB,
            "idle forkserver child", target=t.worker_uss_mb),
        row(f"{tag}: ticks dropped", float(s.ticks_dropped_total), "ticks", None, "", target=0.0),
        row(f"{tag}: restarts", float(s.restarts), "", None, "", target=0.0),
    ]
    if misses:
        print(f"{tag}: misses {sorted(misses)}")
    return rows


if __name__ == "__main__":
    print_table(main())
