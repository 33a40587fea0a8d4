"""The supervisor's status document, built from what it knows of each child: pure functions of a
child's row in the process table and its last heartbeat figures, so they are unit-tested without
processes (tests/orchestrator/test_status_builder.py). The supervisor adds the account-wide parts
(halt, storage, order management) and keeps the last snapshot for the metrics endpoint."""

from __future__ import annotations

import functools
import typing
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec

from shared.messages import GatewayFigures, PoolFigures, WorkerFigures
from shared.status import ProcessStatus, RateBudgetUse, WorkerStatus, clean

if TYPE_CHECKING:  # the process table's row; a type only (supervisor imports this module)
    from .supervisor import Child


def trading(bot_says: str, order_management: str) -> str:
    """A bot cannot trade while nobody manages orders, whatever it last reported."""
    if bot_says == "trading" and order_management.startswith("down"):
        return "not trading: order management down"
    return bot_says


def flatten_progress(child: Child, f: WorkerFigures | None, *, flattening: bool) -> str:
    """The bot's word on its flatten; "requested" while the supervisor asks and the bot has not
    answered yet (with the bot's state when it is not running)."""
    said = f.flatten if f else ""
    if flattening and not said:
        return "requested" + ("" if child.state == "running" and child.alive() else f"; bot {child.state}")
    return said


# Digits a copied figure keeps in the status document (the rest: floats that may be NaN become
# null at 3 digits, everything else as the worker sent it).
ROUNDED = {"last_price": 8, "confidence": 4, "tick_to_signal_p50_us": 1, "tick_to_signal_p99_us": 1,
           "tick_to_signal_p999_us": 1, "loop_lag_ms": 2, "order_rtt_p50_us": 1, "order_rtt_p99_us": 1,
           "stop_price": 10}


@functools.cache
def _figure_fields(status_type: type[WorkerStatus], figures_type: type[WorkerFigures]
                   ) -> tuple[tuple[str, bool, int | None], ...]:
    """(name, may be null, digits kept) of each status field named as one of the worker's figures."""
    hints = typing.get_type_hints(status_type)
    theirs = {f.name for f in msgspec.structs.fields(figures_type)}
    return tuple((f.name, type(None) in typing.get_args(hints[f.name]), ROUNDED.get(f.name))
                 for f in msgspec.structs.fields(status_type) if f.name in theirs)


def copied_figures(f: WorkerFigures | None, status_type: type[WorkerStatus] = WorkerStatus) -> dict[str, Any]:
    """The status fields the worker's heartbeat fills, by name (a new figure in both structs needs
    no edit here); none before its first heartbeat (the status fields' defaults then). Where the
    supervisor has its own word (state, trading, flatten, note), `worker_status` puts it over these."""
    if f is None:
        return {}
    out: dict[str, Any] = {}
    for name, nullable, digits in _figure_fields(status_type, type(f)):
        v = getattr(f, name)
        if nullable:
            v = clean(v, 3 if digits is None else digits)  # JSON has no NaN: null
        elif digits is not None:
            v = round(v, digits)
        elif type(v) is dict:
            v = dict(v)  # the status row's own copy
        out[name] = v
    return out


def worker_status(child: Child, now: float, *, order_management: str, flattening: bool,
                  overrides: Sequence[str] = (), funding: float = 0.0) -> WorkerStatus:
    f = child.figures if isinstance(child.figures, WorkerFigures) else None
    up = now - child.started_mono if child.alive() else 0.0
    first = None
    if f and f.first_signal_mono_ns:
        first = f.first_signal_mono_ns / 1e9 - child.launched_mono
    budget = child.breach.state
    if child.state == "quarantined":
        budget = "quarantined: " + child.policy.reason
    own: dict[str, Any] = dict(
        symbol=child.name, pid=child.pid if child.alive() else 0,
        state=child.state, uptime_s=round(up, 1), restarts=child.policy.restarts,
        rss_mb=clean(child.rss_mb, 2), uss_mb=clean(child.uss_mb, 2),
        cpu_percent=clean(child.cpu_percent, 1), budget=budget,
        heartbeat_age_s=clean(now - child.last_hb_mono, 2) if child.alive() else None,
        first_signal_after_launch_s=clean(first, 3), funding=funding,
        trading=trading(f.trading if f else "", order_management),
        flatten=flatten_progress(child, f, flattening=flattening),
        overrides=list(overrides),
        note=(f.note if f else "")
        or (child.policy.reason if child.state in ("backoff", "quarantined") else ""))
    return WorkerStatus(**{**copied_figures(f), **own})


def process_status(child: Child, now: float) -> ProcessStatus:
    f = child.figures
    load = None
    note = ""
    typed: dict[str, Any] = {}
    if isinstance(f, PoolFigures):
        load = f.busy_fraction
        note = f"requests {f.requests} batches {f.batches} max batch {f.max_batch} symbols {f.symbols}"
        typed = dict(signal_requests=f.requests, signal_batches=f.batches, max_batch=f.max_batch)
    elif isinstance(f, GatewayFigures):
        load = float(f.ticks_published)
        lag = clean(f.loop_lag_ms, 2)
        typed = dict(loop_lag_ms=lag)
        said = f", {f.note}" if f.note else ""
        note = (f"source {f.source} ticks {f.ticks_published} "
                + (f"loop lag {lag:.1f} ms{said}" if lag is not None else f.note))
    return ProcessStatus(
        kind=child.kind, name=child.name, pid=child.pid if child.alive() else 0,
        state=child.state, uptime_s=round(now - child.started_mono if child.alive() else 0.0, 1),
        restarts=child.policy.restarts, load=load, rss_mb=clean(child.rss_mb, 2), uss_mb=clean(child.uss_mb, 2),
        cpu_percent=clean(child.cpu_percent, 1), note=note, **typed)


def restarts_by_cause(children: Iterable[Child]) -> dict[str, int]:
    """Every child's restarts by cause, as "kind: cause" -> count over the process table (workers
    of one kind add up), most frequent first."""
    out: dict[str, int] = {}
    for child in children:
        for cause, n in child.policy.causes.items():
            key = f"{child.kind}: {cause}"
            out[key] = out.get(key, 0) + n
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def rows(children: Iterable[Child], now: float, *, order_management: str, flattening: Iterable[str],
         overrides: Mapping[str, Sequence[str]] | None = None,
         funding: Mapping[str, Decimal] | None = None) -> tuple[list[WorkerStatus], list[ProcessStatus]]:
    """Every child's row, workers and the other processes apart, in the process table's order;
    `overrides`: the keys each symbol's [symbols.X] tables set; `funding`: each symbol's to date."""
    asked = set(flattening)
    workers: list[WorkerStatus] = []
    procs: list[ProcessStatus] = []
    for child in children:
        if child.kind == "worker":
            workers.append(worker_status(child, now, order_management=order_management,
                                         flattening=child.name in asked,
                                         overrides=(overrides or {}).get(child.name, ()),
                                         funding=float((funding or {}).get(child.name, 0))))
        else:
            procs.append(process_status(child, now))
    return workers, procs


def rate_budget_use(f: GatewayFigures) -> RateBudgetUse:
    """The gateway's rate-budget counters as the status document's `rate_budget_use`."""
    return RateBudgetUse(units_by_kind=dict(f.rate_units_by_kind), requests_waiting=f.rate_requests_waiting,
                         intents=f.intents, intents_waited=f.intents_budget_waited,
                         intents_wait_s=round(f.intents_budget_wait_s, 3),
                         intents_wait_max_s=round(f.intents_budget_wait_max_s, 3),
                         intents_refused=f.intents_budget_refused)
