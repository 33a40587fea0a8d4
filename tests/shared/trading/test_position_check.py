"""The bot's position against the venue's: re-read on a difference, halt on a persistent one."""

from __future__ import annotations

import pytest

from shared.trading.position_check import PositionCheck, check_position


def test_agreement_keeps_trading() -> None:
    state, verdict = check_position(PositionCheck(), bot=5, foreign=0, venue=5)
    assert verdict == "agree" and not state.doubtful and not state.halted


def test_a_difference_rereads_then_reads_everything_then_halts() -> None:
    s = PositionCheck()
    s, v = check_position(s, bot=-55, foreign=0, venue=85)
    assert v == "reread" and s.doubtful and not s.halted
    s, v = check_position(s, bot=-55, foreign=0, venue=85)
    assert v == "reread_all" and not s.halted
    s, v = check_position(s, bot=-55, foreign=0, venue=85)
    assert v == "halt" and s.halted == "position mismatch: bot -55 vs venue +85"
    s, v = check_position(s, bot=-55, foreign=0, venue=85)  # stays halted, no more re-reads
    assert v == "halt" and s.halted


def test_a_difference_a_reread_explains_is_forgotten() -> None:
    s, v = check_position(PositionCheck(), bot=3, foreign=0, venue=4)  # a fill in flight
    assert v == "reread"
    s, v = check_position(s, bot=4, foreign=0, venue=4)
    assert v == "agree" and s == PositionCheck()


def test_the_halt_lifts_when_the_positions_agree_again() -> None:
    s = PositionCheck(mismatches=3, halted="position mismatch: bot +1 vs venue +2")
    s, v = check_position(s, bot=2, foreign=0, venue=2)
    assert v == "agree" and not s.halted and not s.doubtful


def test_manual_fills_on_the_product_are_part_of_the_venue_position() -> None:
    s, v = check_position(PositionCheck(), bot=10, foreign=-4, venue=6)
    assert v == "agree"
    s, v = check_position(PositionCheck(mismatches=1), bot=10, foreign=-4, venue=10, limit=2)
    assert v == "halt" and s.halted == "position mismatch: bot +10 + manual -4 vs venue +10"


def test_the_limit_allows_a_reread_first() -> None:
    with pytest.raises(ValueError):
        check_position(PositionCheck(), bot=0, foreign=0, venue=1, limit=1)
    assert check_position(PositionCheck(), bot=0, foreign=0, venue=1, limit=2)[1] == "reread"
