"""Delta's protocol constants: the one home for the numbers and names both sides of the wire
need, the client (shared/delta/rest.py, ws.py) and the paper venue (workers/venue/) that stands
in for Delta. A value Delta changes is changed here once. No project imports: anything may import this.
"""

from __future__ import annotations

from typing import Final

MAX_BATCH = 50  # orders per POST|PUT|DELETE /v2/orders/batch
MAX_CANDLES_PER_CALL = 2000  # bars per GET /v2/history/candles
SIGNATURE_WINDOW_S = 5  # a signed request's timestamp may be this far from the server's clock

# GET /v2/history/candles `resolution` -> seconds
CANDLE_RESOLUTION_S: dict[str, int] = {
    "1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "2h": 7200,
    "4h": 14_400, "6h": 21_600, "1d": 86_400, "1w": 604_800,
}
# the websocket's candlestick_<res> channels also know 12h
WS_CANDLE_RESOLUTION_S: dict[str, int] = {**CANDLE_RESOLUTION_S, "12h": 43_200}

# Websocket channels (api spec §9.4 legacy names, §9.5 the public host's compact ones)
BOOK_CHANNELS = ("l1_orderbook", "l2_orderbook", "l2_updates", "mark_price", "funding_rate")
PUBLIC_CHANNELS = ("v2/ticker", "all_trades", "candlestick_1m") + BOOK_CHANNELS
COMPACT_CHANNELS = ("trades", "ticker", "ob_l1", "ob_l2", "ob_updates", "mark_price", "funding_rate",
                    "candlestick_1m")
PRIVATE_CHANNELS = ("orders", "positions", "user_trades", "margins")

PAPER_PUBLIC_PATH = "/public"  # the paper venue's stand-in for India's public host, beside /ws

# Dead-man switch (Delta's "Deadman Switch" API, docs: slatedocs _deadman_switch.md; api spec §5
# "Others"): POST /v2/heartbeat/create registers a heartbeat and what to do when it lapses,
# POST /v2/heartbeat {heartbeat_id, ttl} acknowledges it for another `ttl` MILLISECONDS (ttl 0
# disables it), GET /v2/heartbeat lists them.
HEARTBEAT_CREATE_PATH = "/v2/heartbeat/create"
HEARTBEAT_PATH = "/v2/heartbeat"
HEARTBEAT_IMPACTS = ("contracts", "products")  # scope by contract_types (+underlying_assets) or product_symbols
HEARTBEAT_ACTION_CANCEL_ORDERS = "cancel_orders"  # "Cancels all open orders" (see the venue for stops)
HEARTBEAT_ACTIONS = (HEARTBEAT_ACTION_CANCEL_ORDERS, "spreads")
HEARTBEAT_TTL_DISABLE_MS = 0  # an ack with ttl 0 switches the heartbeat off (a planned stop)
# product_symbols a heartbeat may name: Delta's symbol lists take at most 10 (api spec §4); that
# this list does too is UNCONFIRMED. More symbols: scope by contract type instead.
HEARTBEAT_MAX_SYMBOLS = 10
# The cancellation_reason a lapsed heartbeat leaves on the orders it cancelled. Delta's word for
# it is UNCONFIRMED (not documented); clients must not depend on it.
HEARTBEAT_CANCEL_REASON = "deadman_switch"
# Trailing stops (POST /v2/orders `trail_amount`, PUT /v2/orders `trail_amount`; api spec §5).
# Documented: "Use trail amount if you want a trailing stop order. Required if stop price is
# empty" (a stop_loss_order with trail_amount and no stop_price); the order's extreme since
# placement comes back as `trigger_price_max_or_min` on the orders channel. UNCONFIRMED (one
# source, Delta's own python-rest-client `place_stop_order`): the SIGN of trail_amount, positive
# for a buy stop (it trails above the lowest price: stop = min + amount) and negative for a sell
# stop (below the highest: stop = max + amount). The docs' only example is a buy with "50". The
# paper venue takes this convention and refuses the other sign, so a client that signs it wrong
# fails in tests, not silently. Also UNCONFIRMED: whether editing trail_amount keeps the extreme
# (the paper venue keeps it), and how Delta rounds (the paper venue wants a multiple of the tick).
TRAILING_STOP_ORDER_TYPE: Final = "stop_loss_order"
TRAIL_EXTREME_FIELD = "trigger_price_max_or_min"


def signed_trail_amount(side: str, distance: float) -> float:
    """Delta's trail_amount for a stop of `side` trailing `distance` (> 0) price units behind the
    market: negative for a sell stop (below the peak), positive for a buy stop (above the trough)."""
    if not distance > 0:
        raise ValueError(f"trail distance must be > 0, got {distance!r}")
    return -distance if side == "sell" else distance
