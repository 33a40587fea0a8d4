"""Shared by the benchmarks: run the real `orchestrate` tree and read its status document."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def row(name: str, value: float, unit: str, anchor: float | None = None, anchor_name: str = "",
        target: float | None = None) -> dict[str, Any]:
    ratio = (value / anchor) if anchor else None
    return {"name": name, "value": value, "unit": unit, "anchor": anchor, "anchor_name": anchor_name,
            "ratio": ratio, "target": target,
            "meets_target": (value <= target) if target is not None else None}


def machine() -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "processor": platform.processor(), "commit": commit}


class OrchestrateRun:
    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="dgo-bench-")
        self.run_dir = Path(self.tmp.name) / "run"
        e = dict(os.environ)
        e.update(env or {})
        self.launched = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "--run-dir", str(self.run_dir),
                                      "--no-display", *args], cwd=REPO, env=e,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def status(self) -> dict[str, Any] | None:
        r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "status", "--json", "--run-dir",
                            str(self.run_dir)], cwd=REPO, capture_output=True, text=True)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout_s: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"orchestrate exited: {self.proc.stderr.read() if self.proc.stderr else ''}")
            doc = self.status()
            if doc and pred(doc):
                return doc
            time.sleep(0.25)
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.tmp.cleanup()


def all_signalled(doc: dict[str, Any]) -> bool:
    return bool(doc["workers"]) and all(w["first_signal_after_launch_s"] is not None for w in doc["workers"])


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'figure':<58} {'value':>12} {'unit':<6} {'anchor':>10} {'ratio':>7} {'target':>9}")
    for r in rows:
        anchor = "" if r["anchor"] is None else f"{r['anchor']:.4g}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        target = "" if r.get("target") is None else f"{r['target']:.4g}"
        flag = "" if r.get("meets_target") is None else (" ok" if r["meets_target"] else " MISS")
        print(f"{r['name'][:58]:<58} {r['value']:>12.4g} {r['unit']:<6} {anchor:>10} {ratio:>7} {target:>9}{flag}")
