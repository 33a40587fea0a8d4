"""The gateway's dead-man switch keeper: registers the account's heartbeat with the exchange at
start and renews it on the schedule of shared/delta/deadman.py, live and paper alike (the same
REST client, the same calls). If the gateway and everything above it die (the machine, a
SIGKILLed tree), the exchange cancels the account's open orders once `deadman.ttl_s` has passed.

A renewal failure is logged with Delta's error code, counted and shown in the gateway's status
note; it never raises out of the loop. At an operator's stop the heartbeat is disabled (ttl 0): a
plain `orchestrate stop` leaves orders resting on purpose (README), and a switch left armed
would cancel them a few minutes later.

Only the operator's stop switches it off, and the gateway knows one only from the supervisor's
word (OperatorStopLine), never from a signal: SIGTERM also comes from the kernel when the
gateway's parent (the forkserver) dies, e.g. at the OOM killer's hand while the supervisor lives,
and from the lifeline when the supervisor is gone. Then the switch stays armed: the supervisor
restarts the gateway, which renews it, or if nothing is left the exchange cancels the orders.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import time
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection

from shared.config import DeadmanConfig
from shared.delta.constants import HEARTBEAT_TTL_DISABLE_MS
from shared.delta.deadman import DeadmanSchedule, Step, heartbeat_id_for, heartbeat_scope
from shared.delta.errors import DeltaError
from shared.delta.rest import DeltaRestClient
from shared.products import ProductSpec

log = logging.getLogger("gateway")
RETRY_S = 5.0  # after a failed create or renewal (capped at the renewal interval)
DISABLE_TIMEOUT_S = 3.0  # a clean stop waits at most this long to switch the heartbeat off
LOG_FIRST_FAILURES = 3
LOG_EVERY_NTH = int(60 / RETRY_S)


class DeadmanKeeper:
    def __init__(self, rest: DeltaRestClient, cfg: DeadmanConfig, bot_id: str, products: Iterable[ProductSpec], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rest = rest
        self.cfg = cfg
        self.heartbeat_id = heartbeat_id_for(bot_id)
        specs = list(products)
        self.scope = heartbeat_scope((p.symbol for p in specs), (p.contract_type for p in specs))
        self.clock = clock
        self.schedule = DeadmanSchedule(cfg.ttl_s, cfg.renew_interval_s, RETRY_S)

    async def step(self, step: Step) -> None:
        """One create or ack; the outcome goes to the schedule. Never raises a request error."""
        try:
            if step == "create":
                await self.rest.create_heartbeat(self.heartbeat_id,
                                                 product_symbols=self.scope.get("product_symbols", ()),
                                                 contract_types=self.scope.get("contract_types", ()))
            else:
                ack = await self.rest.ack_heartbeat(self.heartbeat_id, self.schedule.ttl_ms)
                if ack.process_enabled is False:
                    log.warning("dead-man switch %s: the exchange says it is not enabled after a renewal",
                                self.heartbeat_id)
        except Exception as exc:  # whatever it is, the switch must not take the account's gateway down
            code = exc.code if isinstance(exc, DeltaError) else type(exc).__name__
            self.schedule.on_failure(step, self.clock(), code=code, status=getattr(exc, "status", None))
            s = self.schedule.state
            # Every failure is counted (status); the log says the first few of a run of them and
            # then one a minute, so a venue without the API cannot flood it.
            if s.failing_in_a_row <= LOG_FIRST_FAILURES or s.failing_in_a_row % LOG_EVERY_NTH == 0:
                log.error("dead-man switch %s: %s failed: %s (%d failures, %d in a row); retry in %.0fs",
                          self.heartbeat_id, step, code, s.failures, s.failing_in_a_row, self.schedule.retry_s)
            return
        first = self.schedule.state.last_ack_at is None and step == "ack"
        self.schedule.on_success(step, self.clock())
        if first:
            scope = ",".join(self.scope.get("product_symbols") or self.scope.get("contract_types") or [])
            log.info("dead-man switch %s armed: the exchange cancels the open orders on %s if not "
                     "renewed for %.0fs", self.heartbeat_id, scope, self.cfg.ttl_s)

    async def loop(self) -> None:
        while True:
            step = self.schedule.due(self.clock())
            if step is not None:
                await self.step(step)
                continue
            await asyncio.sleep(max(0.05, self.schedule.state.due_at - self.clock()))

    async def disable(self) -> None:
        """Switch the heartbeat off (a clean stop); a failure is logged, the switch then lapses."""
        if self.schedule.state.last_ack_at is None:
            return
        try:
            await asyncio.wait_for(self.rest.ack_heartbeat(self.heartbeat_id, HEARTBEAT_TTL_DISABLE_MS),
                                   DISABLE_TIMEOUT_S)
            log.info("dead-man switch %s disabled (clean stop: orders stay resting)", self.heartbeat_id)
        except Exception as exc:  # a stop goes on regardless; the switch then lapses as if we died
            log.warning("dead-man switch %s not disabled at stop (%s): it lapses in %.0fs and the exchange "
                        "cancels the open orders", self.heartbeat_id, getattr(exc, "code", exc), self.cfg.ttl_s)

    def note(self) -> str:
        return self.schedule.note(self.clock())

    def figures(self) -> tuple[str, float]:
        return self.schedule.figures(self.clock())


OPERATOR_STOP_WORD = b"operator stop"


class OperatorStopLine:
    """The supervisor's word to the gateway that this stop is the operator's (`orchestrate stop`,
    Ctrl-C or SIGTERM of the supervisor): a pipe the supervisor writes to before it signals the
    gateway to stop, read by the gateway once its loops have ended. A pipe and not a signal of its
    own, because no signal says who sent it; nothing in it survives the supervisor, so a later run
    never hears an old word."""

    def __init__(self) -> None:
        self.hear_end, self._say_end = mp.Pipe(duplex=False)

    def say(self) -> None:
        """Supervisor: the operator stops the run (before the gateway is signalled)."""
        try:
            self._say_end.send_bytes(OPERATOR_STOP_WORD)
        except OSError as exc:  # not heard: the switch stays armed and lapses, the safe side
            log.warning("could not tell the gateway the stop is the operator's (%s): the dead-man switch "
                        "stays armed and cancels the open orders when it lapses", exc)


_operator_stop_heard_on: Connection | None = None


def hear_operator_stop_on(conn: Connection | None) -> None:
    """Gateway, at start (workers/entry.py): the read end of the supervisor's OperatorStopLine."""
    global _operator_stop_heard_on
    _operator_stop_heard_on = conn


def operator_stopped() -> bool:
    """Gateway, at its stop: did the supervisor say this stop is the operator's? Only then is the
    dead-man switch turned off (see the module doc)."""
    conn = _operator_stop_heard_on
    if conn is None:
        return False
    try:
        return conn.poll(0) and conn.recv_bytes(64) == OPERATOR_STOP_WORD
    except (EOFError, OSError):  # the supervisor is gone and said nothing
        return False
