"""Product specifications: what the grid, sizing and the paper venue need to know about a contract.

Specs always come from the venue in use (`/v2/products`); `PAPER_PRODUCTS` below is the paper
venue's own catalogue, modelled on Delta India's perpetuals, never a stand-in for a live venue.
"""

from __future__ import annotations

import difflib
import re
import zlib
from collections.abc import Mapping

import msgspec

# Synthetic symbols for load tests: `SYN_` prefix and an underscore, which no Delta symbol uses,
# so a synthetic market can never be mistaken for (or routed to) a real one.
SYNTHETIC_PREFIX = "SYN_"
_SYNTHETIC_RE = re.compile(r"^SYN_[0-9]{4,6}$")


class ProductSpec(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    product_id: int
    contract_value: float  # underlying units per contract (0.001 BTC for India BTCUSD)
    tick_size: float
    min_size: int = 1  # whole contracts
    position_size_limit: int = 1_000_000
    maker_fee: float = 0.0002
    taker_fee: float = 0.0005
    default_leverage: float = 10.0
    initial_margin: float = 0.1  # fraction of notional, = 1 / leverage
    maintenance_margin: float = 0.05
    settling_asset: str = "USD"
    underlying_asset: str = ""
    notional_type: str = "vanilla"
    contract_type: str = "perpetual_futures"

    def round_price(self, price: float) -> float:
        """Nearest valid price on the tick grid (ties away from zero, as a trader would expect)."""
        ticks = int(price / self.tick_size + 0.5)
        return round(ticks * self.tick_size, 10)

    def floor_price(self, price: float) -> float:
        return round(int(price / self.tick_size + 1e-9) * self.tick_size, 10)

    def ceil_price(self, price: float) -> float:
        ticks = int(price / self.tick_size - 1e-9)
        if ticks * self.tick_size < price - 1e-12:
            ticks += 1
        return round(ticks * self.tick_size, 10)

    def notional(self, size: int, price: float) -> float:
        return abs(size) * self.contract_value * price


PAPER_PRODUCTS: dict[str, ProductSpec] = {
    "BTCUSD": ProductSpec(
        symbol="BTCUSD", product_id=27, contract_value=0.001, tick_size=0.5,
        position_size_limit=229_167, underlying_asset="BTC",
    ),
    "ETHUSD": ProductSpec(
        symbol="ETHUSD", product_id=3136, contract_value=0.01, tick_size=0.05,
        position_size_limit=100_000, underlying_asset="ETH",
    ),
}


def is_synthetic(symbol: str) -> bool:
    return bool(_SYNTHETIC_RE.match(symbol))


SYNTHETIC_ID_BASE = 900_000  # a synthetic product's id is this + its index (the paper venue reads it back)


def synthetic_symbol(index: int) -> str:
    return f"{SYNTHETIC_PREFIX}{index:04d}"


def synthetic_spec(symbol: str) -> ProductSpec:
    if not is_synthetic(symbol):
        raise ValueError(f"{symbol!r} is not a synthetic symbol (expected {SYNTHETIC_PREFIX}NNNN)")
    index = int(symbol[len(SYNTHETIC_PREFIX):])
    return ProductSpec(
        symbol=symbol, product_id=SYNTHETIC_ID_BASE + index, contract_value=0.01, tick_size=0.01,
        underlying_asset=symbol,
    )


class UnknownSymbolError(ValueError):
    """A symbol the venue does not list; the message names the closest known symbols."""

    def __init__(self, symbol: str, known: list[str], venue: str) -> None:
        close = difflib.get_close_matches(symbol.upper(), known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        super().__init__(f"unknown symbol {symbol!r} on {venue}{hint}")
        self.symbol = symbol
        self.close_matches = close


# Products the config defines ([market.products], for a candle file of a contract the catalogue
# does not know): ids in their own range, clear of Delta's, --spec's 800_000 + n and synthetic's.
CONFIGURED_ID_BASE = 700_000
CONFIGURED_ID_SPAN = 100_000


def configured_spec(symbol: str, *, contract_value: float, tick_size: float, maker_fee: float,
                    taker_fee: float) -> ProductSpec:
    """A product the config defines. Its id is derived from the symbol, so it is the same in every
    run on the same paper account (the account keeps positions by product id)."""
    pid = CONFIGURED_ID_BASE + zlib.crc32(symbol.encode()) % CONFIGURED_ID_SPAN
    return ProductSpec(symbol=symbol, product_id=pid, contract_value=contract_value, tick_size=tick_size,
                       maker_fee=maker_fee, taker_fee=taker_fee, underlying_asset=symbol.removesuffix("USD")
                       or symbol)


def resolve_paper_symbol(symbol: str, extra: Mapping[str, ProductSpec] | None = None) -> ProductSpec:
    """Paper venue catalogue lookup: the products given in `extra` (configured ones, or those a
    live-prices source lists), the shipped real series, and on-demand synthetic products."""
    if extra and symbol in extra:
        return extra[symbol]
    if symbol in PAPER_PRODUCTS:
        return PAPER_PRODUCTS[symbol]
    if is_synthetic(symbol):
        return synthetic_spec(symbol)
    raise UnknownSymbolError(symbol, list(PAPER_PRODUCTS) + list(extra or ()) + [f"{SYNTHETIC_PREFIX}0001"],
                             "the paper venue")
