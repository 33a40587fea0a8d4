"""Child.alive() answers from the child's exit descriptor (its fast path) whatever the
descriptor's number: near 1,000 symbols the supervisor holds more than 1,024 descriptors, where
select.select() refuses one (review F8) and every check fell back to the slow exitcode read."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Iterator

import msgspec
import pytest

from orchestrator.supervisor import Child
from shared.config import Config
from shared.supervision import BreachTracker, RestartPolicy
from workers.runtime import ChildSpec

HIGH_FD = 1500  # past select()'s FD_SETSIZE (1024)


class _RealChild:
    """A real child process as Child sees a multiprocessing.Process: `sentinel` turns readable
    when it exits (a pidfd, as multiprocessing's is a pipe); `exitcode` is the slow path, counted."""

    def __init__(self, popen: subprocess.Popen[bytes], sentinel: int) -> None:
        self.popen, self.pid, self.sentinel = popen, popen.pid, sentinel
        self.exitcode_reads = 0

    @property
    def exitcode(self) -> int | None:
        self.exitcode_reads += 1
        return self.popen.poll()


@pytest.fixture
def many_fds() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= HIGH_FD:
        pytest.skip(f"the hard descriptor limit {hard} is below {HIGH_FD}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, HIGH_FD + 1), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_child_whose_exit_descriptor_is_past_1024_is_checked_on_the_fast_path(many_fds: None) -> None:
    popen = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pidfd = os.pidfd_open(popen.pid)
    high = os.dup2(pidfd, HIGH_FD)
    os.close(pidfd)
    try:
        cfg = msgspec.convert({}, Config)
        spec: ChildSpec = None  # type: ignore[assignment]  # alive() never reads the child's spec
        c = Child("worker", "SYN_0001", spec, RestartPolicy(cfg.supervision), BreachTracker(5.0))
        proc = _RealChild(popen, high)
        c.process, c.sentinel = proc, high
        assert c.alive() and c.alive()
        assert proc.exitcode_reads == 0  # answered by the descriptor, not by the slow path
        popen.kill()
        popen.wait(10)
        assert not c.alive()  # readable now: the exit status says how it ended
    finally:
        popen.kill()
        popen.wait(10)
        os.close(high)
