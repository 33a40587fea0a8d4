"""Gateway: funding payments from the venue's wallet ledger into the SQLite ledger.

Delta books funding as `funding` entries of `GET /v2/wallet/transactions` (newest first, cursor
pages). They are read exactly as fills are (shared/trading/fill_cursor.py): newest page back to
entries already known, never by time, so no clock can make the gateway skip one, and each is
handed to the supervisor once (the store drops a repeat by the venue's transaction id anyway).
The ledger lists every kind of entry (whether Delta filters by `transaction_types` is
UNCONFIRMED, so nothing relies on it): the others are only remembered as read, so the next scan
stops at them. A restarted gateway knows, besides the funding ids the ledger has, the fills it
has: an entry naming one of them (`meta_data.fill_id`, as Delta's commission entries do; that the
id is the fills endpoint's is UNCONFIRMED live, true on paper) is old news, so the first scan
stops there rather than read back to the last funding time (hours of fills). Each funding entry
is mapped here, once, into the domain's `Funding`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

import zmq

from shared.delta.models import WalletTransaction
from shared.messages import Funding, FundingRecord, MessageCodec
from shared.trading.fill_cursor import FillScan, KnownFills

from .gateway_resync import REST_FAILURES
from .runtime import send_nowait

log = logging.getLogger("gateway")
FUNDING_POLL_S = 10.0  # a ledger page weighs 10 of the 10,000 rate units per 5 min: 3% of the budget
EMPTY_LEDGER_HISTORY_S = 60.0  # live, no funding stored yet: entries older than this at start are history

ReadPage = Callable[..., Awaitable[tuple[list[WalletTransaction], str | None]]]


def entry_key(t: WalletTransaction) -> str:
    """What the scan knows a ledger entry by: its fill for a fill's entries, else its own id."""
    fid = t.fill_id
    return f"fill:{fid}" if fid is not None and t.transaction_type != "funding" else str(t.id)


def funding_from(t: WalletTransaction, symbol: str) -> Funding:
    """A Delta `funding` ledger entry as the domain's Funding (the amount as the venue booked it)."""
    ts_us = t.created_at if isinstance(t.created_at, int) else 0
    return Funding(funding_id=str(t.id), symbol=symbol, amount=repr(float(t.amount)), ts=ts_us / 1e6)


class FundingReader:
    def __init__(self, read_page: ReadPage, sup: zmq.Socket, codec: MessageCodec,
                 by_product: Mapping[int, str], stored_ids: Sequence[str], *, live: bool,
                 stored_fill_ids: Sequence[str] = ()) -> None:
        """`read_page(after=cursor)`: one ledger page and the next cursor (the REST client's
        get_wallet_transactions_page). `stored_ids`: the newest funding ids the ledger holds,
        newest first; `stored_fill_ids` likewise its newest fills. `live` with no funding
        stored: older entries are the account's history."""
        self.read_page = read_page
        self.sup = sup
        self.codec = codec
        self.by_product = by_product
        self.known = KnownFills([f"fill:{i}" for i in reversed(stored_fill_ids)] + list(reversed(stored_ids)))
        self.floor_us = int((time.time() - EMPTY_LEDGER_HISTORY_S) * 1e6) if live and not stored_ids else None
        self.handed = 0  # funding payments handed to the ledger
        self.read_errors = 0
        self.unread = 0  # scans that stopped at their page bound
        self.pages_read = 0  # by the last scan

    async def read_new(self) -> int:
        """One newest-first pass; hands the new funding entries on, oldest first. Returns how
        many. A read that fails midway hands nothing on: the next pass reads the same again."""
        scan: FillScan[WalletTransaction] = FillScan(
            self.known, fill_id=entry_key,
            ts_us=lambda t: t.created_at if isinstance(t.created_at, int) else None, floor_us=self.floor_us)
        after: str | None = None
        try:
            while True:
                page, after = await self.read_page(after=after)
                if scan.take(page, more=after is not None):
                    break
        except REST_FAILURES as exc:
            self.read_errors += 1
            log.warning("wallet ledger poll failed: %s", exc)
            return 0
        self.pages_read = scan.pages
        if scan.truncated:
            self.unread += 1
            log.error("funding: read %d ledger pages without reaching an entry already read; older funding "
                      "entries are not read into the ledger (the venue still has them)", scan.pages)
        handed = 0
        for t in scan.news():
            tid = entry_key(t)
            sym = self.by_product.get(t.product_id or -1) if t.transaction_type == "funding" else None
            if sym is None:  # not funding, or funding of a product the bots do not trade
                self.known.add(tid)
                continue
            if not send_nowait(self.sup, self.codec.encode(FundingRecord(
                    funding=funding_from(t, sym), sent_ns=time.perf_counter_ns()))):
                log.error("supervisor not taking funding now; entry %s read again at the next poll", tid)
                break  # stays unknown with everything newer: the next pass hands them on
            self.known.add(tid)
            handed += 1
        self.handed += handed
        return handed

    async def loop(self) -> None:
        while True:
            await self.read_new()
            await asyncio.sleep(FUNDING_POLL_S)
