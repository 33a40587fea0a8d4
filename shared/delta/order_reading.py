"""How an order of ours that Delta reports in a kind or state its docs do not list is read.

Delta documents four order states (open, pending, closed, cancelled) and two order types with
stop fields (shared/docs/delta-exchange-api.md §6); the orders channel's fields are partly
UNCONFIRMED, and a live venue may one day say more. A foreign order no OpenOrder can hold may be
passed over (it is not the bot's to trade), but one of ours never may: a bot that never hears of
its own resting order places that level again on every plan, and the duplicates rest on the
exchange. So an order carrying one of our client order ids is read at the nearest safe known
reading, and the gateway asks the bot to read its book back (in doubt):

- the venue still reports the order and does not say it left the book: it rests (`pending` for a
  stop, `open` otherwise). Reading a gone order as resting costs at worst an empty level until
  the read-back; reading a resting order as gone doubles the exposure.
- the orders channel deletes it (action "delete"): it left the book, read as `closed`, not
  `cancelled`: an unknown end may have been a fill, and a closed order whose update shows filled
  size makes the bot wait for those fills before it plans that level again (the regular re-read
  bounds the wait); read as cancelled, the bot could place the level again before the fill
  arrives and hold twice the exposure there.
- a kind the docs do not list: what our id says we placed (a stop for a stop, a limit order for
  an entry or a take-profit; market if it carries no limit price).

A reading is a guess, so an order of ours the account socket reports that way is also read back
by id soon after (`OrderRereads`: bounded in orders, tries and rate), and the bot is told the
venue's documented word; a read back that says its fills are all in ends the bot's wait for them.
"""

from __future__ import annotations

import collections

from shared.trading.orders import ORDER_KINDS, ORDER_STATES, OpenOrder, OrderKind, OrderState, Purpose

UNDOCUMENTED_ANSWER = "undocumented_answer"  # an intent's error line that is no rejection: the book is in doubt
REREAD_FIRST_S = 0.5  # an order in doubt is read back this soon, and each further time twice as late
REREAD_TRIES = 3  # reads of one order in doubt; after them the bot's regular re-read settles it
REREADS_WAITING_MAX = 1_000  # orders waiting to be read back; beyond, left to the regular re-read
REREADS_PER_S = 1.0  # the reads back (3 rate units each) refill at this rate...
REREADS_BURST = 10  # ...into a bucket of this many: at most 180 units a minute of the account's budget


class UndocumentedOrder(ValueError):
    """An order of ours in a kind or state Delta does not document; `view` is how it is read."""

    def __init__(self, message: str, view: OpenOrder) -> None:
        super().__init__(message)
        self.view = view


def read_ours_tolerantly(kind: str, state: str, *, purpose: Purpose, has_limit_price: bool,
                         deleted: bool) -> tuple[OrderKind, OrderState]:
    """The (kind, state) an order of ours is read as when Delta's `kind` or `state` is not one it
    documents; documented values are kept as they are."""
    known_kind: OrderKind
    if kind in ORDER_KINDS:
        known_kind = ORDER_KINDS[ORDER_KINDS.index(kind)]  # the documented value, typed
    elif purpose == "stop":
        known_kind = "stop_limit_order" if has_limit_price else "stop_market_order"
    else:
        known_kind = "limit_order" if has_limit_price else "market_order"
    if state in ORDER_STATES:
        return known_kind, ORDER_STATES[ORDER_STATES.index(state)]  # the documented value, typed
    if deleted:
        return known_kind, "closed"
    return known_kind, ("pending" if known_kind.startswith("stop_") else "open")


def is_undocumented_answer(error: str) -> bool:
    """Whether an IntentResult error line ("key: code: message") is the gateway's word that an
    answer of ours was undocumented (the bot reads its book back), not an order the venue refused."""
    return error.split(": ", 2)[1:2] == [UNDOCUMENTED_ANSWER]


class OrderRereads:
    """Our orders the account socket reported in a kind or state Delta does not document, to read
    back one by one (GET /v2/orders/{id}): the tolerant reading above is a guess, and the bot's
    regular re-read comes only every 15 s (900 s at 1,000 symbols). Pure bookkeeping (times from
    the caller, seconds): bounded in orders waiting, in reads per order (a failed read is tried
    again later, REREAD_TRIES in all) and in reads per second (a token bucket), so a venue that
    starts answering every order oddly spends a bounded share of the rate budget on it."""

    def __init__(self, *, waiting_max: int = REREADS_WAITING_MAX, per_s: float = REREADS_PER_S,
                 burst: int = REREADS_BURST) -> None:
        self.waiting_max = waiting_max
        self.per_s = per_s
        self.burst = burst
        self._due: dict[int, tuple[float, str]] = {}  # order id -> (when, symbol)
        self._tries: collections.OrderedDict[int, int] = collections.OrderedDict()  # order id -> reads asked
        self._tokens = (float(burst), -1.0)  # (reads left, at); at < 0: not started
        self.left = 0  # doubts not taken (too many waiting, or reads spent): the regular re-read settles them

    def doubt(self, order_id: int, symbol: str, now: float) -> bool:
        """The order is in doubt: read it back (True), unless it waits already or is past its tries."""
        if order_id in self._due:
            return False
        tries = self._tries.get(order_id, 0)
        if tries >= REREAD_TRIES or len(self._due) >= self.waiting_max:
            self.left += 1
            return False
        self._tries[order_id] = tries + 1
        self._tries.move_to_end(order_id)
        while len(self._tries) > 10 * self.waiting_max:
            self._tries.popitem(last=False)
        self._due[order_id] = (now + REREAD_FIRST_S * 2 ** tries, symbol)
        return True

    def take(self, now: float) -> list[tuple[int, str]]:
        """The orders to read back now, (order id, symbol), soonest first, within the bucket."""
        tokens, at = self._tokens
        tokens = min(float(self.burst), tokens + (now - at) * self.per_s) if at >= 0 else tokens
        due = sorted((when, oid, sym) for oid, (when, sym) in self._due.items() if when <= now)[:int(tokens)]
        for _, oid, _ in due:
            del self._due[oid]
        self._tokens = (tokens - len(due), now)
        return [(oid, sym) for _, oid, sym in due]

    @property
    def waiting(self) -> int:
        return len(self._due)


__all__ = ["UNDOCUMENTED_ANSWER", "OrderRereads", "UndocumentedOrder", "is_undocumented_answer", "read_ours_tolerantly"]
