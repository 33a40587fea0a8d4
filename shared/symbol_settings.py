"""Per-symbol settings: `[symbols.BTCUSD.grid]` / `[symbols.BTCUSD.risk]` tables over the global
`[grid]` / `[risk]`.

BTC and a small alt should not share one grid. A symbol table names only the keys that differ;
`symbol_settings` merges them over the global tables and is the one place the live/paper worker,
the backtest and the optimizer get a symbol's effective grid and risk from. The tables are checked
at load like any other key (`check_symbol_tables`): an unknown key, a wrong type or a value out of
range names the key as written (`symbols.BTCUSD.grid.levls`) and the file; the rules between keys
(`grid.levels x width < 1`, ...) are re-run on the merged settings, so a global change that makes
one symbol's merged grid invalid is refused too.

Account-wide risk keys (total notional, daily loss, drawdown, flatten on halt) are refused in a
symbol table: the supervisor enforces them once for the whole account, a per-symbol value would
be silently ignored.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from .trading.grid import GridConfig
from .trading.risk import RiskConfig

SECTIONS: dict[str, type[msgspec.Struct]] = {"grid": GridConfig, "risk": RiskConfig}
ACCOUNT_WIDE_RISK = ("max_total_notional", "daily_loss_limit", "max_drawdown_fraction", "flatten_on_halt")
_SYMBOL = re.compile(r"[A-Z0-9_]{2,30}")


class SymbolTrading(msgspec.Struct, frozen=True, kw_only=True):
    """A symbol's effective settings, and which keys its table changed."""
    grid: GridConfig
    risk: RiskConfig
    overrides: tuple[str, ...] = ()  # "grid.levels=3", in the table's order


def _raise(message: str) -> None:
    from .config import ConfigError
    raise ConfigError(message)


def _explain(exc: msgspec.ValidationError, source: str, prefix: str, section: str,
             merged: Mapping[str, Any]) -> str:
    """msgspec's error in the operator's words, the key named as written in the symbol table."""
    from .config import _MSGSPEC_PATH, _MSGSPEC_RANGE, _MSGSPEC_TYPE, _MSGSPEC_UNKNOWN, allowed_range
    text = str(exc)
    m_path = _MSGSPEC_PATH.search(text)
    where = m_path.group("path") if m_path else ""
    schema = SECTIONS[section]
    if m := _MSGSPEC_UNKNOWN.search(text):
        return (f"{source}: unknown key '{prefix}.{m.group('field')}'; valid keys here: "
                f"{', '.join(schema.__struct_fields__)}")
    if m := _MSGSPEC_TYPE.search(text):
        return f"{source}: key '{prefix}.{where}' expects {m.group('exp')}, got {m.group('got')}"
    if where and _MSGSPEC_RANGE.match(text):
        return (f"{source}: key '{prefix}.{where}' = {merged.get(where)!r} is out of range: allowed "
                f"{allowed_range(where, schema)}")
    message = _MSGSPEC_PATH.sub("", text)
    return f"{source}: [{prefix}] merged over [{section}]: {message}"


def check_symbol_tables(raw: Any, global_grid: GridConfig, global_risk: RiskConfig,
                        source: str) -> dict[str, Any]:
    """The validated `symbols` tables (as written), or ConfigError naming the key and file."""
    from .config import SymbolSettings
    if not isinstance(raw, dict):
        _raise(f"{source}: key 'symbols' must be a table of [symbols.SYMBOL.grid] / [symbols.SYMBOL.risk] tables")
    out: dict[str, Any] = {}
    base = {"grid": msgspec.to_builtins(global_grid), "risk": msgspec.to_builtins(global_risk)}
    for sym, table in raw.items():
        if not _SYMBOL.fullmatch(sym):
            _raise(f"{source}: [symbols.{sym}]: {sym!r} is not a Delta symbol (upper-case letters and digits)")
        if not isinstance(table, dict):
            _raise(f"{source}: key 'symbols.{sym}' must be a table holding [symbols.{sym}.grid] and/or "
                   f"[symbols.{sym}.risk]")
        for section, over in table.items():
            if section not in SECTIONS:
                _raise(f"{source}: unknown key 'symbols.{sym}.{section}'; a symbol's table holds: "
                       f"{', '.join(SECTIONS)}")
            prefix = f"symbols.{sym}.{section}"
            if not isinstance(over, dict):
                _raise(f"{source}: key '{prefix}' must be a table of [{section}] keys")
            if section == "risk":
                for key in over:
                    if key in ACCOUNT_WIDE_RISK:
                        _raise(f"{source}: key '{prefix}.{key}' is account-wide (the supervisor enforces it "
                               f"once for all symbols): set it in [risk]")
            merged = {**base[section], **over}
            try:
                msgspec.convert(merged, SECTIONS[section])
            except msgspec.ValidationError as exc:
                _raise(_explain(exc, source, prefix, section, merged))
        out[sym] = SymbolSettings(grid=dict(table.get("grid", {})), risk=dict(table.get("risk", {})))
    return out


def _merge(section: str, base: GridConfig | RiskConfig, over: Mapping[str, Any]) -> Any:
    return msgspec.convert({**msgspec.to_builtins(base), **over}, SECTIONS[section])


def symbol_settings(cfg: Any, symbol: str) -> SymbolTrading:
    """The grid and risk settings `symbol` trades with: its [symbols.SYMBOL.*] keys over the global
    tables (the global ones when it has no table). Checked at load, so this cannot fail."""
    table = cfg.symbols.get(symbol)
    if table is None or not (table.grid or table.risk):
        return SymbolTrading(grid=cfg.grid, risk=cfg.risk)
    grid = _merge("grid", cfg.grid, table.grid) if table.grid else cfg.grid
    risk = _merge("risk", cfg.risk, table.risk) if table.risk else cfg.risk
    return SymbolTrading(grid=grid, risk=risk, overrides=symbol_overrides(cfg, symbol))


def symbol_overrides(cfg: Any, symbol: str) -> tuple[str, ...]:
    """What status shows: each key `symbol`'s table sets, with its value ("grid.levels=3")."""
    table = cfg.symbols.get(symbol)
    if table is None:
        return ()
    return tuple(f"{section}.{k}={v!r}" if isinstance(v, str) else f"{section}.{k}={v}"
                 for section, over in (("grid", table.grid), ("risk", table.risk)) for k, v in over.items())


def unused_symbol_tables(cfg: Any, symbols: Iterable[str]) -> list[str]:
    """Warnings for symbol tables naming no symbol of this run, with the run's close matches.
    A warning, not an error: one config serves runs over different symbols (a backtest or an
    optimization of one symbol of the live run's config), and refusing those would force a file
    per run; the close matches catch the typo (BTCUSDT for BTCUSD) that would otherwise leave a
    symbol on the global settings without a word."""
    run = list(symbols)
    out = []
    for sym in cfg.symbols:
        if sym in run:
            continue
        close = difflib.get_close_matches(sym, run, n=3, cutoff=0.75)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        out.append(f"[symbols.{sym}] applies to no symbol of this run ({', '.join(run)}): ignored{hint}")
    return out
