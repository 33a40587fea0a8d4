"""The status document: what `orchestrate status --json` prints and the metrics endpoint exports.

Stable schema (documented in docs/status.md): bump SCHEMA_VERSION on any incompatible change.
"""

from __future__ import annotations

import math
import time
import typing
from typing import Annotated

import msgspec

from .latency import TickHops

SCHEMA_VERSION = 1


class Gauge:
    """Marks a numeric WorkerStatus field as the Prometheus gauge orchestrate_worker_<field>, with
    its help text: the metrics endpoint exports every field so marked (`worker_gauges`), so a new
    figure is one edit, here. Renaming a marked field renames its metric (deploy/grafana reads them)."""

    __slots__ = ("help",)

    def __init__(self, help: str) -> None:
        self.help = help


class WorkerStatus(msgspec.Struct, kw_only=True):
    # Fields named as WorkerFigures' are copied from the worker's heartbeat by name
    # (orchestrator/status_builder.py); their defaults are what a worker that has not reported shows.
    symbol: str
    pid: int
    state: str  # starting | loading history | warming up | running | paused | backoff | quarantined | stopped
    uptime_s: float
    restarts: Annotated[int, Gauge("Restarts")]
    last_price: Annotated[float | None, Gauge("Last traded price")] = None
    bar_count: Annotated[int, Gauge("Bars in the shared-memory ring")] = 0
    signal: str = "NONE"
    confidence: Annotated[float, Gauge("Consensus confidence")] = 0.0
    votes: dict[str, str] = msgspec.field(default_factory=dict)
    tick_to_signal_p50_us: Annotated[float | None, Gauge(
        "Tick receipt to signal receipt, p50 over the last minute (us)")] = None
    tick_to_signal_p99_us: Annotated[float | None, Gauge(
        "Tick receipt to signal receipt, p99 over the last minute (us)")] = None
    tick_to_signal_p999_us: float | None = None
    signals: int = 0
    ticks: Annotated[int, Gauge("Ticks received")] = 0
    ticks_dropped: Annotated[int, Gauge("Ticks lost (sequence gaps)")] = 0
    ticks_unchanged: int = 0  # ticks that moved only the bar's volume (no signal asked for them)
    ticks_late: int = 0  # ticks not applied: a sequence number already seen, or older than the bar
    plans_skipped: int = 0  # signals on which the trading plan would have changed nothing (not made)
    tick_hops: TickHops = TickHops()  # where tick-to-signal time goes, by hop (counters since start)
    loop_lag_ms: Annotated[float | None, Gauge("Event-loop lag, max over the last heartbeat (ms)")] = None
    rss_mb: Annotated[float | None, Gauge("Resident set size (MB)")]
    uss_mb: Annotated[float | None, Gauge("Unique set size (MB)")]
    cpu_percent: Annotated[float | None, Gauge("CPU percent")]
    budget: str  # ok | breach: ... | quarantined: ...
    heartbeat_age_s: float | None
    first_signal_after_launch_s: float | None
    position: Annotated[float, Gauge("Position (contracts)")] = 0.0
    open_orders: Annotated[int, Gauge("Open orders")] = 0
    realized_pnl: Annotated[float, Gauge("Realised PnL")] = 0.0
    unrealized_pnl: Annotated[float, Gauge("Unrealised PnL")] = 0.0
    fees: Annotated[float, Gauge("Fees paid")] = 0.0
    trading: str = ""  # trading | reconciling | paused | halted: ... | not trading: ... | signals only ...
    order_rtt_p50_us: float | None = None
    order_rtt_p99_us: float | None = None
    order_rtt_startup_p50_us: float | None = None  # intents of the start-up minute, apart
    order_rtt_startup_p99_us: float | None = None
    order_errors: int = 0
    note: str = ""
    stop_price: float | None = None  # trigger of the resting protective stop (None: no stop resting)
    # the keys its [symbols.SYMBOL.grid]/[symbols.SYMBOL.risk] tables set ("grid.levels=3"); empty:
    # the symbol trades the global [grid]/[risk]
    overrides: list[str] = msgspec.field(default_factory=list)
    # an operator's flatten: "" (none asked), requested, cancelling/closing/confirming ..., flat: ...
    flatten: str = ""
    # perpetual funding to date from the ledger: + received, - paid (in net PnL)
    funding: Annotated[float, Gauge("Funding to date (+ received, - paid)")] = 0.0


