"""`make bench`: run every micro benchmark, print one summary table (each figure beside its
measured floor or anchor as a ratio), and keep the raw figures in benchmarks/results/."""

from __future__ import annotations

import datetime as dt
import importlib
import json
import sys
import traceback
from pathlib import Path

from .harness import machine, print_table

MODULES = ("bench_signals", "bench_spine", "bench_venue", "bench_loadtest", "bench_backtest", "bench_optimize")


def main(argv: list[str]) -> int:
    selected = [m for m in MODULES if not argv or m in argv]
    all_rows, failures = [], []
    for name in selected:
        print(f"\n== {name} ==", flush=True)
        try:
            mod = importlib.import_module(f"benchmarks.{name}")
            rows = mod.main()
        except Exception:
            traceback.print_exc()
            failures.append(name)
            continue
        for r in rows:
            r["benchmark"] = name
        all_rows.extend(rows)
    print("\n== summary ==")
    print_table(all_rows)
    out = Path(__file__).resolve().parent / "results" / f"bench-{dt.datetime.now(dt.timezone.utc):%Y-%m-%d}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "rows": all_rows, "failed": failures}, indent=1))
    print(f"\nraw figures: {out}")
    if failures:
        print(f"FAILED benchmarks: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
