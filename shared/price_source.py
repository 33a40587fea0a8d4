"""Where `market.source = "live-prices"` takes its market from (pure: no I/O).

The paper venue's market is Delta's public feed of `run.venue`: its public host's compact
`trades` and `ob_l1` where the venue has one (India, India testnet), else the legacy `all_trades`
and `l1_orderbook` on the main socket (Global). Product specs and the history the bots are
primed with come from the same venue's public REST (`/v2/products`, `/v2/history/candles`).

`ORCHESTRATE_LIVE_PRICES_URL` (tests only): the REST base URL of a paper venue that stands in for
Delta's public host (`http://127.0.0.1:PORT`); its `/ws` and `/public` paths are used as Delta's
sockets. With it set, nothing is sent to the venue `run.venue` names.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from shared.delta.venues import Venue, resolve_venue

STAND_IN_ENV = "ORCHESTRATE_LIVE_PRICES_URL"


class PriceFeed(msgspec.Struct, frozen=True, kw_only=True):
    venue: str  # what run.venue named ("paper" for a test stand-in)
    rest_url: str  # public REST: products, candles, ticker
    ws_url: str  # the socket the market channels are subscribed on
    trades_channel: str  # "trades" (compact, public host) | "all_trades" (legacy, main socket)
    book_channel: str  # "ob_l1" | "l1_orderbook"


def price_feed(venue_name: str, environ: Mapping[str, str]) -> PriceFeed:
    """The feed for `venue_name`, or the stand-in `STAND_IN_ENV` names. Raises ValueError for an
    unknown venue or a stand-in URL that is not http(s)://host:port."""
    stand_in = environ.get(STAND_IN_ENV, "").strip().rstrip("/")
    venue: Venue
    if stand_in:
        if not stand_in.startswith(("http://", "https://")):
            raise ValueError(f"{STAND_IN_ENV}={stand_in!r}: expected the stand-in venue's REST URL, http://host:port")
        ws = "ws" + stand_in.removeprefix("http") + "/ws"
        venue = resolve_venue("paper", rest_url=stand_in, ws_url=ws)
    else:
        venue = resolve_venue(venue_name)
        if venue.is_paper:
            raise ValueError("live prices come from a Delta venue, not the paper venue")
    if venue.public_ws_url:
        return PriceFeed(venue=venue.name, rest_url=venue.rest_url, ws_url=venue.public_ws_url,
                         trades_channel="trades", book_channel="ob_l1")
    return PriceFeed(venue=venue.name, rest_url=venue.rest_url, ws_url=venue.ws_url,
                     trades_channel="all_trades", book_channel="l1_orderbook")
