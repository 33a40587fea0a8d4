"""Issue 14 §1, last bullet: the websocket's loss events are acted on. Over real sockets, the paper
venue's fault injection closes every websocket on a timer; the gateway reads the trades missed
while its market socket was down back from REST before it resubscribes, so the bots' tick stream
has no hole, and counts each per-symbol resync in its status note. The pure bookkeeping
(shared/delta/resync.py) for sequence and data gaps is checked below it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from shared.delta.resync import DATA_GAP, DISCONNECT, SEQUENCE_GAP, MarketTrade, ResyncBook
from shared.delta.ws import SequenceGap
from shared.messages import OrderEvent, Tick
from tests.workers.gateway_support import gateway_on, running
from workers.venue import PaperVenue, VenueSettings

STEP_US = 15_000_000  # the paper replay trades every quarter of a 1m bar, on the market clock


async def test_a_dropped_socket_loses_no_tick_and_counts_its_resyncs(tmp_path: Path) -> None:
    venue = PaperVenue(VenueSettings(bar_seconds=0.1, history_bars=200, fault_ws_drop_interval_s=1.5), ["BTCUSD"])
    await venue.start()
    gw = gateway_on(tmp_path, venue, public_ws_url=venue.public_ws_url)
    ticks: list[Tick] = []
    try:
        async with running(gw, watch=["BTCUSD"]) as run:
            assert gw.public_ws is not None and gw.ws is not None
            deadline = time.monotonic() + 20.0
            # three drops of both sockets, each reconnect backing off 0.25-0.5 s (10-20 trades missed)
            while time.monotonic() < deadline and (gw.public_ws.connections < 4 or len(ticks) < 40):
                if isinstance(msg := await run.published(100), Tick):
                    ticks.append(msg)
            note = gw.figures(0.0).note
    finally:
        await venue.stop()
    assert gw.public_ws.connections >= 4, "the venue's fault timer did not drop the sockets"
    stamps = [t.exch_ts_us for t in ticks]
    holes = [(a, b) for a, b in zip(stamps, stamps[1:], strict=False) if b - a != STEP_US]
    assert not holes, f"ticks missing or repeated around a reconnect: {holes[:5]}"
    assert [t.seq for t in ticks] == list(range(ticks[0].seq, ticks[0].seq + len(ticks)))
    book = gw.resync.book
    assert book.recovered > 0, "no missed trade was read back: the drops fell between trades?"
    assert book.reasons[DISCONNECT] >= 6  # both sockets, three times
    assert book.resyncs >= 3 and f"resyncs {book.resyncs}" in note and "missed trades read back" in note


async def test_a_sequence_gap_reads_that_symbols_orders_and_hands_them_to_its_worker(tmp_path: Path) -> None:
    venue = PaperVenue(VenueSettings(bar_seconds=0.1, history_bars=200), ["BTCUSD", "ETHUSD"])
    await venue.start()
    gw = gateway_on(tmp_path, venue, symbols=("BTCUSD", "ETHUSD"), public_ws_url=venue.public_ws_url)
    events: list[OrderEvent] = []
    try:
        async with running(gw, watch=["ETHUSD"]) as run:
            eth = gw.products["ETHUSD"]
            placed = await gw.rest.place_order(product_id=eth.product_id, size=1, side="buy", limit_price=1.0,
                                               order_type="limit_order", client_order_id="resync-test-1")
            loop = asyncio.create_task(gw.resync.loop())
            await gw.resync.on_event(gw.ws, SequenceGap(channel="orders", symbol="ETHUSD", expected=5, got=7))
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and not events:
                msg = await run.published(100)
                if isinstance(msg, OrderEvent) and msg.order.client_order_id == "resync-test-1":
                    events.append(msg)
            loop.cancel()
    finally:
        await venue.stop()
    assert events and events[0].order.order_id == int(placed.id) and events[0].order.state == "open"
    assert gw.resync.book.reasons[SEQUENCE_GAP] == 1 and gw.resync.book.resyncs == 1  # ETHUSD only


def test_resync_book_coalesces_per_symbol_and_reads_back_only_newer_trades() -> None:
    book = ResyncBook(["BTCUSD", "ETHUSD"])
    book.on_sequence_gap("ETHUSD")
    book.on_sequence_gap("ETHUSD")
    book.on_sequence_gap("XRPUSD")  # not ours: nothing to read
    assert book.take() == [("ETHUSD", SEQUENCE_GAP)] and book.take() == []
    book.on_data_gap()
    assert sorted(s for s, _ in book.take()) == ["BTCUSD", "ETHUSD"]
    assert book.reasons == {SEQUENCE_GAP: 3, DATA_GAP: 1}
    # before anything was heard there is no hole to fill
    assert book.missed("BTCUSD", [MarketTrade(5, 1.0, 1)]) == []
    assert book.heard("BTCUSD", 10)
    assert not book.heard("BTCUSD", 10)
    recent = [MarketTrade(30, 3.0, 1), MarketTrade(10, 1.0, 1), MarketTrade(20, 2.0, 1), MarketTrade(5, 0.5, 1)]
    assert [t.ts_us for t in book.missed("BTCUSD", recent)] == [20, 30]
    assert book.missed("BTCUSD", recent) == [] and book.recovered == 2
