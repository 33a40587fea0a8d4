"""The optimizer driver's storage (orchestrator/optimize_storage.py) on real SQLite files: it writes
what Optuna's own cached RDB storage writes, row for row; the seeded TPE sampler draws the same
values through it as through Optuna's storage, with trials in flight (constant liar); what other
drivers change is seen; a trial another driver finished meanwhile is refused and read back."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from orchestrator.optimize_storage import DriverStorage
from orchestrator.optimize_study import _record, _sqlite_wal, open_study, quiet_optuna, suggest
from shared.optimize.space import load_space
from shared.optimize.trial import TrialOutcome

SPACE = ('"grid.width" = {low = 0.001, high = 0.02, log = true}\n'
         '"grid.levels" = {low = 2, high = 10}\n'
         '"grid.min_confidence" = {low = 0.2, high = 0.8, step = 0.05}\n'
         '"grid.spacing_mode" = ["fixed", "atr"]\n')


def optuna_study(url: str, seed: int) -> optuna.Study:
    """The study as Optuna's own storage keeps it (create_study wraps the RDBStorage in its cache)."""
    quiet_optuna()
    rdb = optuna.storages.RDBStorage(url)
    _sqlite_wal(rdb)  # as the driver's: commits without their own fsync
    return optuna.create_study(storage=rdb, study_name="s", direction="maximize",
                               sampler=optuna.samplers.TPESampler(seed=seed))


def driver_study(url: str, seed: int) -> optuna.Study:
    study = open_study(url, "s", "fp", seed, n_dims=4)
    assert isinstance(study._storage, DriverStorage)
    return study


def score(params: dict[str, Any]) -> float:
    """A deterministic landscape over the space (what the backtest would be)."""
    return -abs(params["grid.width"] - 0.006) * 100 - abs(params["grid.levels"] - 6) \
        + params["grid.min_confidence"] + (0.5 if params["grid.spacing_mode"] == "atr" else 0.0)


def run(study: optuna.Study, n: int, in_flight: int, finish: Callable[[optuna.Study, optuna.Trial, float], None],
        ) -> list[dict[str, Any]]:
    """n trials, `in_flight` asked ahead as the driver does, finished oldest first."""
    dims = load_space(SPACE, "space")
    drawn: list[dict[str, Any]] = []
    flying: list[tuple[optuna.Trial, dict[str, Any]]] = []
    while len(drawn) < n:
        while len(flying) < in_flight and len(drawn) + len(flying) < n:
            trial = study.ask()
            params = suggest(trial, dims)
            if isinstance(study._storage, DriverStorage):
                study._storage.flush(trial._trial_id)
            flying.append((trial, params))
        trial, params = flying.pop(0)
        finish(study, trial, score(params))
        drawn.append(params)
    return drawn


def tell(study: optuna.Study, trial: optuna.Trial, value: float) -> None:
    study.tell(trial, value)


def record(study: optuna.Study, trial: optuna.Trial, value: float) -> None:
    """The driver's own result write (train figures, score, state in one transaction)."""
    _record(study, trial._cached_frozen_trial, TrialOutcome(score=value, figures={"net_pnl": value}, days=1.0,
                                                            bars=1440))


def test_tpe_draws_the_same_values_as_through_optunas_storage(tmp_path: Path) -> None:
    """The search is unchanged: same seed, same trials in flight, the very same 30 value sets
    (10 random start-up draws, then TPE with the constant liar over the running trials)."""
    theirs = run(optuna_study(f"sqlite:///{tmp_path / 'optuna.sqlite'}", 5), 30, 3, tell)
    ours = run(driver_study(f"sqlite:///{tmp_path / 'driver.sqlite'}", 5), 30, 3, record)
    assert ours == theirs
    assert len({tuple(p.values()) for p in ours}) == 30


