"""best.toml with --as-symbol-table, in process: the winner's values land in the symbol's own
table and nowhere else, written so they read back bit for bit. (The end-to-end optimize run with
the flag is in make test-long; that a symbol table trades as the same values given globally is
tests/shared/backtest/test_symbol_tables.py, the re-run from best.toml the two-worker study.)"""

from __future__ import annotations

from pathlib import Path

from orchestrator.optimize_cmd import _best_config
from orchestrator.optimize_report import best_toml
from shared.config import Config, config_to_toml_dict, load_config


def test_the_winner_goes_in_the_symbols_table_and_reads_back_bit_for_bit(tmp_path: Path) -> None:
    winner = {"grid.width": 0.0123456789012345, "grid.levels": 7, "grid.min_confidence": 0.3141592653589793}
    cfg = _best_config(config_to_toml_dict(Config()), winner, ["BTCUSD"], as_table=True)
    path = tmp_path / "best.toml"
    path.write_text(best_toml(cfg, ["study s, trial #3 of 4"]))
    text = path.read_text()
    assert text.startswith("# study s, trial #3 of 4\n") and "[symbols.BTCUSD.grid]" in text
    back, _ = load_config(path)
    assert back.grid == Config().grid  # the global table stays the base config's
    assert back.symbols["BTCUSD"].grid == {"width": 0.0123456789012345, "levels": 7,
                                           "min_confidence": 0.3141592653589793}
    assert back.run.symbols == ["BTCUSD"]
