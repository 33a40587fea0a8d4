"""The bots' start-up history through a real gateway on a real paper venue whose rate budget is far
too small for them (the 1,000-symbol start-up in miniature): every bot gets its history, none is
answered an error it would repeat, and a symbol's history is read once however often its bot asks."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from shared.delta.history_reads import ReadAskers, venue_clock_us
from shared.messages import AccountRequest, AccountSnapshot, HistoryReply, HistoryRequest
from tests.workers.gateway_support import gateway_on, running
from workers.gateway_exchange import MAX_INFLIGHT_READS, request_lanes
from workers.venue import PaperVenue, VenueSettings

SYMBOLS = [f"SYN_{i:04d}" for i in range(1, 11)]
ERROR_REPEAT_S = 2.0  # a worker answered an error asks again this long after (workers/worker.py)


async def test_history_under_a_spent_budget_waits_its_turn_is_read_once_per_symbol(tmp_path: Path) -> None:
    # 9 public units a second: three candle reads, or one and a half ticker + candles pairs, for
    # ten bots that each ask twice at once (the second ask: a worker's repeat after no answer).
    venue = PaperVenue(VenueSettings(bar_seconds=3600, history_bars=200, rate_limit_units=9,
                                     rate_limit_window_s=1.0), SYMBOLS)
    await venue.start()
    try:
        gw = gateway_on(tmp_path, venue, symbols=SYMBOLS)
        lane = request_lanes()["market"]
        answers: dict[bytes, asyncio.Queue[HistoryReply]] = {s.encode(): asyncio.Queue() for s in SYMBOLS}

        async def answer(who: bytes, reply: HistoryReply) -> None:
            answers[who].put_nowait(reply)

        async def bot(symbol: str) -> list[HistoryReply]:
            """Asks as a worker does: twice at once here, and again 2 s after an error answer."""
            me, got = symbol.encode(), []
            req = HistoryRequest(symbol=symbol, bars=100, sent_ns=time.perf_counter_ns())
            asks = [asyncio.create_task(gw.serve_history(me, req, lane, answer)) for _ in range(2)]
            while True:
                got.append(await answers[me].get())
                if not got[-1].error:
                    await asyncio.gather(*asks)
                    return got
                await asyncio.sleep(ERROR_REPEAT_S)
                asks.append(asyncio.create_task(gw.serve_history(me, req, lane, answer)))

        async with running(gw):
            await asyncio.sleep(1.1)  # the products read's window is over: the bots start on a full one
            replies = await asyncio.wait_for(asyncio.gather(*(bot(s) for s in SYMBOLS)), timeout=60.0)
            await asyncio.sleep(0.2)  # a second answer for the same ask would have arrived by now
        for symbol, got in zip(SYMBOLS, replies, strict=True):
            assert [r.error for r in got] == [""], f"{symbol}: answered {[r.error for r in got]}"
            assert got[0].n == 100 and np.all(np.frombuffer(got[0].close) > 0)
            assert answers[symbol.encode()].empty()  # one answer for both asks
        candles = {outcome: n for (route, outcome), n in gw.rest.outcomes.items() if route == "GET /v2/history/candles"}
        tickers = gw.rest.outcomes.get(("GET /v2/tickers/{symbol}", "2xx"), 0)
        assert candles.get("2xx") == len(SYMBOLS)  # one read per symbol, the repeats joined it
        assert tickers <= len(SYMBOLS)  # no venue clock read twice for a symbol
        assert gw.history_askers.joined == len(SYMBOLS) and gw.history_askers.reads_waiting == 0
        assert venue.guard.requests_refused == sum(n for (route, outcome), n in gw.rest.outcomes.items()
                                                   if outcome == "4xx")  # the 429s: refused, never spent
    finally:
        await venue.stop()


def test_a_symbols_askers_share_one_read_and_are_all_answered() -> None:
    askers = ReadAskers(max_keys=2)
    assert askers.ask("A/100", b"w1") is True
    assert askers.ask("A/100", b"w1") is False  # the same worker's repeat joins its own read
    assert askers.ask("A/100", b"w2") is False
    assert askers.ask("B/100", b"w3") is True
    assert askers.ask("C/100", b"w4") is True  # beyond the bound: a read of its own, not remembered
    assert askers.reads_waiting == 2
    assert askers.take("A/100", b"w1") == [b"w1", b"w2"]  # each asker once, the first first
    assert askers.take("C/100", b"w4") == [b"w4"]
    assert askers.ask("A/100", b"w1") is True  # a new ask after the answer reads again
    assert askers.joined == 2


def test_the_venue_clock_comes_from_a_fresh_trade_and_never_runs_ahead_of_it() -> None:
    heard = (1_700_000_000_000_000, 100.0)  # a trade's exchange µs, heard at monotonic 100 s
    assert venue_clock_us(heard, 100.5, bar_seconds=1.0) == heard[0]
    assert venue_clock_us(heard, 101.5, bar_seconds=1.0) is None  # older than one bar: ask the ticker
    assert venue_clock_us(heard, 150.0, bar_seconds=60.0) == heard[0]  # a wall-clock market: a minute
    assert venue_clock_us(None, 100.0, bar_seconds=1.0) is None
    assert venue_clock_us((0, 100.0), 100.0, bar_seconds=1.0) is None


async def test_a_history_read_refused_past_the_clients_retries_waits_for_budget_instead_of_an_error(
        tmp_path: Path) -> None:
    """Every other request answered 429 (the venue's fault switch, seeded): the client's own retries
    run out for some reads; those wait for the budget and go again, and no bot is answered an error."""
    venue = PaperVenue(VenueSettings(bar_seconds=3600, history_bars=200, fault_429_probability=0.5, seed=7),
                       SYMBOLS[:4])
    await venue.start()
    try:
        gw = gateway_on(tmp_path, venue, symbols=SYMBOLS[:4])
        lane = request_lanes()["market"]
        got: list[tuple[bytes, HistoryReply]] = []

        async def answer(who: bytes, reply: HistoryReply) -> None:
            got.append((who, reply))

        async with running(gw):
            gw.rest.max_read_attempts = 1  # the client tries each read twice at most (its floor)
            await asyncio.wait_for(asyncio.gather(*(gw.serve_history(
                s.encode(), HistoryRequest(symbol=s, bars=50, sent_ns=0), lane, answer) for s in SYMBOLS[:4])),
                timeout=60.0)
        assert sorted(who for who, _ in got) == [s.encode() for s in SYMBOLS[:4]]
        assert [r.error for _, r in got] == [""] * 4 and all(r.n == 50 for _, r in got)
        assert gw.history_budget_waits >= 1  # a read the client gave up on went again
    finally:
        await venue.stop()


async def test_a_bots_repeated_account_read_joins_its_read_waiting_for_a_slot_not_one_under_way(
        tmp_path: Path) -> None:
    """The account lane full (reads waiting for budget at a 1,000-symbol start): a bot that asks
    again after 30 s without an answer joins its read still waiting, answered once; once its read
    has started, a new ask is a read of its own (the one under way may predate its last orders)."""
    venue = PaperVenue(VenueSettings(bar_seconds=3600, history_bars=200), SYMBOLS[:2])
    await venue.start()
    try:
        gw = gateway_on(tmp_path, venue, symbols=SYMBOLS[:2])
        lane = request_lanes()["account"]
        got: list[tuple[bytes, AccountSnapshot]] = []

        async def answer(who: bytes, reply: AccountSnapshot) -> None:
            got.append((who, reply))

        def ask(symbol: str) -> asyncio.Task[None]:
            return asyncio.create_task(gw.serve_account(
                symbol.encode(), AccountRequest(symbol=symbol, include_fills=True, sent_ns=0), lane, answer))

        async with running(gw):
            for _ in range(MAX_INFLIGHT_READS):
                await lane.acquire()  # every slot taken
            asks = [ask(SYMBOLS[0]), ask(SYMBOLS[0]), ask(SYMBOLS[1])]
            await asyncio.sleep(0.05)
            for _ in range(MAX_INFLIGHT_READS):
                lane.release()
            await asyncio.wait_for(asyncio.gather(*asks), timeout=10.0)
            assert sorted(who for who, _ in got) == [s.encode() for s in SYMBOLS[:2]]  # once each
            assert all(not r.error for _, r in got)
            assert gw.rest.outcomes[("GET /v2/positions", "2xx")] == 2  # one read a bot
            assert gw.account_askers.joined == 1 and gw.account_askers.reads_waiting == 0

            async with lane:  # a slot held: the bot's read below starts at once and waits in the venue...
                first = ask(SYMBOLS[0])
                await asyncio.sleep(0)
            await asyncio.wait_for(asyncio.gather(first, ask(SYMBOLS[0])), timeout=10.0)
            assert gw.rest.outcomes[("GET /v2/positions", "2xx")] == 4  # ...so the repeat read on its own
    finally:
        await venue.stop()
