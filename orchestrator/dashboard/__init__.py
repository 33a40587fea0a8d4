"""The web dashboard (README "Web dashboard"): served by the supervisor beside /metrics."""

from .server import AccountFacts, Dashboard, DashboardError, FleetSource, make_token

__all__ = ["AccountFacts", "Dashboard", "DashboardError", "FleetSource", "make_token"]
