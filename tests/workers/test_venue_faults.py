"""Paper venue fault injection (seeded, off by default) and the blocking `venue_main` entry."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from shared.delta.auth import sign
from workers.venue import PaperVenue, VenueSettings

BASE: dict[str, Any] = {"bar_seconds": 0.04, "history_bars": 200}


async def signed(session: aiohttp.ClientSession, venue: PaperVenue, method: str, path: str,
                 body: Any = None) -> tuple[int, Any, Any]:
    text = json.dumps(body, separators=(",", ":")) if body is not None else ""
    ts = str(int(time.time()))
    headers = {"api-key": venue.api_key, "timestamp": ts, "Content-Type": "application/json",
               "signature": sign(venue.api_secret, method, ts, path, "", text)}
    async with session.request(method, venue.rest_url + path, data=text or None, headers=headers) as r:
        return r.status, await r.json(content_type=None), r.headers


async def run_with(settings: VenueSettings, calls: int, method: str = "GET", path: str = "/v2/wallet/balances",
                   body: Any = None) -> tuple[PaperVenue, list[tuple[int, Any, Any]]]:
    venue = PaperVenue(settings, ["BTCUSD"])
    await venue.start()
    try:
        async with aiohttp.ClientSession() as session:
            out = [await signed(session, venue, method, path, body) for _ in range(calls)]
    finally:
        await venue.stop()
    return venue, out


async def test_faults_are_off_by_default_and_5xx_answers_unavailable() -> None:
    _, clean = await run_with(VenueSettings(**BASE), 5)
    assert [s for s, _, _ in clean] == [200] * 5
    venue, broken = await run_with(VenueSettings(**BASE, fault_5xx_probability=1.0), 2)
    assert [(s, d["error"]["code"]) for s, d, _ in broken] == [(503, "unavailable")] * 2
    assert (venue.requests_served, venue.requests_refused) == (2, 2)


async def test_injected_429_carries_the_reset_header() -> None:
    _, out = await run_with(VenueSettings(**BASE, fault_429_probability=1.0), 1)
    status, data, headers = out[0]
    assert (status, data["error"]["code"]) == (429, "rate_limit_exceeded")
    assert int(headers["X-RATE-LIMIT-RESET"]) > 0


async def test_injected_order_rejection_leaves_the_book_untouched() -> None:
    order = {"product_id": 27, "side": "buy", "size": 1, "order_type": "market_order"}
    venue, out = await run_with(VenueSettings(**BASE, fault_reject_probability=1.0), 2, "POST", "/v2/orders", order)
    assert [(s, d["error"]["code"]) for s, d, _ in out] == [(400, "risk_limits_breached")] * 2
    assert venue.engine.open_orders() == [] and len(venue.engine.fills) == 0


async def test_fault_draws_are_seeded() -> None:
    settings = VenueSettings(**BASE, fault_5xx_probability=0.5, seed=3)
    _, a = await run_with(settings, 12)
    _, b = await run_with(settings, 12)
    statuses = [s for s, _, _ in a]
    assert statuses == [s for s, _, _ in b] and {200, 503} <= set(statuses)


async def test_websocket_drops_and_a_reconnect_works() -> None:
    venue = PaperVenue(VenueSettings(**BASE, fault_ws_drop_interval_s=0.2), ["BTCUSD"])
    await venue.start()
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                async with session.ws_connect(venue.ws_url) as ws:
                    await ws.send_json({"type": "subscribe", "payload": {"channels": [
                        {"name": "all_trades", "symbols": ["BTCUSD"]}]}})
                    kinds = []
                    while True:
                        msg = await asyncio.wait_for(ws.receive(), 30)
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        kinds.append(json.loads(msg.data)["type"])
                    assert kinds[0] == "subscriptions" and "all_trades" in kinds
                    assert ws.closed
    finally:
        await venue.stop()


async def test_unknown_route_answers_in_the_envelope() -> None:
    _, out = await run_with(VenueSettings(**BASE), 1, "GET", "/v2/no_such_thing")
    status, data, _ = out[0]
    assert status == 404 and data["success"] is False and data["error"]["code"] == "not_found"


async def test_venue_main_serves_writes_venue_json_and_stops_on_sigterm(tmp_path: Path) -> None:
    code = ("import sys; from workers.venue import venue_main, VenueSettings; "
            f"sys.exit(venue_main(0, {str(tmp_path)!r}, ['BTCUSD'], VenueSettings(bar_seconds=0.04, history_bars=200)))")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 60)).decode() for _ in range(2)]
        # venue.json first, then the ready line (whoever waits for it can read the file at once)
        assert "venue.json" in lines[0] and "REST http://127.0.0.1:" in lines[1] and "/ws" in lines[1]
        info = json.loads((tmp_path / "venue.json").read_text())
        assert stat.S_IMODE(os.stat(tmp_path / "venue.json").st_mode) == 0o600
        assert info["api_secret"] not in "".join(lines)  # the secret is never printed
        async with aiohttp.ClientSession() as session:
            async with session.get(info["rest_url"] + "/v2/settings") as r:
                assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        assert stat.S_IMODE(os.stat(tmp_path / "paper-account.json").st_mode) == 0o600  # saved on stop
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_venue_main_refuses_an_unknown_symbol(tmp_path: Path) -> None:
    code = "import sys; from workers.venue import venue_main; sys.exit(venue_main(0, None, ['BTCUSDT']))"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and b"BTCUSD" in out


async def test_websocket_connections_are_capped() -> None:
    venue = PaperVenue(VenueSettings(**BASE, ws_max_connections=1), ["BTCUSD"])
    await venue.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(venue.ws_url) as first:
                await first.send_json({"type": "ping"})
                assert json.loads((await asyncio.wait_for(first.receive(), 30)).data) == {"type": "pong"}
                try:
                    await session.ws_connect(venue.ws_url)
                    raise AssertionError("second websocket accepted over the cap")
                except aiohttp.WSServerHandshakeError as exc:
                    assert exc.status == 429
    finally:
        await venue.stop()


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        VenueSettings(bar_seconds=0)
    with pytest.raises(ValueError):
        VenueSettings(fault_5xx_probability=1.5)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"bar_secs": 1.0}, VenueSettings)


async def test_restart_keeps_the_account_and_refuses_connections_meanwhile() -> None:
    """restart(down_s) = go_down(); sleep; come_back(). The halves are driven directly here."""
    venue = PaperVenue(VenueSettings(**BASE), ["BTCUSD"], api_key="k" * 32, api_secret="s" * 64)
    assert (venue.api_key, venue.api_secret) == ("k" * 32, "s" * 64)
    await venue.start()
    try:
        async with aiohttp.ClientSession() as session:
            status, placed, _ = await signed(session, venue, "POST", "/v2/orders", {
                "product_id": 27, "side": "buy", "size": 1, "order_type": "market_order"})
            assert status == 200
            await venue.go_down()
            refused = False
            try:
                await signed(session, venue, "GET", "/v2/wallet/balances")
            except aiohttp.ClientConnectionError:
                refused = True
            await venue.come_back()
            assert refused
            status, data, _ = await signed(session, venue, "GET", f"/v2/orders/{placed['result']['id']}")
            assert status == 200 and data["result"]["state"] == "closed"
    finally:
        await venue.stop()


async def test_synthetic_products_are_capped_and_listed_only_for_an_authenticated_caller() -> None:
    venue = PaperVenue(VenueSettings(**BASE, max_symbols=2), ["BTCUSD"])
    await venue.start()
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/v2/products/SYN_0007", "/v2/tickers/SYN_0007", "/v2/l2orderbook/SYN_0007"):
                async with session.get(venue.rest_url + path) as r:  # anonymous
                    data = await r.json()
                    assert r.status == 404 and data["error"]["code"] == "invalid_contract", (path, data)
                    assert "not listed" in data["error"]["context"]["message"]
            async with session.ws_connect(venue.ws_url) as ws:  # an anonymous socket neither
                await ws.send_json({"type": "subscribe", "payload": {"channels": [
                    {"name": "v2/ticker", "symbols": ["SYN_0007", "BTCUSD"]}]}})
                reply = await ws.receive_json(timeout=5)
                assert {"name": "v2/ticker", "symbols": ["SYN_0007"], "error": "SYN_0007 is not listed; "
                        "an authenticated request lists a new paper product"} in reply["channels"]
            assert set(venue.markets) == {"BTCUSD"}
            status, _, _ = await signed(session, venue, "GET", "/v2/products/SYN_0007")
            assert status == 200 and "SYN_0007" in venue.markets
            status, data, _ = await signed(session, venue, "GET", "/v2/products/SYN_0008")
            assert status == 400 and data["error"]["code"] == "invalid_contract"
            assert "2 products" in data["error"]["context"]["message"]
    finally:
        await venue.stop()


async def test_a_venue_started_late_in_a_run_catches_up_without_a_hole() -> None:
    started = time.time() - 4.0  # 4 s of a run at 0.04 s per bar: about 100 bars have passed
    venue = PaperVenue(VenueSettings(**BASE, start_ts=int(started)), ["ETHUSD"])
    eth = venue.markets["ETHUSD"]
    assert len(eth.live) >= 100
    times = [int(t) for t in eth.history.ts] + [b[0] for b in eth.live]
    assert all(b - a == 60 for a, b in zip(times, times[1:]))
    assert venue.market_us == (times[-1] + 60) * 1_000_000  # the next bar to replay
    await venue.start()
    try:
        async with aiohttp.ClientSession() as session:
            status, _, _ = await signed(session, venue, "GET", "/v2/products/SYN_0005")  # joins after catch-up
            assert status == 200

        async def in_lockstep() -> bool:
            syn = venue.markets["SYN_0005"]
            return syn.bar[0] != 0 and syn.bar[0] == eth.bar[0] and bool(syn.live)
        for _ in range(3000):
            if await in_lockstep():
                break
            await asyncio.sleep(0.01)
        assert await in_lockstep()
        assert eth.live[-1][0] >= times[-1] + 60  # time kept moving forward
    finally:
        await venue.stop()


async def test_the_paper_account_survives_a_venue_process_restart(tmp_path: Path) -> None:
    state = tmp_path / "paper-account.json"
    settings = VenueSettings(**BASE, state_file=str(state))
    first = PaperVenue(settings, ["BTCUSD"])
    await first.start()
    async with aiohttp.ClientSession() as session:
        await signed(session, first, "POST", "/v2/orders", {
            "product_id": 27, "side": "buy", "size": 3, "order_type": "market_order"})
        await signed(session, first, "POST", "/v2/orders", {  # SYN product made on first reference
            "product_symbol": "SYN_0009", "side": "buy", "size": 1, "limit_price": "1", "client_order_id": "keep-me"})
    await first.stop()
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600
    second = PaperVenue(settings, ["BTCUSD"], api_key=first.api_key, api_secret=first.api_secret)
    await second.start()
    try:
        async with aiohttp.ClientSession() as session:
            _, pos, _ = await signed(session, second, "GET", "/v2/positions/margined")
            assert [(p["product_id"], p["size"]) for p in pos["result"]] == [(27, 3)]
            _, order, _ = await signed(session, second, "GET", "/v2/orders/client_order_id/keep-me")
            assert order["result"]["state"] == "open" and order["result"]["product_symbol"] == "SYN_0009"
            _, wallet, _ = await signed(session, second, "GET", "/v2/wallet/balances")
            assert Decimal(wallet["result"][0]["balance"]) == first.engine.balance < 10_000
    finally:
        await second.stop()
    state.write_bytes(b"not json")
    with pytest.raises(ValueError, match="move them away"):
        PaperVenue(settings, ["BTCUSD"])


async def test_a_sigkilled_venue_loses_no_fill_and_never_reuses_a_fill_id(tmp_path: Path) -> None:
    """Snapshots are written every state_save_interval_s (here: never during the test); fills
    between them live in the account journal, written before any client hears of them."""
    from shared.delta.rest import DeltaRestClient

    code = ("import sys; from workers.venue import venue_main, VenueSettings; "
            f"sys.exit(venue_main(0, {str(tmp_path)!r}, ['BTCUSD'], VenueSettings(bar_seconds=0.04, "
            "history_bars=200, state_save_interval_s=3600)))")

    procs: list[asyncio.subprocess.Process] = []

    async def start() -> tuple[asyncio.subprocess.Process, DeltaRestClient]:
        (tmp_path / "venue.json").unlink(missing_ok=True)
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE)
        procs.append(proc)  # reaped in the finally below, even if it never gets ready
        assert proc.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("venue: REST"):
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, f"venue exited before it was ready: {lines}"
            lines.append(line)
        # the ready line comes last: venue.json is complete by then (issue 10 §6)
        assert any("paper key and secret written to" in ln for ln in lines[:-1]), lines
        info = json.loads((tmp_path / "venue.json").read_text())
        assert info["rest_url"] in lines[-1]
        return proc, DeltaRestClient(info["rest_url"], info["api_key"], info["api_secret"])

    try:
        proc, rest = await start()
        try:
            for size in (3, 2):
                await rest.place_order(product_id=27, size=size, side="buy", order_type="market_order")
            before = {str(f.id): (f.size, f.price, f.commission) for f in await rest.get_fills([27])}
            balance = (await rest.get_wallet_balances())[0].balance
            assert len(before) == 2
        finally:
            await rest.close()
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        assert (tmp_path / "paper-account.json.journal").stat().st_size > 0  # the fills are only there

        proc, rest = await start()
        try:
            after = {str(f.id): (f.size, f.price, f.commission) for f in await rest.get_fills([27])}
            assert after == before
            assert (await rest.get_wallet_balances())[0].balance == balance
            assert [(p.product_id, p.size) for p in await rest.get_margined_positions()] == [(27, 5)]
            await rest.place_order(product_id=27, size=1, side="sell", order_type="market_order")
            newest = {str(f.id) for f in await rest.get_fills([27])} - set(before)
            assert len(newest) == 1  # a new id, not one of the two the killed venue handed out
        finally:
            await rest.close()
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()


async def test_a_full_disk_never_turns_a_done_action_into_an_error_and_loses_nothing(small_disk) -> None:
    """The account journal on a real full filesystem: an order done while the disk filled is
    answered as done (its journal bytes wait in memory), the next order action is refused
    before anything is done, and once space is back the waiting bytes are written, trading
    resumes and a restart from the files sees every order."""
    state = small_disk.path / "paper-account.json"
    settings = VenueSettings(**BASE, state_file=str(state), state_save_interval_s=3600)
    venue = PaperVenue(settings, ["BTCUSD"])
    await venue.start()
    order = {"product_symbol": "SYN_0009", "side": "buy", "size": 1, "limit_price": "1"}
    try:
        async with aiohttp.ClientSession() as session:
            status, _, _ = await signed(session, venue, "POST", "/v2/orders", {**order, "client_order_id": "a"})
            assert status == 200
            small_disk.fill()
            done = []
            while not venue.storage_error and len(done) < 200:  # until the journal's last page is full
                coid = f"b{len(done)}"
                status, placed, _ = await signed(session, venue, "POST", "/v2/orders", {**order, "client_order_id": coid})
                assert (status, placed["result"]["client_order_id"]) == (200, coid)  # done, so said
                done.append(coid)
            assert "No space left" in venue.storage_error
            status, refused, _ = await signed(session, venue, "POST", "/v2/orders", {**order, "client_order_id": "c"})
            assert (status, refused["error"]["code"]) == (503, "unavailable")
            assert "nothing was done" in refused["error"]["context"]["message"]
            status, _, _ = await signed(session, venue, "GET", "/v2/orders/client_order_id/c")
            assert status == 404
            status, _, _ = await signed(session, venue, "GET", "/v2/wallet/balances")
            assert status == 200  # reads keep working
            await asyncio.sleep(0.3)  # the replay keeps running (it used to die on the failed write)
            ticks = venue.ticks_replayed
            await asyncio.sleep(0.3)
            assert venue.ticks_replayed > ticks
            small_disk.free()
            status, _, _ = await signed(session, venue, "POST", "/v2/orders", {**order, "client_order_id": "d"})
            assert status == 200 and venue.storage_error == ""
    finally:
        small_disk.fill()
        await venue.stop()  # the final snapshot fails on the full disk: the journal still holds all
        small_disk.free()
    # What a crash would leave: the journal as written, no final snapshot of the last orders.
    # A venue started while the disk is still full cannot fold that journal into a snapshot (nor
    # save its market clock): it starts, says why, and keeps the journal rather than empty it.
    small_disk.fill()
    try:
        on_full = PaperVenue(settings, ["BTCUSD"], api_key=venue.api_key, api_secret=venue.api_secret)
        assert "No space left" in on_full.storage_error
        assert sorted(o.client_order_id for o in on_full.engine.open_orders()) == sorted(["a", *done, "d"])
        await on_full.stop()
    finally:
        small_disk.free()
    again = PaperVenue(settings, ["BTCUSD"], api_key=venue.api_key, api_secret=venue.api_secret)
    assert sorted(o.client_order_id for o in again.engine.open_orders()) == sorted(["a", *done, "d"])


async def test_junk_bodies_and_frames_get_clear_errors_not_500s_or_recursion() -> None:
    venue = PaperVenue(VenueSettings(**BASE), ["BTCUSD"])
    await venue.start()
    try:
        async with aiohttp.ClientSession() as session:
            big = b"x" * (2 << 20)
            async with session.post(venue.rest_url + "/v2/orders", data=big,
                                    headers={"Content-Type": "application/json"}) as r:
                data = await r.json()
                assert r.status == 413 and data == {"success": False, "error": {
                    "code": "request_entity_too_large", "context": {"max_bytes": 1 << 20}}}
            deep = "[" * 100_000 + "]" * 100_000
            ts = str(int(time.time()))
            headers = {"api-key": venue.api_key, "timestamp": ts, "Content-Type": "application/json",
                       "signature": sign(venue.api_secret, "POST", ts, "/v2/orders", "", deep)}
            async with session.post(venue.rest_url + "/v2/orders", data=deep, headers=headers) as r:
                data = await r.json()
                assert r.status == 400 and data["error"]["code"] == "bad_schema", data
            async with session.ws_connect(venue.ws_url) as ws:
                for _ in range(3):
                    await ws.send_str("[" * 60_000)
                    reply = await ws.receive_json(timeout=5)
                    assert reply["type"] == "error" and reply["message"].startswith("bad frame")
                await ws.send_json({"type": "ping"})
                assert (await ws.receive_json(timeout=5))["type"] == "pong"  # still served
    finally:
        await venue.stop()
