"""The paper account's durability: one snapshot file plus an append-only journal, as one
`AccountStore`, with the market clock saved inside the snapshot.

The journal takes every drained engine event before any client sees it, so a killed venue can
lose nothing a client was told; the snapshot (written every few seconds and at stop, atomically,
mode 0600) folds the journal in and empties it. A full disk never raises into a request: the
journal bytes a write could not take are held (oldest first) and retried, and while they are
held `storage_error` says why and order actions answer 503 (guard.py asks `flush()`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import msgspec

from shared.market_clock import MarketClock
from shared.matching import MatchingEngine
from shared.matching.engine import Event, decode_journal, encode_journal_entry

log = logging.getLogger("workers.venue")
CLOCK_SAVE_INTERVAL_S = 10.0  # an account that did not change is rewritten for its clock this often


class _SavedClock(msgspec.Struct):
    """The one key of the saved account the venue reads itself (the engine ignores it)."""
    market_clock: MarketClock | None = None


class AccountStore:
    """Snapshot + journal of one paper account (`state_file` None: an account kept in memory)."""

    def __init__(self, state_file: str | None) -> None:
        self.state_file = state_file
        self._journal_fd: int | None = None
        # Journal bytes a write could not take (disk full), oldest first; retried before anything
        # new, emptied by the next snapshot (which holds their state). Bounded in practice: while
        # it is not empty every order action is refused, so only resting orders add events.
        self._unjournaled: deque[bytes] = deque()
        self.storage_error = ""  # why the journal or the snapshot cannot be written; "" when fine
        self._saved_revision = -1
        self._saved_next_bar = -1
        self._clock_saved_at = -math.inf

    def saved_clock(self) -> MarketClock | None:
        """The market clock saved with the account (None: a new account, or one saved before
        the clock was; its fills still bound the resumed clock)."""
        path = self.state_file
        if not path or not os.path.exists(path):
            return None
        try:
            with open(path, "rb") as fh:
                return msgspec.json.decode(fh.read(), type=_SavedClock).market_clock
        except (msgspec.DecodeError, OSError):
            return None  # load() refuses an unreadable file with the reason

    def load(self, *, initial_balance_usd: float, leverage: float, clock: Callable[[], int]) -> MatchingEngine:
        """The saved account with its journal replayed onto it, or a fresh one."""
        path = self.state_file
        journal: list[Event] = []
        try:
            if path and os.path.exists(_journal_path(path)):
                with open(_journal_path(path), "rb") as fh:
                    journal = decode_journal(fh.read())
            if path and os.path.exists(path):
                with open(path, "rb") as fh:
                    data = fh.read()
                engine = MatchingEngine.restore(data, clock=clock, journal=journal)
                self._saved_revision = engine.revision
                return engine
        except ValueError as exc:
            # refuse rather than silently start a fresh account over a trader's history
            raise ValueError(f"paper account file {path} (or its .journal) is unreadable ({exc}); move "
                             "them away to start a fresh account") from None
        engine = MatchingEngine.fresh(initial_balance_usd=initial_balance_usd, default_leverage=leverage,
                                      clock=clock, journal=journal)
        self._saved_revision = engine.revision
        return engine

    def open_journal(self, engine: MatchingEngine, clock: MarketClock, next_bar: int) -> None:
        """Fold the journal of the last run into a snapshot, then journal from empty (the save
        empties it). A snapshot that cannot be written (disk full) leaves the journal as it is,
        with this run's events after it: replay is idempotent, nothing is lost."""
        if not self.state_file:
            return
        self._journal_fd = os.open(_journal_path(self.state_file), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._saved_revision = -1
        self.save(engine, clock, next_bar)

    def journal(self, events: list[Event]) -> None:
        """Append drained events to the account journal; called before any client sees them, so
        a crash can lose nothing a client was told (a snapshot is only written every few
        seconds). One write() per drain; no fsync: this survives a killed process, not a lost
        machine, which is enough for a paper account."""
        if self._journal_fd is None:
            return
        if events:
            self._unjournaled.append(encode_journal_entry(events))
        if self._unjournaled:  # also with no new events: a disk with room again is noticed
            self.flush()

    def flush(self) -> bool:
        """Write what the journal still owes; True when nothing is left. A failed write (disk
        full) keeps the bytes for the next try and never raises: the events happened, and a
        client asking about them must get the truth, not a 500."""
        while self._unjournaled and self._journal_fd is not None:
            line = self._unjournaled[0]
            try:
                n = os.write(self._journal_fd, line)
            except OSError as exc:
                self._failed(f"account journal not written ({exc})")
                return False
            if n < len(line):  # a short write on a filling disk: the rest follows next time
                self._unjournaled[0] = line[n:]
                continue
            self._unjournaled.popleft()
        self._ok()
        return True

    def _failed(self, why: str) -> None:
        if not self.storage_error:
            log.error("paper venue: %s; order actions are refused until it can be written", why)
        self.storage_error = why

    def _ok(self) -> None:
        if self.storage_error:
            log.warning("paper venue: account storage writable again; order actions accepted")
        self.storage_error = ""

    def save(self, engine: MatchingEngine, clock: MarketClock, next_bar: int, *, final: bool = False) -> bool:
        """Write the account to `state_file` if it changed, or its market clock if that moved
        and was last written CLOCK_SAVE_INTERVAL_S ago (or this is the `final` save at stop),
        atomically, mode 0600; then empty the journal it now contains. True if written."""
        path = self.state_file
        if not path:
            return False
        clock_due = next_bar != self._saved_next_bar and (
            final or time.monotonic() - self._clock_saved_at >= CLOCK_SAVE_INTERVAL_S)
        if engine.revision == self._saved_revision and not clock_due and os.path.exists(path):
            return False
        revision = engine.revision
        try:
            write_private(Path(path), _with_clock(engine.snapshot(), clock))
        except OSError as exc:  # disk full: snapshot, clock and journal stay as they were, retried later
            self._failed(f"account snapshot not written ({exc})")
            return False
        self._saved_revision, self._saved_next_bar = revision, next_bar
        self._clock_saved_at = time.monotonic()
        if self._journal_fd is not None:
            # A crash between the write above and this truncate replays the journal onto the
            # new snapshot: harmless, replay is idempotent. What the journal still owed is in
            # the snapshot now.
            self._unjournaled.clear()
            os.ftruncate(self._journal_fd, 0)
            self._ok()
        return True

    def close(self) -> None:
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None


def _with_clock(snapshot: bytes, clock: MarketClock) -> bytes:
    """The engine's snapshot (a JSON object) with the market clock as one more key, so the
    account and its clock are written together, atomically, in one file."""
    if not snapshot.endswith(b"}"):
        raise ValueError("the engine snapshot is not a JSON object")
    return snapshot[:-1] + b',"market_clock":' + msgspec.json.encode(clock) + b"}"


def newest_event_us(engine: MatchingEngine) -> int:
    """The newest fill or order time the account holds (the journal may be ahead of the saved
    clock after a kill): the resumed clock starts after it."""
    newest = engine.fills[-1].timestamp if engine.fills else 0
    for o in engine.open_orders(None):
        newest = max(newest, o.updated_at, o.created_at)
    history = engine.order_history(None)
    if history:
        newest = max(newest, max(o.updated_at for o in history))
    return newest


def _journal_path(state_file: str) -> str:
    return state_file + ".journal"


def write_private(path: Path, data: bytes) -> None:
    """Atomic write of a file only its owner may read (it holds secrets or the account)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o600)  # in case a stale tmp pre-existed with a wider mode
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a half-written copy only takes the space a retry needs
        raise
