"""The exchange gateway against a real paper venue over loopback: which fills are news. Fills
are read in the venue's order back to the ones the ledger has, never by time."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import msgspec
import pytest

from shared.delta.client_ids import ClientIds
from shared.delta.ratelimit import MAX_RETRY_AFTER_S, AccountRateLimiter, RequestBudget, SymbolShares
from shared.delta.rest import DeltaRestClient
from shared.matching import OrderRequest
from shared.messages import (
    AccountRequest,
    AmendSpec,
    FillEvent,
    IntentResult,
    NewOrderSpec,
    OrderIntents,
    OrderRecord,
)
from shared.trading import client_order_id as coid
from shared.trading.sizing import entry_margin_held, grid_sizing_balance
from tests.workers.gateway_support import gateway_on, running, started_venue
from workers.gateway_exchange import BALANCES_REUSE_S, LOOKUP_ATTEMPTS, ExchangeGateway
from workers.venue import PaperVenue, VenueSettings


async def fills_published(tmp_path: Path, venue: PaperVenue, stored: list[str], *,
                          paper: bool = False) -> list[str]:
    """Start a gateway on `venue`, run its fill poll once, return the fill ids it sent to the ledger."""
    events, _ = await fill_events(tmp_path, venue, stored, paper=paper)
    return [e.fill.fill_id for e in events]


async def fill_events(tmp_path: Path, venue: PaperVenue, stored: list[str], *, paper: bool = False,
                      client_ids: ClientIds | None = None) -> tuple[list[FillEvent], ExchangeGateway]:
    """Start a gateway on `venue`, run its fill poll once: the fills it sent to the ledger, and it."""
    gw = gateway_on(tmp_path, venue, stored, paper=paper)
    if client_ids is not None:
        gw.client_ids = client_ids
    async with running(gw) as run:
        gw.fill_wakeup.set()
        task = asyncio.create_task(gw.fill_loop())
        events: list[FillEvent] = []
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            events += await run.sent_up(FillEvent, timeout_ms=200)
        task.cancel()
    return events, gw


def trade(venue: PaperVenue, n: int, client_order_ids: list[str | None] | None = None) -> list[str]:
    """`n` market orders on BTCUSD (alternating sides): the ids of the fills they made, oldest first."""
    before = len(venue.engine.fills)
    for i in range(n):
        venue.engine.place_order(OrderRequest(product_id=27, side="buy" if i % 2 == 0 else "sell", size=1,
                                              order_type="market_order",
                                              client_order_id=client_order_ids[i] if client_order_ids else None))
    venue.ws.publish_engine_events()
    return [f.id for f in list(venue.engine.fills)[before:]]


async def test_fills_behind_the_newest_stored_one_in_time_are_still_news(tmp_path: Path) -> None:
    """The ledger's newest fill is an hour AHEAD of the venue's clock (a paper market that once
    restarted behind, or any clock jump): fills made after it are news all the same."""
    venue = await started_venue(time.time() - 7200)
    try:
        [old] = trade(venue, 1)
        new = trade(venue, 3)
        assert all(f.timestamp < time.time() * 1e6 - 3600e6 for f in venue.engine.fills)
        published = await fills_published(tmp_path, venue, [old])
    finally:
        await venue.stop()
    assert published == new


async def test_every_fill_past_the_known_ones_is_read_across_pages_and_holes(tmp_path: Path) -> None:
    venue = await started_venue(time.time())
    try:
        made = trade(venue, 130)  # three pages of 50
        known = made[:10] + made[11:20]  # the 11th never reached the ledger (a hole near the top)
        published = await fills_published(tmp_path, venue, known)
    finally:
        await venue.stop()
    assert published == [made[10]] + made[20:]  # oldest first, each once


@pytest.mark.parametrize("paper", [True, False])
async def test_an_empty_ledger_takes_every_paper_fill_but_no_live_history(tmp_path: Path, paper: bool) -> None:
    # The venue's clock runs two hours behind the wall here, as a live fill from then would.
    venue = await started_venue(time.time() - 7200)
    try:
        made = trade(venue, 2)
        published = await fills_published(tmp_path, venue, [], paper=paper)
    finally:
        await venue.stop()
    # A paper account lives in the run dir with its ledger: all of it is news. On a live account
    # a new run dir's ledger starts now; older fills are history the workers' reconciliation reads.
    assert published == (made if paper else [])


async def test_an_account_read_carries_the_venues_position(tmp_path: Path) -> None:
    venue = await started_venue(time.time())
    try:
        async with running(gateway_on(tmp_path, venue)) as run:
            trade(venue, 3)  # buy, sell, buy: +1
            snap = await run.gw.account(AccountRequest(symbol="BTCUSD", include_fills=True, sent_ns=0))
        assert snap.error == "" and snap.venue_position == 1 and len(snap.fills) == 3
    finally:
        await venue.stop()


LOOKUP = ("GET /v2/orders/{id}", "2xx")


async def test_fills_of_orders_placed_before_the_gateway_started_carry_their_client_order_ids(tmp_path: Path) -> None:
    """Delta's REST fill names only its order_id (and so does the paper venue's): the gateway finds
    each fill's client order id by its order, here orders it never saw placed (a restart), with a
    map too small to hold them all, so the bots still know their fills."""
    venue = await started_venue(time.time())
    try:
        coids: list[str | None] = ["g1-BTCUSD-b1", "g1-BTCUSD-s1", "g1-BTCUSD-b2", None]  # the last: by hand
        made = trade(venue, 4, coids)
        assert all("client_order_id" not in f for f in (await venue_fills(venue)))
        events, gw = await fill_events(tmp_path, venue, [], paper=True, client_ids=ClientIds(capacity=2))
    finally:
        await venue.stop()
    want = list(zip(made, [c or "" for c in coids], strict=True))  # trade(): one 1-lot fill per order
    assert [(e.fill.fill_id, e.fill.client_order_id) for e in events] == want
    assert gw.fills_unresolved == 0 and len(gw.client_ids) == 2
    assert gw.rest.outcomes[LOOKUP] == 4  # one lookup an order, the result remembered


async def test_a_fill_whose_order_the_venue_forgot_is_still_stored_without_a_client_order_id(tmp_path: Path) -> None:
    venue = await started_venue(time.time())
    try:
        [kept, lost] = trade(venue, 2, ["g1-BTCUSD-b1", "g1-BTCUSD-s1"])
        forgotten = venue.engine.fills[-1].order_id
        del venue.engine._closed[forgotten]  # as after a venue restart past its kept history
        events, gw = await fill_events(tmp_path, venue, [], paper=True)
    finally:
        await venue.stop()
    assert [(e.fill.fill_id, e.fill.client_order_id) for e in events] == [(kept, "g1-BTCUSD-b1"), (lost, "")]
    assert gw.fills_unresolved == 1
    assert "fills without their order" in gw.figures(0.0).note


async def test_a_reconciliations_fills_carry_their_client_order_ids(tmp_path: Path) -> None:
    venue = await started_venue(time.time())
    gw = gateway_on(tmp_path, venue)
    try:
        async with running(gw):
            trade(venue, 2, ["g1-BTCUSD-b1", "g1-BTCUSD-s1"])
            bid, _ = venue.engine.touch(27)
            venue.engine.place_order(OrderRequest(product_id=27, side="buy", size=1, client_order_id="g1-BTCUSD-b2",
                                                  limit_price=bid - 100))  # rests, open
            gw.client_ids = ClientIds()  # nothing learned from the channels: from the reads alone
            snap = await gw.account(AccountRequest(symbol="BTCUSD", include_fills=True, sent_ns=0))
            again = await gw.account(AccountRequest(symbol="BTCUSD", include_fills=True, sent_ns=0))
    finally:
        await venue.stop()
    assert snap.error == "" and [f.client_order_id for f in snap.fills] == ["g1-BTCUSD-s1", "g1-BTCUSD-b1"]
    assert again.fills == snap.fills and gw.rest.outcomes[LOOKUP] == 2  # looked up once each
    assert gw.client_ids.get(snap.open_orders[0].order_id) == "g1-BTCUSD-b2"  # learned from the open orders


async def venue_fills(venue: PaperVenue) -> list[dict[str, object]]:
    async with DeltaRestClient(venue.rest_url, venue.api_key, venue.api_secret) as c:
        fills, _ = await c._get("/v2/fills", list[dict[str, object]], signed=True)
    return fills


async def test_orders_heard_on_the_channels_need_no_lookup(tmp_path: Path) -> None:
    """Orders made while the gateway listens: the orders and user_trades channels name both ids,
    so their fills are resolved from the map, at no rate budget."""
    venue = await started_venue(time.time())
    gw = gateway_on(tmp_path, venue, paper=True)
    try:
        async with running(gw) as run:
            deadline = time.monotonic() + 5.0
            coids: list[str | None] = ["g1-BTCUSD-b1", "g1-BTCUSD-s1"]
            while not any(c.wants("orders", "BTCUSD") and c.wants("user_trades", "BTCUSD") for c in venue.ws.clients):
                assert time.monotonic() < deadline, "the gateway never subscribed to its orders and trades"
                await asyncio.sleep(0.05)
            made = trade(venue, 2, coids)
            while len(gw.client_ids) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert await gw.read_new_fills([27]) == 2
            got = await run.sent_up(FillEvent, timeout_ms=2000)  # order records come this way too
    finally:
        await venue.stop()
    assert [(e.fill.fill_id, e.fill.client_order_id) for e in got] == list(zip(made, coids, strict=True))
    assert LOOKUP not in gw.rest.outcomes and gw.fills_unresolved == 0


async def test_a_fill_whose_order_lookup_fails_is_read_again_then_stored_without_one(tmp_path: Path) -> None:
    """A lookup that may succeed soon (here the venue is unreachable) does not make
    our fill a stranger's at once: the poll reads it again, LOOKUP_ATTEMPTS times, then stores it."""
    venue = await started_venue(time.time())
    gw = gateway_on(tmp_path, venue, paper=True)
    try:
        async with running(gw) as run:
            trade(venue, 1, ["g1-BTCUSD-b1"])
            [fill] = await gw.rest.get_fills([27])
            gw.client_ids = ClientIds()  # as if never heard on the channels
            with socket.socket() as closed:  # a port nothing listens on: the venue unreachable
                closed.bind(("127.0.0.1", 0))
                dead = closed.getsockname()[1]
            reachable, gw.rest = gw.rest, DeltaRestClient(f"http://127.0.0.1:{dead}", venue.api_key,
                                                          venue.api_secret)
            await reachable.close()
            tries = [await gw.hand_on(fill) for _ in range(LOOKUP_ATTEMPTS)]
            got = [m for m in [run.codec.decode(await run.pull.recv())] if isinstance(m, FillEvent)]
    finally:
        await venue.stop()
    assert tries == [False] * (LOOKUP_ATTEMPTS - 1) + [True]
    assert [(e.fill.fill_id, e.fill.client_order_id) for e in got] == [(str(fill.id), "")]
    assert gw.fills_unresolved == 1 and not gw.lookups_failing


