"""Client order ids that carry ownership and purpose, so a restarted bot can read its book back.

Layout (at most 32 characters, Delta's limit; only [A-Za-z0-9_-] so it survives any transport):

    dg1-<bot>-<symbol tag>-<side><purpose><level>-<generation>
    dg1-a1-BTCUSD-Be03-1z

- `dg1`: our scheme and its version; anything else is not ours.
- `<bot>`: 1..8 of [a-z0-9], the bot (account/strategy instance) that owns the order.
- `<symbol tag>`: the symbol itself when it is 1..10 of [A-Z0-9_] (BTCUSD, SYN_0001), else `x` +
  9 lowercase hex digits of the symbol's BLAKE2b hash. Real symbols are upper case, so a hash tag
  can never equal a literal symbol. Two long symbols share a tag with probability 2**-36 per pair:
  for 1,000 long symbols on one bot about 1000**2 / 2**37 = 7e-6. A collision would only make two
  of the same bot's symbols read each other's orders as their own; `decode` is given the symbol
  (and the exchange reports the product of each order), so the reconciler also filters by symbol.
- `<side>`: B or S. `<purpose>`: e (entry), t (take-profit), s (stop). `<level>`: two digits 00..99.
- `<generation>`: base-36, 1..3 digits, wrapping at 36**3 = 46,656. A new placement of a level gets
  a new generation, so a stale order and its replacement never share an id. Wrapping is harmless:
  generations are only compared for equality, and 46,656 re-grids cannot be in flight at once.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable

import msgspec

from shared.trading.orders import PURPOSES, Purpose, Side

MAX_LENGTH = 32
SCHEME = "dg1"
MAX_LEVEL = 99
GENERATION_MODULUS = 36**3
_BOT_RE = re.compile(r"^[a-z0-9]{1,8}$")
_LITERAL_SYMBOL_RE = re.compile(r"^[A-Z0-9_]{1,10}$")
_ID_RE = re.compile(
    r"^dg1-(?P<bot>[a-z0-9]{1,8})-(?P<tag>[A-Z0-9_]{1,10}|x[0-9a-f]{9})"
    r"-(?P<side>[BS])(?P<purpose>[ets])(?P<level>[0-9]{2})-(?P<gen>[0-9a-z]{1,3})$"
)
_SIDE_CODE: dict[Side, str] = {"buy": "B", "sell": "S"}
_SIDE_FROM_CODE: dict[str, Side] = {"B": "buy", "S": "sell"}
_PURPOSE_CODE: dict[Purpose, str] = {"entry": "e", "take_profit": "t", "stop": "s"}
_PURPOSE_FROM_CODE: dict[str, Purpose] = {v: k for k, v in _PURPOSE_CODE.items()}
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


class OrderTag(msgspec.Struct, frozen=True, kw_only=True):
    """What a client order id says about its order."""

    bot_id: str
    symbol_tag: str
    side: Side
    purpose: Purpose
    level: int
    generation: int


@functools.lru_cache(maxsize=1024)
def symbol_tag(symbol: str) -> str:
    if _LITERAL_SYMBOL_RE.fullmatch(symbol):
        return symbol
    if not symbol:
        raise ValueError("symbol must not be empty")
    return "x" + hashlib.blake2b(symbol.encode(), digest_size=8).hexdigest()[:9]


@functools.lru_cache(maxsize=1024)  # a plan's places share one generation, and generations run in order
def _base36(n: int) -> str:
    if n == 0:
        return "0"
    digits = []
    while n:
        n, r = divmod(n, 36)
        digits.append(_BASE36[r])
    return "".join(reversed(digits))


def validate_bot_id(bot_id: str) -> str:
    if not _BOT_RE.fullmatch(bot_id):
        raise ValueError(f"bot id {bot_id!r} must be 1..8 characters of [a-z0-9]")
    return bot_id


@functools.lru_cache(maxsize=1024)
def _prefix(bot_id: str, symbol: str) -> str:
    """The id's bot and symbol part, checked once per pair (a worker encodes thousands an hour)."""
    validate_bot_id(bot_id)
    return f"{SCHEME}-{bot_id}-{symbol_tag(symbol)}-"


