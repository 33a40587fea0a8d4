"""The supervisor's account risk, as a thin shell around shared/trading/account_risk.py: it holds
the current state, persists each change in SQLite (a halt or a clear before anyone hears of it),
restores it at start, and logs every halt set or lifted with who and when. No processes, no
sockets: unit-tested on a real SQLite file (tests/orchestrator/test_account_guard.py)."""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Callable, Mapping

from shared.store import HaltEvent, Store
from shared.trading import account_risk as ar
from shared.trading.risk import RiskConfig, RiskDecision

log = logging.getLogger("supervisor")


class AccountGuard:
    def __init__(self, config: RiskConfig, *, on_storage_error: Callable[[str], None] | None = None,
                 on_halt: Callable[[str], None] | None = None) -> None:
        self.config = config
        self._on_halt = on_halt or (lambda reason: None)  # told once per new halt (alerts)
        self.state = ar.AccountRisk()
        self.store: Store | None = None
        self._on_storage_error = on_storage_error or (lambda why: None)
        self._unsaved = False  # the store refused the last change; it is written again each pass

    # --- the current state ---------------------------------------------------------------------

    @property
    def halted(self) -> bool:
        return self.state.halt is not None

    @property
    def halt(self) -> ar.Halt | None:
        return self.state.halt

    @property
    def halt_reason(self) -> str:
        return self.state.halt_reason

    def restore(self, store: Store) -> None:
        """Take the persisted state (raises StoreError when it cannot be read: starting as if
        nothing were saved would lift a halt and re-arm the day's loss budget)."""
        self.store = store
        saved = store.load_account_risk()
        if saved is None:
            return
        if self.state.halt is not None and saved.halt is None:
            # halted before the store was open (e.g. storage): that halt stands, and is saved
            saved = ar.AccountRisk(day=saved.day, halt=self.state.halt)
            self._unsaved = True
        self.state = saved
        # a standing halt is news the operator must see in the terminal
        log.log(logging.WARNING if saved.halt else logging.INFO, "account risk state restored: %s",
                ar.describe(saved))

    # --- changes -------------------------------------------------------------------------------

    def observe(self, equity: float, now: float, position_notional: Mapping[str, float]) -> RiskDecision:
        new, verdict = ar.observe(self.state, equity, now, self.config, position_notional)
        halted_now = new.halt is not None and self.state.halt is None
        self._set(new, now)
        if halted_now:
            assert new.halt is not None
            log.error("halting all bots: %s", new.halt.reason)
            self._log_event("halt", new.halt)
            self._on_halt(new.halt.reason)
        return verdict

    def set_halt(self, reason: str, now: float, *, by: str, kind: ar.HaltKind) -> bool:
        """Halt the account; False when a halt already stands (its reason is kept)."""
        new, fresh = ar.halt(self.state, reason, now, by=by, kind=kind)
        if fresh:
            assert new.halt is not None
            self._set(new, now)
            log.error("halting all bots: %s (by %s)", reason, by)
            self._log_event("halt", new.halt)
            self._on_halt(reason)
        return fresh

    def clear(self, now: float, *, by: str, equity: float = math.nan) -> ar.Halt | None:
        """Lift the halt; returns the halt lifted, None when there was none. Raises StoreError
        (the halt standing) when the lift cannot be written: a lift not on disk would come back
        as a halt at the next start, which is safe, but the operator must hear it did not stick."""
        new, lifted = ar.clear(self.state, now, equity=equity)
        if lifted is None:
            return None
        if self.store is not None:
            try:
                self.store.save_account_risk(new, now, durable=True)
            except (sqlite3.Error, OSError) as exc:
                raise StoreLiftFailed(f"the halt stands: its lift could not be written to the ledger ({exc})") \
                    from None
        self.state = new
        self._unsaved = False
        log.warning("account halt lifted by %s (was: %s, by %s at %s); %s", by, lifted.reason, lifted.by,
                    time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(lifted.ts)), ar.describe(new))
        self._log_event("clear", ar.Halt(reason=lifted.reason, ts=now, by=by, kind=lifted.kind))
        return lifted

    def retry_save(self, now: float) -> None:
        """Each pass: a change the store refused is written again."""
        if self._unsaved:
            self._save(now, durable=True)

    def _set(self, new: ar.AccountRisk, now: float) -> None:
        how = ar.change(self.state, new)
        self.state = new
        if how != "none":
            self._save(now, durable=how == "durable" or self._unsaved)

    def _save(self, now: float, *, durable: bool) -> None:
        if self.store is None:
            self._unsaved = True
            return
        try:
            self.store.save_account_risk(self.state, now, durable=durable)
            self._unsaved = False
        except (sqlite3.Error, OSError) as exc:
            self._unsaved = True
            self._on_storage_error(f"account risk state not written: {exc}")

    def _log_event(self, event: str, halt: ar.Halt) -> None:
        if self.store is None:
            return
        try:
            self.store.record_halt_event(HaltEvent(ts=halt.ts, event=event, reason=halt.reason, by=halt.by))
        except (sqlite3.Error, OSError) as exc:  # the log file has it too (above)
            log.error("account halt %s not written to the ledger's halt log: %s", event, exc)


class StoreLiftFailed(RuntimeError):
    pass
