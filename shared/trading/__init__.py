"""Trading decisions as pure functions and small state machines (no I/O): sizing, the grid,
level life cycle, client order ids, reconciliation with a churn limiter, risk limits and PnL.
The bot worker, the supervisor, the backtester and the tests all call the same code."""
