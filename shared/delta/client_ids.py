"""Which client order id each of the account's orders carries, as far as we have seen it.

Delta's REST fill record (`GET /v2/fills`) names its order only by `order_id`; the bots know
their orders by `client_order_id`. Every answer that carries both (order objects from place,
edit and cancel answers and open-order reads; the orders and user_trades channels) teaches the
map, so a fill's client order id is found without asking the venue. Bounded: the orders learned
longest ago are forgotten first (a fill of one of those is looked up, once, and learned again).
"""

from __future__ import annotations

import collections

CLIENT_IDS_MAX = 100_000  # orders remembered; a day of a busy grid on many symbols


class ClientIds:
    """order_id -> client_order_id. "" is a known answer (an order placed without one, by hand
    on the venue's site): it is remembered so it is not looked up again; None is "not known"."""

    def __init__(self, capacity: int = CLIENT_IDS_MAX) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._ids: collections.OrderedDict[str, str] = collections.OrderedDict()

    def learn(self, order_id: object, client_order_id: str | None) -> None:
        """What one order carries. An answer without a client order id never overwrites one
        learned before (the orders channel does not repeat every key on every update)."""
        key = str(order_id or "")
        if not key:
            return
        known = self._ids.get(key)
        value = client_order_id or ""
        if known and not value:
            value = known
        self._ids[key] = value
        self._ids.move_to_end(key)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def get(self, order_id: object) -> str | None:
        return self._ids.get(str(order_id or ""))

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, order_id: object) -> bool:
        return str(order_id or "") in self._ids


def order_id_number(order_id: object) -> int | None:
    """The order id as the order lookup takes it; None for ids no order has (a settlement
    fill's order_id is a UUID)."""
    text = str(order_id or "")
    return int(text) if text.isdigit() else None
