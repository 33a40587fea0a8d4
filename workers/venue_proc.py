"""The paper venue as a supervised child process (paper mode only).

The supervisor fixes its port and its per-run key/secret, so a restarted venue is found again
at the same address by the gateway; `<run dir>/venue.json` (mode 0600) lets a trader inspect the
paper account with any Delta client.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path

import zmq
import zmq.asyncio

from shared.config import MarketConfig
from shared.messages import GatewayFigures, MessageCodec
from shared.price_source import price_feed
from shared.products import ProductSpec, configured_spec

from .runtime import (
    ChildSpec,
    heartbeat_socket,
    install_stop_signals,
    leave_interrupt_to_supervisor,
    run_event_loop,
    send_heartbeat,
    setup_logging,
    supervisor_alive,
)
from .venue import PaperVenue, VenueSettings, write_venue_json
from .venue.app import VenuePortInUse
from .venue.live_feed import LiveFeed

log = logging.getLogger("venue")
RELEASE_REPLAY_FILE = "release-replay"  # [testing] venue_hold_replay: the replay starts once this exists


def paper_products(m: MarketConfig) -> dict[str, ProductSpec]:
    """[market.products] as the venue's catalogue entries."""
    return {sym: configured_spec(sym, contract_value=p.contract_value, tick_size=p.tick_size,
                                 maker_fee=p.maker_fee, taker_fee=p.taker_fee) for sym, p in m.products.items()}


def venue_settings(spec: ChildSpec, port: int) -> VenueSettings:
    m = spec.config.market
    t = spec.config.testing
    # The account lives in the run dir: a restarted venue (crash, or the next run on the same run
    # dir) keeps balances, positions and fill ids, so the SQLite ledger never sees an id reused.
    return VenueSettings(port=port, bar_seconds=m.bar_seconds, clock=m.clock, arrivals=m.arrivals,
                         history_bars=m.history_bars, seed=m.seed,
                         data=dict(m.data), products=paper_products(m),
                         initial_balance_usd=m.initial_balance_usd, leverage=m.leverage,
                         funding_interval_s=m.funding_interval_s, funding_series=dict(m.funding_series),
                         # a held replay (test only) starts its market at its first live bar: no
                         # catching up with the wall time the run spent starting
                         start_ts=int(spec.run_start_wall) if spec.run_start_wall and not t.venue_hold_replay
                         else None,
                         state_file=str(Path(spec.run_dir) / "paper-account.json"),
                         fault_latency_ms=t.venue_latency_ms, fault_5xx_probability=t.venue_5xx_probability,
                         fault_429_probability=t.venue_429_probability,
                         fault_reject_probability=t.venue_reject_probability,
                         fault_ws_drop_interval_s=t.venue_ws_drop_interval_s,
                         hold_replay_file=str(Path(spec.run_dir) / RELEASE_REPLAY_FILE) if t.venue_hold_replay
                         else None)


async def live_feed(spec: ChildSpec) -> LiveFeed | None:
    """market.source = "live-prices": the source's feed, prepared (specs, recent bars)."""
    if spec.config.market.source != "live-prices":
        return None
    feed = LiveFeed(price_feed(spec.config.run.venue, os.environ), spec.config.market.history_bars)
    await feed.prepare(list(spec.symbols))
    return feed


async def run(spec: ChildSpec, port: int, api_key: str, api_secret: str,
              listener: socket.socket | None = None) -> None:
    live = await live_feed(spec)
    venue = PaperVenue(venue_settings(spec, port), list(spec.symbols), api_key=api_key, api_secret=api_secret,
                       live=live, listener=listener)
    await venue.start()
    write_venue_json(Path(spec.run_dir), venue)
    codec = MessageCodec(spec.name)
    ctx = zmq.asyncio.Context()
    hb = heartbeat_socket(ctx, spec)
    stop = asyncio.Event()
    install_stop_signals(stop)
    leave_interrupt_to_supervisor()  # Ctrl-C: stopped last by the supervisor, after the gateway's last request
    log.info("paper venue up at %s", venue.rest_url)
    while not stop.is_set():
        if not supervisor_alive(spec.supervisor_pid):
            break
        send_heartbeat(hb, codec, spec, GatewayFigures(
            ticks_published=venue.ticks_replayed, symbols=len(spec.symbols), source="paper venue",
            requests=0, malformed=0, note=venue.rest_url + (f"; {live.note()}" if live is not None else ""),
            storage_error=venue.storage_error))
        try:
            await asyncio.wait_for(stop.wait(), timeout=spec.config.supervision.heartbeat_interval_s)
        except TimeoutError:
            pass
    await venue.stop()
    ctx.destroy(linger=0)


def main(spec: ChildSpec, listener: socket.socket | None = None) -> None:
    """`listener`: the run's venue socket, bound by the supervisor, which keeps it for the run (a
    restarted venue serves on it again, so the port is never free for another program)."""
    setup_logging(spec.run_dir, spec.name)
    access = spec.venue_access
    if access is None:
        raise ValueError("venue child started without its port and keys")
    try:
        run_event_loop(run(spec, access.port, access.api_key, access.api_secret, listener))
    except VenuePortInUse as exc:
        # Without a listener handed over, the port is bound here and may have been taken:
        # said in one line, exit 2, restarted with backoff until the port frees.
        log.error("venue cannot listen: %s; something else took this run's venue port", exc)
        raise SystemExit(2) from None
    except Exception:
        log.exception("venue crashed")
        raise