def two_symbol_gateway(tmp_path: Path, venue: PaperVenue) -> ExchangeGateway:
    return gateway_on(tmp_path, venue, symbols=("BTCUSD", "ETHUSD"), paper=True)


def five_levels(symbol: str, price: float, step: float) -> list[NewOrderSpec]:
    return [NewOrderSpec(client_order_id=f"g1-{symbol}-b{k}", side="buy", price=round(price - step * k, 1), size=1)
            for k in range(1, 6)]


async def test_a_regrid_of_five_levels_is_one_batch_call_for_each_kind(tmp_path: Path) -> None:
    """Place, amend and cancel 5 levels: one call each (POST, PUT, DELETE /v2/orders/batch),
    25 rate units each, and every order's outcome reported by its own id."""
    venue = await started_venue(time.time())
    gw = two_symbol_gateway(tmp_path, venue)
    try:
        async with running(gw):
            price = (await gw.rest.get_ticker("BTCUSD")).close
            assert price is not None
            spent = gw.rest.limiter.snapshot().used
            placed = await gw.execute(OrderIntents(symbol="BTCUSD", seq=1, product_id=27, cancel=[], amend=[],
                                                   place=five_levels("BTCUSD", price, 50.0),
                                                   sent_ns=time.perf_counter_ns()))
            assert placed.errors == [] and len(placed.placed) == 5
            ids = [v.order_id for v in placed.placed]
            amended = await gw.execute(OrderIntents(
                symbol="BTCUSD", seq=2, product_id=27, cancel=[], place=[], sent_ns=time.perf_counter_ns(),
                amend=[AmendSpec(order_id=v.order_id, price=v.price - 10.0, size=2) for v in placed.placed]))
            assert amended.errors == [] and [(v.order_id, v.size) for v in amended.amended] == [(i, 2) for i in ids]
            cancelled = await gw.execute(OrderIntents(symbol="BTCUSD", seq=3, product_id=27, cancel=ids, amend=[],
                                                      place=[], sent_ns=time.perf_counter_ns()))
            assert cancelled.errors == [] and cancelled.cancelled == ids
            spent = gw.rest.limiter.snapshot().used - spent
    finally:
        await venue.stop()
    calls = {route: n for (route, _), n in gw.rest.outcomes.items() if "/v2/orders" in route and "GET" not in route}
    assert calls == {"POST /v2/orders/batch": 1, "PUT /v2/orders/batch": 1, "DELETE /v2/orders/batch": 1}
    assert spent == 3 * 25
    assert venue.engine.open_orders(None) == []


