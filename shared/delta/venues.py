"""Which Delta Exchange venue a session talks to, chosen by name in config.

India and Global are separate exchanges (separate keys, product ids and even contracts under the
same symbol), each with a production and a testnet host. "paper" is our own venue server whose
addresses are only known once it has started, so they are supplied at run time.
"""

from __future__ import annotations

import msgspec


class Venue(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    rest_url: str
    ws_url: str  # private + legacy public channels
    public_ws_url: str | None  # compact public channels host; None where no source confirms one
    is_paper: bool = False
    is_testnet: bool = False


VENUES: dict[str, Venue] = {
    "india": Venue(
        name="india", rest_url="https://api.india.delta.exchange",
        ws_url="wss://socket.india.delta.exchange",
        public_ws_url="wss://public-socket.india.delta.exchange"),
    "india-testnet": Venue(
        name="india-testnet", rest_url="https://cdn-ind.testnet.deltaex.org",
        ws_url="wss://socket-ind.testnet.deltaex.org",
        public_ws_url="wss://socket-ind-pub.testnet.deltaex.org", is_testnet=True),
    "global": Venue(
        name="global", rest_url="https://api.delta.exchange",
        ws_url="wss://socket.delta.exchange", public_ws_url=None),
    "global-testnet": Venue(
        name="global-testnet", rest_url="https://testnet-api.delta.exchange",
        ws_url="wss://testnet-socket.delta.exchange", public_ws_url=None, is_testnet=True),
}

PAPER = "paper"
PAPER_PUBLIC_PATH = "/public"  # the paper venue's stand-in for India's public host, beside /ws
VENUE_NAMES: tuple[str, ...] = (*VENUES, PAPER)

# Names traders are likely to type for the same thing.
_ALIASES = {"india-demo": "india-testnet", "india-prod": "india", "global-prod": "global",
            "delta": "global", "delta-india": "india"}


class UnknownVenueError(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown venue {name!r}; valid venues: {', '.join(VENUE_NAMES)}")
        self.name = name


def resolve_venue(name: str, *, rest_url: str | None = None, ws_url: str | None = None) -> Venue:
    """Venue by config name. "paper" needs the running paper venue's rest_url and ws_url."""
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key == PAPER:
        if not rest_url or not ws_url:
            raise ValueError("venue 'paper' needs rest_url and ws_url of the running paper venue")
        # the paper venue serves India's compact public channels on its own path
        public = ws_url.removesuffix("/ws") + PAPER_PUBLIC_PATH if ws_url.endswith("/ws") else None
        return Venue(name=PAPER, rest_url=rest_url.rstrip("/"), ws_url=ws_url,
                     public_ws_url=public, is_paper=True)
    if key not in VENUES:
        raise UnknownVenueError(name)
    if rest_url or ws_url:
        raise ValueError(f"venue {key!r} has fixed URLs; rest_url/ws_url are only for 'paper'")
    return VENUES[key]
