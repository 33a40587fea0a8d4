"""Typed configuration: TOML files, the original bot's config.json, CLI overrides, env secrets.

Precedence: built-in defaults < config file < CLI flags. Secrets come only from the environment
(`DELTA_API_KEY`, `DELTA_API_SECRET`) and never appear in a Config, a log line or status.
Any unknown or mistyped key is a `ConfigError` naming the key, the expected type and the file;
the CLI turns it into exit code 2.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec
import msgspec.inspect
from msgspec import Meta

from .alerts import AlertsConfig
from .market_clock import CLOCKS
from .products import PAPER_PRODUCTS, SYNTHETIC_PREFIX
from .signals.engine import SignalConfig
from .trading.grid import GridConfig
from .trading.risk import RiskConfig

VENUES = ("paper", "india", "india-testnet", "global", "global-testnet")


class ConfigError(ValueError):
    pass


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class RunConfig(_Section):
    mode: str = "paper"  # paper: embedded Delta-compatible venue; live: a real Delta venue
    venue: str = "paper"  # paper | india | india-testnet | global | global-testnet
    symbols: list[str] = msgspec.field(default_factory=lambda: ["BTCUSD", "ETHUSD"])
    bot_id: str = "g1"  # written into every client order id, so restarts recognise their orders

    def __post_init__(self) -> None:
        if self.mode not in ("paper", "live"):
            raise ValueError(f"run.mode must be 'paper' or 'live', got {self.mode!r}")
        if self.venue not in VENUES:
            raise ValueError(f"run.venue must be one of {', '.join(VENUES)}, got {self.venue!r}")
        # mode "paper" with a venue other than "paper": see _check_price_source (market.source)
        if self.mode == "live" and self.venue == "paper":
            raise ValueError("run.mode 'live' needs a real venue (india, global, or a testnet)")
        if not self.symbols:
            raise ValueError("run.symbols is empty")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("run.symbols lists a symbol twice")
        if not re.fullmatch(r"[a-z0-9]{1,8}", self.bot_id):
            # The client order id scheme's rule (shared/trading/client_order_id.py): a bot id it
            # cannot encode would fail every placement, so it is refused here, at start.
            raise ValueError("run.bot_id must be 1-8 lower-case letters or digits (it is part of every "
                             "client order id)")


# Every number has its allowed range in the schema (msgspec `Meta`), so one check, at load, names
# the key, the value, the range and the file; __post_init__ keeps only rules between keys.
Port = Annotated[int, Meta(ge=0, le=65535)]  # 0 = any free port
BarSeconds = Annotated[float, Meta(ge=0.001, le=3600)]  # paper replay: wall seconds per 1m bar


def _between(low: float, high: float) -> Any:
    return Meta(ge=low, le=high)


class ProcessConfig(_Section):
    pool_size: Annotated[int, _between(0, 256)] = 0  # compute-pool processes; 0 = one per core
    start_method: str = "forkserver"  # forkserver (preloaded) | fork
    # Pin pool member k to core k and each worker to its pool member's core: the worker -> pool
    # -> worker hop then switches on one core instead of waking an idle one (this VM charges
    # ~300-900 us to wake an idle vCPU; same-core hand-off ~50 us).
    pin_cpus: bool = True

    def __post_init__(self) -> None:
        if self.start_method not in ("forkserver", "fork"):
            raise ValueError("processes.start_method must be 'forkserver' or 'fork' "
                             "(spawn costs ~29 MB and 200 ms per worker)")


class PaperProduct(_Section):
    """[market.products.SYMBOL]: the contract of a symbol the paper venue's catalogue does not list
    (one a `[market.data]` file is replayed for), in Delta's terms (fees as fractions)."""
    contract_value: Annotated[float, Meta(gt=0, le=1e9)]  # underlying units per contract
    tick_size: Annotated[float, Meta(gt=0, le=1e9)]
    maker_fee: Annotated[float, _between(-0.01, 0.01)] = 0.0002
    taker_fee: Annotated[float, _between(-0.01, 0.01)] = 0.0005


PRICE_SOURCES = ("venue", "replay", "live-prices")


