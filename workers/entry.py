"""Entry point of every child process (picklable target for multiprocessing)."""

from __future__ import annotations

import os

from .runtime import ChildSpec


def child_main(spec: ChildSpec) -> None:
    if spec.cpu >= 0:
        try:
            os.sched_setaffinity(0, {spec.cpu})
        except OSError:
            pass  # a restricted cpuset: run unpinned rather than not at all
    if spec.kind == "worker":
        from . import worker
        worker.main(spec)
    elif spec.kind == "pool":
        from . import pool
        pool.main(spec)
    elif spec.kind == "venue":
        from . import venue_proc
        venue_proc.main(spec)
    elif spec.kind == "gateway":
        from . import gateway
        gateway.main(spec)
    else:
        raise ValueError(f"unknown child kind {spec.kind!r}")
