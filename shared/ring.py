"""Shared-memory OHLCV bar rings with a seqlock.

One segment holds one slot per symbol. Each slot is a *mirrored* ring: bar i is written at
index i % C and i % C + C, so the newest W <= C bars are always one contiguous slice and a reader
copies them with one memcpy per column (perf-floors §3: 0.7 us for 1000 bars).

Exactly one writer per slot (the symbol's worker). Readers (the compute pool) never block the
writer: the writer makes the slot's sequence odd, writes, makes it even; a reader copies and
retries if the sequence was odd or changed. This relies on x86-64's total store order (stores
become visible in program order, loads are not reordered with loads), which holds on the
machines this runs on; a weakly ordered CPU would need explicit fences.

The segment is a plain file under /dev/shm opened with mmap, not multiprocessing.SharedMemory:
Python 3.11's resource tracker would unlink a segment when an attaching process that it did not
start exits (perf-floors §3). The supervisor alone creates and unlinks segments.
"""

from __future__ import annotations

import mmap
import os
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

SHM_DIR = Path("/dev/shm")
MAGIC = 0x4447_4F52_494E_4701  # "DGORING" + layout version 1
COLUMNS = ("ts", "open", "high", "low", "close", "volume")
N_COLS = len(COLUMNS)
HEADER_WORDS = 8  # per slot: seq, bar_count, last_write_ns, reserved...
FILE_HEADER_BYTES = 64


class RingError(RuntimeError):
    pass


class WindowCopy(NamedTuple):
    bar_count: int
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


def _slot_bytes(capacity: int) -> int:
    raw = HEADER_WORDS * 8 + N_COLS * 2 * capacity * 8
    return (raw + 63) // 64 * 64


