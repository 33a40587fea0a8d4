"""The gateway puts a bot's trailing stop on a real paper venue over loopback: Delta's fields
(stop_loss_order + signed trail_amount, no stop_price), a size-only amend that keeps the venue's
trailed price, and the venue moving and firing it."""

from __future__ import annotations

import time
from pathlib import Path

from shared.matching import OrderRequest
from shared.messages import AccountRequest, AmendSpec, NewOrderSpec, OrderIntents
from tests.workers.gateway_support import gateway_on, running, started_venue


async def test_a_trailing_stop_from_the_bot_trails_on_the_venue_and_fires(tmp_path: Path) -> None:
    venue = await started_venue(time.time())
    gw = gateway_on(tmp_path, venue)
    try:
        async with running(gw):
            e = venue.engine
            e.on_market_trade("BTCUSD", 50_000.0, 100, venue.market_us)
            e.place_order(OrderRequest(product_id=27, side="buy", size=3, order_type="market_order"))  # long 3
            stop = NewOrderSpec(client_order_id="g1-BTCUSD-stop", side="sell", price=49_800.0, size=2,
                                order_type="stop_market_order", reduce_only=True, trail_amount=200.0)
            res = await gw.execute(OrderIntents(symbol="BTCUSD", seq=1, product_id=27, cancel=[], amend=[],
                                                place=[stop], sent_ns=0))
            assert res.errors == [] and len(res.placed) == 1
            view = res.placed[0]
            assert (view.state, view.order_type, view.price, view.trailing) == ("pending", "stop_market_order",
                                                                                 49_800.0, True)
            on_venue = e.order(view.order_id)
            assert on_venue is not None and (on_venue.trail_amount, on_venue.stop_price) == (-200, 49_800)
            e.on_market_trade("BTCUSD", 50_500.0, 100, venue.market_us)  # the rise moves it up to 50300
            # the bot wants 3 contracts now: only the size is sent, the venue's 50300 stays
            res = await gw.execute(OrderIntents(symbol="BTCUSD", seq=2, product_id=27, cancel=[], place=[],
                                                amend=[AmendSpec(order_id=view.order_id, price=49_800.0, size=3,
                                                                 order_type="stop_market_order", trailing=True)],
                                                sent_ns=0))
            assert res.errors == [] and [(a.size, a.price, a.trailing) for a in res.amended] == [(3, 50_300.0, True)]
            snap = await gw.account(AccountRequest(symbol="BTCUSD", include_fills=False, sent_ns=0))
            assert [(o.price, o.trailing) for o in snap.open_orders] == [(50_300.0, True)]
            fills = e.on_market_trade("BTCUSD", 50_300.0, 100, venue.market_us)
            assert [(f.side, f.size, float(f.price)) for f in fills] == [("sell", 3, 50_300.0)]
    finally:
        await venue.stop()
