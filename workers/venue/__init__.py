"""The paper venue: a Delta-compatible REST v2 + websocket server on 127.0.0.1 over the matching
engine (shared/matching), with a market replayed from the shipped candles.

One kind of knowledge per module:
- app.py      composition root: builds the pieces and the aiohttp app; lifecycle; venue_main
- ws.py       the websocket hub (given the venue's view; imports nothing back)

`workers/venue_proc.py` is the supervised process shell around it.
"""

from workers.venue.app import PaperVenue, VenueSettings, venue_main, write_venue_json

__all__ = ["PaperVenue", "VenueSettings", "venue_main", "write_venue_json"]