class MarketConfig(_Section):
    # venue: market data and orders through the exchange (the paper venue, or Delta live);
    # replay: the gateway replays candles itself, signals only, no orders (for signal-path benchmarks);
    # live-prices: paper trading on the embedded venue whose market is Delta's public feed of
    # run.venue (trades and book), fills and the account staying in our matching engine
    source: str = "venue"
    bar_seconds: BarSeconds = 1.0  # paper replay: wall seconds per 1m bar (1.0 = 60x real time)
    # The paper venue's clock. replay: market time starts now and runs 60 / bar_seconds times
    # faster than the wall clock (timestamps run ahead of now). wall: the candles' shape is
    # replayed at real time, one 1m bar per wall minute, so every timestamp is now; bar_seconds
    # is then 60 whatever it is set to.
    clock: str = "replay"
    # bars loaded into each ring at start so signals are valid at once
    history_bars: Annotated[int, _between(1, 8192)] = 1000
    window_bars: Annotated[int, _between(16, 8192)] = 1024  # bars each ring holds and the pool reads
    seed: Annotated[int, _between(0, 2**32 - 1)] = 0  # synthetic markets and the RL agents' exploration
    initial_balance_usd: Annotated[float, _between(1, 1e9)] = 10_000.0  # paper account
    leverage: Annotated[float, _between(1, 200)] = 10.0  # Delta's range (products cap it lower)
    # embedded: the supervisor runs the paper venue as its child (it dies with the run);
    # external: a venue started beforehand by `orchestrate venue --run-dir DIR` on the same run dir,
    # found through DIR/venue.json; it outlives the trading tree, as an exchange would
    paper_venue: str = "embedded"
    # Paper funding (shared/funding.py): each product's funding interval in market seconds, and
    # symbol -> FUNDING:<symbol> series CSV; symbols without one are charged the seeded model's rates.
    funding_interval_s: Annotated[int, _between(60, 604_800)] = 28_800
    funding_series: dict[str, str] = msgspec.field(default_factory=dict)
    # [market.data] SYMBOL = "file.csv.gz": the paper venue replays this candle file for SYMBOL (the
    # shipped format, ts,open,high,low,close,volume, as `orchestrate download` writes it); a relative
    # path is read from the config file's directory
    data: dict[str, str] = msgspec.field(default_factory=dict)
    # [market.products.SYMBOL] contract_value, tick_size, maker_fee, taker_fee: a symbol's contract
    # where the paper catalogue (BTCUSD, ETHUSD, SYN_NNNN) does not list it
    products: dict[str, PaperProduct] = msgspec.field(default_factory=dict)

    @property
    def through_venue(self) -> bool:
        """Orders go to an exchange (the paper venue, or Delta live): every source but `replay`."""
        return self.source != "replay"

    def __post_init__(self) -> None:
        if self.source not in PRICE_SOURCES:
            raise ValueError("market.source must be 'venue', 'replay' or 'live-prices'")
        if self.paper_venue not in ("embedded", "external"):
            raise ValueError("market.paper_venue must be 'embedded' or 'external'")
        if self.clock not in CLOCKS:
            raise ValueError("market.clock must be 'replay' or 'wall'")
        if self.clock == "wall":
            self.bar_seconds = 60.0
        if self.funding_interval_s % 60:
            raise ValueError(f"market.funding_interval_s ({self.funding_interval_s}) must be a whole number of minutes")
        for sym, path in self.funding_series.items():
            if not os.path.isfile(path):
                raise ValueError(f"market.funding_series.{sym}: no file {path!r} (a FUNDING:{sym} CSV, as "
                                 "`orchestrate download --symbol FUNDING:<symbol>` writes)")
        if self.history_bars > self.window_bars:
            raise ValueError(f"market.history_bars ({self.history_bars}) must be <= market.window_bars "
                             f"({self.window_bars})")


