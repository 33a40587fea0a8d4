"""Supervision rules as pure state machines: restart backoff, quarantine, budget breaches.

No processes, no clocks of their own: the supervisor passes `now` (monotonic seconds) in, so the
rules are tested exactly.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field

from .config import BudgetConfig, SupervisionConfig

MAX_CAUSES = 16  # distinct restart causes tallied per child; the rest count as "other"
_NUMBER = re.compile(r"(?<![A-Za-z_\d])\d+(\.\d+)?")  # numbers, not the 99 in p99


def failure_cause(why: str) -> str:
    """A failure's reason with its numbers as N, so 'no heartbeat for 5.1s (hung)' and '... 5.3s
    ...' are one cause in the tally."""
    return _NUMBER.sub("N", why)


@dataclass
class RestartPolicy:
    """Exponential backoff (initial doubling to max) and quarantine after `max_restarts` within
    `restart_window_s`. One per supervised child. A child the whole account depends on (the
    gateway: the only link to the exchange) is built with `may_quarantine=False`: past the limit
    it is still retried, at the capped backoff, and `failing` says so."""

    cfg: SupervisionConfig
    may_quarantine: bool = True
    restarts: int = 0
    _recent: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    _backoff_s: float = 0.0
    quarantined: bool = False
    failing: bool = False  # over the restart limit but kept retrying (may_quarantine=False)
    reason: str = ""
    # restarts by cause (failure_cause of each restart's reason; bounded by MAX_CAUSES): what the
    # status document and the load test report as "restarts by reason"
    causes: dict[str, int] = field(default_factory=dict)

    def on_failure(self, now: float, why: str) -> float | None:
        """A crash, hang or budget restart. Returns the delay before restarting, or None when the
        child is quarantined (too many failures in the window)."""
        self._recent.append(now)
        while self._recent and now - self._recent[0] > self.cfg.restart_window_s:
            self._recent.popleft()
        if len(self._recent) > self.cfg.max_restarts:
            limit = (f"{len(self._recent)} failures in {self.cfg.restart_window_s:.0f}s "
                     f"(max {self.cfg.max_restarts})")
            if self.may_quarantine:
                self.quarantined = True
                self.reason = f"{limit}; last: {why}"
                return None
            self.failing = True
            self._backoff_s = self.cfg.backoff_max_s
            self.restarts += 1
            self._tally(why)
            self.reason = f"{limit}, retrying every {self._backoff_s:g}s; last: {why}"
            return self._backoff_s
        self._backoff_s = (self.cfg.backoff_initial_s if self._backoff_s == 0
                           else min(self._backoff_s * 2, self.cfg.backoff_max_s))
        self.restarts += 1
        self._tally(why)
        self.reason = why
        return self._backoff_s

    def _tally(self, why: str) -> None:
        cause = failure_cause(why)
        if cause not in self.causes and len(self.causes) >= MAX_CAUSES:
            cause = "other"
        self.causes[cause] = self.causes.get(cause, 0) + 1

    def on_healthy(self, now: float, up_since: float) -> None:
        """A child that has run cleanly for a full window earns its backoff back."""
        if self._backoff_s and now - up_since > self.cfg.restart_window_s:
            self._backoff_s = 0.0
            self.failing = False

    def quarantine(self, why: str) -> None:
        self.quarantined = True
        self.reason = why


@dataclass(frozen=True)
class ResourceSample:
    rss_mb: float = math.nan
    uss_mb: float = math.nan
    cpu_percent: float = math.nan
    loop_lag_ms: float = math.nan
    tick_to_signal_p99_us: float = math.nan


def budget_breaches(sample: ResourceSample, budget: BudgetConfig) -> list[str]:
    """Which budgets this sample breaks (NaN = not measured yet, never a breach; 0 = disabled)."""
    out = []
    checks = (
        ("rss", sample.rss_mb, budget.rss_mb, "MB"),
        ("uss", sample.uss_mb, budget.uss_mb, "MB"),
        ("cpu", sample.cpu_percent, budget.cpu_percent, "%"),
        ("loop_lag", sample.loop_lag_ms, budget.loop_lag_ms, "ms"),
        ("tick_to_signal_p99", sample.tick_to_signal_p99_us, budget.tick_to_signal_p99_us, "us"),
    )
    for name, value, limit, unit in checks:
        if limit > 0 and not math.isnan(value) and value > limit:
            out.append(f"{name} {value:.1f}{unit} > {limit:g}{unit}")
    return out


