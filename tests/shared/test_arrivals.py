"""The paper market's arrival model (shared/arrivals.py): seeded, per symbol, uniform in its
quarter; lockstep's groups."""

from __future__ import annotations

import numpy as np
import pytest

from shared.arrivals import (
    LOCKSTEP_GROUPS,
    check_arrivals,
    independent_phases,
    lockstep_phases,
    quarter_phases,
    send_order,
    symbol_key,
)

BAR = 29_500_000  # market minutes since the epoch (2026)


def keys(symbols: list[str], seed: int = 0) -> np.ndarray:
    return np.array([symbol_key(seed, s) for s in symbols], dtype=np.uint64)


def syn(n: int) -> list[str]:
    return [f"SYN_{i:04d}" for i in range(1, n + 1)]


def test_same_seed_same_times_and_another_seed_other_times() -> None:
    a = independent_phases(keys(syn(50), seed=7), BAR, 1)
    b = independent_phases(keys(syn(50), seed=7), BAR, 1)
    c = independent_phases(keys(syn(50), seed=8), BAR, 1)
    assert np.array_equal(a, b)
    assert not np.any(a == c)


def test_a_symbols_times_do_not_depend_on_the_other_symbols() -> None:
    alone = independent_phases(keys(["SYN_0042"]), BAR, 3)[0]
    among_1000 = independent_phases(keys(syn(1000)), BAR, 3)[41]
    among_others = independent_phases(keys(["BTCUSD", "SYN_0042", "ETHUSD"]), BAR, 3)[1]
    assert alone == among_1000 == among_others


def test_every_quarter_of_every_bar_draws_anew() -> None:
    k = keys(["SYN_0001"])
    draws = [float(independent_phases(k, bar, q)[0]) for bar in range(BAR, BAR + 50) for q in range(4)]
    assert len(set(draws)) == len(draws)


def test_phases_are_uniform_in_the_quarter_and_independent_across_symbols() -> None:
    k = keys(syn(1000))
    p = np.stack([independent_phases(k, bar, q) for bar in range(BAR, BAR + 25) for q in range(4)])
    assert p.min() >= 0.0 and p.max() < 1.0
    counts = np.histogram(p, bins=20, range=(0.0, 1.0))[0]
    expected = p.size / 20
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 43.8  # 19 degrees of freedom, p = 0.001 (seeded: the same figure every run)
    # neighbouring symbols and a symbol's consecutive quarters are uncorrelated
    assert abs(np.corrcoef(p[:, :-1].ravel(), p[:, 1:].ravel())[0, 1]) < 0.02
    assert abs(np.corrcoef(p[:-1].ravel(), p[1:].ravel())[0, 1]) < 0.02


def test_lockstep_sends_the_markets_in_fixed_groups() -> None:
    assert LOCKSTEP_GROUPS == 8
    p = lockstep_phases(20)
    assert sorted(set(p.tolist())) == [g / 8 for g in range(8)]
    assert p[0] == p[8] == p[16] == 0.0 and p[3] == p[11] == 3 / 8
    assert lockstep_phases(3).tolist() == [0.0, 1 / 3, 2 / 3]  # fewer markets than groups: one each
    assert send_order(lockstep_phases(10)) == [0, 8, 1, 9, 2, 3, 4, 5, 6, 7]
    assert np.array_equal(quarter_phases("lockstep", keys(syn(20)), BAR, 2), p)


def test_send_order_is_by_due_time() -> None:
    p = independent_phases(keys(syn(100)), BAR, 0)
    order = send_order(p)
    assert sorted(order) == list(range(100))
    assert all(p[a] <= p[b] for a, b in zip(order, order[1:], strict=False))


def test_an_unknown_model_is_refused_by_name() -> None:
    assert check_arrivals("lockstep") == "lockstep"
    with pytest.raises(ValueError, match="arrivals must be one of 'independent', 'lockstep'; got 'poisson'"):
        check_arrivals("poisson")
