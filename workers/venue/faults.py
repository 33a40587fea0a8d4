"""Fault injection as one model object (cf. nautilus_trader's LatencyModel / FillModel): every
switch the paper venue has for making a client's life hard, all off by default, every random
draw from one RNG seeded by the venue's `seed` so a failing run can be replayed.

The guard asks it per request (latency, spurious 429, spurious 503), the order handlers per
placement (`risk_limits_breached`), and the app runs its two timers (socket drops, restarts).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from shared.matching import VenueError


class FaultSettings(Protocol):
    seed: int
    fault_latency_ms: float
    fault_5xx_probability: float
    fault_429_probability: float
    fault_ws_drop_interval_s: float
    fault_reject_probability: float
    fault_restart_interval_s: float
    fault_restart_down_s: float


class FaultModel:
    def __init__(self, settings: FaultSettings) -> None:
        self.latency_ms = settings.fault_latency_ms  # added to every REST request
        self.unavailable_probability = settings.fault_5xx_probability  # 503 before processing
        self.rate_limited_probability = settings.fault_429_probability  # 429 before processing
        self.reject_probability = settings.fault_reject_probability  # placements refused
        self.ws_drop_interval_s = settings.fault_ws_drop_interval_s  # close every socket this often
        self.restart_interval_s = settings.fault_restart_interval_s  # go away this often...
        self.restart_down_s = settings.fault_restart_down_s  # ...for this long
        self._rng = random.Random(settings.seed)

    async def delay(self) -> None:
        if self.latency_ms > 0:
            await asyncio.sleep(self.latency_ms / 1000.0)

    def rate_limited(self) -> bool:
        """A spurious 429 for this request?"""
        p = self.rate_limited_probability
        return bool(p) and self._rng.random() < p

    def unavailable(self) -> bool:
        """A spurious 503 for this request?"""
        p = self.unavailable_probability
        return bool(p) and self._rng.random() < p

    def maybe_reject(self) -> None:
        """Refuse an order placement as Delta's risk engine would, with the configured odds."""
        p = self.reject_probability
        if p and self._rng.random() < p:
            raise VenueError("risk_limits_breached", {"fault_injection": True})

    def timers(self, drop_sockets: Callable[[], Coroutine[Any, Any, None]],
               restart: Callable[[float], Awaitable[None]]
               ) -> list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]]:
        """The fault loops (task name, loop) to run for the venue's life (none when off)."""
        loops: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = []
        if self.ws_drop_interval_s > 0:
            async def dropper() -> None:
                while True:
                    await asyncio.sleep(self.ws_drop_interval_s)
                    await drop_sockets()
            loops.append(("venue-ws-drop", dropper))
        if self.restart_interval_s > 0:
            async def restarter() -> None:
                while True:
                    await asyncio.sleep(self.restart_interval_s)
                    await restart(self.restart_down_s)
            loops.append(("venue-restarts", restarter))
        return loops
