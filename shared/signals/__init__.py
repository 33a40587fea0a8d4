"""Signal engine: TA-Lib-exact indicators (full-series and streaming), the strategy components,
consensus, and batched evaluation across symbols. Pure library: no I/O, no processes."""

from .engine import BarWindow, IndicatorSnapshot, SignalConfig, SignalEngine, SignalResult

__all__ = ["BarWindow", "IndicatorSnapshot", "SignalConfig", "SignalEngine", "SignalResult"]