def worker_gauges(status_type: type[WorkerStatus] = WorkerStatus) -> tuple[tuple[str, str], ...]:
    """(field, help) of each field marked `Gauge`, in field order. A marked field that is not a
    number (int, float, or either or None) is a mistake in the declaration: TypeError."""
    hints = typing.get_type_hints(status_type, include_extras=True)
    out = []
    for name in msgspec.structs.fields(status_type):
        hint = hints[name.name]
        marks = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Gauge)]
        if not marks:
            continue
        kinds = set(typing.get_args(hint.__origin__)) or {hint.__origin__}
        if not kinds - {type(None)} or not kinds <= {int, float, type(None)}:
            raise TypeError(f"{status_type.__name__}.{name.name} is marked Gauge but is not a number: {hint}")
        out.append((name.name, marks[0].help))
    return tuple(out)


class ProcessStatus(msgspec.Struct, kw_only=True):
    kind: str  # gateway | pool | venue
    name: str
    pid: int
    state: str
    uptime_s: float
    restarts: int
    load: float | None  # pool: busy fraction; gateway: ticks/s
    rss_mb: float | None
    uss_mb: float | None
    cpu_percent: float | None
    note: str = ""
    # pool members (None for the other kinds), since the member started: signal requests served,
    # the batches they were served in (one engine pass each), the largest batch
    signal_requests: int | None = None
    signal_batches: int | None = None
    max_batch: int | None = None
    loop_lag_ms: float | None = None  # gateway: its event loop's lag, max over the last heartbeat


class RateBudgetUse(msgspec.Struct, kw_only=True):
    """The account's rate budget since the gateway started: what the units bought, and the order
    intents that waited for budget or had quotes refused for want of it (the gateway's counters)."""
    units_by_kind: dict[str, int] = msgspec.field(default_factory=dict)  # ratelimit.SPEND_KINDS
    requests_waiting: int = 0  # requests waiting for budget at the time of the snapshot
    intents: int = 0
    intents_waited: int = 0
    intents_wait_s: float = 0.0
    intents_wait_max_s: float = 0.0
    intents_refused: int = 0


class StatusSnapshot(msgspec.Struct, kw_only=True):
    schema_version: int = SCHEMA_VERSION
    run_dir: str
    mode: str
    venue: str
    supervisor_pid: int
    started_at: float  # epoch seconds
    uptime_s: float
    halted: bool = False
    halt_reason: str = ""
    halted_at: float | None = None  # epoch seconds the standing halt was set (persisted across restarts)
    halted_by: str = ""  # risk limits | supervisor (storage) | the operator's user name
    metrics_url: str = ""
    dashboard_url: str = ""  # the web dashboard ("" when off or not served)
    # up | starting | down: <why> | none: signals only. Down means orders resting on the exchange
    # are managed by nobody (no fills read, no stops moved) until the gateway is back.
    order_management: str = ""
    # ok | failing: <n> fills waiting to be written; <why> [| <n> funding payments waiting ...]
    # [| paper venue: <why>]. Failing halts new entries ("storage") and what waits is retried.
    storage: str = ""
    workers: list[WorkerStatus] = msgspec.field(default_factory=list)
    processes: list[ProcessStatus] = msgspec.field(default_factory=list)
    equity: float | None = None  # account equity the gateway last read (USD); None before
    rate_budget_left: float | None = None  # units left in the account's rate window (Delta: of 10,000 per 5 min)
    rate_budget_capacity: float | None = None
    rate_budget_use: RateBudgetUse | None = None  # None before the gateway (exchange mode) reports
    deadman: str = ""  # the gateway's dead-man switch: off | not armed | armed | failing | lapsed ("" unknown)
    deadman_expires_in_s: float | None = None  # until the exchange cancels the open orders unless renewed
    alerts_sent: int | None = None  # alerts delivered, failed, dropped (queue full) since start; None: alerts off
    alerts_failed: int | None = None
    alerts_dropped: int | None = None
    # restarts since start by "kind: cause" (the cause with its numbers as N: "worker: no heartbeat
    # for Ns (hung)"), from the supervisor's process table; empty when nothing restarted
    restarts_by_cause: dict[str, int] = msgspec.field(default_factory=dict)


