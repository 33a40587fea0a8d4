"""The account's link to the exchange is never behind the signal pool for a core (review F5).

The pool members lower their nice value (workers/pool.py) so a tick's signal is not kept waiting;
the gateway carries every order, the halt's cancels and the protective stops, and in paper mode
the venue is the exchange those orders go to. On a saturated CPU a process at nice 0 waits behind
the pool's -5, so the gateway (and the paper venue) run at least as favoured as the pool wherever
the pool's boost took (root, CAP_SYS_NICE); where it did not, nothing changed and all stay equal."""

from __future__ import annotations

from typing import Any

import psutil

FAST = ["--bar-seconds", "0.4", "--pool-size", "1"]


def nice_by_kind(doc: dict[str, Any]) -> dict[str, list[int]]:
    """Each kind's processes' nice values, read from the running processes themselves."""
    out: dict[str, list[int]] = {}
    for p in doc["processes"]:
        if p["pid"]:
            out.setdefault(p["kind"], []).append(psutil.Process(p["pid"]).nice())
    for w in doc["workers"]:
        if w["pid"]:
            out.setdefault("worker", []).append(psutil.Process(w["pid"]).nice())
    return out


def test_the_gateway_and_paper_venue_run_at_least_as_favoured_as_the_pool(start_run) -> None:
    run = start_run(["--symbols", "BTCUSD,ETHUSD", *FAST])
    # every process has started its main (a signal needs the gateway's ticks and the pool's answer)
    doc = run.wait_for(lambda d: bool(d["workers"]) and all(w["first_signal_after_launch_s"] is not None
                                                            for w in d["workers"]), 60, "a signal on every symbol")
    nice = nice_by_kind(doc)
    assert {"gateway", "pool", "venue", "worker"} <= set(nice), nice
    supervisor = psutil.Process(doc["supervisor_pid"]).nice()
    boosted = min(nice["pool"]) < supervisor
    if not boosted:  # the boost is not permitted here: everything stays as it was started
        assert all(n == supervisor for ns in nice.values() for n in ns), nice
        return
    assert max(nice["gateway"]) <= min(nice["pool"]), nice
    assert max(nice["venue"]) <= min(nice["pool"]), nice
    assert min(nice["worker"]) == supervisor, nice  # the bots themselves stay where they were