class SupervisionConfig(_Section):
    # every process waits this long between heartbeats: 0 would make them all spin (workers at
    # least this long: every 2 s where heartbeat_timeout_s allows, shared/supervision.worker_heartbeat)
    heartbeat_interval_s: Annotated[float, _between(0.05, 60)] = 1.0
    heartbeat_timeout_s: Annotated[float, _between(0.1, 3600)] = 5.0
    backoff_initial_s: Annotated[float, _between(0.01, 3600)] = 1.0
    backoff_max_s: Annotated[float, _between(0.01, 86_400)] = 60.0
    max_restarts: Annotated[int, _between(1, 1000)] = 5
    restart_window_s: Annotated[float, _between(1, 86_400)] = 300.0
    breach_grace_s: Annotated[float, _between(0, 3600)] = 10.0
    shutdown_timeout_s: Annotated[float, _between(1, 600)] = 10.0
    budget_check_interval_s: Annotated[float, _between(0.05, 60)] = 1.0
    # USS/PSS parse smaps: ~0.5 ms a process, so sample slower
    uss_sample_interval_s: Annotated[float, _between(0.1, 3600)] = 5.0

    def __post_init__(self) -> None:
        if self.heartbeat_timeout_s <= self.heartbeat_interval_s:
            raise ValueError(f"supervision.heartbeat_timeout_s ({self.heartbeat_timeout_s}) must exceed "
                             f"supervision.heartbeat_interval_s ({self.heartbeat_interval_s})")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(f"supervision.backoff_max_s ({self.backoff_max_s}) must be >= "
                             f"supervision.backoff_initial_s ({self.backoff_initial_s})")


MIN_RSS_MB = 64
MIN_USS_MB = 16
MAX_BUDGET_MB = 1_048_576
# Ranges a type cannot state: 0 turns a memory budget off, a small one would restart forever.
_RANGE_WORDS = {"budgets.rss_mb": f"0 (off) or {MIN_RSS_MB} to {MAX_BUDGET_MB}",
                "budgets.uss_mb": f"0 (off) or {MIN_USS_MB} to {MAX_BUDGET_MB}"}


class BudgetConfig(_Section):
    """Per-worker budgets, checked by the supervisor with psutil. 0 disables a budget."""
    # A memory budget below an idle worker's size (measured: ~46 MB RSS, ~11 MB USS) would restart it
    # forever: the floors sit above that.
    rss_mb: Annotated[float, _between(0, MAX_BUDGET_MB)] = 200.0  # 0 (off) or >= MIN_RSS_MB
    uss_mb: Annotated[float, _between(0, MAX_BUDGET_MB)] = 60.0  # 0 (off) or >= MIN_USS_MB
    cpu_percent: Annotated[float, _between(0, 6400)] = 90.0  # one core = 100
    loop_lag_ms: Annotated[float, _between(0, 600_000)] = 500.0
    tick_to_signal_p99_us: Annotated[float, _between(0, 60_000_000)] = 50_000.0
    action: str = "restart"  # memory (RSS/USS) breach: warn | restart (a leak only ends with a restart)
    # CPU, loop lag, tick-to-signal: warn by default, because on a loaded box restarting a healthy
    # worker adds warm-up work and can cascade; set "restart" to treat them like memory.
    latency_action: str = "warn"

    def __post_init__(self) -> None:
        for name, low in (("rss_mb", MIN_RSS_MB), ("uss_mb", MIN_USS_MB)):
            value = getattr(self, name)
            if 0 < value < low:
                raise ValueError(f"key 'budgets.{name}' = {value!r} is out of range: allowed "
                                 f"{_RANGE_WORDS['budgets.' + name]} (below an idle worker's size it "
                                 "restarts forever)")
        if self.action not in ("warn", "restart"):
            raise ValueError("budgets.action must be 'warn' or 'restart'")
        if self.latency_action not in ("warn", "restart"):
            raise ValueError("budgets.latency_action must be 'warn' or 'restart'")


class StatusConfig(_Section):
    interval_s: Annotated[float, _between(0.1, 3600)] = 2.0  # foreground status refresh
    metrics_host: str = "127.0.0.1"
    metrics_port: Port = 0  # Prometheus; 0 = pick a free port (shown in status and metrics.url)

    def __post_init__(self) -> None:
        if self.metrics_host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("status.metrics_host must be a loopback address")


# Time a gateway restart may take beyond the supervisor's detection and backoff (start, connect,
# read the product list, renew): the dead-man switch's TTL must leave it.
DEADMAN_RESTART_MARGIN_S = 10.0


