"""The supervisor's side of the dashboard, kept here so supervisor.py only calls two functions:
what the dashboard reads from a running Supervisor, and where its URL goes."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from shared.dashboard import is_loopback
from shared.messages import GatewayFigures, WorkerFigures

from .server import AccountFacts, Dashboard, FleetSource, make_token

if TYPE_CHECKING:
    from orchestrator.metrics import MetricsServer
    from orchestrator.supervisor import Supervisor

log = logging.getLogger("dashboard")


def make_dashboard(sup: Supervisor) -> Dashboard:
    def figures() -> dict[str, WorkerFigures]:
        return {c.name: c.figures for c in sup.children.values()
                if c.kind == "worker" and isinstance(c.figures, WorkerFigures)}

    def account() -> AccountFacts:
        gw = sup.children.get("gateway")
        f = gw.figures if gw is not None else None
        equity = f.equity if isinstance(f, GatewayFigures) else math.nan
        rs = sup.account.state.day
        return AccountFacts(equity=equity, day_start_equity=rs.day_start_equity if rs else math.nan,
                            day_peak_equity=rs.day_peak_equity if rs else math.nan)

    async def control(cmd: str, req: dict[str, Any]) -> Any:
        # the control socket's own dispatch, so a command behaves the same whichever way it came
        return await sup.command({**req, "cmd": cmd}, by="dashboard")

    source = FleetSource(run_dir=sup.run_dir.path, symbols=tuple(sup.cfg.run.symbols),
                         snapshot=sup.recent_snapshot, figures=figures,
                         account=account, control=control)
    return Dashboard(sup.cfg.dashboard, source, make_token(sup.run_dir.dashboard_token_path))


async def start_dashboard(sup: Supervisor, server: MetricsServer, metrics_port: int) -> str:
    """Serve the dashboard (on the metrics site, or its own for a non-loopback host), start its
    sampler, write its URL to <run dir>/dashboard.url; the URL ("" when it could not start)."""
    dash: Dashboard = sup._dashboard
    cfg = sup.cfg.dashboard
    host, port = sup.cfg.status.metrics_host, metrics_port
    if not is_loopback(cfg.host):
        try:
            port = await server.add_site(cfg.host, cfg.port)
        except OSError as exc:
            log.error("dashboard not served on %s:%s: %s", cfg.host, cfg.port, exc)
            return ""
        host = cfg.host
    dash.start()
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    try:
        sup.run_dir.dashboard_url_path.write_text(url + "\n")
    except OSError as exc:
        log.error("could not write %s: %s", sup.run_dir.dashboard_url_path, exc)
    return url
