"""The [deadman] keys: on by default with a TTL of minutes; off with one key; bad values refused
with the key and the file named (exit 2 through the real command line); a TTL a gateway restart
could outlast is refused, naming the keys it is measured against."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def test_on_by_default_with_a_ttl_of_minutes_and_off_with_one_key(tmp_path: Path) -> None:
    cfg, _ = load_config(None)
    assert cfg.deadman.enabled and cfg.deadman.ttl_s == 300.0 and cfg.deadman.renew_interval_s == 30.0
    # the default TTL outlasts the longest gateway restart the default supervision allows
    sup = cfg.supervision
    assert cfg.deadman.ttl_s > cfg.deadman.renew_interval_s + sup.heartbeat_timeout_s + sup.backoff_max_s + 10
    f = tmp_path / "off.toml"
    f.write_text("[deadman]\nenabled = false\nttl_s = 5\n")  # off: its timing is not checked
    assert load_config(f)[0].deadman.enabled is False


@pytest.mark.parametrize("text, words", [
    ("[deadman]\nttl_s = 2\n", ["key 'deadman.ttl_s'", "out of range", "5 to 3600"]),
    ("[deadman]\nttl_s = \"long\"\n", ["key 'deadman.ttl_s'", "expects float"]),
    ("[deadman]\nenabled = \"yes\"\n", ["key 'deadman.enabled'", "expects bool"]),
    ("[deadman]\nttl = 300\n", ["unknown key 'deadman.ttl'", "enabled, ttl_s, renew_interval_s"]),
    ("[deadman]\nttl_s = 60\nrenew_interval_s = 30\n", ["deadman.renew_interval_s", "a third of deadman.ttl_s"]),
    ("[deadman]\nttl_s = 100\n", ["key 'deadman.ttl_s' = 100 is too short", "supervision.backoff_max_s"]),
])
def test_bad_values_name_the_key_and_the_file(tmp_path: Path, text: str, words: list[str]) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    message = str(exc.value)
    assert str(f) in message
    for w in words:
        assert w in message, message


def test_the_command_line_exits_2_naming_key_and_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("[deadman]\nttl_s = 100\n")
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "--config", str(f), "--run-dir",
                        str(tmp_path / "run"), "--no-display"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "deadman.ttl_s" in r.stderr and str(f) in r.stderr and "Traceback" not in r.stderr
