"""The supervisor's account risk shell (orchestrator/account.py) on a real SQLite file: each change
persisted as it happens, a store that refuses a write retried (and said), a lift that cannot be
written refused with the halt standing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from orchestrator.account import AccountGuard, StoreLiftFailed
from shared.store import Store
from shared.trading.account_risk import AccountRisk
from shared.trading.risk import RiskConfig

T0 = 1_800_000_000.0


class _FlakyStore(Store):
    """A real store whose account-state writes fail while `full` is set (a full disk)."""
    full = False

    def save_account_risk(self, state: AccountRisk, ts: float, *, durable: bool = True) -> None:
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")
        super().save_account_risk(state, ts, durable=durable)


def test_a_breach_is_saved_and_logged_and_a_new_guard_restores_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.sqlite")
    guard = AccountGuard(RiskConfig(daily_loss_limit=10.0))
    guard.restore(store)
    assert guard.observe(1_000.0, T0, {}).allow_new_orders
    assert not guard.observe(990.0, T0 + 1, {}).allow_new_orders
    again = AccountGuard(RiskConfig(daily_loss_limit=10_000.0))  # a raised limit does not lift it
    again.restore(store)
    assert again.halted and again.halt is not None and again.halt.by == "risk limits"
    assert [e.event for e in store.halt_events()] == ["halt"]
    store.close()


def test_a_refused_write_is_said_and_retried_and_a_refused_lift_keeps_the_halt(tmp_path: Path) -> None:
    said: list[str] = []
    store = _FlakyStore(tmp_path / "l.sqlite")
    guard = AccountGuard(RiskConfig(), on_storage_error=said.append)
    guard.restore(store)
    store.full = True
    assert guard.set_halt("operator: x", T0, by="alice", kind="operator")
    assert guard.halted and said and "account risk state not written" in said[0]
    assert store.load_account_risk() is None
    with pytest.raises(StoreLiftFailed, match="the halt stands"):
        guard.clear(T0 + 1, by="bob")
    assert guard.halted
    store.full = False
    guard.retry_save(T0 + 2)
    saved = store.load_account_risk()
    assert saved is not None and saved.halt is not None and saved.halt.by == "alice"
    assert guard.clear(T0 + 3, by="bob") is not None and not guard.halted
    saved = store.load_account_risk()
    assert saved is not None and saved.halt is None
    assert [(e.event, e.by) for e in store.halt_events()] == [("halt", "alice"), ("clear", "bob")]
    store.close()
