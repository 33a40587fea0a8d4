"""The paper venue's dead-man switch: Delta's heartbeat endpoints (POST /v2/heartbeat/create,
POST /v2/heartbeat, GET /v2/heartbeat; private, signed like every order call) and the timer that
acts when a heartbeat lapses: `cancel_orders` cancels the orders in state `open` (resting limit
orders, take-profits included) on every product the heartbeat covers, with cancellation_reason
`deadman_switch`; untriggered protective stops (state `pending`) are KEPT. What is Delta's
documented behaviour and what is this venue's reading of it: shared/matching/deadman.py.

Heartbeats persist beside the account (`<state file>.heartbeats.json`, mode 0600, rewritten on
every change), on the wall clock: a venue that was down when a heartbeat lapsed acts on it as
soon as it is back, as an exchange whose switch kept time would. Not persisting them would let
a venue restart silently disarm a switch whose client is dead: the one case it exists for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import msgspec
from aiohttp import web

from shared.delta.constants import (
    HEARTBEAT_ACTION_CANCEL_ORDERS,
    HEARTBEAT_CANCEL_REASON,
    HEARTBEAT_CREATE_PATH,
    HEARTBEAT_PATH,
)
from shared.matching import MatchingEngine
from shared.matching import protocol as wire
from shared.matching.deadman import DeadmanSwitches, Lapse, ack_answer
from workers.venue.account import write_private
from workers.venue.guard import BODY, ok, private

log = logging.getLogger("workers.venue")
CHECK_INTERVAL_S = 0.25  # how late after its TTL a lapse may be acted on, at most


class SwitchedVenue(Protocol):
    """What the switch needs from the venue (given, not imported)."""

    engine: MatchingEngine

    def publish_engine_events(self) -> None: ...


class VenueDeadman:
    """The venue's one key's heartbeats, their file, and the lapse timer."""

    def __init__(self, venue: SwitchedVenue, state_file: str | None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.venue = venue
        self.path = heartbeats_file(state_file) if state_file else None
        self.clock = clock
        self.switches = self._load()
        self.lapses = 0  # actions run, for tests and logs
        self.cancelled = 0  # orders the switch cancelled

    def _load(self) -> DeadmanSwitches:
        if self.path is None or not self.path.exists():
            return DeadmanSwitches()
        try:
            return DeadmanSwitches.decode(self.path.read_bytes())
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            # Refuse rather than start with every switch silently disarmed.
            raise ValueError(f"paper venue heartbeats file {self.path} is unreadable ({exc}); move it "
                             "away to start without dead-man switches") from None

    def save(self) -> None:
        if self.path is None:
            return
        try:
            write_private(self.path, self.switches.encode())
        except OSError as exc:  # the switch still works in memory; a restart would forget it
            log.error("paper venue: heartbeats not saved (%s); a venue restart would forget them", exc)

    def now_us(self) -> int:
        return int(self.clock() * 1_000_000)

    def check(self) -> list[Lapse]:
        """Run every action that has fallen due; returns them."""
        due = self.switches.due(self.now_us())
        for lapse in due:
            self._act(lapse)
        if due:
            self.venue.publish_engine_events()  # journalled and pushed like any cancel
            self.save()
        return due

    def _act(self, lapse: Lapse) -> None:
        hb = lapse.heartbeat
        self.lapses += 1
        if lapse.action != HEARTBEAT_ACTION_CANCEL_ORDERS:
            log.warning("dead-man switch %r lapsed: action %r is not simulated by the paper venue",
                        hb.heartbeat_id, lapse.action)
            return
        engine = self.venue.engine
        cancelled = 0
        for spec in engine.specs():
            if hb.covers(spec):
                cancelled += len(engine.cancel_all(spec.product_id, limit_orders=True, reduce_only_orders=True,
                                                   stop_orders=False, reason=HEARTBEAT_CANCEL_REASON))
        self.cancelled += cancelled
        log.warning("dead-man switch %r lapsed (no heartbeat for %d ms): %d open orders cancelled, "
                    "pending stop orders kept", hb.heartbeat_id, hb.ttl_ms, cancelled)

    async def run(self) -> None:
        while True:
            self.check()
            await asyncio.sleep(CHECK_INTERVAL_S)


DEADMAN = web.AppKey("deadman", VenueDeadman)


async def create(request: web.Request) -> web.Response:
    d, body = request.app[DEADMAN], request[BODY]
    hb = d.switches.create(body)
    d.save()
    return ok({"heartbeat_id": hb.heartbeat_id})


async def ack(request: web.Request) -> web.Response:
    d, body = request.app[DEADMAN], request[BODY]
    hb = d.switches.ack(body, d.now_us())
    d.save()
    return ok(ack_answer(hb))


async def listing(request: web.Request) -> web.Response:
    d = request.app[DEADMAN]
    hid = request.query.get("heartbeat_id") or None
    return ok(d.switches.listing(hid, wire.USER_ID))


deadman_routes = web.RouteTableDef()
deadman_routes.post(HEARTBEAT_CREATE_PATH)(private(create))
deadman_routes.post(HEARTBEAT_PATH)(private(ack))
deadman_routes.get(HEARTBEAT_PATH)(private(listing))


def heartbeats_file(state_file: str | os.PathLike[str]) -> Path:
    """Where the heartbeats of the account in `state_file` are kept."""
    return Path(str(state_file) + ".heartbeats.json")


__all__ = ["DEADMAN", "VenueDeadman", "deadman_routes", "heartbeats_file"]
