from __future__ import annotations

import itertools
from typing import Any

import pytest

from shared.products import PAPER_PRODUCTS, synthetic_symbol
from shared.trading import client_order_id as coid
from shared.trading.orders import Purpose, Side

SYMBOLS = [
    "BTCUSD", "ETHUSD", "SYN_0001", "SYN_123456", "A", "XRPUSDT1234",  # 11 chars: hashed
    "C-BTC-90000-310125", "P-ETH-2500-280225", "MOVE-BTC-250225", "1000SHIBUSD",
    *[synthetic_symbol(i) for i in range(0, 5000, 37)],
]


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_round_trip_and_length_for_every_field(symbol: str) -> None:
    sides: tuple[Side, ...] = ("buy", "sell")
    purposes: tuple[Purpose, ...] = ("entry", "take_profit", "stop")
    for side, purpose, level, gen in itertools.product(sides, purposes, (0, 1, 7, 99), (0, 35, 36, 46655)):
        cid = coid.encode(bot_id="bot12345", symbol=symbol, side=side, purpose=purpose, level=level,
                          generation=gen)
        assert len(cid) <= coid.MAX_LENGTH
        tag = coid.decode(cid, bot_id="bot12345", symbol=symbol)
        assert tag is not None, cid
        assert (tag.side, tag.purpose, tag.level, tag.generation) == (side, purpose, level, gen)
        assert tag.bot_id == "bot12345"


def test_literal_symbols_stay_readable() -> None:
    cid = coid.encode(bot_id="a1", symbol="BTCUSD", side="buy", purpose="entry", level=3, generation=71)
    assert cid == "dg1-a1-BTCUSD-Be03-1z"
    assert coid.symbol_tag("SYN_0001") == "SYN_0001"
    assert coid.symbol_tag("C-BTC-90000-310125").startswith("x")


def test_generation_wraps() -> None:
    cid = coid.encode(bot_id="a", symbol="ETHUSD", side="sell", purpose="stop", level=0,
                      generation=coid.GENERATION_MODULUS + 5)
    tag = coid.parse(cid)
    assert tag is not None and tag.generation == 5
    assert coid.next_generation(coid.GENERATION_MODULUS - 1) == 0


def test_foreign_and_malformed_ids_are_not_ours() -> None:
    mine = coid.encode(bot_id="a1", symbol="BTCUSD", side="buy", purpose="entry", level=1, generation=1)
    assert coid.decode(mine, bot_id="a2", symbol="BTCUSD") is None  # another bot
    assert coid.decode(mine, bot_id="a1", symbol="ETHUSD") is None  # another symbol
    for manual in [None, "", "my-manual-order", "dg1", "dg2-a1-BTCUSD-Be01-1", "dg1-a1-BTCUSD-Xe01-1",
                   "dg1-a1-BTCUSD-Bq01-1", "dg1-a1-BTCUSD-Be1-1", "dg1-A1-BTCUSD-Be01-1",
                   "dg1-a1-btcusd-Be01-1", "dg1-a1-BTCUSD-Be01-1zzz", mine + "x" * 20, mine + "\n"]:
        assert coid.decode(manual, bot_id="a1", symbol="BTCUSD") is None, manual


def test_no_tag_collisions_among_many_symbols() -> None:
    symbols = list(PAPER_PRODUCTS) + [synthetic_symbol(i) for i in range(10_000)] + [
        f"C-BTC-{strike}-{day:02d}0125" for strike in range(50_000, 150_000, 1000) for day in range(1, 29)
    ]
    tags = {coid.symbol_tag(s) for s in symbols}
    assert len(tags) == len(symbols)


@pytest.mark.parametrize("kwargs", [
    {"bot_id": "UPPER"}, {"bot_id": "a1\n"}, {"bot_id": "toolongbot"}, {"bot_id": ""}, {"level": 100}, {"level": -1},
    {"generation": -1}, {"side": "long"}, {"purpose": "tp"}, {"symbol": ""},
])
def test_bad_input_is_a_clear_error(kwargs: dict[str, Any]) -> None:
    # Any: the point is to hand encode() values its types forbid
    args: dict[str, Any] = dict(bot_id="a1", symbol="BTCUSD", side="buy", purpose="entry", level=1, generation=1)
    args.update(kwargs)
    with pytest.raises(ValueError):
        coid.encode(**args)


def test_generation_after_a_restart_continues_past_the_newest_own_id() -> None:
    def cid(gen: int, bot: str = "a1") -> str:
        return coid.encode(bot_id=bot, symbol="BTCUSD", side="buy", purpose="entry", level=1, generation=gen)
    assert coid.generation_after([], bot_id="a1", symbol="BTCUSD") == 0
    assert coid.generation_after(["manual", cid(900, "b2"), cid(41), cid(40)], bot_id="a1", symbol="BTCUSD") == 42
    # after the wrap the newest id is the smallest number: still continue from it
    assert coid.generation_after([cid(1), cid(coid.GENERATION_MODULUS - 1)], bot_id="a1", symbol="BTCUSD") == 2
    assert coid.generation_after([cid(coid.GENERATION_MODULUS - 1)], bot_id="a1", symbol="BTCUSD") == 0


def test_generation_after_does_not_depend_on_the_order_of_the_ids() -> None:
    def cid(gen: int) -> str:
        return coid.encode(bot_id="a1", symbol="BTCUSD", side="sell", purpose="take_profit", level=2, generation=gen)
    ids = [cid(40), cid(7), cid(41), "manual", None]
    for perm in (ids, list(reversed(ids)), ids[2:] + ids[:2]):
        assert coid.generation_after(perm, bot_id="a1", symbol="BTCUSD") == 42
    wrapped: list[str | None] = [cid(coid.GENERATION_MODULUS - 2), cid(3), cid(coid.GENERATION_MODULUS - 1)]
    for perm in (wrapped, list(reversed(wrapped))):
        assert coid.generation_after(perm, bot_id="a1", symbol="BTCUSD") == 4
    assert coid.ahead(5, 9) == 9 and coid.ahead(9, 5) == 9 and coid.ahead(coid.GENERATION_MODULUS - 1, 0) == 0


@pytest.mark.parametrize("symbol", ["BTCUSD", "SYN_0001", "C-BTC-90000-310125"])
def test_encode_remembers_what_parsing_the_id_reads(symbol: str) -> None:
    # encode puts each id's tag in parse's cache (a new order's id is never parsed); that tag
    # must be exactly the one the id's text gives when parsed afresh
    for side, purpose, level, gen in itertools.product(("buy", "sell"), ("entry", "take_profit", "stop"),
                                                       (0, 1, 99), (0, 35, 46655, 46656 + 71)):
        cid = coid.encode(bot_id="b7", symbol=symbol, side=side, purpose=purpose,  # type: ignore[arg-type]
                          level=level, generation=gen)
        remembered = coid.parse(cid)
        coid._PARSED.clear()
        assert remembered is not None and remembered == coid.parse(cid)
        assert remembered.generation == gen % coid.GENERATION_MODULUS


def test_parse_cache_is_bounded() -> None:
    for gen in range(coid.PARSE_CACHE + 10):
        coid.encode(bot_id="b7", symbol="ETHUSD", side="buy", purpose="entry", level=1, generation=gen)
        coid.parse(f"not-ours-{gen}")
    assert len(coid._PARSED) <= coid.PARSE_CACHE
