"""`orchestrate optimize` refuses bad input before any trial runs: exit 2, naming the key/option."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from shared.optimize.space import SpaceError, load_space, params_to_overrides

REPO = Path(__file__).resolve().parents[2]
BTC = REPO / "shared" / "data" / "BTCUSD-coinbase-1m.csv.gz"


def run(tmp_path: Path, space: str, *extra: str) -> int:
    sp = tmp_path / "space.toml"
    sp.write_text(space)
    return main(["optimize", "--data", f"BTCUSD={BTC}", "--space", str(sp), "--trials", "2",
                 "--train", "2018-04-05..2018-04-05", "--test", "2018-04-06..2018-04-06",
                 "--run-dir", str(tmp_path / "run"), *extra])


@pytest.mark.parametrize("space, named, why", [
    ('"grid.widht" = {low = 0.002, high = 0.03}', "grid.widht", "did you mean grid.width"),
    ('"grid.spacing" = ["fixed", "atr"]', "grid.spacing", "grid.spacing_mode"),
    ('"grid.mode" = {low = 1, high = 2}', "grid.mode", "not a number"),
    ('"grid.stops" = {low = 0, high = 1}', "grid.stops", "not a number"),
    ('"signal.trend_weights" = {low = 0.1, high = 0.5}', "signal.trend_weights", "not a number"),
    ('"grid.width" = {low = 0.03, high = 0.002}', "grid.width", "empty range"),
    ('"grid.levels" = {low = 5, high = 5}', "grid.levels", "empty range"),
    ('"grid.spacing_mode" = []', "grid.spacing_mode", "empty list"),
    ('"grid.spacing_mode" = ["fixed", "geometric"]', "grid.spacing_mode", "'geometric'"),
    ('"grid.levels" = {low = 2.5, high = 8}', "grid.levels", "whole"),
    ('"grid.width" = {low = 0.0, high = 0.03, log = true}', "grid.width", "log range needs low > 0"),
    ('"grid.width" = {lo = 0.01, high = 0.03}', "grid.width", "unknown range option"),
    ('"status.interval_s" = {low = 1.0, high = 2.0}', "status.interval_s", "does not change what a backtest"),
    ('"signal.consensus_weights.rll" = {low = 0.0, high = 2.0}', "signal.consensus_weights.rll", "did you mean"),
    ('"grid" = ["a"]', "grid", "is a table"),
])
def test_bad_space_exits_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str], space: str,
                                          named: str, why: str) -> None:
    assert run(tmp_path, space) == 2
    err = capsys.readouterr().err
    assert f"'{named}'" in err and why in err and "space.toml" in err
    assert "Traceback" not in err


def test_empty_space_and_bad_toml_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "") == 2
    assert "no keys to search" in capsys.readouterr().err
    assert run(tmp_path, '"grid.width" = {low = ') == 2
    assert "not valid TOML" in capsys.readouterr().err


@pytest.mark.parametrize("extra, named", [
    (["--objective", "profit"], "--objective"),
    (["--train", "2018-04-06..2018-04-05"], "--train"),
    (["--train", "2019-01-01..2019-01-02"], "--train"),
    (["--test", "2018-04-05..2018-04-06"], "overlaps --train"),
    (["--test", "yesterday..today"], "--test"),
    (["--config", "/nonexistent/base.toml"], "/nonexistent/base.toml"),
    (["--data", "ETHUSD=/nonexistent.csv"], "/nonexistent.csv"),
    (["--data", "SOLUSD=/nonexistent.csv"], "--spec SOLUSD="),
    (["--spec", "BTCUSD=0.001:0.5:2:5"], "give fees as fractions"),
    (["--trials", "0"], "--trials"),
])
def test_bad_options_exit_2_naming_them(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                                        named: str) -> None:
    assert run(tmp_path, '"grid.width" = {low = 0.002, high = 0.03, log = true}', *extra) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_good_space_types_follow_the_schema() -> None:
    dims = load_space('"grid.width" = {low = 0.002, high = 0.03, log = true}\n'
                      '"grid.levels" = {low = 2, high = 12}\n'
                      '"grid.spacing_mode" = ["fixed", "atr"]\n'
                      '"grid.stops" = [true, false]\n'
                      '[signal.consensus_weights]\nrl = {low = 0.0, high = 2.0, step = 0.5}\n', "s.toml")
    kinds = {d.key: d.kind for d in dims}
    assert kinds == {"grid.width": "float", "grid.levels": "int", "grid.spacing_mode": "choice",
                     "grid.stops": "choice", "signal.consensus_weights.rl": "float"}
    assert params_to_overrides({"grid.width": 0.01, "signal.consensus_weights.rl": 0.5}) == {
        "grid": {"width": 0.01}, "signal": {"consensus_weights": {"rl": 0.5}}}
    with pytest.raises(SpaceError, match="choice 1.5 is not a valid int"):
        load_space('"grid.levels" = [2, 1.5]', "s.toml")


def test_trial_values_keep_the_rest_of_a_table() -> None:
    """One consensus weight searched leaves the other weights at the base config's values."""
    from orchestrator.optimize_study import trial_config
    from shared.config import Config, ConfigError, config_to_toml_dict

    base = config_to_toml_dict(Config())
    cfg = trial_config(base, {"signal.consensus_weights.rl": 0.5, "grid.levels": 7})
    assert cfg.signal.consensus_weights == {"trend": 1.0, "mtf": 1.0, "volatility": 1.0, "rl": 0.5}
    assert cfg.grid.levels == 7
    with pytest.raises(ConfigError, match="levels x step"):
        trial_config(base, {"grid.levels": 12, "grid.width": 0.09})


@pytest.mark.parametrize("space, extra, named", [
    # a key a symbol table cannot hold
    ('"signal.rsi_overbought" = {low = 60.0, high = 80.0}', ["--as-symbol-table"],
     "'signal.rsi_overbought' cannot go in a symbol's"),
    ('"risk.daily_loss_limit" = {low = 10.0, high = 100.0}', ["--as-symbol-table"], "'risk.daily_loss_limit'"),
    # one table per symbol: two --data symbols tuned as one
    ('"grid.width" = {low = 0.002, high = 0.03}',
     ["--as-symbol-table", "--data", f"ETHUSD={REPO / 'shared' / 'data' / 'ETHUSD-coinbase-1m.csv.gz'}"],
     "give one --data symbol, not 2"),
])
def test_as_symbol_table_refuses_what_a_table_cannot_hold(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         space: str, extra: list[str], named: str) -> None:
    assert run(tmp_path, space, *extra) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_a_searched_key_the_base_config_sets_for_the_symbol_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The symbol's own table would mask every trial's value: the search would tune nothing."""
    base = tmp_path / "base.toml"
    base.write_text("[symbols.BTCUSD.grid]\nwidth = 0.004\n")
    assert run(tmp_path, '"grid.width" = {low = 0.002, high = 0.03}', "--config", str(base)) == 2
    err = capsys.readouterr().err
    assert "'grid.width': [symbols.BTCUSD.grid] in --config sets width" in err and "Traceback" not in err
