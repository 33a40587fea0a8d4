"""Per-symbol settings: [symbols.SYMBOL.grid]/[symbols.SYMBOL.risk] over [grid]/[risk], checked
like every other key, and one resolver for the worker, the backtest and the optimizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import cli
from shared.config import ConfigError, config_to_toml_dict, load_config
from shared.symbol_settings import symbol_overrides, symbol_settings, unused_symbol_tables

TABLES = """
[grid]
levels = 5
width = 0.01
[symbols.BTCUSD.grid]
levels = 3
width = 0.005
[symbols.ETHUSD.risk]
risk_percentage = 0.5
max_open_orders = 7
"""


def _load(tmp_path: Path, text: str, overrides: dict | None = None):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return load_config(p, overrides)[0], p


def test_a_symbol_table_overrides_only_its_keys_for_only_its_symbol(tmp_path: Path) -> None:
    cfg, _ = _load(tmp_path, TABLES)
    btc, eth = symbol_settings(cfg, "BTCUSD"), symbol_settings(cfg, "ETHUSD")
    assert (btc.grid.levels, btc.grid.width) == (3, 0.005)
    assert btc.grid.min_confidence == cfg.grid.min_confidence and btc.risk == cfg.risk
    assert (eth.grid, eth.risk.risk_percentage, eth.risk.max_open_orders) == (cfg.grid, 0.5, 7)
    assert eth.risk.min_balance == cfg.risk.min_balance
    # a symbol without a table trades the global settings
    other = symbol_settings(cfg, "SYN_0001")
    assert (other.grid, other.risk, other.overrides) == (cfg.grid, cfg.risk, ())
    assert btc.overrides == ("grid.levels=3", "grid.width=0.005")
    assert symbol_overrides(cfg, "ETHUSD") == ("risk.risk_percentage=0.5", "risk.max_open_orders=7")


def test_a_global_change_reaches_every_key_a_table_does_not_set(tmp_path: Path) -> None:
    cfg, _ = _load(tmp_path, TABLES, {"grid": {"min_confidence": 0.7}})
    assert symbol_settings(cfg, "BTCUSD").grid.min_confidence == 0.7
    assert symbol_settings(cfg, "BTCUSD").grid.levels == 3


@pytest.mark.parametrize(("body", "message"), [
    ("[symbols.BTCUSD.grid]\nlevls = 3\n",
     r"c.toml: unknown key 'symbols.BTCUSD.grid.levls'; valid keys here: levels, width"),
    ("[symbols.BTCUSD.grid]\nlevels = \"3\"\n", r"c.toml: key 'symbols.BTCUSD.grid.levels' expects int, got str"),
    ("[symbols.BTCUSD.grid]\nlevels = 300\n",
     r"c.toml: key 'symbols.BTCUSD.grid.levels' = 300 is out of range: allowed 1 to 99"),
    ("[symbols.BTCUSD.risk]\nrisk_percentage = 0\n",
     r"c.toml: key 'symbols.BTCUSD.risk.risk_percentage' = 0 is out of range: allowed more than 0, up to 100"),
    ("[symbols.BTCUSD.signal]\nmin_votes = 1\n",
     r"c.toml: unknown key 'symbols.BTCUSD.signal'; a symbol's table holds: grid, risk"),
    ("[symbols.BTCUSD.risk]\ndaily_loss_limit = 5.0\n",
     r"c.toml: key 'symbols.BTCUSD.risk.daily_loss_limit' is account-wide .*: set it in \[risk\]"),
    ("[symbols.btcusd.grid]\nlevels = 3\n", r"c.toml: \[symbols.btcusd\]: 'btcusd' is not a Delta symbol"),
    ("[symbols]\nBTCUSD = 3\n", r"c.toml: key 'symbols.BTCUSD' must be a table"),
    ("[symbols.BTCUSD]\ngrid = 3\n", r"c.toml: key 'symbols.BTCUSD.grid' must be a table of \[grid\] keys"),
    # the rule between keys runs on the merged settings: 60 levels of the table x the global 2% width
    ("[grid]\nwidth = 0.02\n[symbols.BTCUSD.grid]\nlevels = 60\n",
     r"c.toml: \[symbols.BTCUSD.grid\] merged over \[grid\]: grid.levels x step fraction must be < 1.*60 x 0.02"),
])
def test_a_bad_symbol_table_names_the_key_as_written_and_the_file(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, body)


def test_a_global_change_that_breaks_a_merged_table_is_refused(tmp_path: Path) -> None:
    """The table alone is fine (60 levels x 1%); under a global ATR spacing capped at 2% its 60
    levels would reach below zero: refused, naming the table."""
    _load(tmp_path, "[symbols.BTCUSD.grid]\nlevels = 60\nwidth = 0.01\n")
    with pytest.raises(ConfigError, match=r"\[symbols.BTCUSD.grid\] merged over \[grid\]"):
        _load(tmp_path, "[grid]\nspacing_mode = \"atr\"\nspacing_cap = 0.02\n[symbols.BTCUSD.grid]\nlevels = 60\n")


def test_the_cli_exits_2_naming_key_and_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[symbols.BTCUSD.grid]\nlevls = 3\n")
    assert cli.main(["--config", str(p), "--run-dir", str(tmp_path / "run"), "--no-display"]) == 2
    err = capsys.readouterr().err
    assert f"{p}: unknown key 'symbols.BTCUSD.grid.levls'" in err and "Traceback" not in err


def test_a_table_for_a_symbol_not_in_the_run_is_a_warning_with_close_matches(tmp_path: Path) -> None:
    cfg, _ = _load(tmp_path, "[symbols.BTCUSDT.grid]\nlevels = 3\n[symbols.SOLUSD.grid]\nlevels = 2\n")
    warnings = unused_symbol_tables(cfg, ["BTCUSD", "ETHUSD"])
    assert warnings == [
        "[symbols.BTCUSDT] applies to no symbol of this run (BTCUSD, ETHUSD): ignored; did you mean BTCUSD?",
        "[symbols.SOLUSD] applies to no symbol of this run (BTCUSD, ETHUSD): ignored"]
    assert unused_symbol_tables(cfg, ["BTCUSDT", "SOLUSD"]) == []


def test_tables_survive_the_round_trip_through_a_written_config(tmp_path: Path) -> None:
    """best.toml and the optimizer's trial configs go through config_to_toml_dict."""
    import tomli_w

    cfg, _ = _load(tmp_path, TABLES)
    doc = config_to_toml_dict(cfg)
    assert doc["symbols"] == {"BTCUSD": {"grid": {"levels": 3, "width": 0.005}},
                              "ETHUSD": {"risk": {"risk_percentage": 0.5, "max_open_orders": 7}}}
    again, _ = _load(tmp_path, tomli_w.dumps(doc))
    assert again.symbols == cfg.symbols
    plain, _ = _load(tmp_path, "")
    assert "symbols" not in config_to_toml_dict(plain)


def test_backtest_warns_of_a_table_for_a_symbol_it_does_not_trade(tmp_path: Path) -> None:
    """The backtest names the table and the close match among its --data symbols, then runs."""
    from orchestrator import backtest_cmd

    btc = Path(__file__).resolve().parents[2] / "shared" / "data" / "BTCUSD-coinbase-1m.csv.gz"
    cfg = tmp_path / "c.toml"
    cfg.write_text("[symbols.BTCUSDT.grid]\nlevels = 3\n")
    ns = backtest_cmd.build_parser().parse_args(["--data", f"BTCUSD={btc}", "--config", str(cfg),
                                                 "--from", "2017-09-03T06:00", "--to", "2017-09-03T07:00"])
    notes = backtest_cmd.prepare(ns).notes
    assert f"{cfg}: [symbols.BTCUSDT] applies to no symbol of this run (BTCUSD): ignored; did you mean BTCUSD?" \
        in notes