def encode(
    *, bot_id: str, symbol: str, side: Side, purpose: Purpose, level: int, generation: int
) -> str:
    """The client order id for one order; generation is taken modulo 36**3."""
    prefix = _prefix(bot_id, symbol)
    if side not in _SIDE_CODE:
        raise ValueError(f"side must be buy or sell, got {side!r}")
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}, got {purpose!r}")
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"level must be 0..{MAX_LEVEL}, got {level}")
    if generation < 0:
        raise ValueError(f"generation must be >= 0, got {generation}")
    gen = generation % GENERATION_MODULUS
    cid = f"{prefix}{_SIDE_CODE[side]}{_PURPOSE_CODE[purpose]}{level:02d}-{_base36(gen)}"
    assert len(cid) <= MAX_LENGTH, cid  # guaranteed by the field widths above
    if cid not in _PARSED:  # what `parse` reads back from it, so a new order's id is never parsed
        _remember(cid, OrderTag(bot_id=bot_id, symbol_tag=symbol_tag(symbol), side=side, purpose=purpose,
                                level=level, generation=gen))
    return cid


PARSE_CACHE = 4096  # ids whose tag is remembered; when full the cache starts again (one atomic clear)
_PARSED: dict[str | None, OrderTag | None] = {}


def _remember(client_order_id: str | None, tag: OrderTag | None) -> None:
    if len(_PARSED) >= PARSE_CACHE:
        _PARSED.clear()
    _PARSED[client_order_id] = tag


def parse(client_order_id: str | None) -> OrderTag | None:
    """Any bot's id in our scheme, or None (manual orders, other software, malformed). Cached
    (bounded): every plan reads the ids of the whole book again, and a tag is immutable;
    `encode` puts each id it makes in the cache."""
    try:
        return _PARSED[client_order_id]
    except KeyError:
        pass
    tag = _parse(client_order_id)
    _remember(client_order_id, tag)
    return tag


def _parse(client_order_id: str | None) -> OrderTag | None:
    if not client_order_id or len(client_order_id) > MAX_LENGTH:
        return None
    m = _ID_RE.fullmatch(client_order_id)
    if m is None:
        return None
    return OrderTag(
        bot_id=m["bot"],
        symbol_tag=m["tag"],
        side=_SIDE_FROM_CODE[m["side"]],
        purpose=_PURPOSE_FROM_CODE[m["purpose"]],
        level=int(m["level"]),
        generation=int(m["gen"], 36),
    )


def decode(client_order_id: str | None, *, bot_id: str, symbol: str) -> OrderTag | None:
    """The tag if this bot owns the order for this symbol; None for anything we do not own."""
    return owned_tags(bot_id, symbol)[client_order_id]


OWNED_CACHE = 2048  # ids remembered per (bot, symbol); when full that pair's cache starts again


class OwnedTags(dict[str | None, "OrderTag | None"]):
    """`decode` for one bot and symbol as a mapping, id -> tag or None: a loop over a whole book
    (every plan reads each order's id again) takes one dict lookup an order instead of a call.
    Bounded: when full it starts again."""

    def __init__(self, bot_id: str, symbol: str) -> None:
        super().__init__()
        self.bot_id, self.symbol_tag = bot_id, symbol_tag(symbol)

    def __missing__(self, client_order_id: str | None) -> OrderTag | None:
        tag = parse(client_order_id)
        if tag is not None and (tag.bot_id != self.bot_id or tag.symbol_tag != self.symbol_tag):
            tag = None
        if len(self) >= OWNED_CACHE:
            self.clear()
        self[client_order_id] = tag
        return tag


@functools.lru_cache(maxsize=256)
def owned_tags(bot_id: str, symbol: str) -> OwnedTags:
    """The one `OwnedTags` of this bot and symbol."""
    return OwnedTags(bot_id, symbol)


def next_generation(current: int) -> int:
    return (current + 1) % GENERATION_MODULUS


def ahead(a: int, b: int) -> int:
    """The later of two generations on the wrapping counter: b is ahead of a when it is less than
    half the circle past it (live generations never span half of 46,656 re-grids)."""
    return b if 0 < (b - a) % GENERATION_MODULUS < GENERATION_MODULUS // 2 else a


def generation_after(ids: Iterable[str | None], *, bot_id: str, symbol: str) -> int:
    """The generation a restarted bot continues with: one past the furthest-ahead of its own ids
    (open orders, fills, ids the store recorded as sent), in any order and right across the wrap
    at 36**3; 0 when the bot has never traded the symbol."""
    newest: int | None = None
    for cid in ids:
        tag = decode(cid, bot_id=bot_id, symbol=symbol)
        if tag is not None:
            newest = tag.generation if newest is None else ahead(newest, tag.generation)
    return 0 if newest is None else next_generation(newest)