async def test_a_rejected_order_of_a_batch_reaches_its_own_bot_with_deltas_code(tmp_path: Path) -> None:
    """Two bots' grids at once; one order of BTCUSD's cannot be margined. BTCUSD's answer names
    that order with Delta's code and carries the other four; ETHUSD's answer is untouched; the
    ledger gets the rejection with its code."""
    venue = await started_venue(time.time())
    gw = two_symbol_gateway(tmp_path, venue)
    try:
        async with running(gw) as run:
            btc = (await gw.rest.get_ticker("BTCUSD")).close
            eth = (await gw.rest.get_ticker("ETHUSD")).close
            assert btc is not None and eth is not None
            await gw.rest.set_leverage(27, 1)  # margin = notional
            grid = five_levels("BTCUSD", btc, 50.0)
            grid[2] = msgspec.structs.replace(grid[2], size=200_000)  # 200 BTC: far beyond the paper balance
            btc_res, eth_res = await asyncio.gather(
                gw.execute(OrderIntents(symbol="BTCUSD", seq=7, product_id=27, cancel=[], amend=[], place=grid,
                                        sent_ns=time.perf_counter_ns())),
                gw.execute(OrderIntents(symbol="ETHUSD", seq=9, product_id=3136, cancel=[], amend=[],
                                        place=five_levels("ETHUSD", eth, 5.0), sent_ns=time.perf_counter_ns())))
            records = await run.sent_up(OrderRecord)
    finally:
        await venue.stop()
    assert (btc_res.symbol, btc_res.seq, eth_res.symbol, eth_res.seq) == ("BTCUSD", 7, "ETHUSD", 9)
    [error] = btc_res.errors
    assert error.startswith("g1-BTCUSD-b3: insufficient_margin: ")
    assert sorted(v.client_order_id or "" for v in btc_res.placed) == [f"g1-BTCUSD-b{k}" for k in (1, 2, 4, 5)]
    assert eth_res.errors == [] and len(eth_res.placed) == 5
    [rejected] = [r for r in records if r.event == "rejected"]
    assert (rejected.symbol, rejected.client_order_id) == ("BTCUSD", "g1-BTCUSD-b3")
    assert rejected.detail.startswith("insufficient_margin")
    assert sum(1 for r in records if r.event == "placed") == 9