def clean(value: float | None, digits: int = 3) -> float | None:
    """JSON has no NaN: unknown figures are null."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(float(value), digits)


def _fmt(value: float | None, spec: str, empty: str = "-") -> str:
    return empty if value is None else format(value, spec)


def render_table(snap: StatusSnapshot) -> str:
    lines = [
        f"orchestrate {snap.mode} on {snap.venue} | run dir {snap.run_dir} | pid {snap.supervisor_pid} "
        f"| up {snap.uptime_s:.0f}s" + (f" | {_halt_line(snap)}" if snap.halted else "")
        + (f" | metrics {snap.metrics_url}" if snap.metrics_url else "")
        + (f" | dashboard {snap.dashboard_url}" if snap.dashboard_url else ""),
        *([_order_management_line(snap)] if _alarming(snap.order_management) else []),
        *([f"STORAGE FAILING: {snap.storage[len('failing: '):]}"] if snap.storage.startswith("failing") else []),
        f"{'SYMBOL':<10} {'STATE':<12} {'PID':>7} {'UP':>6} {'RST':>3} {'PRICE':>11} {'BARS':>5} "
        f"{'SIGNAL':<6} {'CONF':>4} {'VOTES T/M/V/R':<15} {'P50us':>7} {'P99us':>7} {'LAGms':>6} "
        f"{'RSS':>5} {'USS':>5} {'CPU%':>5} {'POS':>6} {'ORD':>3} {'PNL':>9}  BUDGET",
    ]
    short = {"UP": "U", "DOWN": "D", "LONG": "L", "SHORT": "S", "HOLD": "H", "NONE": "-"}
    for w in snap.workers:
        votes = "/".join(short.get(w.votes.get(k, "NONE"), "?") for k in ("trend", "mtf", "volatility", "rl"))
        pnl = net_pnl(w)
        lines.append(
            f"{w.symbol:<10} {w.state[:12]:<12} {w.pid:>7} {w.uptime_s:>6.0f} {w.restarts:>3} "
            f"{_fmt(w.last_price, '11.2f'):>11} {w.bar_count:>5} {w.signal:<6} {w.confidence:>4.2f} "
            f"{votes:<15} {_fmt(w.tick_to_signal_p50_us, '7.0f'):>7} {_fmt(w.tick_to_signal_p99_us, '7.0f'):>7} "
            f"{_fmt(w.loop_lag_ms, '6.1f'):>6} {_fmt(w.rss_mb, '5.0f'):>5} {_fmt(w.uss_mb, '5.1f'):>5} "
            f"{_fmt(w.cpu_percent, '5.1f'):>5} {w.position:>6.0f} {w.open_orders:>3} {pnl:>9.2f}  {w.budget}"
            + (f" | stop {w.stop_price:g}" if w.stop_price is not None else "")
            + (f" | overrides {' '.join(w.overrides)}" if w.overrides else "")
            + (f" | funding {w.funding:+.2f}" if w.funding else "")
            + (f" | {w.trading}" if w.trading and w.trading != "trading" else "")
            + (f" | flatten: {w.flatten}" if w.flatten else "")
            + (f" | {w.note}" if w.note else ""))
    for p in snap.processes:
        lines.append(
            f"  {p.kind}:{p.name} pid {p.pid} {p.state} up {p.uptime_s:.0f}s restarts {p.restarts} "
            f"load {_fmt(p.load, '.3f')} rss {_fmt(p.rss_mb, '.0f')}MB uss {_fmt(p.uss_mb, '.1f')}MB "
            f"cpu {_fmt(p.cpu_percent, '.1f')}% {p.note}")
    return "\n".join(lines)


def _halt_line(snap: StatusSnapshot) -> str:
    when = (time.strftime(" since %Y-%m-%d %H:%M:%S UTC", time.gmtime(snap.halted_at))
            if snap.halted_at is not None else "")
    by = f" by {snap.halted_by}" if snap.halted_by else ""
    return f"HALTED{when}{by}: {snap.halt_reason} (lift: orchestrate resume --all)"


def net_pnl(w: WorkerStatus) -> float:
    """What the symbol made: realised + unrealised - fees + funding."""
    return w.realized_pnl + w.unrealized_pnl - w.fees + w.funding


def _alarming(order_management: str) -> bool:
    return order_management.startswith("down")


def _order_management_line(snap: StatusSnapshot) -> str:
    return "ORDER MANAGEMENT DOWN" + snap.order_management[len("down"):] + ": resting orders are not managed"


def render_lines(snap: StatusSnapshot) -> str:
    """One plain line per symbol, for logs and pipes, after a line for what stops the whole account."""
    out = []
    if _alarming(snap.order_management):
        out.append(_order_management_line(snap))
    if snap.storage.startswith("failing"):
        out.append(f"STORAGE FAILING: {snap.storage[len('failing: '):]}")
    if snap.halted:
        out.append(_halt_line(snap))
    for w in snap.workers:
        out.append(
            f"{w.symbol} state={w.state} price={_fmt(w.last_price, '.2f')} signal={w.signal} "
            f"conf={w.confidence:.2f} p50={_fmt(w.tick_to_signal_p50_us, '.0f')}us "
            f"p99={_fmt(w.tick_to_signal_p99_us, '.0f')}us restarts={w.restarts} "
            f"uss={_fmt(w.uss_mb, '.1f')}MB pos={w.position:.0f} orders={w.open_orders} "
            f"pnl={net_pnl(w):.2f} funding={w.funding:.2f} stop={_fmt(w.stop_price, 'g')} "
            f"trading={w.trading!r} budget={w.budget}"
            + (f" overrides={','.join(w.overrides)}" if w.overrides else "")
            + (f" flatten={w.flatten!r}" if w.flatten else ""))
    return "\n".join(out)
