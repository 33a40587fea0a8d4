"""The paper venue's settings: one struct, checked where it is made (`orchestrate venue`, the
config's [testing] and [market] keys decode into it through workers/venue_proc.py)."""

from __future__ import annotations

import msgspec

from shared.arrivals import check_arrivals
from shared.config import BarSeconds, Port
from shared.market_clock import CLOCKS
from shared.marketdata import BAR_SECONDS
from shared.products import ProductSpec


class VenueSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Port = 0  # ranges apply where settings are decoded (`orchestrate venue`, the config)
    bar_seconds: BarSeconds = 1.0  # wall seconds per replayed 1m bar
    clock: str = "replay"  # "replay": 60 / bar_seconds x real time; "wall": real time (see module doc)
    # When each symbol's replayed ticks arrive in their quarter bar (shared/arrivals.py):
    # "independent" (each at its own seeded time) or "lockstep" (all markets in 8 bursts)
    arrivals: str = "independent"
    history_bars: int = 1000
    seed: int = 0
    initial_balance_usd: float = 10_000.0
    leverage: float = 10.0
    rate_limit_units: int = 10_000
    rate_limit_window_s: float = 300.0
    heartbeat_s: float = 30.0
    engine_ops_per_s: int = 500  # Delta's matching-engine limit per product; cancels exempt
    ws_send_queue: int = 2_000  # frames queued per websocket before the client counts as too slow
    ws_max_connections: int = 256  # more concurrent sockets -> handshake answered 429, like Delta's cap
    max_symbols: int = 5_000  # synthetic products are created on first reference: cap the memory
    # Funding (workers/venue/funding.py): every product's interval in market seconds (Delta's
    # BTCUSD: 8 h), and symbol -> FUNDING:<symbol> series file; symbols without one use the
    # seeded model (shared/funding.py).
    funding_interval_s: int = 28_800
    funding_series: dict[str, str] = msgspec.field(default_factory=dict)
    data: dict[str, str] = msgspec.field(default_factory=dict)  # symbol -> candle file to replay ([market.data])
    products: dict[str, ProductSpec] = msgspec.field(default_factory=dict)  # beyond the catalogue ([market.products])
    state_file: str | None = None  # the paper account survives a venue restart through this file
    state_save_interval_s: float = 2.0  # how often a changed account is written (and on stop)
    # Wall time (epoch s) the run started, the same for every venue process of one run (None: a
    # run of its own, starting now): a venue restarted in the run catches up with the wall, a
    # new run resumes the saved market clock where the last one stopped.
    start_ts: float | None = None
    # Fault injection, all off by default; drawn from one RNG seeded by `seed`.
    fault_latency_ms: float = 0.0  # added to every REST request
    fault_5xx_probability: float = 0.0  # 503 `unavailable` before the request is processed
    fault_429_probability: float = 0.0  # spurious 429 before the request is processed
    fault_ws_drop_interval_s: float = 0.0  # close every websocket this often (0 = never)
    fault_reject_probability: float = 0.0  # order placements refused with `risk_limits_breached`
    fault_restart_interval_s: float = 0.0  # go away this often (0 = never)...
    fault_restart_down_s: float = 1.0  # ...for this long; the account survives (see restart())
    # Test only: the replay starts once this file exists (None: at once). See MarketReplay.run.
    hold_replay_file: str | None = None

    def __post_init__(self) -> None:
        if self.clock not in CLOCKS:
            raise ValueError("clock must be 'replay' or 'wall'")
        check_arrivals(self.arrivals)
        if self.clock == "wall":
            self.bar_seconds = float(BAR_SECONDS)
        if self.bar_seconds <= 0 or self.heartbeat_s <= 0 or self.rate_limit_window_s <= 0:
            raise ValueError("bar_seconds, heartbeat_s and rate_limit_window_s must be > 0")
        if self.history_bars < 1 or self.rate_limit_units < 1 or self.ws_send_queue < 1:
            raise ValueError("history_bars, rate_limit_units and ws_send_queue must be >= 1")
        for name in ("fault_5xx_probability", "fault_429_probability", "fault_reject_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
