"""A backtest JSON document built by hand from the shipped candles, in the schema
shared/backtest/result.py encodes: the report and console summary are tested on it without
running a backtest (and the real command's output is checked against the same schema)."""

from __future__ import annotations

from typing import Any

from shared.marketdata import find_gaps, shipped_candles

FIGURE_KEYS = ("net_pnl", "realised_pnl", "unrealised_pnl", "fees", "funding", "return_pct",
               "max_drawdown_pct", "sharpe", "fills", "orders_placed", "orders_amended",
               "orders_cancelled", "time_in_market_pct")
FILL_KEYS = ("ts", "symbol", "side", "size", "price", "fee", "role", "client_order_id")
TOP_KEYS = ("symbols", "bars", "elapsed_s", "summary", "per_symbol", "fills", "equity")


def _figures(net: float, fees: float, fills: int, position: int | None) -> dict[str, Any]:
    return {"net_pnl": net, "realised_pnl": net + fees - 1.5, "unrealised_pnl": 1.5, "fees": fees,
            "funding": 0.0, "return_pct": net / 100.0, "max_drawdown_pct": 2.5, "sharpe": 0.7,
            "fills": fills, "orders_placed": 40, "orders_amended": 10, "orders_cancelled": 30,
            "time_in_market_pct": 35.0, "position": position, "orders_per_hour": 6.0}


def sample_doc(symbols: tuple[str, ...] = ("BTCUSD", "ETHUSD"), bars: int = 3_000) -> dict[str, Any]:
    fills: list[dict[str, Any]] = []
    timeline: dict[str, Any] = {}
    per_symbol: dict[str, Any] = {}
    gaps: dict[str, Any] = {}
    equity: list[list[float]] = []
    for k, sym in enumerate(symbols):
        c = shipped_candles(sym).slice(0, bars)
        ts, close = c.ts.tolist(), c.close.tolist()
        orders = []
        for i in range(0, bars - 120, 100):
            orders.append([ts[i], ts[i + 90], "buy", round(close[i] * 0.99, 2), "entry"])
            orders.append([ts[i], ts[i + 60], "sell", round(close[i] * 1.01, 2), "take_profit"])
        sym_fills = [{"ts": float(ts[i]), "symbol": sym, "side": "buy" if i % 400 == 50 else "sell", "size": 3,
                      "price": close[i], "fee": round(close[i] * 0.0000006, 6),
                      "role": "taker" if i % 1200 == 0 else "maker",
                      "client_order_id": f"g1-{sym}-{i}"} for i in range(50, bars, 200)]
        fills += sym_fills
        timeline[sym] = {"price": [[float(t), p] for t, p in zip(ts[::5], close[::5], strict=True)], "orders": orders,
                         "stop": [[float(ts[300]), close[300] * 0.95], [float(ts[900]), 0.0],
                                  [float(ts[1500]), close[1500] * 0.96]],
                         "orders_dropped": 0}
        per_symbol[sym] = _figures(12.5 - 30 * k, 1.25, len(sym_fills), 3 - 3 * k)
        gaps[sym] = [[float(g.from_ts), float(g.seconds)] for g in find_gaps(c.ts)]
        if k == 0:
            equity = [[float(t), 10_000.0 + 5 * ((i // 40) % 7) - i * 0.001] for i, t in enumerate(ts[::10])]
    summary = _figures(sum(f["net_pnl"] for f in per_symbol.values()), 2.5, len(fills), None)
    return {"symbols": list(symbols), "bars": bars * len(symbols), "elapsed_s": 0.5, "summary": summary,
            "per_symbol": per_symbol, "fills": sorted(fills, key=lambda f: f["ts"]), "equity": equity,
            "timeline": timeline, "funding_source": {s: "none" for s in symbols}, "config": {},
            "warmup_bars": 100, "interrupted": False, "start_ts": equity[0][0], "end_ts": equity[-1][0],
            "balance_usd": 10_000.0, "latency_ticks": 1, "halted": "", "halted_ts": 0.0,
            "fills_dropped": 0, "gaps": gaps}