async def test_more_than_ten_products_read_their_fills_in_one_account_query(tmp_path: Path) -> None:
    """12 products: one GET /v2/fills for the account (10 units), not one per 10 products; the
    fills of every product come through, those of a product not ours are passed over."""
    symbols = ["BTCUSD"] + [f"SYN_{i:04d}" for i in range(1, 12)]
    venue = PaperVenue(VenueSettings(bar_seconds=3600, history_bars=200, start_ts=time.time()), [*symbols, "ETHUSD"])
    await venue.start()
    gw = gateway_on(tmp_path, venue, symbols=symbols, paper=True)
    try:
        async with running(gw) as run:
            for pid in (27, 3136, venue.replay.symbol_market("SYN_0011").spec.product_id):  # ETHUSD is not ours
                venue.engine.place_order(OrderRequest(product_id=pid, side="buy", size=1, order_type="market_order",
                                                      client_order_id=f"m{pid}"))
            await gw.read_fills()
            stored = [msg.symbol for msg in await run.sent_up(FillEvent)]
    finally:
        await venue.stop()
    assert sorted(stored) == ["BTCUSD", "SYN_0011"]
    assert gw.rest.outcomes[("GET /v2/fills", "2xx")] == 1


async def test_quotes_that_would_wait_minutes_for_rate_budget_are_refused_at_once(tmp_path: Path) -> None:
    """With the account's budget spent, new quotes are not queued for the window's refill (the
    bot gives up after 15 s and reads the venue back; orders sent minutes later would be
    stale): they are refused at once, named, in the ledger; a cancel still goes."""
    venue = await started_venue(time.time())
    gw = two_symbol_gateway(tmp_path, venue)
    gw.rest.limiter = AccountRateLimiter(RequestBudget(capacity=60, reserve=10))  # 2 batches of 25 fit
    gw.pace_slack_share = 1.0  # (the whole window at once: this test is about a spent one)
    try:
        async with running(gw) as run:
            price = (await gw.rest.get_ticker("BTCUSD")).close
            assert price is not None
            first = await gw.execute(OrderIntents(symbol="BTCUSD", seq=1, product_id=27, cancel=[], amend=[],
                                                  place=five_levels("BTCUSD", price, 50.0),
                                                  sent_ns=time.perf_counter_ns()))
            assert first.errors == [] and len(first.placed) == 5
            late = [msgspec.structs.replace(p, client_order_id=p.client_order_id.replace("g1", "g2"))
                    for p in five_levels("BTCUSD", price, 60.0)]
            started = time.monotonic()
            second = await gw.execute(OrderIntents(symbol="BTCUSD", seq=2, product_id=27, amend=[],
                                                   cancel=[first.placed[0].order_id], place=late,
                                                   sent_ns=time.perf_counter_ns()))
            took = time.monotonic() - started
            records = await run.sent_up(OrderRecord, timeout_ms=300)
    finally:
        await venue.stop()
    assert took < 2.0
    assert second.cancelled == [first.placed[0].order_id] and second.placed == []
    assert [e.split(": ")[:2] for e in second.errors] == [[p.client_order_id, "rate_budget_spent"] for p in late]
    rejected = sorted(r.client_order_id for r in records if r.event == "rejected")
    assert rejected == sorted(p.client_order_id for p in late)
    assert all(venue.engine.order_by_client_id(p.client_order_id) is None for p in late)


