"""Delta Exchange client: the one place that speaks Delta's REST v2 and websocket protocol.

- venues.py    which exchange (India/Global x prod/testnet, or our paper venue) by config name
- auth.py      request and websocket signing (exact bytes, published test vectors)
- models.py    lenient typed records (strings or numbers, µs/s/ISO times) -> ProductSpec
- errors.py    Delta's two error envelopes as exceptions carrying code, status and context
- ratelimit.py the account's weighted budget (10,000 units / 5 min) with cancels first
- rest.py      DeltaRestClient: signed, rate limited, safe retries, cursor/candle paging
- ws.py        DeltaWebSocket: auth, subscriptions, heartbeat, reconnect, staleness, REST poller

Submodules are imported explicitly (`from shared.delta.rest import DeltaRestClient`) so a process
that only needs signing does not pay for aiohttp.
"""
