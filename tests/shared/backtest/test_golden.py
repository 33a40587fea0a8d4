"""Golden fills: each case's whole result (fills, figures, equity, timelines; `elapsed_s` zeroed)
hashes to the digest pinned here, taken before the speed work on the matching engine, the bot and
the loop. Any change to a fill, an order count or a figure fails this test: an optimisation must
not change what the backtest says. (A deliberate behaviour change re-pins the digest in its own
commit, saying why.)"""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from shared.backtest import BacktestResult, run_backtest
from shared.config import Config
from shared.marketdata import Candles, synthetic_candles
from shared.products import PAPER_PRODUCTS, ProductSpec, synthetic_spec

from .test_skip import CASES as SKIP_CASES


def _specs(data: dict[str, Candles]) -> dict[str, ProductSpec]:
    return {k: PAPER_PRODUCTS[k] if k in PAPER_PRODUCTS else synthetic_spec(k) for k in data}


def digest(r: BacktestResult) -> str:
    return hashlib.sha256(msgspec.structs.replace(r, elapsed_s=0.0).to_json()).hexdigest()


CASES: dict[str, tuple[Config, dict[str, Candles]]] = {
    **SKIP_CASES,
    # the benchmark's own shape: default settings over a generated series, one and several symbols
    "bench-1": (Config(), {"SYN_0001": synthetic_candles("SYN_0001", 20_000, seed=7)}),
    "bench-4": (Config(), {f"SYN_{i:04d}": synthetic_candles(f"SYN_{i:04d}", 6_000, seed=7) for i in range(1, 5)}),
}

GOLDEN = {
    "bench-shape": "a12407423882f38b0e373ad7e49eca8edc7d25a592c464356ff872ac7d4f4fcd",  # pinned on the old code
    "bench-1": "921730dc30be140eaf816e7267524b196c58780d8eaa3350acec49372d0c2596",
    "bench-4": "f17b85accf78fef95554c3fdcd77bdf0d3bde6e30d3834bf29536c32d1f4f3b6",
    "eth-atr": "24c7907e5833d50b0941752c5c9e85a9f95f9723142b91fa58c511ace23695b2",
    "eth-fixed": "14283284c5b1a1bb2a745a4bf66787924635889435233e5668665c2729acd7cc",
    "eth-neutral": "37ea9441198e3e31cfc3d50348e392f8a4731ca241dfa1fa84a97c1f78c01fda",
    "eth-trailing": "2a955d1bb9fbacafb1f45d0818fc0d8333392f8a242cb9004044fb0148fb0c5e",
    "halt": "a861c043deb6c5a12124bdb935540027b5d1c22e7d519a70a463eed69cd00f28",  # day from the starting balance
    "three-symbols-churn": "ab2f5f0aca265d572b90e5f0ab0c2619231ad57aeeb10daaecc9adfde1e398b9",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_run_gives_the_pinned_result(case: str) -> None:
    cfg, data = CASES[case]
    r = run_backtest(cfg, data, specs=_specs(data), balance_usd=10_000.0)
    assert r.summary.fills > 0  # a pinned run without trading would pin nothing
    assert digest(r) == GOLDEN[case]