class DeadmanConfig(_Section):
    """Delta's dead-man switch (README "Dead-man switch"): the gateway renews a heartbeat; if it
    stops for `ttl_s`, the exchange cancels the bots' open orders."""
    enabled: bool = True
    ttl_s: Annotated[float, _between(5, 3600)] = 300.0
    renew_interval_s: Annotated[float, _between(1, 600)] = 30.0  # Delta suggests acks every ~30 s

    def __post_init__(self) -> None:
        if self.enabled and self.renew_interval_s * 3 > self.ttl_s:
            raise ValueError(f"deadman.renew_interval_s ({self.renew_interval_s:g}) must be at most a third of "
                             f"deadman.ttl_s ({self.ttl_s:g}): two lost renewals must not trip the switch")


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class DashboardConfig(_Section):
    """The web dashboard (orchestrator/dashboard/), served beside /metrics. On a loopback host it
    shares the metrics port; any other host gets its own port, and every request over it needs the
    run's token (<run dir>/dashboard.token)."""
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = 0  # a non-loopback host's own port; 0 = any free port (shown in dashboard.url)
    # pause/resume a symbol, halt, flatten from the page: off unless the operator turns them on;
    # each needs the token and a confirmation
    actions: bool = False

    def __post_init__(self) -> None:
        if not self.host.strip():
            raise ValueError("dashboard.host must not be empty (127.0.0.1 keeps it on this machine)")


class TestingConfig(_Section):
    """Fault switches for tests. Refused unless ORCHESTRATE_TEST_FAULTS=1 is in the environment,
    so a production config can never enable them by accident."""
    leak_mb_per_s: Annotated[float, _between(0, 1000)] = 0.0
    leak_symbol: str = ""
    # paper venue faults (see workers/venue/settings.py VenueSettings)
    venue_latency_ms: Annotated[float, _between(0, 60_000)] = 0.0
    venue_5xx_probability: Annotated[float, _between(0, 1)] = 0.0
    venue_429_probability: Annotated[float, _between(0, 1)] = 0.0
    venue_reject_probability: Annotated[float, _between(0, 1)] = 0.0
    venue_ws_drop_interval_s: Annotated[float, _between(0, 3600)] = 0.0
    # The paper venue holds its replay (no trade, market clock still) until the file
    # <run dir>/release-replay exists: a parity test releases the market once the bots are
    # reconciled, so the paper bots and the backtest both start at the first live bar.
    venue_hold_replay: bool = False
    # The worker waits this long after a signal reply before it decides, so the order and fill
    # events the venue sent with the same trade (on other sockets, racing the pool's reply) are
    # applied first, as the backtest applies a trade's events before its decision. 0: no wait.
    worker_settle_ms: Annotated[float, _between(0, 1000)] = 0.0

    def any_enabled(self) -> bool:
        return any(getattr(self, f) for f in self.__struct_fields__ if f != "leak_symbol")


class SymbolSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One symbol's overrides, as written (validated at load against the merged settings)."""
    grid: dict[str, Any] = msgspec.field(default_factory=dict)
    risk: dict[str, Any] = msgspec.field(default_factory=dict)


class Config(_Section):
    run: RunConfig = msgspec.field(default_factory=RunConfig)
    processes: ProcessConfig = msgspec.field(default_factory=ProcessConfig)
    market: MarketConfig = msgspec.field(default_factory=MarketConfig)
    supervision: SupervisionConfig = msgspec.field(default_factory=SupervisionConfig)
    budgets: BudgetConfig = msgspec.field(default_factory=BudgetConfig)
    status: StatusConfig = msgspec.field(default_factory=StatusConfig)
    dashboard: DashboardConfig = msgspec.field(default_factory=DashboardConfig)
    signal: SignalConfig = msgspec.field(default_factory=SignalConfig)
    grid: GridConfig = msgspec.field(default_factory=GridConfig)
    risk: RiskConfig = msgspec.field(default_factory=RiskConfig)
    deadman: DeadmanConfig = msgspec.field(default_factory=DeadmanConfig)
    testing: TestingConfig = msgspec.field(default_factory=TestingConfig)
    # [symbols.SYMBOL.grid] / [symbols.SYMBOL.risk]: the keys that differ from [grid] / [risk] for
    # one symbol, checked at load (`symbol_tables`); `symbol_settings` gives a symbol's effective ones.
    symbols: dict[str, SymbolSettings] = msgspec.field(default_factory=dict)
    alerts: AlertsConfig = msgspec.field(default_factory=AlertsConfig)