class BarRing:
    """A mapped segment of `n_slots` mirrored rings of `capacity` bars each."""

    def __init__(self, path: Path, mm: mmap.mmap, n_slots: int, capacity: int) -> None:
        self.path = path
        self._mm = mm
        self.n_slots = n_slots
        self.capacity = capacity
        self._slot_bytes = _slot_bytes(capacity)
        self._buf = np.frombuffer(mm, dtype=np.uint8)

    @classmethod
    def create(cls, name: str, n_slots: int, capacity: int) -> BarRing:
        if n_slots < 1 or capacity < 16:
            raise ValueError("need at least 1 slot and a capacity of 16 bars")
        path = SHM_DIR / name
        size = FILE_HEADER_BYTES + n_slots * _slot_bytes(capacity)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        head = np.frombuffer(mm, dtype=np.int64, count=4)
        head[:] = (MAGIC, n_slots, capacity, 0)
        return cls(path, mm, n_slots, capacity)

    @classmethod
    def attach(cls, name: str) -> BarRing:
        path = SHM_DIR / name
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise RingError(f"shared-memory segment {name} does not exist (supervisor gone?)") from None
        try:
            size = os.fstat(fd).st_size
            mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        head = np.frombuffer(mm, dtype=np.int64, count=4)
        if int(head[0]) != MAGIC:
            mm.close()
            raise RingError(f"{path} is not a bar ring of this version")
        return cls(path, mm, int(head[1]), int(head[2]))

    def slot_arrays(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= slot < self.n_slots:
            raise IndexError(f"slot {slot} outside 0..{self.n_slots - 1}")
        base = FILE_HEADER_BYTES + slot * self._slot_bytes
        header = self._buf[base: base + HEADER_WORDS * 8].view(np.int64)
        data_start = base + HEADER_WORDS * 8
        data = self._buf[data_start: data_start + N_COLS * 2 * self.capacity * 8].view(np.float64)
        return header, data.reshape(N_COLS, 2 * self.capacity)

    def writer(self, slot: int) -> SlotWriter:
        return SlotWriter(self, slot)

    def reader(self, slot: int) -> SlotReader:
        return SlotReader(self, slot)

    def close(self) -> None:
        self._buf = np.empty(0, dtype=np.uint8)
        try:
            self._mm.close()
        except BufferError:
            # A numpy view still references the map; the OS unmaps it at process exit.
            pass

    def unlink(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class SlotWriter:
    """The only writer of one slot. Appends closed/new bars and updates the forming bar."""

    def __init__(self, ring: BarRing, slot: int) -> None:
        self._hdr, self._data = ring.slot_arrays(slot)
        self._cap = ring.capacity
        self.slot = slot

    @property
    def bar_count(self) -> int:
        return int(self._hdr[1])

    def reset(self) -> None:
        self._begin()
        self._hdr[1] = 0
        self._end()

    def _begin(self) -> None:
        self._hdr[0] += 1  # odd: write in progress

    def _end(self) -> None:
        self._hdr[2] = 0
        self._hdr[0] += 1  # even: consistent

    def append(self, ts: float, o: float, h: float, low: float, c: float, v: float) -> None:
        """Start a new bar (the previous last bar becomes closed)."""
        n = int(self._hdr[1])
        i = n % self._cap
        self._begin()
        col = self._data
        for k, value in enumerate((ts, o, h, low, c, v)):
            col[k, i] = value
            col[k, i + self._cap] = value
        self._hdr[1] = n + 1
        self._end()

    def update_last(self, h: float, low: float, c: float, v: float) -> None:
        """Change the forming bar's high, low, close and volume."""
        n = int(self._hdr[1])
        if n == 0:
            raise RingError("no bar to update")
        i = (n - 1) % self._cap
        j = i + self._cap
        self._begin()
        col = self._data
        col[2, i] = col[2, j] = h
        col[3, i] = col[3, j] = low
        col[4, i] = col[4, j] = c
        col[5, i] = col[5, j] = v
        self._end()

    def last_bar(self) -> tuple[float, float, float, float, float, float] | None:
        n = int(self._hdr[1])
        if n == 0:
            return None
        i = (n - 1) % self._cap
        d = self._data
        return (float(d[0, i]), float(d[1, i]), float(d[2, i]), float(d[3, i]), float(d[4, i]),
                float(d[5, i]))

    def load(self, ts: np.ndarray, o: np.ndarray, h: np.ndarray, low: np.ndarray, c: np.ndarray,
             v: np.ndarray) -> None:
        """Replace the slot's contents with history (the newest `capacity` bars of it)."""
        n = min(len(ts), self._cap)
        self._begin()
        cols = (ts, o, h, low, c, v)
        for k, src in enumerate(cols):
            tail = np.asarray(src[len(src) - n:], dtype=np.float64)
            self._data[k, :n] = tail
            self._data[k, self._cap: self._cap + n] = tail
        self._hdr[1] = n
        self._end()


class SlotReader:
    """Consistent copies of a slot's newest bars; never blocks the writer."""

    def __init__(self, ring: BarRing, slot: int, give_up_s: float = 0.5) -> None:
        self._hdr, self._data = ring.slot_arrays(slot)
        self._cap = ring.capacity
        self._give_up_s = give_up_s

    def bar_count(self) -> int:
        return int(self._hdr[1])

    def read_window(self, bars: int, out: np.ndarray | None = None) -> WindowCopy:
        """Copy the newest min(bars, bar_count) bars. `out`, if given, is a (6, >=bars) float64
        buffer reused across calls (no allocation on the hot path)."""
        if bars > self._cap:
            raise ValueError(f"window of {bars} bars exceeds ring capacity {self._cap}")
        hdr, data, cap = self._hdr, self._data, self._cap
        attempts = 0
        deadline = 0.0
        while True:
            attempts += 1
            if attempts % 64 == 0:
                # The writer may have been preempted mid-write (2 cores, many processes): let it
                # run instead of spinning, and give up only after a generous wall-clock bound.
                now = time.monotonic()
                if deadline == 0.0:
                    deadline = now + self._give_up_s
                elif now > deadline:
                    raise RingError("could not read a consistent window (writer stuck mid-write?)")
                os.sched_yield()
            s1 = int(hdr[0])
            if s1 & 1:
                continue
            n = int(hdr[1])
            w = min(bars, n)
            start = (n - w) % cap
            if out is None or out.shape[1] < w:
                buf = np.empty((N_COLS, w), dtype=np.float64)
            else:
                buf = out[:, :w]
            np.copyto(buf, data[:, start: start + w])
            if int(hdr[0]) == s1:
                return WindowCopy(n, buf[0], buf[1], buf[2], buf[3], buf[4], buf[5])
