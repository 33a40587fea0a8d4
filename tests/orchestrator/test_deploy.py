"""The monitoring stack and the container, validated as far as this machine allows (no Docker
engine here): every metric the Grafana dashboard queries is one the exporter really serves; the
compose file parses and every file it mounts exists; the Dockerfile's build is `pip install .`
of exactly what it copies, and the installed command runs from outside the source tree."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.metrics import MetricsServer
from shared.status import ProcessStatus, StatusSnapshot, WorkerStatus

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "orchestrate.json"


def _snapshot() -> StatusSnapshot:
    w = WorkerStatus(symbol="BTCUSD", pid=1, state="running", uptime_s=1.0, restarts=0, last_price=1.0, bar_count=1,
                     signal="UP", confidence=0.5, votes={}, tick_to_signal_p50_us=1.0, tick_to_signal_p99_us=2.0,
                     tick_to_signal_p999_us=3.0, signals=1, ticks=1, ticks_dropped=0, loop_lag_ms=1.0, rss_mb=1.0,
                     uss_mb=1.0, cpu_percent=1.0, budget="ok", heartbeat_age_s=0.1, first_signal_after_launch_s=1.0)
    procs = [ProcessStatus(kind=k, name=k, pid=2, state="running", uptime_s=1.0, restarts=0, load=0.1, rss_mb=1.0,
                           uss_mb=1.0, cpu_percent=1.0) for k in ("gateway", "pool", "venue")]
    return StatusSnapshot(run_dir="run", mode="paper", venue="paper", supervisor_pid=1, started_at=0.0, uptime_s=1.0,
                          order_management="up", storage="ok", workers=[w], processes=procs, equity=10_000.0,
                          rate_budget_left=9_000.0, rate_budget_capacity=10_000.0, deadman="armed",
                          deadman_expires_in_s=290.0, alerts_sent=1, alerts_failed=0, alerts_dropped=0)


async def _exported_names() -> set[str]:
    server = MetricsServer(_snapshot)
    port = await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/metrics") as r:
            text = await r.text()
    finally:
        await server.stop()
    return {sample.name for fam in text_string_to_metric_families(text) for sample in fam.samples}


def _selectors(node: Any) -> list[str]:
    """Metric names of every vector selector in a parsed PromQL expression."""
    if isinstance(node, promql_parser.VectorSelector):
        return [node.name] if node.name else []
    out: list[str] = []
    for attr in ("expr", "lhs", "rhs", "args", "param", "vector_selector"):
        child = getattr(node, attr, None)
        for c in child if isinstance(child, list) else [child]:
            if c is not None and type(c).__module__.startswith("promql_parser"):
                out += _selectors(c)
    return out


def _exprs() -> list[tuple[str, str]]:
    doc = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in doc["panels"] for t in p.get("targets", [])]


async def test_every_metric_the_dashboard_queries_is_one_the_product_exports() -> None:
    exported = await _exported_names()
    assert "orchestrate_account_equity" in exported and "orchestrate_worker_rss_mb" in exported
    queried: set[str] = set()
    for title, expr in _exprs():
        names = _selectors(promql_parser.parse(expr))
        assert names, f"{title}: no metric found in {expr!r}"  # the walker must see every query's metrics
        unknown = set(names) - exported
        assert not unknown, f"panel {title!r} queries {sorted(unknown)}, not exported (exported: {sorted(exported)})"
        queried |= set(names)
    # what the issue asks the dashboard to show
    for needed in ("orchestrate_worker_tick_to_signal_p99_us", "orchestrate_process_cpu_percent",
                   "orchestrate_worker_cpu_percent", "orchestrate_process_rss_mb", "orchestrate_worker_rss_mb",
                   "orchestrate_process_restarts", "orchestrate_worker_restarts",
                   "orchestrate_account_rate_budget_left", "orchestrate_worker_realized_pnl",
                   "orchestrate_account_equity"):
        assert needed in queried, needed


def test_the_walker_finds_names_inside_functions_aggregations_and_binary_operations() -> None:
    expr = ('label_replace(sum by (kind) (rate(a_total[5m])), "k", "w", "", "") '
            '/ on() group_left topk(3, b{x="1"}) + -c')
    assert sorted(_selectors(promql_parser.parse(expr))) == ["a_total", "b", "c"]


def test_compose_file_parses_and_everything_it_mounts_exists() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"orchestrate", "prometheus", "grafana"}
    assert (REPO / services["orchestrate"]["build"] / "Dockerfile").is_file()
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            src = vol.split(":", 1)[0]
            if src.startswith("."):
                assert (REPO / src).exists(), f"{name} mounts {src}, which does not exist"
            else:
                assert src in compose["volumes"], f"{name}: named volume {src} not declared"
    # Prometheus scrapes the port the supervisor serves on, from inside its network
    cmd = services["orchestrate"]["command"]
    port = cmd[cmd.index("--metrics-port") + 1]
    prom = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"127.0.0.1:{port}"]
    assert services["prometheus"]["network_mode"] == "service:orchestrate"
    # Grafana's datasource is the one the dashboard's panels name, at Prometheus's address
    ds = yaml.safe_load((REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    [source] = ds["datasources"]
    uids = {p["datasource"]["uid"] for p in json.loads(DASHBOARD.read_text())["panels"]}
    assert uids == {source["uid"]} and source["url"] == "http://orchestrate:9090"
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == "/var/lib/grafana/dashboards/" + DASHBOARD.name
    provider = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/orchestrate.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in services["grafana"]["volumes"]


def _dockerfile() -> list[tuple[str, str]]:
    lines = (REPO / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1].strip()) for ln in lines
            if ln.strip() and not ln.lstrip().startswith("#")]


def test_dockerfile_is_slim_python_311_non_root_with_the_run_dir_as_a_volume() -> None:
    steps = _dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    env = " ".join(arg for op, arg in steps if op == "ENV")
    run_dir = re.search(r"ORCHESTRATE_RUN_DIR=(\S+)", env)
    assert run_dir is not None
    assert any(op == "VOLUME" and run_dir.group(1) in arg for op, arg in steps)
    assert ("RUN", "pip install . && rm -rf /src") in steps


@pytest.mark.slow
def test_the_image_build_steps_install_and_run_the_product(tmp_path: Path) -> None:
    """The Dockerfile's COPY lines and `pip install .` replayed here: a fresh virtualenv gets the
    package from a copy of exactly the copied files (no editable install, not run from the
    source tree), and its `orchestrate` with the image's CMD serves metrics."""
    src = tmp_path / "src"
    src.mkdir()
    configs = None
    for op, arg in _dockerfile():
        if op != "COPY":
            continue
        *sources, dest = arg.split()
        for s in sources:
            assert (REPO / s).exists(), f"Dockerfile copies {s}, which does not exist"
            target = src / (s if dest in ("./", ".") else dest.removeprefix("./").lstrip("/"))
            if dest.startswith("/"):
                configs = target
            if (REPO / s).is_dir():
                shutil.copytree(REPO / s, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(REPO / s, target)
    assert configs is not None and (configs / "default.toml").is_file()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # The product's dependencies come from this test environment (a .pth line, not a re-download);
    # the package itself is built and installed from the copied files, as `pip install .` does.
    site = next((venv / "lib").glob("python3*/site-packages"))
    deps = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "msgspec").exists())
    (site / "deps.pth").write_text(str(deps) + "\n")
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "."], cwd=src,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    shutil.rmtree(src / "shared")  # as the image does (rm -rf /src): the installed copy must stand alone
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import shared.alerts, orchestrator.cli; "
                            "print(shared.alerts.__file__)"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert where.returncode == 0 and str(site) in where.stdout, where
    assert list(Path(where.stdout.strip()).parent.glob("data/*.csv.gz")), "shipped market data not installed"
    cmd = [str(venv / "bin" / "orchestrate"), "--config", str(configs / "default.toml"), "--no-display",
           "--metrics-port", "0", "--pool-size", "1"]
    run_dir = tmp_path / "run-dir"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DELTA_")}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env={**env, "ORCHESTRATE_RUN_DIR": str(run_dir)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        body = ""
        while "orchestrate_worker_signal" not in body or "orchestrate_account_equity " not in body:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, f"no metrics with equity from the installed command:\n{body[-2000:]}"
            time.sleep(1.0)
            url_file = run_dir / "metrics.url"
            if url_file.exists():
                body = asyncio.run(_get(url_file.read_text().strip()))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0


async def _get(url: str) -> str:
    try:
        async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
            return await r.text()
    except (aiohttp.ClientError, TimeoutError):
        return ""
