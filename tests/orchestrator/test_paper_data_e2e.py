"""Issue 14 §4(a): `[market.data] SOLUSD = "file.csv.gz"` paper-trades a symbol the catalogue does
not know, on a candle file in the download format (written here by `orchestrate download`'s own
writer: header, one gzip member per page), with the contract from `[market.products.SOLUSD]`.
Bad input: a missing file or one in the wrong format stops the run with exit 2 naming the key and
the file, no traceback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from orchestrator.download_cmd import _Appender, _row
from shared.marketdata import synthetic_candles
from tests.orchestrator.test_trading_e2e import BUSY_GRID, venue_client

REPO = Path(__file__).resolve().parents[2]
PAGE = 2_000  # bars a download page holds (one gzip member each)

SOL_CONFIG = """
[run]
symbols = ["SOLUSD"]
[market]
bar_seconds = 0.25
history_bars = 300
[market.data]
SOLUSD = "solusd-1m.csv.gz"
[market.products.SOLUSD]
contract_value = 0.1
tick_size = 0.01
""" + BUSY_GRID


def write_download_file(path: Path, bars: int = 4_000, base: float = 150.0) -> tuple[float, float]:
    """A 1m SOLUSD series in `orchestrate download`'s format; returns its (low, high)."""
    c = synthetic_candles("SOLUSD", bars, seed=3)
    scale = base / float(c.open[0])
    ts = 1_735_689_600 + 60 * np.arange(bars)  # 2025-01-01, whole minutes
    out = _Appender(path)
    try:
        for start in range(0, bars, PAGE):
            out.write("".join(_row(int(ts[i]), round(float(c.open[i]) * scale, 4),
                                   round(float(c.high[i]) * scale, 4), round(float(c.low[i]) * scale, 4),
                                   round(float(c.close[i]) * scale, 4), round(float(c.volume[i]) * 100, 3))
                              for i in range(start, min(bars, start + PAGE))))
    finally:
        out.close()
    return float(c.low.min()) * scale, float(c.high.max()) * scale


def orchestrate(args: list[str], cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.slow
def test_paper_run_trades_a_downloaded_solusd_file(start_run, tmp_path: Path) -> None:
    low, high = write_download_file(tmp_path / "solusd-1m.csv.gz")
    cfg = tmp_path / "sol.toml"
    cfg.write_text(SOL_CONFIG)
    run = start_run(["--config", str(cfg), "--pool-size", "1"])
    run.wait_for(lambda d: any(w["symbol"] == "SOLUSD" and w["open_orders"] > 0 for w in d["workers"]), 60,
                 "a SOLUSD grid")
    run.wait_for(lambda d: any(w["symbol"] == "SOLUSD" and w["fees"] > 0 for w in d["workers"]), 120,
                 "SOLUSD fills")

    async def venue_view() -> tuple:
        async with venue_client(run.run_dir) as rest:
            products = {p.symbol: p for p in await rest.get_products()}
            sol = products["SOLUSD"]
            fills = await rest.get_fills([sol.id])
            ticker = await rest.get_ticker("SOLUSD")
        return sol, fills, ticker

    sol, fills, ticker = asyncio.run(venue_view())
    # the contract is the configured one, the prices the file's (its replay may wrap, rescaled)
    assert (sol.contract_value, sol.tick_size) == (0.1, 0.01)
    assert fills and all(f.product_symbol == "SOLUSD" for f in fills)
    assert all(0.5 * low <= f.price <= 2 * high for f in fills), (low, high, [f.price for f in fills][:5])
    assert ticker.close is not None and 0.5 * low <= ticker.close <= 2 * high
    run.terminate()


def test_market_data_bad_path_or_format_is_exit_2_naming_key_and_file(tmp_path: Path) -> None:
    cfg = tmp_path / "sol.toml"
    cfg.write_text(SOL_CONFIG)
    r = orchestrate(["--config", str(cfg), "--run-dir", str(tmp_path / "run"), "--no-display"], tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "market.data.SOLUSD" in r.stderr and "solusd-1m.csv.gz" in r.stderr and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout

    (tmp_path / "solusd-1m.csv.gz").write_text("time;price\n1;2\n")  # not gzip, not OHLCV
    r = orchestrate(["--config", str(cfg), "--run-dir", str(tmp_path / "run"), "--no-display"], tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "market.data.SOLUSD" in r.stderr and "solusd-1m.csv.gz" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout

    (tmp_path / "solusd-1m.csv").write_text("ts,open,high,low,close,volume\n" + "".join(
        f"{1_735_689_600 + 300 * i},1,2,0.5,1.5,10\n" for i in range(400)))  # 5m bars
    cfg.write_text(SOL_CONFIG.replace("solusd-1m.csv.gz", "solusd-1m.csv"))
    r = orchestrate(["--config", str(cfg), "--run-dir", str(tmp_path / "run"), "--no-display"], tmp_path)
    assert r.returncode == 2 and "300 s bars" in r.stderr and "market.data.SOLUSD" in r.stderr, r.stderr

    # a symbol the catalogue does not know, with candles but no contract: named, with the fix
    write_download_file(tmp_path / "solusd-1m.csv.gz", bars=400)
    cfg.write_text(SOL_CONFIG.replace("[market.products.SOLUSD]\ncontract_value = 0.1\ntick_size = 0.01\n", ""))
    r = orchestrate(["--config", str(cfg), "--run-dir", str(tmp_path / "run"), "--no-display"], tmp_path)
    assert r.returncode == 2 and "[market.products.SOLUSD]" in r.stderr, r.stderr