async def test_a_bot_that_spent_its_share_is_held_while_others_trade_and_its_cancels_still_go(
        tmp_path: Path) -> None:
    """Each symbol's quotes draw on its own share of the account's budget: BTCUSD, having spent
    its share on a grid and a re-grid, has its third grid refused unsent (the venue never sees
    it; the bot is told how long to hold it), while ETHUSD's grid goes and BTCUSD's cancels (risk
    first) still go."""
    venue = await started_venue(time.time())
    gw = two_symbol_gateway(tmp_path, venue)
    gw.shares = SymbolShares(2, capacity=200, window_s=300.0, share=0.5)  # 50 units each, refilled over 5 min
    try:
        async with running(gw):
            price = (await gw.rest.get_ticker("BTCUSD")).close
            eth = (await gw.rest.get_ticker("ETHUSD")).close
            assert price is not None and eth is not None

            def grid(g: int, symbol: str = "BTCUSD", at: float = price) -> list[NewOrderSpec]:
                return [msgspec.structs.replace(p, client_order_id=p.client_order_id.replace("g1", f"g{g}"))
                        for p in five_levels(symbol, at, 10.0 * g)]

            async def send(seq: int, symbol: str = "BTCUSD", **kw: object) -> IntentResult:
                return await gw.execute(OrderIntents(symbol=symbol, seq=seq, product_id=27 if symbol == "BTCUSD"
                                                     else 3136, sent_ns=time.perf_counter_ns(),
                                                     **{"cancel": [], "amend": [], "place": [], **kw}))  # type: ignore[arg-type]
            first = await send(1, place=grid(1))
            second = await send(2, place=grid(2))
            assert first.errors == second.errors == [] and len(first.placed) == len(second.placed) == 5
            third = await send(3, place=grid(3), cancel=[first.placed[0].order_id])
            theirs = await send(1, "ETHUSD", place=grid(1, "ETHUSD", eth))
            cancels = await send(4, cancel=[o.order_id for o in second.placed])
    finally:
        await venue.stop()
    assert [e.split(": ")[1] for e in third.errors] == ["rate_budget_share"] * 5
    assert third.unsent == 5 and not third.venue_state_uncertain and third.retry_after_s == MAX_RETRY_AFTER_S
    assert third.cancelled == [first.placed[0].order_id] and third.reached_venue
    assert all(venue.engine.order_by_client_id(p.client_order_id) is None for p in grid(3))
    assert theirs.errors == [] and len(theirs.placed) == 5
    assert sorted(cancels.cancelled) == sorted(o.order_id for o in second.placed) and cancels.errors == []
    assert (gw.intent_budget.intents, gw.intent_budget.refused) == (5, 1)


