"""The paper venue charges funding on its market clock, books it in the wallet ledger
(`GET /v2/wallet/transactions`, `funding` entries) and keeps it through a SIGKILL: every entry
a client saw is still there, none is charged twice, and the balance is the sum of the ledger."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections import Counter
from decimal import Decimal as D
from pathlib import Path

from shared.delta.models import WalletTransaction
from shared.delta.rest import DeltaRestClient

INTERVAL_S = 600  # 10 replayed bars: at 0.04 s a bar, a funding time every 0.4 wall seconds


async def ledger(rest: DeltaRestClient) -> list[WalletTransaction]:
    return await rest.get_wallet_transactions()


def funding_of(entries: list[WalletTransaction]) -> list[WalletTransaction]:
    return [t for t in entries if t.transaction_type == "funding"]


async def test_funding_is_charged_on_the_market_clock_and_survives_a_sigkill(tmp_path: Path) -> None:
    code = ("import sys; from workers.venue import venue_main, VenueSettings; "
            f"sys.exit(venue_main(0, {str(tmp_path)!r}, ['BTCUSD'], VenueSettings(bar_seconds=0.04, "
            f"history_bars=200, state_save_interval_s=3600, funding_interval_s={INTERVAL_S})))")
    procs: list[asyncio.subprocess.Process] = []

    async def start() -> tuple[asyncio.subprocess.Process, DeltaRestClient]:
        (tmp_path / "venue.json").unlink(missing_ok=True)
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE)
        procs.append(proc)
        assert proc.stdout is not None
        line = ""
        while not line.startswith("venue: REST"):
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, "venue exited before it was ready"
        info = json.loads((tmp_path / "venue.json").read_text())
        return proc, DeltaRestClient(info["rest_url"], info["api_key"], info["api_secret"])

    async def wait_funding(rest: DeltaRestClient, n: int) -> list[WalletTransaction]:
        for _ in range(600):
            entries = await ledger(rest)
            if len(funding_of(entries)) >= n:
                return entries
            await asyncio.sleep(0.05)
        raise AssertionError(f"fewer than {n} funding entries")

    try:
        proc, rest = await start()
        try:
            await rest.place_order(product_id=27, size=5, side="buy", order_type="market_order")
            entries = await wait_funding(rest, 3)
            before = {str(t.id): (t.amount, t.created_at) for t in funding_of(entries)}
            for t in funding_of(entries):
                assert t.product_id == 27 and t.amount != 0
                assert isinstance(t.created_at, int) and t.created_at % (INTERVAL_S * 1_000_000) == 0
        finally:
            await rest.close()
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        assert (tmp_path / "paper-account.json.journal").stat().st_size > 0  # the funding is only there

        proc, rest = await start()
        try:
            entries = await wait_funding(rest, len(before) + 2)  # and funding goes on after the restart
            after = {str(t.id): (t.amount, t.created_at) for t in funding_of(entries)}
            assert {k: after[k] for k in before} == before  # every entry a client saw, unchanged
            times = Counter(t.created_at for t in funding_of(entries))
            assert max(times.values()) == 1, "a funding time charged twice"
            await rest.place_order(product_id=27, size=5, side="sell", order_type="market_order")
            entries = await ledger(rest)
            wallet = (await rest.get_wallet_balances())[0]
            [deposit] = [t for t in entries if t.transaction_type == "deposit"]
            assert D(repr(deposit.amount)) == D("10000")
            assert D(repr(wallet.balance)) == sum((D(repr(t.amount)) for t in entries), D(0))
            paid = sum((D(repr(t.amount)) for t in funding_of(entries)), D(0))
            assert paid != 0
            ids = [str(t.id) for t in entries]
            assert len(ids) == len(set(ids))
        finally:
            await rest.close()
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
