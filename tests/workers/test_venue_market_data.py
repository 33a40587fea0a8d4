"""The paper venue replaying a `[market.data]` file for a symbol its catalogue lacks (issue 14
§4(a)), and a later run on the same account without that file: the account's product stays, not
traded, instead of the venue failing to start."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.marketdata import synthetic_candles
from shared.products import configured_spec
from workers.venue import PaperVenue, VenueSettings


def write_candles(path: Path, bars: int = 600) -> None:
    c = synthetic_candles("SOLUSD", bars, seed=1)
    ts = 1_735_689_600 + 60 * np.arange(bars)
    rows = "".join(f"{int(t)},{float(o)!r},{float(h)!r},{float(lo)!r},{float(cl)!r},{float(v)!r}\n"
                   for t, o, h, lo, cl, v in zip(ts, c.open, c.high, c.low, c.close, c.volume, strict=True))
    path.write_text("ts,open,high,low,close,volume\n" + rows)


async def test_a_data_file_is_replayed_and_a_later_run_without_it_still_starts(tmp_path: Path) -> None:
    data = tmp_path / "sol.csv"
    write_candles(data)
    sol = configured_spec("SOLUSD", contract_value=1.0, tick_size=0.01, maker_fee=0.0002, taker_fee=0.0005)
    state = str(tmp_path / "paper-account.json")
    venue = PaperVenue(VenueSettings(history_bars=200, state_file=state, data={"SOLUSD": str(data)},
                                     products={"SOLUSD": sol}), ["BTCUSD", "SOLUSD"])
    m = venue.markets["SOLUSD"]
    assert m.spec == sol and 700_000 <= sol.product_id < 800_000
    # the file's prices on the product's tick grid: its first 200 bars are the history
    first = synthetic_candles("SOLUSD", 600, seed=1)
    assert m.history.close[0] == sol.round_price(float(first.close[0]))
    await venue.start()
    await venue.stop()

    again = PaperVenue(VenueSettings(history_bars=200, state_file=state), ["BTCUSD"])
    assert "SOLUSD" not in again.markets and "BTCUSD" in again.markets
    assert any(s.symbol == "SOLUSD" for s in again.engine.specs())  # the account still has it
    await again.start()
    await again.stop()


def test_the_gateways_own_replay_source_replays_a_data_file_too(tmp_path: Path) -> None:
    """market.source = "replay" (signals only) reads the same [market.data] files."""
    import time

    from workers.gateway import ReplaySource
    data = tmp_path / "sol.csv"
    write_candles(data)
    source = ReplaySource(("SOLUSD",), time.time(), 1.0, 200, 300, 0, files={"SOLUSD": str(data)})
    first_close = float(synthetic_candles("SOLUSD", 600, seed=1).close[0])
    assert float(source.markets["SOLUSD"].history().close[0]) == first_close
