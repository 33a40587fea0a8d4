"""The supervisor: starts the gateway, the compute pool and one worker per symbol; restarts what
crashes or hangs with backoff; checks every worker's budgets with psutil; quarantines a symbol
that keeps failing; serves status over the control socket and Prometheus; shuts down cleanly.

It owns the shared-memory segment (creates and unlinks it) and is not in the data path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing as mp
import os
import secrets
import select
import signal
import socket
import sys
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec
import psutil
import zmq
import zmq.asyncio

from shared.config import Config
from shared.messages import (
    ALL_TOPIC,
    Control,
    FillEvent,
    FundingRecord,
    GatewayFigures,
    Heartbeat,
    MessageCodec,
    OrderRecord,
    RLTable,
    WorkerFigures,
    topic,
)
from shared.ring import BarRing
from shared.status import StatusSnapshot, clean, render_lines, render_table
from shared.store import SignalSample, Store, db_path
from shared.supervision import BreachTracker, ResourceSample, RestartPolicy, budget_breaches, uss_due
from shared.symbol_settings import symbol_overrides
from shared.trading.account_risk import Halt
from shared.trading.checkpoint import find_checkpoint
from shared.transport import make_endpoints, make_private_dir, socket_dir
from workers.entry import child_main
from workers.gateway_deadman import OperatorStopLine
from workers.runtime import ChildSpec, LoopSocket, VenueAccess, bounded_log_handler, run_event_loop

from . import commands, status_builder
from .account import AccountGuard, StoreLiftFailed
from .alerts import SupervisorAlerts
from .funding_ledger import FundingLedger
from .ledger import LedgerWriter
from .rundir import RunDir

log = logging.getLogger("supervisor")
MB = 1024 * 1024
STORE_FLUSH_INTERVAL_S = 1.0  # batched SQLite rows are committed at least this often
# The receive loop gives the event loop a turn after this many messages: with messages always
# waiting, zmq's recv returns at once and never yields, and a steady stream (a flood on our
# socket) used to leave SIGTERM and `status` unanswered.
RECV_YIELD_EVERY = 64
# Children's messages are read in batches at most this far apart (a heartbeat every 2 s from
# each worker; fills and order records for the ledger, which nothing waits on). With every symbol
# ticking at its own instant the heartbeats are spread too: at 20 ms the loop woke ~40 times a
# second at 200 symbols for two messages each; at 100 ms, ~10 times for ten (a heartbeat's
# timeout is 5 s).
RECV_BATCH_S = 0.1
DRAIN_AT_EXIT_S = 1.0  # at shutdown, read what the children sent on the way out for at most this
CONTROL_LINE_LIMIT = 64 * 1024  # a control request is a few dozen bytes
STORED_FILL_IDS = 2_000  # newest stored fill ids a (re)started gateway knows: 40 pages of fills
# After a halt is lifted, `clear_halt` is sent again each pass to any bot still reporting that
# halt (one that was restarting when the lift was sent), for at most this long.
CLEAR_HALT_RESEND_S = 60.0


@dataclass
class Child:
    kind: str
    name: str
    spec: ChildSpec
    policy: RestartPolicy
    breach: BreachTracker
    process: Any = None  # multiprocessing.Process
    ps: psutil.Process | None = None
    state: str = "starting"
    started_mono: float = 0.0
    last_hb_mono: float = 0.0
    restart_at: float = 0.0
    figures: Any = None
    rss_mb: float = math.nan
    uss_mb: float = math.nan
    cpu_percent: float = math.nan
    launched_mono: float = 0.0  # first launch, for start-up-to-first-signal
    paused: bool = False
    samples: list[float] = field(default_factory=list)
    uss_read_at: float | None = None  # monotonic time of the last USS read (None: not read since start)
    uss_read_rss_mb: float = math.nan  # RSS at that read
    cpu_s: float = math.nan  # user + system CPU seconds at the last sample, and its monotonic time
    cpu_at: float = 0.0
    sentinel: int = -1  # process.sentinel, read once: the property checks the Process each time
    exit_watch: Any = None  # a select.poll on exit_watch_fd (== sentinel), made once, not per alive()
    exit_watch_fd: int = -1

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None and self.process.pid else 0

    def alive(self) -> bool:
        if self.process is None:
            return False
        # Fast path: the sentinel turns readable only when the child exits. multiprocessing's
        # exitcode builds a selector per call (~15 us); the supervisor asks several times a second
        # per child, which was a fifth of its CPU at 200 symbols (cProfile, process time).
        # poll(), not select(): select refuses descriptors past 1,024 (near 1,000 symbols).
        # The poll object is kept (per descriptor number: a restart's new sentinel gets its own):
        # making and registering one per call was 3/4 of this call (0.84 -> 0.30 us, process time).
        with contextlib.suppress(ValueError, OSError):
            if self.exit_watch is None or self.exit_watch_fd != self.sentinel:
                (watch := select.poll()).register(self.sentinel, select.POLLIN)
                self.exit_watch, self.exit_watch_fd = watch, self.sentinel
            if not self.exit_watch.poll(0):
                return True
        return self.process.exitcode is None


class Supervisor:
    def __init__(self, cfg: Config, run_dir: RunDir, *, foreground: bool = True,
                 out: Any = None, alert_urls: tuple[str, ...] = ()) -> None:
        self.cfg = cfg
        self.alert_urls = alert_urls
        self.alerts = SupervisorAlerts.disabled()  # started in run(), once the run's secrets exist
        self.run_dir = run_dir
        self.foreground = foreground
        self.out = out or sys.stdout
        self.started_wall = time.time()
        self.started_mono = time.monotonic()
        self.pool_size = cfg.processes.pool_size or (os.cpu_count() or 1)
        self.endpoints = make_endpoints(run_dir.path, self.pool_size)
        self.ring_name = f"dgo-{os.getpid()}-{uuid.uuid4().hex[:8]}-bars"
        self.ring: BarRing | None = None
        self.children: dict[str, Child] = {}
        self.codec = MessageCodec("supervisor")
        self.stop_event = asyncio.Event()
        self.exit_code = 0
        self.metrics_url = ""
        self._metrics_server: Any = None
        self._dashboard: Any = None  # orchestrator/dashboard/, when [dashboard] enabled
        self.dashboard_url = ""
        self._last_snapshot: StatusSnapshot | None = None
        self._last_snapshot_mono = 0.0  # when it was built
        # The ledger's writes (orchestrator/ledger.py) and the account's risk state and halt
        # (orchestrator/account.py), persisted in the same store.
        self.ledger = LedgerWriter(halt=self._halt)
        self.account = AccountGuard(
            cfg.risk, on_storage_error=self.ledger.failed,
            on_halt=lambda reason: self.alerts.halted(reason, self.recent_snapshot()))
        self._lifted: tuple[str, float] = ("", 0.0)  # the halt reason last lifted, until (monotonic)
        self.flattening: dict[str, float] = {}  # symbol -> when asked; asked again until it reports flat
        self.funding = FundingLedger()  # funding payments -> SQLite, per-symbol totals for status
        self._next_sample = 0.0  # monotonic time of the next psutil sample and status snapshot
        self.cancel_before_stop = False
        self._next_snapshot_ts = 0.0
        self._overrides = {sym: symbol_overrides(cfg, sym) for sym in cfg.run.symbols}
        self._next_store_flush = 0.0
        # The children's lifeline: we hold the write end and never write; the kernel closes it
        # when we die (even as an unreaped zombie), which every child sees at once as EOF.
        self._lifeline_r, self._lifeline_w = mp.Pipe(duplex=False)
        # The gateway switches the dead-man heartbeat off only when we say the stop is the operator's.
        self._operator_stop = OperatorStopLine()
        # The embedded paper venue's socket, bound for the run and handed to each venue process:
        # its port is never free between our choosing it and the venue serving (nor at a restart).
        self._venue_listener: socket.socket | None = None

    @property
    def store(self) -> Store | None:
        return self.ledger.store

    @store.setter
    def store(self, store: Store | None) -> None:
        self.ledger.store = store

    @property
    def halted(self) -> bool:
        return self.account.halted

    @property
    def halt_reason(self) -> str:
        return self.account.halt_reason

    # --- process management ------------------------------------------------------------------

    def _mp_context(self) -> Any:
        method = self.cfg.processes.start_method
        ctx = mp.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(["workers.preload"])
        return ctx

    def _spec(self, kind: str, name: str, **kw: Any) -> ChildSpec:
        return ChildSpec(kind=kind, name=name, run_dir=str(self.run_dir.path), ring_name=self.ring_name,
                         config=self.cfg, endpoints=self.endpoints, supervisor_pid=os.getpid(),
                         run_start_wall=self.started_wall, **kw)

    def _build_children(self) -> None:
        symbols = tuple(self.cfg.run.symbols)
        sup = self.cfg.supervision
        grace = sup.breach_grace_s

        def add(kind: str, name: str, key: str, spec: ChildSpec) -> None:
            # Only a bot may be given up on: without the gateway (the account's one link to the
            # exchange), the venue or a pool member nothing trades, so they are retried forever.
            self.children[key] = Child(kind, name, spec, RestartPolicy(sup, may_quarantine=kind == "worker"),
                                       BreachTracker(grace))

        access = None
        if self.cfg.market.through_venue and self.cfg.run.mode == "paper":
            if self.cfg.market.paper_venue == "external":  # started by `orchestrate venue`: not ours to run
                access = external_venue_access(self.run_dir.path)
            else:
                self._venue_listener = _bind_venue_port()
                access = VenueAccess(port=self._venue_listener.getsockname()[1], api_key=secrets.token_hex(16),
                                     api_secret=secrets.token_hex(32))
                add("venue", "venue", "venue", self._spec("venue", "venue", symbols=symbols, venue_access=access))
        add("gateway", "gateway", "gateway", self._spec("gateway", "gateway", symbols=symbols, venue_access=access))
        for k in range(self.pool_size):
            tables = {}
            if self.store is not None:
                for sym in symbols:
                    if self.endpoints.pool_for(sym) == k and (t := self.store.load_rl_table(sym)) is not None:
                        tables[sym] = t
            add("pool", f"pool-{k}", f"pool-{k}", self._spec("pool", f"pool-{k}", pool_index=k, rl_tables=tables,
                                                             cpu=self._core_for_pool(k)))
        for slot, sym in enumerate(symbols):
            add("worker", sym, sym, self._spec("worker", sym, slot=slot,
                                               cpu=self._core_for_pool(self.endpoints.pool_for(sym))))

    def _core_for_pool(self, k: int) -> int:
        if not self.cfg.processes.pin_cpus:
            return -1
        cores = sorted(os.sched_getaffinity(0))
        return cores[k % len(cores)]

    def _spec_from_store(self, child: Child) -> ChildSpec:
        """What a (re)starting child needs from the ledger: a worker, the ids its bot last sent
        (so it continues past ids the venue no longer shows) and where to start reading fills;
        the gateway, the newest stored fills (fills the venue lists after them, e.g. made while
        we were down, are news)."""
        assert self.store is not None
        if child.kind == "worker":
            checkpoint = find_checkpoint(self.store.fills(child.name), bot_id=self.cfg.run.bot_id,
                                         symbol=child.name)
            return msgspec.structs.replace(
                child.spec, sent_client_order_ids=tuple(self.store.sent_client_order_ids(child.name)),
                fill_checkpoint=checkpoint)
        if child.kind == "gateway":
            return msgspec.structs.replace(child.spec, stored_fill_ids=self.ledger.known_fill_ids(STORED_FILL_IDS),
                                           stored_funding_ids=self.funding.known_ids(self.store))
        return child.spec

    def _start(self, child: Child, ctx: Any) -> None:
        spec = child.spec
        if self.store is not None:
            try:
                spec = self._spec_from_store(child)
            except Exception:  # the venue alone still keeps a restart safe, only slower to read
                log.exception("could not read %s's start-up facts from the store", child.name)
        if child.kind == "worker":
            # A bot starts halted (or paused) when the account is: it must not trade in the moment
            # before it hears the supervisor's broadcast.
            spec = msgspec.structs.replace(spec, halted=self.halt_reason, paused=child.paused)
        # A fork child gets a copy of our write end too: it closes it (forkserver children never had it).
        inherited = (self._lifeline_w.fileno(),) if self.cfg.processes.start_method == "fork" else ()
        words: dict[str, Any] = {"operator_stop": self._operator_stop.hear_end} if child.kind == "gateway" else {}
        not_theirs: tuple[int, ...] = ()
        if self._venue_listener is not None:
            if child.kind == "venue":
                words["listener"] = self._venue_listener
            elif self.cfg.processes.start_method == "fork":
                not_theirs = (self._venue_listener.fileno(),)  # a fork copy would hold the venue's port too
        proc = ctx.Process(target=child_main, args=(spec, self._lifeline_r, inherited + not_theirs), kwargs=words,
                           name=f"dgo-{child.kind}-{child.name}", daemon=False)
        proc.start()
        now = time.monotonic()
        child.process = proc
        child.sentinel = proc.sentinel
        child.ps = None
        try:
            child.ps = psutil.Process(proc.pid)
            t = child.ps.cpu_times()
            child.cpu_s, child.cpu_at = t.user + t.system, time.monotonic()
        except psutil.Error:
            pass
        child.state = "starting"
        child.started_mono = now
        child.last_hb_mono = now
        child.figures = None
        child.rss_mb = child.uss_mb = child.cpu_percent = math.nan
        child.uss_read_at = None
        if child.launched_mono == 0.0:
            child.launched_mono = now
        log.info("started %s %s pid %s", child.kind, child.name, proc.pid)

    def _kill(self, child: Child, sig: int = signal.SIGKILL) -> None:
        if child.alive():
            try:
                os.kill(child.pid, sig)
            except ProcessLookupError:
                pass

    def _on_failure(self, child: Child, why: str, now: float) -> None:
        self._kill(child)
        if child.process is not None:
            child.process.join(timeout=2)
        delay = child.policy.on_failure(now, why)
        self.alerts.restarted(child.kind, child.name, why)
        if delay is None:
            child.state = "quarantined"
            log.error("%s %s quarantined: %s", child.kind, child.name, child.policy.reason)
            self.alerts.quarantined(child.kind, child.name, child.policy.reason)
            return
        child.state = "backoff"
        child.restart_at = now + delay
        if child.policy.failing:
            log.error("%s %s keeps failing (%s); restart %d in %.0fs%s", child.kind, child.name,
                      child.policy.reason, child.policy.restarts, delay,
                      "; order management is down" if child.kind in ("gateway", "venue") else "")
            return
        log.warning("%s %s failed (%s); restart %d in %.0fs", child.kind, child.name, why,
                    child.policy.restarts, delay)

    # --- heartbeats and budgets --------------------------------------------------------------

    def on_heartbeat(self, hb: Heartbeat) -> None:
        key = hb.name
        child = self.children.get(key)
        if child is None or child.pid != hb.pid:
            return  # a stale heartbeat from a process we already replaced
        child.last_hb_mono = time.monotonic()
        child.figures = hb.figures
        if isinstance(hb.figures, WorkerFigures):
            child.state = hb.figures.state
            f = hb.figures
            if self.store is not None and f.signals and math.isfinite(f.last_price) and math.isfinite(f.atr14):
                # Sampled by the store (one row per symbol per interval, or on a change of direction).
                self.store.record_signal(SignalSample(ts=time.time(), symbol=child.name, direction=f.signal,
                                                      confidence=f.confidence, price=f.last_price,
                                                      atr=f.atr14))
        elif child.state == "starting":
            child.state = "running"
        if isinstance(hb.figures, GatewayFigures) and child.kind == "venue":
            self.ledger.venue_journal(hb.figures.storage_error)

    def _sample_fast(self, child: Child) -> None:
        if child.ps is None:
            return
        try:
            t = child.ps.cpu_times()
            rss = child.ps.memory_info().rss
        except psutil.Error:
            return
        # psutil's cpu_percent, less its CPU count per call (a /sys read each, a third of this
        # sample's ~34 us; oneshot() saves nothing for two different files): ~22 us a child.
        # (Reading /proc by hand measured ~9 us a child less: ~4.5 us a tick at 200 symbols, not
        # worth a private copy of psutil's parsing.)
        now, cpu_s = time.monotonic(), t.user + t.system
        if now > child.cpu_at and math.isfinite(child.cpu_s):
            child.cpu_percent = (cpu_s - child.cpu_s) / (now - child.cpu_at) * 100.0
        child.cpu_s, child.cpu_at = cpu_s, now
        child.rss_mb = rss / MB

    @staticmethod
    def _sample_uss(procs: list[tuple[str, psutil.Process]]) -> dict[str, tuple[float, float]]:
        """key -> (USS, RSS) in MB, read together."""
        out = {}
        for key, p in procs:
            try:
                mi = p.memory_full_info()
                out[key] = (mi.uss / MB, mi.rss / MB)
            except psutil.Error:
                pass
        return out

    def _uss_due(self, child: Child, now: float) -> bool:
        return child.alive() and uss_due(
            rss_mb=child.rss_mb, rss_at_read_mb=child.uss_read_rss_mb, read_at=child.uss_read_at, now=now,
            budget_mb=self.cfg.budgets.uss_mb if child.kind == "worker" else 0.0)

    def _check(self, child: Child, now: float, budgets: bool = True) -> None:
        sup = self.cfg.supervision
        if child.state in ("quarantined", "stopped"):
            return
        if child.state == "backoff":
            if now >= child.restart_at:
                self._start(child, self._ctx)
            return
        if not child.alive():
            code = child.process.exitcode if child.process is not None else None
            self._on_failure(child, f"exited with code {code}", now)
            return
        hb_age = now - child.last_hb_mono
        if hb_age > sup.heartbeat_timeout_s:
            self._on_failure(child, f"no heartbeat for {hb_age:.1f}s (hung)", now)
            return
        child.policy.on_healthy(now, child.started_mono)
        if child.kind != "worker" or not budgets:
            return
        f = child.figures
        sample = ResourceSample(
            rss_mb=child.rss_mb, uss_mb=child.uss_mb, cpu_percent=child.cpu_percent,
            loop_lag_ms=f.loop_lag_ms if isinstance(f, WorkerFigures) else math.nan,
            tick_to_signal_p99_us=f.tick_to_signal_p99_us if isinstance(f, WorkerFigures) else math.nan)
        breaches = budget_breaches(sample, self.cfg.budgets)
        if child.breach.update(breaches, now):
            why = "budget " + "; ".join(breaches)
            memory = any(b.startswith(("rss", "uss")) for b in breaches)
            action = self.cfg.budgets.action if memory else self.cfg.budgets.latency_action
            if action == "restart":
                child.breach.update([], now)
                self._on_failure(child, why, now)
            else:
                log.warning("%s over budget: %s", child.name, why)
                child.breach.since = now  # warn again after another grace period, not every check

    def on_message(self, payload: bytes) -> None:
        msg = self.codec.decode(payload)
        with self.ledger.writing(type(msg).__name__):
            if isinstance(msg, Heartbeat):
                self.on_heartbeat(msg)
            elif isinstance(msg, FillEvent):
                self.alerts.fill(msg)
                if self._dashboard is not None:
                    self._dashboard.on_fill(msg)
                self.ledger.on_fill(msg)
            elif isinstance(msg, OrderRecord):
                self.alerts.order_record(msg)
                self.ledger.on_order_record(msg)
            elif isinstance(msg, FundingRecord):
                self.funding.add(msg.funding)
                self._store_funding()
            elif isinstance(msg, RLTable) and self.store is not None:
                # A pool sends all its tables at once each minute: committed together with the
                # next store flush (within STORE_FLUSH_INTERVAL_S), not one fsync each.
                self.store.save_rl_table(msg.symbol, msg.table, time.time(), commit=False)

    async def _drain_messages(self) -> None:
        """After the children stopped: store the fills and RL tables they sent on the way out.
        Bounded in time: a stream that does not end (someone else flooding our socket) must not
        keep us from exiting."""
        deadline = time.monotonic() + DRAIN_AT_EXIT_S
        while time.monotonic() < deadline:
            try:
                payload = self._pull.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self.on_message(payload)
            except Exception:
                log.exception("message from a child not handled")

    # --- account risk (one place for the whole account) ---------------------------------------

    def _store_funding(self) -> None:
        if self.store is not None and (why := self.funding.store_waiting(self.store)):
            self._halt(f"storage: {why}")  # said in status by the funding ledger's own status

    async def _broadcast(self, command: str, reason: str = "", symbol: str = "*") -> None:
        t = ALL_TOPIC if symbol == "*" else topic(symbol)
        await self._control_pub.send_multipart((t, self.codec.encode(
            Control(command=command, symbol=symbol, sent_ns=time.perf_counter_ns(), reason=reason))))

    def _halt(self, reason: str) -> None:
        """A storage halt (the ledger or the paper venue's journal cannot be written): persisted
        like any other, so only the operator lifts it."""
        self.account.set_halt(reason, time.time(), by="supervisor", kind="storage")

    def order_management(self) -> str:
        """Whether anyone manages the account's orders: `up`, `starting`, `down: <why>`, or
        `none: signals only`. Said plainly in status: orders resting on the exchange while the
        gateway is down are nobody's."""
        if not self.cfg.market.through_venue:
            return "none: signals only"
        for key in ("venue", "gateway"):
            c = self.children.get(key)
            if c is None or (c.state == "running" and c.alive()):
                continue
            if c.state == "starting" and c.policy.restarts == 0:
                return "starting"
            what = "paper venue" if c.kind == "venue" else "gateway"
            if c.state == "backoff":
                wait = max(0.0, c.restart_at - time.monotonic())
                return f"down: {what} failed ({c.policy.reason}); restart {c.policy.restarts} in {wait:.0f}s"
            return f"down: {what} {c.state}" + (f" ({c.policy.reason})" if c.policy.reason else "")
        return "up"

    async def _check_account_risk(self) -> None:
        """Each pass: the gateway's equity reading through the account's state machine (a breach
        halts, persisted before it is broadcast); the halt, a lift and any flatten told to the bots."""
        gw = self.children.get("gateway")
        f = gw.figures if gw is not None else None
        now = time.time()
        if isinstance(f, GatewayFigures):
            self.account.observe(f.equity, now, f.position_notional)
        self.account.retry_save(now)
        if self.halted:
            # Every pass, whatever the gateway reports: late joiners (restarted workers) hear it too.
            await self._broadcast("halt", self.halt_reason)
        else:
            await self._resend_clear_halt()
        await self._drive_flatten()
        if isinstance(f, GatewayFigures) and math.isfinite(f.equity) and now >= self._next_snapshot_ts:
            self._next_snapshot_ts = now + 30.0
            self.ledger.record_account(now, f.equity, [(c.name, c.figures) for c in self.children.values()
                                                       if c.kind == "worker" and isinstance(c.figures, WorkerFigures)])

    async def _resend_clear_halt(self) -> None:
        reason, until = self._lifted
        if not reason or time.monotonic() > until:
            return
        still = [c.name for c in self.children.values() if c.kind == "worker" and c.alive()
                 and isinstance(c.figures, WorkerFigures) and c.figures.trading == f"halted: {reason}"]
        if still:
            await self._broadcast("clear_halt", reason)

    async def _drive_flatten(self) -> None:
        """A flatten is asked of its bot each pass until the bot reports the symbol flat on the
        venue: a bot restarted meanwhile hears it again."""
        for sym in list(self.flattening):
            c = self.children.get(sym)
            f = c.figures if c is not None else None
            if isinstance(f, WorkerFigures) and f.flatten.startswith("flat"):
                del self.flattening[sym]
                log.info("%s: flatten done: %s", sym, f.flatten)
                continue
            await self._broadcast("flatten", "operator flatten", symbol=sym)

    # --- operator commands (control socket, or in-process) ------------------------------------

    async def command(self, raw: Any, *, by: str) -> Any:
        """One operator command: a dict as sent on the control socket (`{"cmd": "halt", ...}`,
        see orchestrator/commands.py); `by` names who asked (logged and recorded with halts).
        Returns the status snapshot for `status`, else `{"ok", "message"}` (plus `bad_input`
        when the request itself is wrong)."""
        try:
            req = commands.parse(raw)
        except commands.BadRequest as exc:
            return {"ok": False, "bad_input": True, "message": str(exc)}
        now = time.time()
        if isinstance(req, commands.Status):
            return self.snapshot()
        if isinstance(req, commands.Stop):
            self.cancel_before_stop = req.cancel_orders
            self.stop_event.set()
            return {"ok": True, "message": "cancelling the bots' open orders, then stopping"
                    if self.cancel_before_stop else "stopping"}
        if isinstance(req, commands.Pause | commands.Resume) and not (isinstance(req, commands.Resume) and req.all):
            sym = req.symbol.upper()
            if sym not in self.children or self.children[sym].kind != "worker":
                return {"ok": False, "bad_input": True, "message": f"no worker for symbol {sym!r} "
                        f"(running: {', '.join(self.cfg.run.symbols)})"}
            cmd = "pause" if isinstance(req, commands.Pause) else "resume"
            await self._set_paused(sym, cmd == "pause")
            return {"ok": True, "message": f"{cmd}d {sym}"}
        if isinstance(req, commands.Resume | commands.ClearHalt):
            try:
                lifted = self._lift_halt(now, by)
            except StoreLiftFailed as exc:
                return {"ok": False, "message": str(exc)}
            said = (f"account halt lifted (was: {lifted.reason}, by {lifted.by} at {_utc(lifted.ts)})"
                    if lifted is not None else "no account halt stood")
            if isinstance(req, commands.Resume):
                for sym in self.cfg.run.symbols:
                    await self._set_paused(sym, False)
                said += f"; resumed {', '.join(self.cfg.run.symbols)}"
            return {"ok": True, "message": said}
        if isinstance(req, commands.Halt):
            reason = f"operator: {req.reason or 'halted by hand'}"
            fresh = self.account.set_halt(reason, now, by=by, kind="operator")
            await self._broadcast("halt", self.halt_reason)
            said = "account halted: entries cancelled, protective stops kept" if fresh else \
                f"already halted since {_utc(self.account.halt.ts) if self.account.halt else '?'}: {self.halt_reason}"
            if req.flatten:
                await self._start_flatten(list(self.cfg.run.symbols), by)
                said += f"; flattening {', '.join(self.cfg.run.symbols)}"
            return {"ok": True, "message": said}
        assert isinstance(req, commands.Flatten)
        syms = list(self.cfg.run.symbols) if req.all else [s.upper() for s in req.symbols]
        unknown = [s for s in syms if s not in self.children or self.children[s].kind != "worker"]
        if unknown:
            return {"ok": False, "bad_input": True, "message": f"no worker for symbol(s) {', '.join(unknown)} "
                    f"(running: {', '.join(self.cfg.run.symbols)})"}
        await self._start_flatten(syms, by)
        return {"ok": True, "message": f"flattening {', '.join(syms)}: their orders cancelled, positions closed "
                "with reduce-only market orders and confirmed on the venue; they stay paused "
                "(`orchestrate status` shows progress)"}

    def _lift_halt(self, now: float, by: str) -> Halt | None:
        gw = self.children.get("gateway")
        f = gw.figures if gw is not None else None
        equity = f.equity if isinstance(f, GatewayFigures) else math.nan
        lifted = self.account.clear(now, by=by, equity=equity)
        if lifted is not None:
            self._lifted = (lifted.reason, time.monotonic() + CLEAR_HALT_RESEND_S)
        return lifted

    async def _set_paused(self, sym: str, paused: bool) -> None:
        self.children[sym].paused = paused
        if not paused:
            self.flattening.pop(sym, None)
        await self._broadcast("pause" if paused else "resume", symbol=sym)

    async def _start_flatten(self, syms: list[str], by: str) -> None:
        log.warning("flatten %s asked by %s", ", ".join(syms), by)
        for sym in syms:
            self.children[sym].paused = True  # a restarted bot must not open the grid again
            self.flattening[sym] = time.time()
        await self._drive_flatten()

    async def _cancel_all_orders(self, timeout_s: float) -> None:
        await self._broadcast("cancel_orders", "operator stop --cancel-orders")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            open_counts = [c.figures.open_orders for c in self.children.values()
                           if c.kind == "worker" and isinstance(c.figures, WorkerFigures) and c.alive()]
            if all(n == 0 for n in open_counts):
                return
            await self._broadcast("cancel_orders", "operator stop --cancel-orders")
        log.warning("some orders may still be open after stop --cancel-orders; check the venue")

    # --- status ------------------------------------------------------------------------------

    def snapshot(self) -> StatusSnapshot:
        now = time.monotonic()
        orders = self.order_management()
        workers, procs = status_builder.rows(self.children.values(), now, order_management=orders,
                                             flattening=self.flattening, overrides=self._overrides,
                                             funding=self.funding.by_symbol)
        snap = StatusSnapshot(
            run_dir=str(self.run_dir.path), mode=self.cfg.run.mode, venue=self.cfg.run.venue,
            supervisor_pid=os.getpid(), started_at=self.started_wall,
            uptime_s=round(now - self.started_mono, 1), halted=self.halted, halt_reason=self.halt_reason,
            halted_at=self.account.halt.ts if self.account.halt else None,
            halted_by=self.account.halt.by if self.account.halt else "",
            metrics_url=self.metrics_url, order_management=orders,
            storage=self.ledger.status(funding=self.funding.status()), workers=workers,
            processes=procs, dashboard_url=self.dashboard_url)
        _account_figures(snap, self.children.get("gateway"))
        snap.restarts_by_cause = status_builder.restarts_by_cause(self.children.values())
        self.alerts.into_status(snap)
        self._last_snapshot, self._last_snapshot_mono = snap, now
        return snap

    def recent_snapshot(self) -> StatusSnapshot:
        """The status document for readers that poll (metrics, dashboard, display, alerts): the
        last one while it is at most a budget interval old (the children's figures change no
        faster), else a fresh one. Built only when read: a row costs 10-17 us a worker, and
        building every row every second for nobody was ~10% of the supervisor's CPU at 200
        symbols. `status` always gets a fresh one (snapshot())."""
        snap = self._last_snapshot
        if snap is None or time.monotonic() - self._last_snapshot_mono > self.cfg.supervision.budget_check_interval_s:
            snap = self.snapshot()
        return snap

    # --- control socket ----------------------------------------------------------------------

    async def _handle_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), timeout=5)
            except ValueError:  # longer than the stream's limit: junk, answered and closed
                await _discard_line(reader)  # so the sender gets to read the answer
                writer.write(msgspec.json.encode({"ok": False, "message": "request too long (a control request is "
                                                  f"one JSON line under {CONTROL_LINE_LIMIT} bytes)"}) + b"\n")
                await writer.drain()
                return
            try:
                req: Any = msgspec.json.decode(line)
            except (msgspec.DecodeError, RecursionError):
                req = None
            body = await self.command(req, by=_peer_user(writer))
            writer.write(msgspec.json.encode(body) + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    # --- metrics -----------------------------------------------------------------------------

    async def _start_metrics(self) -> None:
        from .metrics import MetricsServer
        server = MetricsServer(self.recent_snapshot)
        if self.cfg.dashboard.enabled:
            from .dashboard.wiring import make_dashboard
            self._dashboard = make_dashboard(self)  # DashboardError (no token): refused before anything starts
        try:
            port = await server.start(self.cfg.status.metrics_host, self.cfg.status.metrics_port,
                                      dashboard=self._dashboard)
            self._metrics_server = server
        except OSError as exc:
            log.error("metrics server not started: %s", exc)
            print(f"warning: Prometheus metrics not served ({exc})", file=sys.stderr)
            return
        host = self.cfg.status.metrics_host
        self.metrics_url = f"http://{host}:{port}/metrics"
        try:
            self.run_dir.metrics_path.write_text(self.metrics_url + "\n")
        except OSError as exc:  # a full disk: the URL is still in status and the start-up line
            log.error("could not write %s: %s", self.run_dir.metrics_path, exc)
        if self._dashboard is not None:
            from .dashboard.wiring import start_dashboard
            self.dashboard_url = await start_dashboard(self, server, port)

    # --- main loop ---------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        make_private_dir(socket_dir(self.run_dir.path))  # checked at acquire; recreated if removed since
        n = len(self.cfg.run.symbols)
        self.ring = BarRing.create(self.ring_name, n_slots=n, capacity=self.cfg.market.window_bars)
        self.run_dir.record_segments([self.ring_name])
        zctx = zmq.asyncio.Context()
        # Every child's heartbeats (one a second each): a plain socket on the loop's reader callback
        # (LoopSocket), not zmq.asyncio, whose future per message was ~12% of our CPU at 200 symbols.
        plain_ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        pull_sock = plain_ctx.socket(zmq.PULL)
        pull_sock.setsockopt(zmq.LINGER, 0)
        pull_sock.setsockopt(zmq.RCVHWM, 100_000)
        pull_sock.bind(self.endpoints.supervisor)
        pull = LoopSocket(pull_sock)
        self._pull = pull_sock
        self._control_pub = zctx.socket(zmq.PUB)
        self._control_pub.setsockopt(zmq.LINGER, 0)
        self._control_pub.bind(self.endpoints.control)
        server = await asyncio.start_unix_server(self._handle_control, path=str(self.run_dir.control_path),
                                                 limit=CONTROL_LINE_LIMIT)
        os.chmod(self.run_dir.control_path, 0o600)
        await self._start_metrics()
        self.store = Store(db_path(self.run_dir.path))
        self.account.restore(self.store)  # before any bot starts: a persisted halt stands
        self.funding.load(self.store)

        self._ctx = self._mp_context()
        self._build_children()
        self.alerts = SupervisorAlerts.start(self.cfg.alerts, self.alert_urls, _child_secrets(self.children))
        for child in self.children.values():
            self._start(child, self._ctx)

        async def heartbeat_loop() -> None:
            while True:
                payload = await pull.recv()
                # Then what queued behind it, and a pause before waiting again, so one wake-up
                # serves every child that reported meanwhile: the wake-up and its ZMQ_EVENTS
                # reads cost more than decoding a heartbeat (py-spy), and at 1,000 symbols a
                # thousand come each second.
                drained = False
                while not drained:
                    for _ in range(RECV_YIELD_EVERY):
                        try:
                            self.on_message(payload)
                        except Exception:
                            log.exception("message from a child not handled")
                        try:
                            payload = pull_sock.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            drained = True
                            break
                    await asyncio.sleep(0 if not drained else RECV_BATCH_S)

        async def monitor_loop() -> None:
            next_uss = 0.0
            while True:
                try:
                    next_uss = await monitor_once(next_uss)
                except Exception:
                    # Supervision must outlive its own bugs: log, keep checking the children.
                    log.exception("supervisor monitor pass failed")
                await asyncio.sleep(min(0.25, self.cfg.supervision.budget_check_interval_s))

        async def monitor_once(next_uss: float) -> float:
            now = time.monotonic()
            # psutil samples (~40 us a child) and the status snapshot (~100 us a child; cProfile at
            # 50 symbols) grow with the symbol count: once per budget interval, not on every 0.25 s
            # pass. Liveness and heartbeat checks below still run on every pass.
            sampling = now >= self._next_sample
            if sampling:
                self._next_sample = now + self.cfg.supervision.budget_check_interval_s
            for child in self.children.values():
                if sampling and child.alive():
                    self._sample_fast(child)
            if now >= next_uss:
                next_uss = now + self.cfg.supervision.uss_sample_interval_s
                # Only where USS may have moved or may breach (shared/supervision.py uss_due).
                procs = [(k, c.ps) for k, c in self.children.items() if c.ps is not None and self._uss_due(c, now)]
                uss = await asyncio.to_thread(self._sample_uss, procs) if procs else {}
                for k, p in procs:
                    c = self.children[k]
                    if k in uss and c.ps is p:  # not restarted while we read
                        (c.uss_mb, c.uss_read_rss_mb), c.uss_read_at = uss[k], now
            now = time.monotonic()
            for child in self.children.values():
                # Budgets on sampling passes only: their inputs (psutil, heartbeats) change no faster.
                self._check(child, now, budgets=sampling)
            await self._check_account_risk()
            if self.ledger.unstored:
                self.ledger.store_fills()
            if self.funding.waiting:
                self._store_funding()
            if self.store is not None and now >= self._next_store_flush:
                # Batched rows (order events, signals, snapshots) reach readers such as
                # `orchestrate history` within a second, not after 256 more rows.
                self._next_store_flush = now + STORE_FLUSH_INTERVAL_S
                self.ledger.flush()
            # The status document is built when someone reads it (recent_snapshot), not here.
            self.alerts.monitor_pass(self.recent_snapshot() if self.alerts.sender is not None else None,
                                     getattr(self.children.get("gateway"), "figures", None), self.funding.total())
            return next_uss

        async def display_loop() -> None:
            tty = self.out.isatty()
            interval = self.cfg.status.interval_s if tty else max(5.0, self.cfg.status.interval_s)
            while True:
                await asyncio.sleep(interval)
                snap = self.recent_snapshot()
                if tty:
                    self.out.write("\x1b[H\x1b[2J" + render_table(snap) + "\n")
                else:
                    self.out.write(render_lines(snap) + "\n")
                self.out.flush()

        tasks = [asyncio.create_task(heartbeat_loop()), asyncio.create_task(monitor_loop())]
        if self.foreground:
            tasks.append(asyncio.create_task(display_loop()))
        print(f"orchestrate: {self.cfg.run.mode} trading {', '.join(self.cfg.run.symbols)} | "
              f"run dir {self.run_dir.path} | status: orchestrate status --run-dir {self.run_dir.path}"
              + (f" | metrics {self.metrics_url}" if self.metrics_url else "")
              + (f" | dashboard {self.dashboard_url}" if self.dashboard_url else ""), file=self.out, flush=True)
        await self.stop_event.wait()
        if self.cancel_before_stop:
            await self._cancel_all_orders(timeout_s=5.0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.close()
        await self.shutdown()
        pull.close()
        plain_ctx.destroy(linger=0)
        zctx.destroy(linger=0)
        return self.exit_code

    async def shutdown(self) -> None:
        """The operator's stop (`orchestrate stop`, or our SIGTERM/SIGINT): said to the gateway
        before it is signalled, so it switches the dead-man heartbeat off."""
        self._operator_stop.say()
        deadline = time.monotonic() + max(1.0, self.cfg.supervision.shutdown_timeout_s - 2.0)
        # Workers first (they stop trading), then the pool and the gateway.
        order = sorted(self.children.values(),
                       key=lambda c: {"worker": 0, "pool": 1, "gateway": 2, "venue": 3}[c.kind])
        # The paper venue only once the rest is gone: the gateway's last request (switching the
        # dead-man switch off) needs it up.
        for batch in ([c for c in order if c.kind != "venue"], [c for c in order if c.kind == "venue"]):
            for child in batch:
                child.state = "stopped"
                self._kill(child, signal.SIGTERM)
            while time.monotonic() < deadline and any(c.alive() for c in batch):
                await asyncio.sleep(0.05)
        for child in order:
            if child.alive():
                log.warning("%s %s did not stop in time; killing", child.kind, child.name)
                self._kill(child, signal.SIGKILL)
        for child in order:
            if child.process is not None:
                child.process.join(timeout=2)
        if self._venue_listener is not None:
            self._venue_listener.close()  # the venue is gone: its port is free again
        await asyncio.sleep(0.05)  # let the last messages reach our socket
        await self._drain_messages()
        self.alerts.close()
        if self._dashboard is not None:
            await self._dashboard.stop()
        if self._metrics_server is not None:
            await self._metrics_server.stop()
        # Each step on its own: a full disk failing the ledger must not leak the shared memory.
        self._store_funding()  # a last try, as the ledger's close does for fills
        self.ledger.close()
        if self.ring is not None:
            try:
                self.ring.close()
                self.ring.unlink()
            except OSError as exc:
                log.error("shared memory %s not removed (%s); the next start on this run dir removes it",
                          self.ring_name, exc)
        self.run_dir.release()  # keeps segments.json while the segment exists
        log.info("supervisor stopped")


async def _discard_line(reader: asyncio.StreamReader, max_bytes: int = 16 * MB, timeout_s: float = 2.0) -> None:
    """Read and drop the rest of an over-long line (bounded in bytes and time)."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    while seen < max_bytes and (left := deadline - time.monotonic()) > 0:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), timeout=left)
        except TimeoutError:
            return
        if not chunk or b"\n" in chunk:
            return
        seen += len(chunk)


def _peer_user(writer: asyncio.StreamWriter) -> str:
    """Who is on the other end of the control socket: the kernel's word (SO_PEERCRED), not the
    client's. The socket is 0600, so in practice the run's own user, named in the halt log."""
    import pwd
    import struct
    sock = writer.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", creds)
    except (OSError, AttributeError):
        return "unknown user"
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid {uid}"
    return f"{name} (pid {pid})"


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def external_venue_access(run_dir: Any) -> VenueAccess:
    """The paper venue `orchestrate venue --run-dir` runs beside us (market.paper_venue = "external")."""
    from workers.venue import read_venue_json
    v = read_venue_json(run_dir)
    port = urllib.parse.urlsplit(v["rest_url"]).port
    if port is None:
        raise ValueError(f"venue.json in {run_dir}: rest_url {v['rest_url']!r} has no port")
    return VenueAccess(port=port, api_key=v["api_key"], api_secret=v["api_secret"])


def _account_figures(snap: StatusSnapshot, gateway: Child | None) -> None:
    """The account's figures the gateway reports (equity, rate budget) into the status document."""
    f = gateway.figures if gateway is not None else None
    if isinstance(f, GatewayFigures):
        snap.equity = clean(f.equity, 2)
        snap.rate_budget_left = clean(f.rate_budget_left, 0)
        snap.rate_budget_capacity = clean(f.rate_budget_capacity, 0)
        snap.rate_budget_use = status_builder.rate_budget_use(f)
        snap.deadman = f.deadman
        snap.deadman_expires_in_s = clean(f.deadman_expires_in_s, 1)


def _child_secrets(children: dict[str, Child]) -> list[str]:
    """The paper venue's per-run key and secret: never in an alert."""
    out = []
    for c in children.values():
        if (access := c.spec.venue_access) is not None:
            out += [access.api_key, access.api_secret]
    return out


def _bind_venue_port(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket for the embedded venue. Listening already, so a client that comes while
    a venue process restarts waits in the backlog instead of being refused. SO_REUSEADDR as
    aiohttp's own sites: the port is free for the next run at once, despite closed connections
    lingering in TIME_WAIT."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(128)
    except OSError:
        s.close()
        raise
    return s


class _OneLine(logging.Formatter):
    """The terminal gets the message; tracebacks go to logs/supervisor.log only."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def run_supervisor(cfg: Config, run_dir: RunDir, foreground: bool = True, alert_urls: tuple[str, ...] = ()) -> int:
    # Whatever this run and its children create (ledger, logs, metrics file, paper account) is
    # readable by the owner alone.
    os.umask(0o077)
    handler = bounded_log_handler(run_dir.logs / "supervisor.log")
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    errors = logging.StreamHandler(sys.stderr)  # the operator sees warnings in the terminal too
    errors.setLevel(logging.WARNING)
    errors.setFormatter(_OneLine("orchestrate: %(levelname)s %(message)s"))
    root.addHandler(errors)
    sup = Supervisor(cfg, run_dir, foreground=foreground, alert_urls=alert_urls)
    try:
        return run_event_loop(sup.run())
    except Exception:
        log.exception("supervisor failed (traceback in %s)", run_dir.logs / "supervisor.log")
        raise
    finally:
        # Whatever ended the run (a start-up failure included), nothing of it stays behind:
        # children, the bars' shared memory, and multiprocessing's forkserver and resource
        # tracker, which otherwise linger as zombies for seconds after we exit.
        for child in sup.children.values():
            if child.alive():
                sup._kill(child)
                child.process.join(timeout=2)
        if sup.ring is not None:
            sup.ring.close()
            sup.ring.unlink()
        _stop_multiprocessing_helpers()


def _stop_multiprocessing_helpers(timeout_s: float = 5.0) -> None:
    # `_stop` is private, but the only way to stop and reap them (CPython's own tests use it); a
    # Python without it leaves them to exit on their own as before. The tracker exits only when
    # every holder of its pipe has gone: a bounded wait, so a stray holder cannot hang our exit.
    import threading
    from multiprocessing import forkserver, resource_tracker

    def stop() -> None:
        for helper in (getattr(forkserver, "_forkserver", None), getattr(resource_tracker, "_resource_tracker", None)):
            try:
                getattr(helper, "_stop", lambda: None)()
            except Exception:
                log.warning("could not stop %s", type(helper).__name__, exc_info=True)
    t = threading.Thread(target=stop, name="stop-mp-helpers", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        log.warning("multiprocessing helpers still running %.0f s after shutdown; leaving them", timeout_s)
