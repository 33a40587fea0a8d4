"""Fixtures for every test directory."""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from shared.config import load_config
from shared.ring import BarRing
from shared.transport import make_endpoints
from workers.runtime import ChildSpec


class SmallDisk:
    """A real filesystem of a few MB (tmpfs) that a test can fill to ENOSPC and free again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._filler = path / ".filler"

    def fill(self) -> None:
        """Take every free byte: the next write anywhere on this disk fails with ENOSPC."""
        chunk = b"\0" * 65536
        with open(self._filler, "ab", buffering=0) as fh:
            for size in (65536, 4096, 512, 1):
                while True:
                    try:
                        if fh.write(chunk[:size]) < size:
                            break
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"needs a 3 MB tmpfs and mounting one is not permitted here ({r.stderr.strip() or r.returncode})")
    try:
        yield SmallDisk(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


__all__ = ["SmallDisk", "small_disk"]


@pytest.fixture
def worker_spec(tmp_path: Path) -> Iterator[Callable[..., ChildSpec]]:
    """(tests/workers) Makes the spec of a real ETHUSD Worker (bot g1) over a real one-slot shared-memory ring,
    with config tables over the defaults (`worker_spec({"grid": {"width": 0.001}})`); the rings
    are removed after the test."""
    rings: list[BarRing] = []

    def make(tables: Mapping[str, Any] | None = None) -> ChildSpec:
        cfg, _ = load_config(None, {"run": {"symbols": ["ETHUSD"], "bot_id": "g1"}, **(tables or {})})
        name = f"dgo-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        rings.append(BarRing.create(name, n_slots=1, capacity=64))
        return ChildSpec(kind="worker", name="ETHUSD", run_dir=str(tmp_path), ring_name=name, config=cfg,
                         endpoints=make_endpoints(tmp_path, 1), supervisor_pid=0, slot=0)

    try:
        yield make
    finally:
        for ring in rings:
            ring.close()
            ring.unlink()