class Secrets(msgspec.Struct, frozen=True):
    api_key: str
    api_secret: str

    def __repr__(self) -> str:  # never print the secret, even by accident
        return f"Secrets(api_key={self.api_key[:4]}…, api_secret=<hidden>)"

    __str__ = __repr__


# --- the original bot's config.json ---------------------------------------------------------------

LEGACY_KEYS: dict[str, tuple[str | None, str]] = {
    # key: (dotted target or None, note shown to the operator)
    "symbol": ("run.symbols", "became run.symbols = [symbol]"),
    "grid_levels": ("grid.levels", "became grid.levels"),
    "grid_width": ("grid.width", "became grid.width (fraction of price between levels)"),
    "risk_percentage": ("risk.risk_percentage", "became risk.risk_percentage (% of available balance per grid order)"),
    "min_balance": ("risk.min_balance", "became risk.min_balance (no new orders below it)"),
    "initial_capital": ("market.initial_balance_usd",
                        "became market.initial_balance_usd (paper account start balance)"),
    "min_quantity": (None, "ignored: it was in coin units; Delta sizes are whole contracts and the product's "
                           "minimum size applies"),
    "cycle_delay": (None, "ignored: the bot reacts to every tick instead of polling every cycle_delay seconds; "
                          "re-grids are rate-limited by grid.max_actions_per_minute and grid.regrid_fraction"),
}


