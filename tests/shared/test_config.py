"""Configuration: typed schema, clear errors naming key, type and file; legacy config.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.config import ConfigError, Secrets, load_config, secrets_from_env

REPO = Path(__file__).resolve().parents[2]


def test_shipped_configs_load() -> None:
    cfg, notes = load_config(REPO / "configs" / "default.toml")
    assert cfg.run.mode == "paper" and cfg.run.symbols == ["BTCUSD", "ETHUSD"] and notes == []
    live, _ = load_config(REPO / "configs" / "live.example.toml")
    assert live.run.mode == "live" and live.run.venue == "india"


def test_unknown_key_names_key_file_and_valid_keys(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[market]\nbar_secnds = 2\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg and "market.bar_secnds" in msg and "bar_seconds" in msg


def test_mistyped_value_names_expected_type(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[processes]\npool_size = \"two\"\n")
    with pytest.raises(ConfigError, match=r"bad.toml: key 'processes.pool_size' expects int, got str"):
        load_config(p)


def test_invalid_value_is_explained(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[budgets]\naction = \"explode\"\n")
    with pytest.raises(ConfigError, match="budgets.action must be 'warn' or 'restart'"):
        load_config(p)


def test_the_paper_markets_arrival_model_is_a_named_choice(tmp_path: Path) -> None:
    p = tmp_path / "a.toml"
    p.write_text("[market]\narrivals = \"lockstep\"\n")
    assert load_config(p)[0].market.arrivals == "lockstep"
    assert load_config(None)[0].market.arrivals == "independent"
    p.write_text("[market]\narrivals = \"poisson\"\n")
    with pytest.raises(ConfigError, match="market.arrivals must be one of 'independent', 'lockstep'"):
        load_config(p)


def test_cli_overrides_win_and_are_validated(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[market]\nbar_seconds = 2.0\n")
    cfg, _ = load_config(p, {"market": {"bar_seconds": 0.5}})
    assert cfg.market.bar_seconds == 0.5
    with pytest.raises(ConfigError, match="command line: key 'market.bar_seconds' expects float, got str"):
        load_config(p, {"market": {"bar_seconds": "fast"}})
    with pytest.raises(ConfigError, match="command line: --bar-seconds 0.0 is out of range: allowed 0.001 to 3600"):
        load_config(p, {"market": {"bar_seconds": 0.0}}, option_names={"market.bar_seconds": "--bar-seconds"})
    # a rule between keys, one from the file and one from the command line: both places are named
    p.write_text("[supervision]\nheartbeat_timeout_s = 2.0\n")
    with pytest.raises(ConfigError, match=r"c.toml \(with command-line overrides\): supervision.heartbeat_timeout_s"):
        load_config(p, {"supervision": {"heartbeat_interval_s": 3.0}})


def test_secrets_in_a_file_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[run]\napi_secret = \"abc\"\n")
    with pytest.raises(ConfigError, match="secrets come only from the environment") as e:
        load_config(p)
    assert "abc" not in str(e.value)


def test_unknown_symbol_lists_close_matches() -> None:
    with pytest.raises(ConfigError, match="did you mean BTCUSD"):
        load_config(None, {"run": {"symbols": ["BTCUSDD"]}})


def test_legacy_config_json_is_mapped_with_notes(tmp_path: Path) -> None:
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"symbol": "ETHUSD", "grid_levels": 5, "grid_width": 0.01,
                             "risk_percentage": 1.0, "min_quantity": 0.1, "cycle_delay": 60,
                             "min_balance": 100, "initial_capital": 1000}))
    cfg, notes = load_config(p)
    assert cfg.run.symbols == ["ETHUSD"]
    assert cfg.market.initial_balance_usd == 1000
    assert len(notes) == 8 and any(n.startswith("min_quantity: ignored") for n in notes)


def test_legacy_unknown_key_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"symbol": "ETHUSD", "leverage": 5}))
    with pytest.raises(ConfigError, match="unknown key 'leverage'"):
        load_config(p)


def test_fault_switches_need_the_environment_gate() -> None:
    with pytest.raises(ConfigError, match="ORCHESTRATE_TEST_FAULTS"):
        load_config(None, {"testing": {"leak_mb_per_s": 1.0}}, environ={})
    cfg, _ = load_config(None, {"testing": {"leak_mb_per_s": 1.0}}, environ={"ORCHESTRATE_TEST_FAULTS": "1"})
    assert cfg.testing.leak_mb_per_s == 1.0


def test_secrets_come_from_env_and_never_print() -> None:
    assert secrets_from_env({}) is None
    s = secrets_from_env({"DELTA_API_KEY": "key123456", "DELTA_API_SECRET": "topsecretvalue"})
    assert isinstance(s, Secrets) and "topsecretvalue" not in repr(s) and "topsecretvalue" not in str(s)
    with pytest.raises(ConfigError, match="both"):
        secrets_from_env({"DELTA_API_KEY": "k"})


def test_protective_stops_are_on_by_default_and_their_settings_are_checked() -> None:
    cfg, _ = load_config(None, {})
    assert cfg.grid.stops and cfg.grid.stop_trigger_method == "mark_price" and cfg.grid.stop_cooldown_s == 900.0
    assert not load_config(None, {"grid": {"stops": False}})[0].grid.stops
    with pytest.raises(ConfigError, match="stop_trigger_method"):
        load_config(None, {"grid": {"stop_trigger_method": "spot"}})
    with pytest.raises(ConfigError, match="stop_cooldown_s"):
        load_config(None, {"grid": {"stop_cooldown_s": -1.0}})


def test_bot_id_follows_the_client_order_id_rule_and_the_shipped_configs_load() -> None:
    from pathlib import Path

    from shared.trading import client_order_id as coid
    with pytest.raises(ConfigError, match="run.bot_id"):
        load_config(None, {"run": {"bot_id": "L1"}})  # upper case cannot be encoded
    root = Path(__file__).resolve().parents[2] / "configs"
    for name in ("default.toml", "live.example.toml"):
        cfg, _ = load_config(root / name, environ={})
        # every shipped config can name its orders
        assert coid.encode(bot_id=cfg.run.bot_id, symbol="BTCUSD", side="buy", purpose="entry", level=1,
                           generation=0).startswith(f"dg1-{cfg.run.bot_id}-")


def test_default_toml_lists_every_key_with_its_default() -> None:
    """README promises configs/default.toml holds every key with its default: keep it true."""
    import tomllib
    from pathlib import Path

    import msgspec

    from shared.config import Config
    doc = tomllib.loads((Path(__file__).resolve().parents[2] / "configs" / "default.toml").read_text())
    defaults = msgspec.to_builtins(Config())
    for section, values in defaults.items():
        if section == "testing":
            continue  # fault switches: deliberately not in a production file
        if section == "symbols":
            continue  # per-symbol tables: none by default (default.toml shows one, commented out)
        assert doc.get(section) == values, section


def _numeric_keys() -> list[str]:
    import msgspec.inspect as mi

    from shared.config import Config
    keys = []
    info = mi.type_info(Config)
    assert isinstance(info, mi.StructType)
    for section in info.fields:
        if section.name == "symbols":
            continue  # per-symbol tables: [grid]/[risk] keys, whose ranges those sections carry
        assert isinstance(section.type, mi.StructType)
        for f in section.type.fields:
            t = f.type
            item = getattr(t, "item_type", getattr(t, "value_type", None))
            if isinstance(t, (mi.IntType, mi.FloatType)) or isinstance(item, (mi.IntType, mi.FloatType)):
                keys.append(f"{section.name}.{f.name}")
    return keys


def test_every_numeric_key_has_a_range_and_default_toml_shows_it() -> None:
    """Issue 10 §5: no number is open-ended (1e300, -10, 0 were accepted), and the documented
    range in configs/default.toml is the one the schema enforces."""
    import msgspec.inspect as mi

    from shared.config import Config, allowed_range
    keys = _numeric_keys()
    assert len(keys) > 60
    info = mi.type_info(Config)
    assert isinstance(info, mi.StructType)
    fields = {f"{s.name}.{f.name}": f.type for s in info.fields if isinstance(s.type, mi.StructType)
              for f in s.type.fields}
    lines = (REPO / "configs" / "default.toml").read_text().splitlines()
    for key in keys:
        field_type = fields[key]
        t = getattr(field_type, "item_type", getattr(field_type, "value_type", field_type))
        assert isinstance(t, (mi.IntType, mi.FloatType)), key
        assert (t.ge is not None or t.gt is not None) and (t.le is not None or t.lt is not None), key
        section, name = key.rsplit(".", 1)
        if section == "testing":
            continue  # fault switches: deliberately not in the production file
        documented = [ln for ln in lines if ln.startswith(f"{name} = ")] if section != "signal" or \
            name != "consensus_weights" else [ln for ln in lines if ln.startswith("[signal.consensus_weights]")]
        words = allowed_range(key + ("[0]" if isinstance(fields[key], mi.ListType) else
                                     "[...]" if isinstance(fields[key], mi.DictType) else ""))
        assert any(f"[{words}]" in ln or f"[each {words}]" in ln for ln in documented), (key, words)


@pytest.mark.parametrize("section,key,value,allowed", [
    ("market", "leverage", "0", "1 to 200"),
    ("market", "leverage", "-10", "1 to 200"),
    ("market", "initial_balance_usd", "1e300", "1 to 1000000000"),
    ("market", "initial_balance_usd", "-100", "1 to 1000000000"),
    ("supervision", "heartbeat_interval_s", "0", "0.05 to 60"),
    ("budgets", "uss_mb", "0.001", "0 (off) or 16 to 1048576"),
    ("budgets", "rss_mb", "-1", "0 (off) or 64 to 1048576"),
    ("supervision", "shutdown_timeout_s", "-5", "1 to 600"),
    ("risk", "max_open_orders", "0", "1 to 1000"),
    ("grid", "width", "1e-12", "0.0001 to 0.5"),
    ("grid", "levels", "100", "1 to 99"),
    ("status", "metrics_port", "70000", "0 to 65535"),
    ("signal", "consensus_threshold", "inf", "more than 0, up to 100"),
    ("risk", "daily_loss_limit", "nan", "more than 0, up to 1e+12"),
])
def test_a_value_out_of_range_names_key_value_range_and_file(tmp_path: Path, section: str, key: str,
                                                             value: str, allowed: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(f"[{section}]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, environ={})
    msg = str(e.value)
    assert str(p) in msg and f"'{section}.{key}' = " in msg and f"allowed {allowed}" in msg, msg
    assert repr(tomllib_value(value)) in msg, msg


def tomllib_value(text: str) -> object:
    import tomllib
    return tomllib.loads(f"v = {text}")["v"]


def test_legacy_config_json_errors_name_the_key_as_written(tmp_path: Path) -> None:
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"symbol": "ETHUSD", "grid_levels": 0}))
    with pytest.raises(ConfigError, match=r"config.json: key 'grid_levels' = 0 is out of range: allowed 1 to 99"):
        load_config(p)
    p.write_text(json.dumps({"symbol": "ETHUSD", "initial_capital": -100}))
    with pytest.raises(ConfigError, match=r"key 'initial_capital' = -100 is out of range"):
        load_config(p)
    p.write_text(json.dumps({"symbol": "ETHUSD", "grid_levels": 50, "grid_width": 0.05}))
    with pytest.raises(ConfigError) as e:  # a rule between two keys: both as the user wrote them
        load_config(p)
    assert "grid_levels x step fraction" in str(e.value) and "grid.levels" not in str(e.value)


def test_configured_products_with_colliding_ids_are_refused() -> None:
    """[market.products] ids are derived from the symbol; two that collide would share a product."""
    import pytest

    from shared.config import ConfigError, build_config
    product = {"contract_value": 1.0, "tick_size": 0.01}
    with pytest.raises(ConfigError, match="AKWUSD and AZRUSD would share paper product id"):
        build_config({"market": {"products": {"AKWUSD": product, "AZRUSD": product}}}, "t.toml")
    cfg = build_config({"market": {"products": {"AKWUSD": product}}}, "t.toml")
    assert cfg.market.products["AKWUSD"].taker_fee == 0.0005
