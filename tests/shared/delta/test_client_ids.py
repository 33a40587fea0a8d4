"""The order_id -> client_order_id map the gateway reads Delta's REST fills through."""

from __future__ import annotations

import pytest

from shared.delta.client_ids import ClientIds, order_id_number


def test_the_map_is_bounded_and_forgets_the_orders_learned_longest_ago() -> None:
    ids = ClientIds(capacity=3)
    for i in range(1, 6):
        ids.learn(i, f"c{i}")
    assert len(ids) == 3 and [ids.get(i) for i in range(1, 6)] == [None, None, "c3", "c4", "c5"]
    ids.learn(3, "c3")  # learned again: the newest now
    ids.learn(6, "c6")
    assert (3 in ids, 4 in ids, len(ids)) == (True, False, 3)


def test_an_answer_without_a_client_order_id_keeps_the_one_learned() -> None:
    ids = ClientIds()
    ids.learn("152999629", "g1-BTCUSD-b1")
    ids.learn(152999629, None)  # an orders-channel update that does not repeat it
    assert ids.get(152999629) == "g1-BTCUSD-b1"
    ids.learn(7, None)  # an order placed by hand: known to have none, not looked up again
    assert (ids.get(7), ids.get(8)) == ("", None)
    ids.learn(None, "x")  # no order id: nothing to key on
    assert len(ids) == 2


def test_order_ids_a_lookup_can_take() -> None:
    assert order_id_number("152999629") == 152999629
    assert order_id_number("0b0c2f5e-7a4c-4b4a-9c1e-3f1d2e4a5b6c") is None  # a settlement fill's
    assert order_id_number(None) is None
    with pytest.raises(ValueError):
        ClientIds(capacity=0)
