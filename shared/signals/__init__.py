"""Signal engine: TA-Lib-exact indicators (full-series and streaming), the strategy components,
consensus, batched evaluation across symbols, and whole-series evaluation for the backtest. Pure
library: no I/O, no processes.

- backend.py: the two number backends the components are written against (numpy columns, floats)
- streaming.py: the indicator recursions (IndicatorState) and their steps
- strategies.py: the strategy components (named state + pure functions) and the consensus
- engine.py: SignalEngine, per-symbol state laid out from the components' states
- series.py: evaluate_series / iter_series, the engine's answers at every tick of a history
- indicators.py: full-series indicators (TA-Lib conventions), for reports and checks
"""

from .engine import BarWindow, IndicatorSnapshot, SignalConfig, SignalEngine, SignalResult
from .series import SignalSeries, evaluate_series, iter_series

__all__ = ["BarWindow", "IndicatorSnapshot", "SignalConfig", "SignalEngine", "SignalResult",
           "SignalSeries", "evaluate_series", "iter_series"]
