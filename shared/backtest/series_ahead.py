"""The signal series on the machine's other core: a helper process runs `iter_series` for every
symbol of a backtest and hands each chunk over one chunk ahead of the loop, so the loop (the
bot, the venue, the account) and the signal engine's whole-series work run side by side.

The same function over the same inputs: the chunks are the ones `iter_series` yields in the
loop's own process, bit for bit (tests/shared/backtest/test_series_ahead.py holds whole results
equal), only computed elsewhere. Every chunk is the helper's, the first ones too: it is asked for
each symbol's first chunk as soon as it has the inputs, and computes them while the loop sets
up its run, so the loop never computes a chunk itself (computing each symbol's first
chunk in the loop, as before, cost the loop ~7% of its CPU at ten symbols, and the helper
computed them again to reach the state the second chunk starts from).

Bounded: each symbol has at most one chunk asked for and not yet taken (the loop asks for chunk
c + 1 when it takes chunk c), so the pipe and the stash of chunks that arrived for other symbols
hold at most one chunk per symbol. A Ctrl-C is not the helper's: it runs in its own process group
(the terminal's SIGINT reaches the loop's process alone, which decides what an interrupt means and
then closes the helper) and ignores SIGINT besides; it exits when the pipe closes.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from ..marketdata import Candles
from ..signals.engine import SignalConfig
from ..signals.series import SignalSeries, iter_series

JOIN_TIMEOUT_S = 5.0
# The helper's command (-c, not -m: the package imports this module before -m could run it). It
# imports this module without its package's __init__, which imports the whole loop (the matching
# engine, the bot, the account rules...) the helper never uses: ~0.09 s of CPU off its start-up,
# which the run waits for (it needs every symbol's first chunk). This module imports no sibling.
_PACKAGE, _ = __name__.rsplit(".", 1)
_HELPER = (f"import sys, types; package = types.ModuleType({_PACKAGE!r}); package.__path__ = [sys.argv[2]]; "
           f"sys.modules[{_PACKAGE!r}] = package; from {__name__} import _serve; _serve(int(sys.argv[1]))")


class SeriesAheadError(RuntimeError):
    """The helper process failed or died. The message is one line for the user (the helper's
    exception or how it ended); `detail` is the helper's traceback when it sent one."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


