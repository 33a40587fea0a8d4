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
"""

from __future__ import annotations

from shared.trading.orders import ORDER_KINDS, ORDER_STATES, OpenOrder, OrderKind, OrderState, Purpose


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


__all__ = ["UndocumentedOrder", "read_ours_tolerantly"]
