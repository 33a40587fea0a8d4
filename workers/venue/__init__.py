"""The paper venue: a Delta-compatible REST v2 + websocket server on 127.0.0.1 over the matching
engine (shared/matching), with a market replayed from the shipped candles.

One kind of knowledge per module:
- app.py       composition root: builds the pieces and the aiohttp app; lifecycle; venue_main
- settings.py  VenueSettings
- account.py   the paper account's snapshot + journal (AccountStore), full-disk behaviour
- market.py    the shared market replay driven on one timer; the market clock; ticker/book/candles
- faults.py    fault switches as one FaultModel over one seeded RNG
- guard.py     auth, rate limits, error envelopes, 413, public-caller mark: aiohttp middlewares
- rest.py      the REST v2 handlers on a RouteTableDef, over the venue state
- ws.py        the websocket hub (given the venue's view; imports nothing back)
- deadman.py   Delta's dead-man switch: heartbeat endpoints, the lapse timer, its file
Imports run one way: app -> rest -> market -> guard -> faults; market, app -> ws, account;
app -> deadman -> guard, account.

`workers/venue_proc.py` is the supervised process shell around it.
"""

from workers.venue.app import PaperVenue, read_venue_json, venue_main, write_venue_json
from workers.venue.settings import VenueSettings

__all__ = ["PaperVenue", "VenueSettings", "read_venue_json", "venue_main", "write_venue_json"]
