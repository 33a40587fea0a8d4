from __future__ import annotations

import pytest

from shared.delta.venues import VENUE_NAMES, UnknownVenueError, resolve_venue


def test_all_four_delta_venues_and_paper() -> None:
    india = resolve_venue("india")
    assert india.rest_url == "https://api.india.delta.exchange"
    assert india.ws_url == "wss://socket.india.delta.exchange"
    demo = resolve_venue("India_Testnet")
    assert demo.rest_url == "https://cdn-ind.testnet.deltaex.org" and demo.is_testnet
    assert resolve_venue("global").rest_url == "https://api.delta.exchange"
    assert resolve_venue("global-testnet").ws_url == "wss://testnet-socket.delta.exchange"
    paper = resolve_venue("paper", rest_url="http://127.0.0.1:5000/", ws_url="ws://127.0.0.1:5000/ws")
    assert paper.is_paper and paper.rest_url == "http://127.0.0.1:5000"
    assert paper.public_ws_url == "ws://127.0.0.1:5000/public"  # the venue's stand-in public host


def test_bad_names_list_the_valid_ones() -> None:
    with pytest.raises(UnknownVenueError) as info:
        resolve_venue("indai")
    for name in VENUE_NAMES:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="paper"):
        resolve_venue("paper")
    with pytest.raises(ValueError, match="fixed"):
        resolve_venue("india", rest_url="http://x")
