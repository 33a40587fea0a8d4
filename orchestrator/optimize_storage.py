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
- This driver's statements (the light read, taking a queued trial, creating one, writing a trial's
  values and result) go through SQLAlchemy Core with statements built once, not the ORM: a
  transaction through an ORM session cost ~0.6 ms of CPU here, in Core ~0.05 ms. Taking a queued
  trial and finishing one are each one UPDATE that only a trial in the right state passes, so the
  check and the write are one statement.
- A read of the study's trials less than `FRESH_S` after the last, with no write by this driver in
  between, is served from that one (as if it had come those milliseconds earlier: other drivers'
  writes are seen by the next read).

The database holds what Optuna's own storage would write, row for row (tests/orchestrator/
test_optimize_storage.py compares the two); a trial another driver finished meanwhile (failed as
stale) is refused with UpdateFinishedTrialError as before, and forgotten as ours.
"""

from __future__ import annotations

import copy
import json
import random
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import optuna
from optuna.distributions import (
    BaseDistribution,
    check_distribution_compatibility,
    distribution_to_json,
    json_to_distribution,
)
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import Connection, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

# The driver's own statements, in SQLAlchemy Core and built once: through the ORM (a session, its
# unit of work, a query object per statement) a transaction cost ~0.6 ms of CPU here, in Core with
# a compiled statement from the cache ~0.05 ms; a trial makes three or four of them.
_TRIALS = models.TrialModel.__table__
_BEATS = models.TrialHeartbeatModel.__table__
_PARAMS = models.TrialParamModel.__table__
_VALUES = models.TrialValueModel.__table__
_UPDATABLE = (TrialState.RUNNING, TrialState.WAITING)
_STATE = select(_TRIALS.c.state).where(_TRIALS.c.trial_id == bindparam("tid"))
# the states of the queued trials and any trial not yet known (another driver's): one light query a read
_MOVED_OR_NEW = (select(_TRIALS.c.trial_id, _TRIALS.c.state)
                 .where(_TRIALS.c.study_id == bindparam("sid"),
                        or_(_TRIALS.c.trial_id.in_(bindparam("waiting", expanding=True)),
                            and_(_TRIALS.c.trial_id > bindparam("last_finished"),
                                 _TRIALS.c.trial_id.not_in(bindparam("known", expanding=True))))))
_TAKE = (update(_TRIALS).where(_TRIALS.c.trial_id == bindparam("tid"), _TRIALS.c.state == TrialState.WAITING)
         .values(state=TrialState.RUNNING, datetime_start=bindparam("now")))
_BEAT_AGAIN = update(_BEATS).where(_BEATS.c.trial_id == bindparam("tid")).values(heartbeat=func.now())
_FIRST_BEAT = insert(_BEATS).values(trial_id=bindparam("tid"))
_INSERT_PARAMS = insert(_PARAMS)
_INSERT_VALUES = insert(_VALUES)
_NEW_TRIAL = insert(_TRIALS).values(number=None, study_id=bindparam("sid"), state=TrialState.RUNNING,
                                    datetime_start=bindparam("now"))
_PAST_TRIALS = select(func.count(_TRIALS.c.trial_id)).where(_TRIALS.c.study_id == bindparam("sid"),
                                                            _TRIALS.c.trial_id < bindparam("tid"))
_NUMBER = update(_TRIALS).where(_TRIALS.c.trial_id == bindparam("tid")).values(number=bindparam("past"))
_STUDY_FOR_UPDATE = (select(models.StudyModel.__table__.c.study_id)
                     .where(models.StudyModel.__table__.c.study_id == bindparam("sid")).with_for_update())
_FINISH = (update(_TRIALS).where(_TRIALS.c.trial_id == bindparam("tid"), _TRIALS.c.state.in_(_UPDATABLE))
           .values(state=bindparam("new_state"), datetime_complete=bindparam("now")))
_KNOWN_DISTRIBUTION = (select(_PARAMS.c.distribution_json).join(_TRIALS, _TRIALS.c.trial_id == _PARAMS.c.trial_id)
                       .where(_TRIALS.c.study_id == bindparam("sid"), _PARAMS.c.param_name == bindparam("name"))
                       .limit(1))


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
        self._upserts: dict[tuple[str, str], Any] = {}  # (dialect, table): its upsert, or False

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
        """Other drivers' trials that can have changed: the `running` ones, the `waiting` ones whose
        state moved and those above `last_finished` not yet known. One light query says which
        (usually none); only they are loaded whole."""
        from sqlalchemy.orm import selectinload

        backend = self._backend
        known = mine | waiting | running
        with self._transaction() as conn:
            states = conn.execute(_MOVED_OR_NEW, {"sid": study_id, "waiting": list(waiting),
                                                  "last_finished": last_finished, "known": list(known)}).all()
        reread = running | {tid for tid, state in states if tid in waiting and state != TrialState.WAITING}
        any_new = any(tid not in waiting for tid, _ in states)
        if not reread and not any_new:
            return []
        trial_model = models.TrialModel
        with _create_scoped_session(backend.scoped_session) as session:
            new = and_(trial_model.trial_id > last_finished, trial_model.trial_id.not_in(known))
            which = (or_(trial_model.trial_id.in_(reread), new) if any_new else trial_model.trial_id.in_(reread)) \
                if reread else new
            rows = (session.query(trial_model)
                    .options(selectinload(trial_model.params), selectinload(trial_model.values),
                             selectinload(trial_model.user_attributes),
                             selectinload(trial_model.system_attributes),
                             selectinload(trial_model.intermediate_values))
                    .filter(trial_model.study_id == study_id, which)
                    .order_by(trial_model.trial_id).all())
            return [backend._build_frozen_trial_from_trial_model(row) for row in rows]

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A Core transaction on the storage's engine; database errors as Optuna's storage reports them."""
        try:
            with self._backend.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise optuna.exceptions.StorageInternalError(
                f"the study's database refused a write or read: {type(exc).__name__}") from exc

    def _check_updatable(self, conn: Connection, trial_id: int) -> TrialState:
        """The trial's state; KeyError if there is no such trial, UpdateFinishedTrialError if it is finished."""
        state = conn.execute(_STATE, {"tid": trial_id}).scalar_one_or_none()
        if state is None:
            raise KeyError(models.NOT_FOUND_MSG)
        self._backend.check_trial_is_updatable(trial_id, state)
        return cast(TrialState, state)

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
        """RDBStorage._create_new_trial for a new RUNNING trial (its number: the study's trials
        before it), its first heartbeat in the same transaction."""
        for attempt in range(1, 6):  # as RDBStorage: retried on a busy database
            try:
                now = datetime.now()
                with self._transaction() as conn:
                    if conn.execute(_STUDY_FOR_UPDATE, {"sid": study_id}).first() is None:
                        raise KeyError(models.NOT_FOUND_MSG)
                    key = conn.execute(_NEW_TRIAL, {"sid": study_id, "now": now}).inserted_primary_key
                    assert key is not None
                    trial_id = int(key[0])
                    number = int(conn.execute(_PAST_TRIALS, {"sid": study_id, "tid": trial_id}).scalar_one())
                    conn.execute(_NUMBER, {"tid": trial_id, "past": number})
                    conn.execute(_FIRST_BEAT, {"tid": trial_id})
                return FrozenTrial(number=number, state=TrialState.RUNNING, value=None, datetime_start=now,
                                   datetime_complete=None, params={}, distributions={}, user_attrs={},
                                   system_attrs={}, intermediate_values={}, trial_id=trial_id)
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
        with the start time kept, so the trial is served from memory from now on. One UPDATE that
        only a WAITING trial passes: a trial another driver took meanwhile is not taken twice."""
        backend = self._backend
        now = datetime.now()
        with self._transaction() as conn:
            if not conn.execute(_TAKE, {"tid": trial_id, "now": now}).rowcount:
                self._check_updatable(conn, trial_id)  # finished: UpdateFinishedTrialError, as before
                return False
            if backend.heartbeat_interval:  # as record_heartbeat: a row made, or moved to now
                if not conn.execute(_BEAT_AGAIN, {"tid": trial_id}).rowcount:
                    conn.execute(_FIRST_BEAT, {"tid": trial_id})
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
        """One transaction: (if given) the state and values, and the kept writes. A trial another
        driver finished meanwhile raises UpdateFinishedTrialError and is no longer this driver's."""
        now = datetime.now()
        study_id, _ = self._trial_id_to_study_id_and_number[trial_id]
        try:
            with self._transaction() as conn:
                if state is None:
                    self._check_updatable(conn, trial_id)
                elif state.is_finished():  # the UPDATE only a RUNNING or WAITING trial passes is the check
                    if not conn.execute(_FINISH, {"tid": trial_id, "new_state": state, "now": now}).rowcount:
                        self._check_updatable(conn, trial_id)
                        raise KeyError(models.NOT_FOUND_MSG)
                else:
                    self._check_updatable(conn, trial_id)
                    moved: dict[str, Any] = {"state": state}
                    if state == TrialState.RUNNING:
                        moved["datetime_start"] = now
                    conn.execute(update(_TRIALS).where(_TRIALS.c.trial_id == trial_id).values(**moved))
                rows = []
                for name, internal, distribution, known in unwritten.params:
                    if known is None:  # this driver's first value of it: checked against the study's
                        stored = conn.execute(_KNOWN_DISTRIBUTION, {"sid": study_id, "name": name}).first()
                        if stored is not None:
                            check_distribution_compatibility(json_to_distribution(stored[0]), distribution)
                    rows.append({"trial_id": trial_id, "param_name": name, "param_value": internal,
                                 "distribution_json": distribution_to_json(distribution)})
                if rows:  # one statement for the lot
                    conn.execute(_INSERT_PARAMS, rows)
                for key, value in unwritten.user_attrs.items():
                    self._set_attr(conn, models.TrialUserAttributeModel.__table__, trial_id, key, value)
                for key, value in unwritten.system_attrs.items():
                    self._set_attr(conn, models.TrialSystemAttributeModel.__table__, trial_id, key, value)
                if state is not None and values:
                    stored_values = []
                    for objective, value in enumerate(values):
                        number, kind = models.TrialValueModel.value_to_stored_repr(value)
                        stored_values.append({"trial_id": trial_id, "objective": objective, "value": number,
                                              "value_type": kind})
                    conn.execute(_INSERT_VALUES, stored_values)
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

    def _set_attr(self, conn: Connection, table: Any, trial_id: int, key: str, value: Any) -> None:
        """An attribute written or replaced in one statement where the database has an upsert (as
        RDBStorage: SQLite >= 3.24, PostgreSQL, MySQL), else an UPDATE and, if no row, an INSERT."""
        row = {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
        statement = self._upserts.get((conn.dialect.name, table.name))
        if statement is None:
            statement = _upsert(conn.dialect.name, table)
            self._upserts[(conn.dialect.name, table.name)] = statement
        if statement is not False:
            conn.execute(statement, row)
        elif not conn.execute(update(table).where(table.c.trial_id == trial_id, table.c.key == key)
                              .values(value_json=row["value_json"])).rowcount:
            conn.execute(insert(table), row)

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


def _upsert(dialect: str, table: Any) -> Any:
    """The attribute upsert statement RDBStorage uses on this database, or False if it has none."""
    if dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0):
        lite = sqlite.insert(table)
        return lite.on_conflict_do_update(index_elements=[table.c.trial_id, table.c.key],
                                          set_={"value_json": lite.excluded.value_json})
    if dialect == "postgresql":
        pg = postgresql.insert(table)
        return pg.on_conflict_do_update(index_elements=[table.c.trial_id, table.c.key],
                                        set_={"value_json": pg.excluded.value_json})
    if dialect == "mysql":
        my = mysql.insert(table)
        return my.on_duplicate_key_update(value_json=my.inserted.value_json)
    return False