def _serve(fd: int) -> None:
    """The helper (`_HELPER`, given the pipe's FD): read the inputs, then answer each
    request (a symbol) with that symbol's next chunk, None at its end.

    The answers go out from a thread of their own: a chunk (~1 MB) fills the socket's buffer, and
    a send blocks until the loop reads it, which it does only when it needs that symbol's next
    chunk. Sent from the computing thread, every other symbol's chunk waited behind that send and
    was computed only once the loop had asked for it, while the loop waited (at ten symbols ~1.3 s
    of a run, ~0.03 s for each symbol at each chunk boundary). Still bounded: the answers queued
    are at most one per symbol (one request per symbol is outstanding)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    answers: queue.SimpleQueue[tuple[str | None, Any] | None] = queue.SimpleQueue()  # None: no more

    def send_answers() -> None:
        try:
            while (answer := answers.get()) is not None:
                conn.send(answer)
        except BaseException:  # noqa: BLE001  # the pipe is gone (the loop closed it) or a chunk would not go
            with contextlib.suppress(OSError, ValueError):
                conn.send((None, traceback.format_exc()))
            with contextlib.suppress(OSError):  # ends the computing thread's recv: the helper exits
                pipe = socket.socket(fileno=fd)
                try:
                    pipe.shutdown(socket.SHUT_RDWR)
                finally:
                    pipe.detach()

    sender = threading.Thread(target=send_answers, name="answers", daemon=True)
    sender.start()
    chunks: dict[str, Iterator[SignalSeries]] = {}
    try:
        config, seed, chunk_bars, first_bars, inputs = conn.recv()
        while True:
            try:
                sym = conn.recv()
            except (EOFError, OSError):
                return
            it = chunks.get(sym)
            if it is None:
                candles, ticks = inputs[sym]
                it = chunks[sym] = _chunks(iter_series(config, sym, candles, ticks=ticks, seed=seed,
                                                       chunk_bars=first_bars), chunk_bars // first_bars)
            answers.put((sym, next(it, None)))
    except BaseException:  # noqa: BLE001  # whatever failed goes back to the loop, which raises it
        answers.put((None, traceback.format_exc()))
        answers.put(None)
        sender.join()  # (it ends once the loop has read the answers before it, or closed the pipe)
    finally:
        conn.close()  # (only in a failure does the sender outlive the recv: the process ends with it)


def _chunks(pieces: Iterator[SignalSeries], per: int) -> Iterator[SignalSeries]:
    """The first piece alone, then `per` pieces at a time, joined: a series in chunks is the same
    series whatever their length (tests/shared/signals/test_series.py), so the first chunk can be
    short (the loop waits for every symbol's first) and the later ones long (fewer round trips)."""
    first = next(pieces, None)
    if first is None:
        return
    yield first
    while group := list(itertools.islice(pieces, per)):
        yield group[0] if len(group) == 1 else SignalSeries(*(np.concatenate(f) for f in zip(*group, strict=True)))


class SeriesAhead:
    """One helper process for a backtest's symbols; `chunks(symbol)` is that symbol's
    `iter_series`. Close it (or use it as a context manager) when the run ends, early or not."""

    def __init__(self, config: SignalConfig, seed: int, chunk_bars: int,
                 inputs: Mapping[str, tuple[Candles, np.ndarray]], first_bars: int | None = None) -> None:
        """Each symbol's chunks: `first_bars` bars (default and when it does not divide
        `chunk_bars`: `chunk_bars`), then `chunk_bars` bars each."""
        if first_bars is None or not 0 < first_bars <= chunk_bars or chunk_bars % first_bars:
            first_bars = chunk_bars
        self._inputs = dict(inputs)
        # A fresh interpreter, not a fork (the loop's process may hold threads: a progress bar, a
        # test runner's) nor multiprocessing's spawn (which re-runs the caller's main module).
        mine, theirs = socket.socketpair()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # the directory holding `shared`
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        # Its own process group: a Ctrl-C at the terminal goes to the loop's process alone (which
        # decides what it means); the helper's start-up, before it can ignore SIGINT, would
        # otherwise die of it with a KeyboardInterrupt traceback on the user's terminal.
        try:
            self._proc = subprocess.Popen([sys.executable, "-c", _HELPER, str(theirs.fileno()),
                                           str(Path(__file__).resolve().parent)],
                                          pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL,
                                          process_group=0)
        except OSError:  # no helper (the caller computes the series itself): no descriptors left behind
            mine.close()
            raise
        finally:
            theirs.close()
        self._conn = Connection(mine.detach())
        self._stash: dict[str, SignalSeries | None] = {}
        # The inputs (tens of MB for a year) go over while the helper starts and the loop sets up
        # its run: a thread sends them and the first requests, and is joined before the pipe is
        # used again.
        self._starting: threading.Thread | None = threading.Thread(
            target=self._start, args=((config, seed, chunk_bars, first_bars, self._inputs),),
            name="backtest-signals-start",
            daemon=True)
        self._start_error: SeriesAheadError | None = None
        self._closing = False
        self._starting.start()

    def _start(self, inputs: object) -> None:
        try:
            self._send(inputs)
            for sym in self._inputs:  # each symbol's first chunk, computed while the loop starts
                self._send(sym)
        except SeriesAheadError as exc:
            self._start_error = exc

    def _started(self) -> None:
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        if self._start_error is not None:
            raise self._start_error

    def _send(self, message: object) -> None:
        try:
            self._conn.send(message)
        except (OSError, ValueError):  # ValueError: a closed connection
            if self._closing:  # close() shut the pipe down under this send: nothing to report
                raise SeriesAheadError("closed") from None
            raise SeriesAheadError(self._exited()) from None

    def chunks(self, symbol: str) -> Iterator[SignalSeries]:
        while True:
            chunk = self._take(symbol)
            if chunk is None:
                return
            self._send(symbol)  # the next one, computed while the loop reads this one
            yield chunk

    def _take(self, symbol: str) -> SignalSeries | None:
        self._started()
        if symbol in self._stash:
            return self._stash.pop(symbol)
        while True:
            try:
                sym, payload = self._conn.recv()
            except (EOFError, OSError):
                raise SeriesAheadError(self._exited()) from None
            if sym is None:
                lines = str(payload).strip().splitlines()
                raise SeriesAheadError(f"the signal series helper failed: {lines[-1] if lines else 'no reason given'}",
                                       detail=str(payload))
            if sym == symbol:
                return payload  # type: ignore[no-any-return]  # a chunk or None, as _serve sends
            self._stash[sym] = payload

    def _exited(self) -> str:
        """How the helper ended, for the user (its pipe closed: it is ending or has ended)."""
        try:
            code = self._proc.wait(JOIN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return "the signal series helper stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the signal series helper was killed by {name}"
        return f"the signal series helper exited (code {code})"

    def close(self) -> None:
        # Shutting the pipe down ends the helper whether it waits for a request or is sending a
        # chunk nobody will read (an interrupted run), and ends a send of the start-up thread that
        # is still under way (EPIPE, even one blocked on a helper that does not read). Only then
        # is the descriptor closed: closed under the thread's send, its number could be reused by
        # another file and the rest of the send written to it.
        self._closing = True
        if not self._conn.closed:
            with contextlib.suppress(OSError):  # the helper's end may be gone already
                pipe = socket.socket(fileno=self._conn.fileno())
                try:
                    pipe.shutdown(socket.SHUT_RDWR)
                finally:
                    pipe.detach()  # the Connection owns the descriptor
        if self._starting is not None:
            self._starting.join(JOIN_TIMEOUT_S)
        if self._starting is None or not self._starting.is_alive():
            self._conn.close()  # (a thread still inside a send keeps it: leaked, never reused)
        try:
            self._proc.wait(JOIN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> SeriesAhead:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
