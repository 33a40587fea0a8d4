"""The exchange side of the dead-man switch (shared/matching/deadman.py): validation of Delta's
create/ack bodies, arming by the first ack, one action per lapse, unhealthy_count periods,
re-create keeps the arming, scope, and the persisted form."""

from __future__ import annotations

import pytest

from shared.matching import VenueError
from shared.matching.deadman import DeadmanSwitches, ack_answer
from shared.products import ProductSpec

BODY = {"heartbeat_id": "b", "impact": "products", "product_symbols": ["BTCUSD"],
        "config": [{"action": "cancel_orders", "unhealthy_count": 1}]}
S = 1_000_000  # µs


def test_armed_by_the_first_ack_and_lapses_once_per_silence() -> None:
    sw = DeadmanSwitches()
    hb = sw.create(BODY)
    assert not hb.armed and sw.due(10**9 * S) == [] and sw.next_due_us() is None
    sw.ack({"heartbeat_id": "b", "ttl": "2000"}, 100 * S)  # the docs allow a string
    assert sw.next_due_us() == 102 * S
    assert sw.due(101 * S) == []
    (lapse,) = sw.due(102 * S)
    assert (lapse.action, lapse.heartbeat.heartbeat_id) == ("cancel_orders", "b")
    assert sw.due(200 * S) == []  # once per lapse
    sw.ack({"heartbeat_id": "b", "ttl": 2000}, 300 * S)
    assert len(sw.due(303 * S)) == 1


def test_unhealthy_count_waits_that_many_periods_and_ttl_zero_disarms() -> None:
    sw = DeadmanSwitches()
    sw.create({**BODY, "config": [{"action": "cancel_orders", "unhealthy_count": 3}]})
    sw.ack({"heartbeat_id": "b", "ttl": 1000}, 0)
    assert sw.due(2 * S + 999_999) == [] and len(sw.due(3 * S)) == 1
    sw.ack({"heartbeat_id": "b", "ttl": 0}, 4 * S)
    assert sw.due(10**6 * S) == []
    assert ack_answer(sw.heartbeats["b"]) == {"heartbeat_timestamp": "0", "process_enabled": "false"}


def test_recreating_keeps_the_arming_and_replaces_the_scope() -> None:
    sw = DeadmanSwitches()
    sw.create(BODY)
    sw.ack({"heartbeat_id": "b", "ttl": 1000}, 0)
    hb = sw.create({**BODY, "product_symbols": ["ETHUSD"]})
    assert hb.armed and hb.product_symbols == ("ETHUSD",)
    assert ack_answer(hb) == {"heartbeat_timestamp": str(1 * S), "process_enabled": "true"}


def test_scope_by_products_or_contract_types() -> None:
    btc = ProductSpec(symbol="BTCUSD", product_id=27, contract_value=0.001, tick_size=0.5, underlying_asset="BTC")
    eth = ProductSpec(symbol="ETHUSD", product_id=3136, contract_value=0.01, tick_size=0.05, underlying_asset="ETH")
    sw = DeadmanSwitches()
    by_symbol = sw.create(BODY)
    assert by_symbol.covers(btc) and not by_symbol.covers(eth)
    by_type = sw.create({**BODY, "heartbeat_id": "c", "impact": "contracts", "contract_types": ["perpetual_futures"],
                         "underlying_assets": ["ETH"]})
    assert by_type.covers(eth) and not by_type.covers(btc)


@pytest.mark.parametrize("body, param", [
    ({**BODY, "impact": "everything"}, "impact"),
    ({**BODY, "product_symbols": []}, "product_symbols"),
    ({**BODY, "impact": "contracts"}, "contract_types"),
    ({**BODY, "config": [{"action": "explode"}]}, "config"),
    ({**BODY, "config": [{"action": "cancel_orders", "unhealthy_count": 0}]}, "config"),
    ({**BODY, "product_symbols": [f"S{i}" for i in range(11)]}, "product_symbols"),
    ({**BODY, "heartbeat_id": ""}, "heartbeat_id"),
])
def test_bad_create_bodies_are_refused_naming_the_field(body: dict, param: str) -> None:
    with pytest.raises(VenueError) as exc:
        DeadmanSwitches().create(body)
    assert exc.value.code == "bad_schema" and exc.value.context["schema_errors"][0]["param"] == param


@pytest.mark.parametrize("ttl", [None, -1, "soon", True, 86_400_001])
def test_bad_ttls_are_refused(ttl: object) -> None:
    sw = DeadmanSwitches()
    sw.create(BODY)
    with pytest.raises(VenueError) as exc:
        sw.ack({"heartbeat_id": "b", "ttl": ttl}, 0)
    assert exc.value.code == "bad_schema"


def test_unknown_heartbeat_is_404_and_the_book_is_bounded_and_round_trips() -> None:
    sw = DeadmanSwitches()
    with pytest.raises(VenueError) as exc:
        sw.ack({"heartbeat_id": "nope", "ttl": 1}, 0)
    assert exc.value.status == 404
    for i in range(64):
        sw.create({**BODY, "heartbeat_id": f"h{i}"})
    with pytest.raises(VenueError):
        sw.create({**BODY, "heartbeat_id": "one-too-many"})
    sw.ack({"heartbeat_id": "h3", "ttl": 5000}, 7 * S)
    again = DeadmanSwitches.decode(sw.encode())
    assert again.heartbeats == sw.heartbeats
