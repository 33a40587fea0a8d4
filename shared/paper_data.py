"""`[market.data] SYMBOL = "file.csv.gz"`: candle files the paper venue replays, checked where the
config is loaded, so a bad path or a file in the wrong format stops the run before anything
starts (exit 2 naming the key and the file), never as a venue traceback later.

The venue reads the same files again with the same reader (shared.marketdata.read_ohlcv_csv).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .marketdata import BAR_SECONDS, CandleFileError, bar_interval, read_ohlcv_csv

if TYPE_CHECKING:
    from .config import Config

# ReplayMarket's own floor: the history the bots are primed with, and some bars to trade
REPLAY_SPARE_BARS = 10


def data_path(value: str, config_path: Path | None) -> Path:
    """Where a `[market.data]` path points: relative paths from the config file's directory."""
    p = Path(value).expanduser()
    if not p.is_absolute() and config_path is not None:
        p = config_path.resolve().parent / p
    return p.resolve()


def check_market_data(cfg: Config, config_path: Path | None) -> dict[str, str]:
    """Every `[market.data]` file read and judged now; returns symbol -> absolute path.
    Raises ConfigError naming the key, the file and what is wrong with it."""
    from .config import ConfigError
    source = str(config_path) if config_path is not None else "config"
    out: dict[str, str] = {}
    for symbol, value in cfg.market.data.items():
        key = f"market.data.{symbol}"
        path = data_path(value, config_path)
        if not path.is_file():
            why = "is a directory" if path.is_dir() else "does not exist"
            raise ConfigError(f"{source}: key '{key}' = {value!r}: {path} {why} (a candle file: "
                              "ts,open,high,low,close,volume, e.g. from `orchestrate download`)")
        try:
            candles = read_ohlcv_csv(path)
        except CandleFileError as exc:
            raise ConfigError(f"{source}: key '{key}' = {value!r}: {exc}") from None
        step = bar_interval(candles.ts)
        if step != BAR_SECONDS:
            raise ConfigError(f"{source}: key '{key}' = {value!r}: {path} holds {step} s bars; the paper venue "
                              f"replays 1-minute bars (orchestrate download --resolution 1m)")
        need = cfg.market.history_bars + REPLAY_SPARE_BARS
        if len(candles) <= need:
            raise ConfigError(f"{source}: key '{key}' = {value!r}: {path} has {len(candles)} bars; the paper "
                              f"venue needs more than {need} (market.history_bars = {cfg.market.history_bars} to "
                              "prime the bots, and bars to trade)")
        out[symbol] = str(path)
    return out
