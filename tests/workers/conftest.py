"""Fixtures of the worker tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from shared.config import load_config
from shared.ring import BarRing
from shared.transport import make_endpoints
from workers.runtime import ChildSpec


@pytest.fixture
def worker_spec(tmp_path: Path) -> Iterator[Callable[..., ChildSpec]]:
    """Makes the spec of a real ETHUSD Worker (bot g1) over a real one-slot shared-memory ring,
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