async def test_a_bots_regular_re_read_takes_the_equity_polls_fresh_balances(tmp_path: Path) -> None:
    """A regular re-read (no fills) costs 6 units, not 9: its balances come from the gateway's
    equity poll when that is under BALANCES_REUSE_S old; a full reconciliation, or a stale poll,
    reads them itself."""
    venue = await started_venue(time.time())
    gw = two_symbol_gateway(tmp_path, venue)
    try:
        async with running(gw):
            gw.balances_read = (time.monotonic(), await gw.rest.get_wallet_balances())
            before = dict(gw.rest.units_spent)
            fresh = await gw.handle(AccountRequest(symbol="BTCUSD", include_fills=False, sent_ns=0))
            regular = gw.rest.units_spent["resync"]
            full = await gw.handle(AccountRequest(symbol="BTCUSD", include_fills=True, sent_ns=0))
            gw.balances_read = (time.monotonic() - BALANCES_REUSE_S - 0.1, gw.balances_read[1])
            stale = await gw.handle(AccountRequest(symbol="BTCUSD", include_fills=False, sent_ns=0))
    finally:
        await venue.stop()
    assert "resync" not in before and regular == 6
    assert gw.rest.units_spent["reconcile"] == 19 and gw.rest.units_spent["resync"] == 6 + 9
    assert fresh.error == full.error == stale.error == ""
    assert fresh.available_balance == stale.available_balance > 0 and fresh.equity == full.equity


