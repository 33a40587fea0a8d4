"""Backtest: the product's own market replay, signal engine, trading bot, account risk rules and
matching engine, driven over historical candles in one process (no sockets, no sleeps)."""

from .loop import BacktestError, run_backtest
from .result import BacktestResult, Figures, FillRecord, Timeline, decode_result

__all__ = ["BacktestError", "BacktestResult", "Figures", "FillRecord", "Timeline", "decode_result", "run_backtest"]
