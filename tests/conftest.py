"""Fixtures for every test directory."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


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