@dataclass
class BreachTracker:
    """A breach must be sustained for `grace_s` before it counts (one slow GC is not a leak)."""

    grace_s: float
    since: float | None = None
    current: list[str] = field(default_factory=list)

    def update(self, breaches: list[str], now: float) -> bool:
        """Record this check; True when a breach has lasted at least the grace period."""
        self.current = breaches
        if not breaches:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= self.grace_s

    @property
    def state(self) -> str:
        if not self.current:
            return "ok"
        return "breach: " + "; ".join(self.current)


# USS (private memory) is read from /proc/<pid>/smaps_rollup: ~1 ms of CPU a process (the kernel
# walks the page tables), against ~35 us for RSS and CPU together. Read on every USS pass for
# every child it was ~40% of the supervisor's CPU at 200 symbols (py-spy) and would be a fifth of
# a core at 1,000. Private pages are resident pages, so USS <= RSS, and RSS is sampled anyway.
USS_NEAR_BUDGET = 0.9  # RSS above this share of the USS budget: USS might breach it, read on every pass
USS_RSS_MOVED_MB = 1.0  # RSS moved this far since the last USS read: the USS figure may have moved too
USS_MAX_AGE_S = 300.0  # otherwise the status figure is refreshed this often


def uss_due(*, rss_mb: float, rss_at_read_mb: float, read_at: float | None, now: float, budget_mb: float,
            max_age_s: float = USS_MAX_AGE_S) -> bool:
    """Whether to read a child's USS on this USS pass. `rss_mb`: its RSS now (NaN: not sampled);
    `rss_at_read_mb` and `read_at` (monotonic s, None: never read): its RSS and the time of the
    last USS read; `budget_mb`: its USS budget (0: none). A breach needs USS > budget, so RSS >
    budget: below that only the status figure is at stake, refreshed when RSS moves or it ages."""
    if read_at is None or math.isnan(rss_mb) or math.isnan(rss_at_read_mb):
        return True
    if budget_mb > 0 and rss_mb >= budget_mb * USS_NEAR_BUDGET:
        return True
    if abs(rss_mb - rss_at_read_mb) >= USS_RSS_MOVED_MB:
        return True
    return now - read_at >= max_age_s


# A worker's heartbeat: every heartbeat costs the worker a wake-up of its ZeroMQ I/O thread and
# its figures, and the supervisor a read; at 2 ticks/s a beat a second was ~a third of a worker's
# wake-ups (issue 16). So workers beat every WORKER_HEARTBEAT_S where the timeout allows it,
# riding on a tick's wake-up, and a timer of their own fires only `grace` past due (no tick came).
WORKER_HEARTBEAT_S = 2.0
HEARTBEATS_PER_TIMEOUT = 2.5  # the beat period is at most the timeout over this...
LONGEST_GAP_OF_TIMEOUT = 0.6  # ...and the longest gap (period + grace) at most this share of it


def worker_heartbeat(sup: SupervisionConfig) -> tuple[float, float]:
    """(period, grace) of a worker's heartbeat and housekeeping pass, in seconds. The pass is
    due `period` after the last one and runs in the first tick's wake-up after that; without a
    tick, its own timer runs it `grace` later. So beats come at most period + grace apart before
    loop lag, which is kept to LONGEST_GAP_OF_TIMEOUT of `heartbeat_timeout_s` (the rest is the
    margin for a late loop before the supervisor calls the worker hung). Never faster than
    `heartbeat_interval_s`. Defaults (1 s, 5 s): every 2 s, at most 3 s apart."""
    timeout = sup.heartbeat_timeout_s
    period = max(sup.heartbeat_interval_s, min(WORKER_HEARTBEAT_S, timeout / HEARTBEATS_PER_TIMEOUT))
    grace = max(0.0, min(period / 2.0, timeout * LONGEST_GAP_OF_TIMEOUT - period))
    return period, grace
