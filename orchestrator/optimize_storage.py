"""The optimizer driver's study storage: Optuna's cached RDB storage (what `create_study` wraps an
RDBStorage in), minus the SQL that cannot tell this driver anything new.

On a 2-core machine every CPU millisecond the driver spends is taken from the two workers'
backtests, and most of the driver's CPU a trial went to the storage: each write its own transaction
through the SQLAlchemy ORM (a trial made nine: the trial, a heartbeat, four values, the train
figures, the score, the state), and each read of the study's trials (two or three a trial: the
waiting queue, the TPE search space, the constant liar's view of the running trials) loading again
every trial not yet finished, with its values and attributes, including this driver's own trials
in flight and the whole waiting queue.

Here:
- This driver's own running trials live in memory: it is their only writer while it beats for them,
  so a read of the study's trials loads only what other drivers can have changed (new trials, their
  running ones, and waiting ones whose state moved, found by one light state query), and the trial
  just created or taken from the queue is served as written.
- Values and attributes written to an own running trial are kept and written in one transaction:
  at `flush` (the driver calls it once the trial's values are drawn, before the backtest is sent,
  so another driver's constant liar, a resumed study and a stale-trial retry see the whole set),
  or with the trial's final state (the train figures, the reason and the score go in the same
  transaction as the state, so a result is either all there or not at all).
- With heartbeats on, a trial this driver creates or takes from the queue gets its first heartbeat
  in the same transaction (so no trial of a live driver is ever RUNNING without one, which the
  stale-trial check would never fail); `first_beat_with_trial` tells the driver's Heartbeats so.
- A read of the study's trials less than `FRESH_S` after the last, with no write by this driver in
  between, is served from that one (as if it had come those milliseconds earlier: other drivers'
  writes are seen by the next read).

The database holds what Optuna's own storage would write, row for row (tests/orchestrator/
test_optimize_storage.py compares the two); a trial another driver finished meanwhile (failed as
stale) is refused with UpdateFinishedTrialError as before, and forgotten as ours.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import optuna
from optuna.distributions import BaseDistribution, check_distribution_compatibility, distribution_to_json
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import func, insert


@dataclass
class _Unwritten:
    """Writes to one of this driver's running trials not yet in the database."""

    params: list[tuple[str, float, BaseDistribution, BaseDistribution | None]] = field(default_factory=list)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.params or self.user_attrs or self.system_attrs)