def _rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every trial row the storage wrote, times left out (they differ by when the step ran)."""
    with sqlite3.connect(db) as con:
        return {
            "trials": con.execute("select trial_id, number, state, datetime_start is not null, "
                                  "datetime_complete is not null from trials order by trial_id").fetchall(),
            "params": con.execute("select trial_id, param_name, param_value, distribution_json from trial_params "
                                  "order by trial_id, param_id").fetchall(),
            "values": con.execute("select trial_id, objective, value, value_type from trial_values "
                                  "order by trial_id").fetchall(),
            "user_attrs": con.execute("select trial_id, key, value_json from trial_user_attributes "
                                      "order by trial_id, key").fetchall(),
            "system_attrs": con.execute("select trial_id, key, value_json from trial_system_attributes "
                                        "order by trial_id, key").fetchall(),
        }


def _steps(study: optuna.Study) -> None:
    """A created trial that completes, a queued one taken and failed, one refused mid-draw, one
    still running with its values written, and TPE's constant-liar attribute on later trials."""
    dims = load_space(SPACE, "space")
    study.enqueue_trial({"grid.width": 0.004, "grid.levels": 3, "grid.min_confidence": 0.5,
                         "grid.spacing_mode": "atr"}, user_attrs={"retry_of": 0})
    queued = study.ask()  # the queued one first
    suggest(queued, dims)
    created = study.ask()
    suggest(created, dims)
    if isinstance(study._storage, DriverStorage):
        study._storage.flush(created._trial_id)
    study._storage.set_trial_user_attr(created._trial_id, "train", {"figures": {"net_pnl": 1.5}, "bars": 1440})
    study.tell(created, 1.5)
    queued.set_user_attr("fail_reason", "backtest refused: no bars")
    study.tell(queued, state=TrialState.FAIL)
    for i in range(12):  # past TPE's 10 start-up trials: relative sampling writes its attribute
        t = study.ask()
        suggest(t, dims)
        study.tell(t, float(i))
    half = study.ask()
    half.suggest_float("grid.width", 0.001, 0.02, log=True)
    half.set_user_attr("fail_reason", "config refused: x")
    study.tell(half, state=TrialState.FAIL)
    running = study.ask()
    suggest(running, dims)
    if isinstance(study._storage, DriverStorage):
        study._storage.flush(running._trial_id)


def test_the_database_holds_what_optunas_storage_writes(tmp_path: Path) -> None:
    _steps(optuna_study(f"sqlite:///{tmp_path / 'optuna.sqlite'}", 3))
    _steps(driver_study(f"sqlite:///{tmp_path / 'driver.sqlite'}", 3))
    theirs, ours = _rows(tmp_path / "optuna.sqlite"), _rows(tmp_path / "driver.sqlite")
    assert any("tpe:relative_params" in row[1] for row in theirs["system_attrs"])
    for table in theirs:
        assert ours[table] == theirs[table], table
    # the running trial's values are in the database, for another driver or a retry after a kill
    assert [r[2] for r in ours["trials"]][-1] == "RUNNING"
    assert sum(1 for r in ours["params"] if r[0] == ours["trials"][-1][0]) == 4