async def test_a_balance_read_before_the_accounts_orders_changed_is_not_reused(tmp_path: Path) -> None:
    """The bot sizes its grid from the re-read's balance plus the margin its resting entries hold
    (grid_sizing_balance). A balance the equity poll read just before the grid was placed, reused
    beside the re-read's fresh book, counted that margin twice: the next grid came out larger than
    the account affords. Any order or fill of the account since the poll asked (an intent executed,
    an order event, a fill) makes the re-read read its own balance."""
    venue = await started_venue(time.time())
    gw = two_symbol_gateway(tmp_path, venue)
    try:
        async with running(gw):
            before = await gw.rest.get_wallet_balances()
            gw.balances_read = (time.monotonic(), before)  # the equity poll, a moment before the grid
            price = (await gw.rest.get_ticker("BTCUSD")).close
            assert price is not None
            ours = [msgspec.structs.replace(p, client_order_id=coid.encode(
                bot_id="g1", symbol="BTCUSD", side="buy", purpose="entry", level=k + 1, generation=1))
                for k, p in enumerate(five_levels("BTCUSD", price, 50.0))]
            grid = await gw.handle(OrderIntents(symbol="BTCUSD", seq=1, product_id=27, cancel=[], amend=[],
                                                place=ours, sent_ns=0))
            assert grid.errors == [] and len(grid.placed) == 5
            snap = await gw.handle(AccountRequest(symbol="BTCUSD", include_fills=False, sent_ns=0))
            gw.balances_read = (time.monotonic() + 0.001, before)  # a poll asked after the change: reused
            reused = gw.recent_balances()
            gw.account_changed_at = time.monotonic() + 0.01  # an order event or a fill heard since
            assert gw.recent_balances() is None
    finally:
        await venue.stop()
    usd = next(b for b in before if b.asset_symbol in ("USD", "USDT"))
    held = entry_margin_held(snap.open_orders, gw.products["BTCUSD"], bot_id="g1", symbol="BTCUSD")
    assert held > 0 and snap.available_balance < usd.available_balance  # the grid's margin is held now
    sized = grid_sizing_balance(snap.available_balance, snap.open_orders, gw.products["BTCUSD"], bot_id="g1",
                                symbol="BTCUSD")
    assert sized == pytest.approx(usd.available_balance)  # as before the grid, not its margin twice
    assert reused is before


async def test_quotes_ahead_of_an_even_pace_through_the_window_are_held(tmp_path: Path) -> None:
    """The window's spend keeps an even pace after its start-up slack: a grid that would spend
    ahead of it is refused unsent with the seconds until the pace allows it."""
    venue = await started_venue(time.time())
    gw = two_symbol_gateway(tmp_path, venue)
    gw.rest.limiter = AccountRateLimiter(RequestBudget(capacity=1_000, reserve=0))  # 3.3 units a second
    gw.pace_slack_share = 0.03  # 30 units ahead of the pace
    gw.shares = SymbolShares(2, capacity=1_000)  # 250 units a symbol per 5 min
    try:
        async with running(gw):
            price = (await gw.rest.get_ticker("BTCUSD")).close
            assert price is not None
            first = await gw.execute(OrderIntents(symbol="BTCUSD", seq=1, product_id=27, cancel=[], amend=[],
                                                  place=five_levels("BTCUSD", price, 50.0),
                                                  sent_ns=time.perf_counter_ns()))
            ahead = await gw.execute(OrderIntents(symbol="ETHUSD", seq=1, product_id=3136, cancel=[], amend=[],
                                                  place=five_levels("ETHUSD", price / 20, 5.0),
                                                  sent_ns=time.perf_counter_ns()))
    finally:
        await venue.stop()
    assert first.errors == [] and len(first.placed) == 5
    assert [e.split(": ")[1] for e in ahead.errors] == ["rate_budget_pace"] * 5 and ahead.unsent == 5
    # held for its share's fair turn (25 units at 500 / 2 symbols per 300 s), longer than the pace's own 6 s
    assert ahead.retry_after_s == pytest.approx(25 / gw.shares.rate_per_s, abs=0.5) == 30.0
