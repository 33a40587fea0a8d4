"""The steps of an operator's flatten (shared/trading/flatten.py)."""

from __future__ import annotations

from shared.trading import flatten as flat

T0 = 1_800_000_000.0


def test_done_only_when_the_venue_shows_no_order_and_no_contract_of_ours() -> None:
    p = flat.FlattenProgress(requested_ts=T0)
    assert flat.describe(p, own_orders=2, bot_contracts=3) == "cancelling 2 order(s)"
    assert flat.describe(p, own_orders=0, bot_contracts=-3) == \
        "closing 3 contract(s) with a reduce-only market order"
    assert flat.describe(p, own_orders=0, bot_contracts=0) == "confirming on the venue"
    p = flat.on_venue_read(p, own_orders=1, venue_position=0, foreign=0, ts=T0 + 1)
    assert not p.done  # an order of ours still rests
    p = flat.on_venue_read(p, own_orders=0, venue_position=0, foreign=0, ts=T0 + 2)
    assert p.done and p.confirmed_ts == T0 + 2
    assert flat.describe(p, own_orders=0, bot_contracts=0).startswith("flat: confirmed on the venue at ")
    assert flat.on_venue_read(p, own_orders=3, venue_position=5, foreign=0, ts=T0 + 3) == p  # done is done


def test_a_traders_manual_contracts_are_not_ours_to_close() -> None:
    p = flat.on_venue_read(flat.FlattenProgress(requested_ts=T0), own_orders=0, venue_position=4, foreign=4, ts=T0)
    assert p.done and p.venue_left == 0


def test_the_close_is_sent_again_only_when_the_venue_still_holds_ours_and_nothing_rests() -> None:
    p = flat.FlattenProgress(requested_ts=T0)
    assert not flat.close_again(p, own_orders=0)  # no read yet
    p = flat.on_venue_read(p, own_orders=1, venue_position=2, foreign=0, ts=T0)
    assert not flat.close_again(p, own_orders=1)  # the close (or a cancel) is still resting
    p = flat.on_venue_read(p, own_orders=0, venue_position=2, foreign=0, ts=T0 + 1)
    assert flat.close_again(p, own_orders=0)
    assert "the venue still shows +2" in flat.describe(p, own_orders=0, bot_contracts=0)


def test_a_flatten_starts_anew_only_when_none_is_under_way_or_its_flat_no_longer_holds() -> None:
    assert flat.starts_anew(None, bot_contracts=0)
    under_way = flat.FlattenProgress(requested_ts=T0)
    assert not flat.starts_anew(under_way, bot_contracts=5)  # the supervisor asking again
    done = flat.on_venue_read(under_way, own_orders=0, venue_position=0, foreign=0, ts=T0 + 1)
    assert not flat.starts_anew(done, bot_contracts=0)  # still flat: nothing to do
    assert flat.starts_anew(done, bot_contracts=2)  # flat once, holding again: a new flatten


def test_only_the_venue_confirms_a_flatten_the_bot_believes_done() -> None:
    p = flat.FlattenProgress(requested_ts=T0)
    assert flat.needs_venue_read(p, bot_contracts=0, own_orders=0)
    assert not flat.needs_venue_read(p, bot_contracts=3, own_orders=0)  # still closing
    assert not flat.needs_venue_read(p, bot_contracts=0, own_orders=1)  # still cancelling
    assert not flat.needs_venue_read(None, bot_contracts=0, own_orders=0)
    done = flat.on_venue_read(p, own_orders=0, venue_position=0, foreign=0, ts=T0 + 1)
    assert not flat.needs_venue_read(done, bot_contracts=0, own_orders=0)