def legacy_to_dict(raw: dict[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    """Map the original bot's config.json to our layout; return the dict and one note per key."""
    out: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in raw.items():
        if key not in LEGACY_KEYS:
            raise ConfigError(f"{source}: unknown key '{key}' (the original bot's keys are "
                              f"{', '.join(LEGACY_KEYS)})")
        target, note = LEGACY_KEYS[key]
        notes.append(f"{key}: {note}")
        if target is None:
            continue
        if key == "symbol":
            if not isinstance(value, str):
                raise ConfigError(f"{source}: key 'symbol' expects str, got {type(value).__name__}")
            value = [value]
        section, field = target.split(".")
        out.setdefault(section, {})[field] = value
    return out, notes


# --- loading ---------------------------------------------------------------------------------------

_MSGSPEC_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`")
_MSGSPEC_TYPE = re.compile(r"Expected `(?P<exp>[^`]+)`, got `(?P<got>[^`]+)`")
_MSGSPEC_UNKNOWN = re.compile(r"Object contains unknown field `(?P<field>[^`]+)`")
_MSGSPEC_RANGE = re.compile(r"Expected `[^`]+` (?:of length )?[<>]=? ")
_MISSING = object()
_SEE_DOCS = "as configs/default.toml documents"


def _lookup(d: Mapping[str, Any] | None, dotted: str) -> Any:
    """The value at msgspec's error path (`grid.levels`, `signal.timeframes[1]`; a table's
    entry, `[...]`, gives the whole table)."""
    node: Any = d or {}
    for part in dotted.replace("[...]", "[*]").split("."):
        name, _, index = part.partition("[")
        if not isinstance(node, Mapping) or name not in node:
            return _MISSING
        node = node[name]
        if index[:-1].isdigit():
            i = int(index[:-1])
            if not isinstance(node, list) or i >= len(node):
                return _MISSING
            node = node[i]
    return node


def _number(x: float) -> str:
    return f"{x:.12g}"


def allowed_range(dotted: str, schema: type | None = None) -> str:
    """The range `schema` (default: Config) allows for a numeric key, in words ("1 to 99",
    "more than 0, up to 100")."""
    if schema is None and dotted in _RANGE_WORDS:
        return _RANGE_WORDS[dotted]
    t: Any = msgspec.inspect.type_info(schema or Config)
    for part in dotted.replace("[...]", "[*]").split("."):
        name, _, index = part.partition("[")
        fields = {f.name: f for f in getattr(t, "fields", ())}
        if name in fields:
            t = fields[name].type
        elif hasattr(t, "value_type"):  # a table of numbers, e.g. signal.consensus_weights.trend
            t = t.value_type
        else:
            return _SEE_DOCS
        if index:  # an item of a list (signal.timeframes[0]) or of a table (consensus_weights[...])
            t = getattr(t, "item_type", getattr(t, "value_type", t))
    low = (_number(t.ge) if getattr(t, "ge", None) is not None
           else f"more than {_number(t.gt)}" if getattr(t, "gt", None) is not None else "")
    high = (_number(t.le) if getattr(t, "le", None) is not None
            else f"below {_number(t.lt)}" if getattr(t, "lt", None) is not None else "")
    if low and high:
        joined = f"{low} and {high}" if high.startswith("below") else f"{low}, up to {high}"
        if low.startswith("more"):
            return joined
        return f"at least {low} and {high}" if high.startswith("below") else f"{low} to {high}"
    if high:
        return f"up to {high}" if not high.startswith("below") else high
    return (f"at least {low}" if not low.startswith("more") else low) if low else _SEE_DOCS


def _explain(exc: msgspec.ValidationError, source: str, merged: dict[str, Any],
             overrides: dict[str, Any] | None, option_names: Mapping[str, str],
             legacy_names: Mapping[str, str]) -> ConfigError:
    """Turn msgspec's error into the operator's words: the key as they wrote it (a command-line
    option, a legacy config.json key or the TOML key), the value, what is allowed, and where."""
    text = str(exc)
    m_path = _MSGSPEC_PATH.search(text)
    where = _dotted(m_path.group("path")) if m_path else ""
    from_cli_value = _lookup(overrides, where) if where else _MISSING
    from_cli = from_cli_value is not _MISSING and not isinstance(from_cli_value, Mapping)
    if from_cli:
        label, key = "command line", option_names.get(where, where)
    else:
        label, key = source, legacy_names.get(where, where)
    if m := _MSGSPEC_UNKNOWN.search(text):
        key = f"{where}.{m.group('field')}" if where else m.group("field")
        section_type = _section_type(where)
        valid = ", ".join(section_type.__struct_fields__) if section_type else ""
        hint = f"; valid keys here: {valid}" if valid else ""
        return ConfigError(f"{source}: unknown key '{key}'{hint}")
    named = key if from_cli and key.startswith("--") else f"key '{key}'"
    if m := _MSGSPEC_TYPE.search(text):
        return ConfigError(f"{label}: {named} expects {m.group('exp')}, got {m.group('got')}")
    if where and _MSGSPEC_RANGE.match(text):
        value = _lookup(merged, where)
        said = f"{key} {value!r}" if named == key else f"{named} = {value!r}"
        return ConfigError(f"{label}: {said} is out of range: allowed {allowed_range(where)}")
    # __post_init__ ValueErrors (rules between keys) come through with our own message
    message = _MSGSPEC_PATH.sub("", text)
    for dotted, written in legacy_names.items():
        message = message.replace(dotted, written)
    if overrides:
        source = f"{source} (with command-line overrides)"
    return ConfigError(f"{source}: {message}" + (f" (at '{where}')" if where else ""))


def _dotted(path: str) -> str:
    return re.sub(r"\[(\d+)\]", r"[\1]", path)


def _section_type(path: str) -> type[msgspec.Struct] | None:
    t: Any = Config
    if not path:
        return Config
    for part in path.split("."):
        if part not in getattr(t, "__struct_fields__", ()):
            return None
        t = _resolve_field_type(t, part)
        if t is None:
            return None
    return t if hasattr(t, "__struct_fields__") else None


def _resolve_field_type(struct_type: type, name: str) -> type | None:
    import typing
    hints = typing.get_type_hints(struct_type)
    t = hints.get(name)
    return t if isinstance(t, type) else None


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def read_config_file(path: str | Path) -> tuple[dict[str, Any], list[str]]:
    """Read a TOML config or the original bot's config.json; returns (dict, legacy notes)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    if path.suffix == ".json":
        try:
            raw = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        return legacy_to_dict(raw, str(path))
    try:
        return tomllib.loads(data.decode("utf-8")), []
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


_SECRET_KEYS = re.compile(r"(api_?key|api_?secret|secret|password|token)$", re.I)


def _reject_secrets(d: dict[str, Any], source: str, prefix: str = "") -> None:
    for k, v in d.items():
        if _SECRET_KEYS.search(k):
            raise ConfigError(f"{source}: key '{prefix}{k}' looks like a secret; secrets come only "
                              "from the environment (DELTA_API_KEY, DELTA_API_SECRET)")
        if isinstance(v, dict):
            _reject_secrets(v, source, f"{prefix}{k}.")


def build_config(file_dict: dict[str, Any], source: str, overrides: dict[str, Any] | None = None,
                 environ: dict[str, str] | None = None, *, option_names: Mapping[str, str] | None = None,
                 legacy_names: Mapping[str, str] | None = None) -> Config:
    """`option_names` maps a dotted key to the command-line option that set it (`--metrics-port`),
    `legacy_names` to the config.json key it came from (`grid_levels`): errors use those names."""
    environ = dict(os.environ) if environ is None else environ
    _reject_secrets(file_dict, source)
    merged = _deep_merge(file_dict, overrides or {})
    symbol_tables = merged.pop("symbols", None)  # checked below, against the merged [grid]/[risk]
    try:
        cfg = msgspec.convert(merged, Config)
    except msgspec.ValidationError as exc:
        raise _explain(exc, source, merged, overrides, option_names or {}, legacy_names or {}) from None
    if symbol_tables is not None:
        from .symbol_settings import check_symbol_tables
        cfg.symbols = check_symbol_tables(symbol_tables, cfg.grid, cfg.risk, source)
    if cfg.testing.any_enabled() and environ.get("ORCHESTRATE_TEST_FAULTS") != "1":
        raise ConfigError(f"{source}: [testing] fault switches need ORCHESTRATE_TEST_FAULTS=1 in the environment")
    _check_price_source(cfg, source)
    _check_symbols(cfg, source)
    _check_deadman(cfg, source)
    return cfg


def _check_price_source(cfg: Config, source: str) -> None:
    """run.venue is where orders go, except on paper with live prices: there it names the Delta
    venue whose public feed drives the paper market."""
    run, market = cfg.run, cfg.market
    if market.source == "live-prices":
        if run.mode != "paper":
            raise ConfigError(f"{source}: market.source 'live-prices' paper-trades on Delta's prices: "
                              "set run.mode = 'paper' (live mode trades through market.source = 'venue')")
        if run.venue == "paper":
            raise ConfigError(f"{source}: market.source 'live-prices' needs run.venue to name the Delta venue "
                              "whose public feed drives the paper market (india, global, or a testnet)")
        if market.paper_venue != "embedded":
            raise ConfigError(f"{source}: market.source 'live-prices' runs the embedded paper venue: "
                              "set market.paper_venue = 'embedded'")
    elif run.mode == "paper" and run.venue != "paper":
        raise ConfigError(f"{source}: run.mode 'paper' trades on the embedded venue: set run.venue = 'paper' "
                          "(or market.source = 'live-prices' to paper-trade on that venue's prices)")


def _check_deadman(cfg: Config, source: str) -> None:
    """A gateway restart (detected, backed off, started again) must never trip the switch."""
    d, sup = cfg.deadman, cfg.supervision
    if not d.enabled:
        return
    need = d.renew_interval_s + sup.heartbeat_timeout_s + sup.backoff_max_s + DEADMAN_RESTART_MARGIN_S
    if d.ttl_s < need:
        raise ConfigError(f"{source}: key 'deadman.ttl_s' = {d.ttl_s:g} is too short: a gateway restart may "
                          f"take up to {need:g}s (deadman.renew_interval_s + supervision.heartbeat_timeout_s + "
                          f"supervision.backoff_max_s + {DEADMAN_RESTART_MARGIN_S:g}s to start), and would "
                          "trip the dead-man switch")


def _check_symbols(cfg: Config, source: str) -> None:
    for sym in cfg.run.symbols:
        if not re.fullmatch(r"[A-Z0-9_]{2,30}", sym):
            raise ConfigError(f"{source}: symbol {sym!r} is not a Delta symbol (upper-case letters and digits)")
    for key in (*cfg.market.data, *cfg.market.products):
        if not re.fullmatch(r"[A-Z0-9_]{2,30}", key):
            raise ConfigError(f"{source}: key 'market.{'data' if key in cfg.market.data else 'products'}.{key}': "
                              f"{key!r} is not a Delta symbol (upper-case letters and digits)")
    from .products import CONFIGURED_ID_BASE, CONFIGURED_ID_SPAN, configured_spec
    ids: dict[int, str] = {}
    for key, p in cfg.market.products.items():
        pid = configured_spec(key, contract_value=p.contract_value, tick_size=p.tick_size, maker_fee=p.maker_fee,
                              taker_fee=p.taker_fee).product_id
        if pid in ids:  # ids are derived from the symbol (stable across runs); two may collide
            raise ConfigError(f"{source}: [market.products] {ids[pid]} and {key} would share paper product id "
                              f"{pid} ({CONFIGURED_ID_BASE} + crc32 % {CONFIGURED_ID_SPAN}); rename one")
        ids[pid] = key
    if cfg.run.mode == "paper" and cfg.market.source != "live-prices":  # live prices: the source lists them
        from .products import UnknownSymbolError, resolve_paper_symbol
        for sym in (*cfg.run.symbols, *cfg.market.data):
            if sym in cfg.market.products:
                continue
            try:
                resolve_paper_symbol(sym)
            except UnknownSymbolError as exc:
                data_hint = (f"; for its candles a [market.data] {sym} = \"FILE\" entry" if sym not in cfg.market.data
                             else "")
                raise ConfigError(f"{source}: {exc} (paper venue lists {', '.join(PAPER_PRODUCTS)} and "
                                  f"synthetic {SYNTHETIC_PREFIX}NNNN; define its contract in "
                                  f"[market.products.{sym}] contract_value, tick_size{data_hint})") from None
        for sym in cfg.run.symbols:
            if sym not in cfg.market.data and sym in cfg.market.products:
                raise ConfigError(f"{source}: {sym} has a [market.products.{sym}] contract but no candles to "
                                  f"replay: add [market.data] {sym} = \"FILE\"")


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None,
                environ: dict[str, str] | None = None, *,
                option_names: Mapping[str, str] | None = None) -> tuple[Config, list[str]]:
    if path is None:
        return build_config({}, "built-in defaults", overrides, environ, option_names=option_names), []
    file_dict, notes = read_config_file(path)
    legacy_names = {target: key for key, (target, _) in LEGACY_KEYS.items()
                    if target is not None and _lookup(file_dict, target) is not _MISSING} \
        if Path(path).suffix == ".json" else {}
    cfg = build_config(file_dict, str(path), overrides, environ, option_names=option_names,
                       legacy_names=legacy_names)
    if cfg.market.data:
        from .paper_data import check_market_data
        cfg.market.data = check_market_data(cfg, Path(path))
    return cfg, notes


def secrets_from_env(environ: dict[str, str] | None = None) -> Secrets | None:
    environ = dict(os.environ) if environ is None else environ
    key, secret = environ.get("DELTA_API_KEY", ""), environ.get("DELTA_API_SECRET", "")
    if not key and not secret:
        return None
    if not key or not secret:
        raise ConfigError("set both DELTA_API_KEY and DELTA_API_SECRET, or neither (paper)")
    return Secrets(key, secret)


def alert_urls_from_env(cfg: AlertsConfig, environ: Mapping[str, str] | None = None) -> list[str]:
    """The apprise URLs of `[alerts]`, from the environment variable it names (they carry tokens:
    never in a config file). Empty when alerts are off. Errors name the variable, never a URL."""
    if not cfg.enabled:
        return []
    environ = os.environ if environ is None else environ
    urls = [u for u in re.split(r"[\s,]+", environ.get(cfg.urls_env, "")) if u]
    if not urls:
        raise ConfigError(f"alerts.enabled is true but the environment variable {cfg.urls_env} (alerts.urls_env) "
                          "is not set or empty: set it to one or more apprise URLs")
    return urls


def config_to_toml_dict(cfg: Config) -> dict[str, Any]:
    doc: dict[str, Any] = msgspec.to_builtins(cfg)
    # only the symbol tables that set something (an empty [symbols] table says nothing)
    tables = {sym: {k: v for k, v in t.items() if v} for sym, t in doc.pop("symbols", {}).items()}
    tables = {sym: t for sym, t in tables.items() if t}
    if tables:
        doc["symbols"] = tables
    return doc
