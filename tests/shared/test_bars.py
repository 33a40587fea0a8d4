from shared.bars import apply_tick


def test_ticks_build_bars_and_late_ticks_are_ignored() -> None:
    u = apply_tick(None, 100.0, 1.0, 120_500_000)
    assert u.kind == "new" and u.ts == 120.0 and u.open == u.close == 100.0
    bar = (u.ts, u.open, u.high, u.low, u.close, u.volume)
    u = apply_tick(bar, 101.0, 2.0, 150_000_000)
    assert u.kind == "update" and (u.high, u.low, u.close, u.volume) == (101.0, 100.0, 101.0, 3.0)
    bar = (u.ts, u.open, u.high, u.low, u.close, u.volume)
    u = apply_tick(bar, 99.0, 1.0, 180_000_000)
    assert u.kind == "new" and u.ts == 180.0 and u.open == 99.0
    assert apply_tick(bar, 50.0, 1.0, 60_000_000).kind == "late"
