"""The run directory's own rules: what release keeps for the next start, and who may release."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from orchestrator.rundir import RunDir
from shared.ring import SHM_DIR


def test_release_keeps_the_segment_record_while_the_segment_exists(tmp_path: Path) -> None:
    name = f"dgo-test-{uuid.uuid4().hex[:8]}"
    seg = SHM_DIR / name
    seg.write_bytes(b"\0" * 16)  # a segment a failed shutdown could not remove
    try:
        rd = RunDir(tmp_path / "run")
        rd.acquire()
        rd.record_segments([name])
        rd.release()
        assert rd.segments_path.exists()  # the next start needs it to clean up
        again = RunDir(tmp_path / "run")
        again.acquire()
        assert str(seg) in again.clean_leftovers()
        again.record_segments([name])
        again.release()
        assert not again.segments_path.exists()  # nothing left to clean: no record either
        again.release()  # a second release (the CLI's, after the supervisor's) does nothing
    finally:
        seg.unlink(missing_ok=True)


def test_a_second_release_does_not_touch_the_next_runs_files(tmp_path: Path) -> None:
    first = RunDir(tmp_path / "run")
    first.acquire()
    first.release()
    second = RunDir(tmp_path / "run")
    second.acquire()
    second.control_path.write_text("the next run's socket")
    first.release()  # late, from the process that already let go
    assert second.control_path.exists()
    second.release()
    assert not second.control_path.exists() and oct(os.stat(tmp_path / "run").st_mode & 0o777) == "0o700"