def test_other_drivers_changes_are_read_and_a_trial_they_finished_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    ours, theirs = driver_study(url, 0), driver_study(url, 0)
    ours._storage.FRESH_S = 0  # type: ignore[attr-defined]
    theirs.enqueue_trial({"grid.width": 0.002})
    a, b = theirs.ask(), theirs.ask()  # the queued one and a created one
    a.suggest_float("grid.width", 0.001, 0.02)
    theirs._storage.flush(a._trial_id)  # type: ignore[attr-defined]
    mine = ours.ask()
    mine.suggest_float("grid.width", 0.001, 0.02)
    ours._storage.flush(mine._trial_id)  # type: ignore[attr-defined]
    seen = {t.number: t for t in ours.get_trials(deepcopy=False)}
    assert seen[a.number].state == TrialState.RUNNING and seen[a.number].params == {"grid.width": 0.002}
    assert seen[b.number].state == TrialState.RUNNING and seen[b.number].params == {}
    # their running trial gets a value and finishes, another is queued and taken by them
    b.suggest_float("grid.width", 0.001, 0.02)
    theirs._storage.flush(b._trial_id)  # type: ignore[attr-defined]
    assert ours.get_trials(deepcopy=False)[b.number].params == b.params
    theirs.tell(a, 3.0)
    theirs.enqueue_trial({"grid.width": 0.005})
    seen = {t.number: t for t in ours.get_trials(deepcopy=False)}
    queued = max(seen)
    assert seen[a.number].state == TrialState.COMPLETE and seen[a.number].value == 3.0
    assert seen[queued].state == TrialState.WAITING
    taken = theirs.ask()
    assert taken.number == queued
    assert ours.get_trials(deepcopy=False)[queued].state == TrialState.RUNNING
    # they fail our trial (as stale): our result is refused, and the trial is read back as failed
    theirs.tell(mine.number, state=TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        record(ours, mine, 1.0)
    assert ours.get_trials(deepcopy=False)[mine.number].state == TrialState.FAIL
    assert ours._storage.get_trial(mine._trial_id).state == TrialState.FAIL


def test_a_queued_trial_another_driver_took_is_not_taken_twice(tmp_path: Path) -> None:
    """Our view of the queue may be a read old: taking a trial another driver has taken since
    fails in the database, and the next queued one (or a new trial) is given instead."""
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    ours, theirs = driver_study(url, 0), driver_study(url, 0)
    ours._storage.FRESH_S = 0  # type: ignore[attr-defined]  # every read to the database, but the one below
    for w in (0.002, 0.003):
        theirs.enqueue_trial({"grid.width": w})
    assert [t.state for t in ours.get_trials(deepcopy=False)] == [TrialState.WAITING] * 2
    first = theirs.ask()
    ours._storage._read_at = (ours._study_id, float("inf"))  # type: ignore[attr-defined]  # the old read is served
    second = ours.ask()
    assert second.number != first.number and second.number == 1
    assert second.suggest_float("grid.width", 0.001, 0.02) == 0.003


def test_a_trial_is_made_or_taken_with_its_first_heartbeat(tmp_path: Path) -> None:
    """No trial of a live driver is ever RUNNING without a heartbeat row (the stale-trial check
    would never fail it if the driver died there): a created trial and a queued one taken get their
    first beat in the same transaction, so the driver's Heartbeats do not write it again at once;
    their later beats, and any other call, are written."""
    from orchestrator.optimize_study import Heartbeats

    db = tmp_path / "s.sqlite"
    study = driver_study(f"sqlite:///{db}", 0)
    study.enqueue_trial({"grid.width": 0.002})
    taken, created = study.ask(), study.ask()
    with sqlite3.connect(db) as con:
        beats = dict(con.execute("select trial_id, heartbeat from trial_heartbeats").fetchall())
    assert sorted(beats) == sorted([taken._trial_id, created._trial_id])
    with sqlite3.connect(db) as con:
        con.execute("update trial_heartbeats set heartbeat = '2000-01-01 00:00:00.000000'")
    heartbeats = Heartbeats(study)
    try:
        heartbeats.add(created._trial_id)  # beaten with the trial: not again
        with sqlite3.connect(db) as con:
            assert con.execute("select max(heartbeat) from trial_heartbeats").fetchone()[0] < "2001"
        study._storage.record_heartbeat(created._trial_id)  # type: ignore[attr-defined]
    finally:
        heartbeats.close()
    with sqlite3.connect(db) as con:
        beats = dict(con.execute("select trial_id, heartbeat from trial_heartbeats").fetchall())
    assert beats[created._trial_id] > "2001" and beats[taken._trial_id] < "2001"


def test_a_value_drawn_from_another_distribution_than_another_drivers_is_refused_whole(tmp_path: Path) -> None:
    """The first value of a key this driver writes is checked against the distribution another
    driver stored for it (as Optuna's storage does); the refused write leaves nothing behind."""
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    theirs = driver_study(url, 0)
    a = theirs.ask()
    a.suggest_float("grid.width", 0.001, 0.02)
    theirs._storage.flush(a._trial_id)  # type: ignore[attr-defined]
    ours = driver_study(url, 0)
    storage = ours._storage
    assert isinstance(storage, DriverStorage)
    mine = storage.create_new_trial(ours._study_id)  # not read their trials: the check is the database's
    storage.set_trial_user_attr(mine, "note", "kept with the values")
    storage.set_trial_param(mine, "grid.width", 3.0, optuna.distributions.IntDistribution(1, 5))
    with pytest.raises(ValueError, match="Cannot set different distribution kind"):
        storage.flush(mine)
    rows = _rows(tmp_path / "s.sqlite")
    assert [r[0] for r in rows["params"]] == [a._trial_id]
    assert rows["user_attrs"] == []