class DriverStorage(optuna.storages._CachedStorage):
    """See the module docstring. Thread-safe as `_CachedStorage` is (its lock); the heartbeat
    thread only calls `record_heartbeat`, which goes to the database as before."""

    FRESH_S = 0.05

    def __init__(self, backend: optuna.storages.RDBStorage) -> None:
        super().__init__(backend)
        self._read_at: tuple[int, float] | None = None  # (study id, monotonic time) of the last read
        self._own: dict[int, _Unwritten] = {}  # this driver's running trials (by trial id)
        # own trials not yet counted in their study's `last_finished_trial_id` (running, or finished
        # since the last read): a read leaves them out and then counts the finished ones, as
        # Optuna's read would have had it loaded them
        self._unread: set[int] = set()

    # -- reads ---------------------------------------------------------------------------------

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        if self._read_at is not None and self._read_at[0] == study_id and \
                time.monotonic() - self._read_at[1] <= self.FRESH_S:
            return
        with self._lock:
            study = self._studies.setdefault(study_id, optuna.storages._cached_storage._StudyInfo())
            mine = {tid for tid in self._unread if self._trial_id_to_study_id_and_number[tid][0] == study_id}
            others = study.unfinished_trial_ids - mine
            waiting = {tid for tid in others
                       if study.trials[self._trial_id_to_study_id_and_number[tid][1]].state == TrialState.WAITING}
            trials = self._load_trials(study_id, others - waiting, waiting, mine, study.last_finished_trial_id)
            self._add_trials_to_cache(study_id, trials)
            for trial in trials:  # as _CachedStorage's read
                if not trial.state.is_finished():
                    study.unfinished_trial_ids.add(trial._trial_id)
                    continue
                study.last_finished_trial_id = max(study.last_finished_trial_id, trial._trial_id)
                study.unfinished_trial_ids.discard(trial._trial_id)
            for tid in mine:
                if tid not in self._own:  # finished by this driver: counted as the read would have
                    study.last_finished_trial_id = max(study.last_finished_trial_id, tid)
                    self._unread.discard(tid)
        self._read_at = (study_id, time.monotonic())

    def _load_trials(self, study_id: int, running: set[int], waiting: set[int], mine: set[int],
                     last_finished: int) -> list[FrozenTrial]:
        """Other drivers' trials that can have changed: those above `last_finished` not yet known,
        the `running` ones, and the `waiting` ones whose state moved."""
        from sqlalchemy import and_, or_
        from sqlalchemy.orm import selectinload

        backend = self._backend
        trial_model = models.TrialModel
        with _create_scoped_session(backend.scoped_session) as session:
            reread = set(running)
            if waiting:
                reread |= {tid for tid, state in session.query(trial_model.trial_id, trial_model.state)
                           .filter(trial_model.trial_id.in_(waiting)) if state != TrialState.WAITING}
            known = mine | waiting | running
            new = trial_model.trial_id > last_finished
            if known:
                new = and_(new, trial_model.trial_id.not_in(known))
            rows = (session.query(trial_model)
                    .options(selectinload(trial_model.params), selectinload(trial_model.values),
                             selectinload(trial_model.user_attributes),
                             selectinload(trial_model.system_attributes),
                             selectinload(trial_model.intermediate_values))
                    .filter(trial_model.study_id == study_id,
                            or_(trial_model.trial_id.in_(reread), new) if reread else new)
                    .order_by(trial_model.trial_id).all())
            return [backend._build_frozen_trial_from_trial_model(row) for row in rows]

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            if trial_id in self._own:
                # the caller (optuna.Trial) edits its copy as it suggests
                return copy.deepcopy(self._cached(trial_id))
        return super().get_trial(trial_id)

    # -- trials this driver runs -----------------------------------------------------------------

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        if template_trial is None and self._backend.heartbeat_interval:
            frozen = self._create_beating(study_id)
            with self._lock:
                self._studies.setdefault(study_id, optuna.storages._cached_storage._StudyInfo())
                self._add_trials_to_cache(study_id, [frozen])
            trial_id = frozen._trial_id
        else:
            trial_id = super().create_new_trial(study_id, template_trial)
        self._wrote()
        if template_trial is None or template_trial.state == TrialState.RUNNING:
            with self._lock:
                self._own[trial_id] = _Unwritten()
                self._unread.add(trial_id)
        return trial_id

    def _create_beating(self, study_id: int) -> FrozenTrial:
        """RDBStorage._create_new_trial for a new RUNNING trial, its first heartbeat in the same
        transaction."""
        backend = self._backend
        for attempt in range(1, 6):  # as RDBStorage: retried on a busy database
            try:
                with _create_scoped_session(backend.scoped_session) as session:
                    models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
                    row = backend._get_prepared_new_trial(study_id, None, session)
                    session.add(models.TrialHeartbeatModel(trial_id=row.trial_id))
                    frozen = FrozenTrial(number=cast(int, row.number), state=TrialState.RUNNING, value=None,
                                         datetime_start=row.datetime_start, datetime_complete=None, params={},
                                         distributions={}, user_attrs={}, system_attrs={}, intermediate_values={},
                                         trial_id=cast(int, row.trial_id))
                return frozen
            except optuna.exceptions.StorageInternalError:
                if attempt == 5:
                    raise
                time.sleep(random.random() * 2.0)
        raise AssertionError("unreachable")

    @property
    def first_beat_with_trial(self) -> bool:
        """Whether a trial this driver creates or takes already has its first heartbeat."""
        return bool(self._backend.heartbeat_interval)

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        with self._lock:
            unwritten = self._own.get(trial_id)
            if unwritten is not None:
                study_id, _ = self._trial_id_to_study_id_and_number[trial_id]
                known = self._studies[study_id].param_distribution.get(param_name)
                if known is not None:  # refused now, as the database would
                    check_distribution_compatibility(known, distribution)
                else:
                    self._studies[study_id].param_distribution[param_name] = distribution
                unwritten.params.append((param_name, param_value_internal, distribution, known))
                trial = self._edit(trial_id)
                trial.params = {**trial.params, param_name: distribution.to_external_repr(param_value_internal)}
                trial.distributions = {**trial.distributions, param_name: distribution}
                return
        super().set_trial_param(trial_id, param_name, param_value_internal, distribution)
        self._wrote()

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        with self._lock:
            unwritten = self._own.get(trial_id)
            if unwritten is not None:
                unwritten.user_attrs[key] = value
                trial = self._edit(trial_id)
                trial.user_attrs = {**trial.user_attrs, key: value}
                return
        super().set_trial_user_attr(trial_id, key, value)
        self._wrote()

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        with self._lock:
            unwritten = self._own.get(trial_id)
            if unwritten is not None:
                unwritten.system_attrs[key] = value
                trial = self._edit(trial_id)
                trial.system_attrs = {**trial.system_attrs, key: value}
                return
        super().set_trial_system_attr(trial_id, key, value)
        self._wrote()

    def flush(self, trial_id: int) -> None:
        """Write what this driver kept for its trial (values, attributes) in one transaction."""
        with self._lock:
            unwritten = self._own.get(trial_id)
            if unwritten:
                self._write(trial_id, unwritten, None, None)
                self._own[trial_id] = _Unwritten()

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        try:
            with self._lock:
                unwritten = self._own.get(trial_id)
                if unwritten is not None:
                    self._write(trial_id, unwritten, state, values)
                    if state.is_finished():
                        del self._own[trial_id]
                    else:
                        self._own[trial_id] = _Unwritten()
                    return True
                if state == TrialState.RUNNING:
                    return self._take_waiting(trial_id)
            return super().set_trial_state_values(trial_id, state, values)
        finally:
            self._wrote()

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        self.flush(trial_id)
        super().set_trial_intermediate_value(trial_id, step, intermediate_value)
        self._wrote()

    def _take_waiting(self, trial_id: int) -> bool:
        """A queued trial made this driver's (Study._pop_waiting_trial_id): as RDBStorage does it,
        with the start time kept, so the trial is served from memory from now on."""
        backend = self._backend
        now = datetime.now()
        with _create_scoped_session(backend.scoped_session) as session:
            row = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
            backend.check_trial_is_updatable(trial_id, cast(TrialState, row.state))
            if row.state != TrialState.WAITING:
                return False
            row.state = TrialState.RUNNING
            row.datetime_start = now
            if backend.heartbeat_interval:  # as record_heartbeat: a row made, or moved to now
                beat = models.TrialHeartbeatModel.where_trial_id(trial_id, session, True)
                if beat is None:
                    session.add(models.TrialHeartbeatModel(trial_id=trial_id))
                else:
                    beat.heartbeat = session.execute(func.now()).scalar()
        study_id, number = self._trial_id_to_study_id_and_number.get(trial_id, (None, None))
        if study_id is None or number not in self._studies[study_id].trials:
            return True  # not read by this driver: served by the database, as before
        trial = self._edit(trial_id)
        trial.state, trial.datetime_start = TrialState.RUNNING, now
        self._studies[study_id].unfinished_trial_ids.discard(trial_id)
        self._own[trial_id] = _Unwritten()
        self._unread.add(trial_id)
        return True

    def _write(self, trial_id: int, unwritten: _Unwritten, state: TrialState | None,
               values: Sequence[float] | None) -> None:
        """One transaction: the kept writes, then (if given) the state and values. A trial another
        driver finished meanwhile raises UpdateFinishedTrialError and is no longer this driver's."""
        backend = self._backend
        now = datetime.now()
        try:
            with _create_scoped_session(backend.scoped_session) as session:
                row = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=state is not None)
                backend.check_trial_is_updatable(trial_id, cast(TrialState, row.state))
                rows = []
                for name, internal, distribution, known in unwritten.params:
                    if known is None:  # this driver's first value of it: checked against the study's
                        backend._set_trial_param_without_commit(session, trial_id, name, internal, distribution)
                    else:
                        rows.append({"trial_id": trial_id, "param_name": name, "param_value": internal,
                                     "distribution_json": distribution_to_json(distribution)})
                if rows:  # one statement for the lot
                    session.execute(insert(models.TrialParamModel), rows)
                for key, value in unwritten.user_attrs.items():
                    backend._set_trial_attr_without_commit(session, models.TrialUserAttributeModel, trial_id, key,
                                                           value)
                for key, value in unwritten.system_attrs.items():
                    backend._set_trial_attr_without_commit(session, models.TrialSystemAttributeModel, trial_id, key,
                                                           value)
                if state is not None:
                    for objective, value in enumerate(values or ()):
                        stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                        session.add(models.TrialValueModel(trial_id=trial_id, objective=objective, value=stored,
                                                           value_type=kind))
                    row.state = state
                    if state == TrialState.RUNNING:
                        row.datetime_start = now
                    if state.is_finished():
                        row.datetime_complete = now
        except optuna.exceptions.UpdateFinishedTrialError:
            self._forget(trial_id)
            raise
        if state is not None:
            trial = self._edit(trial_id)
            trial.state = state
            if values is not None:
                trial.values = values
            if state == TrialState.RUNNING:
                trial.datetime_start = now
            if state.is_finished():
                trial.datetime_complete = now

    def _forget(self, trial_id: int) -> None:
        """Another driver finished this trial: no longer ours; the next read loads it."""
        self._own.pop(trial_id, None)
        self._unread.discard(trial_id)
        study_id, _ = self._trial_id_to_study_id_and_number[trial_id]
        self._studies[study_id].unfinished_trial_ids.add(trial_id)

    def _cached(self, trial_id: int) -> FrozenTrial:
        study_id, number = self._trial_id_to_study_id_and_number[trial_id]
        return self._studies[study_id].trials[number]

    def _edit(self, trial_id: int) -> FrozenTrial:
        """A new copy of the cached trial in its place (callers may hold the old one, as they may
        hold any trial a read replaced), to be edited."""
        study_id, number = self._trial_id_to_study_id_and_number[trial_id]
        trial = copy.copy(self._studies[study_id].trials[number])
        self._studies[study_id].trials[number] = trial
        return trial

    def _wrote(self) -> None:
        self._read_at = None
