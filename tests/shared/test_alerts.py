"""The alert rules (shared/alerts.py): what is sent, what is held back, and that memory stays bounded."""

from __future__ import annotations

import calendar

import pytest

from shared.alerts import (
    MAX_SUBJECTS,
    Alert,
    AlertGate,
    AlertRules,
    AlertsConfig,
    BurstWatch,
    DayTally,
    LinkWatch,
    SymbolLine,
    redact,
    url_secrets,
)
from shared.config import ConfigError, alert_urls_from_env, build_config


def _a(kind: str = "stop_triggered", subject: str = "BTCUSD") -> Alert:
    return Alert(kind=kind, subject=subject, title="t", body="b")


def test_the_gate_sends_the_same_alert_once_per_repeat_window_and_counts_the_rest() -> None:
    gate = AlertGate(repeat_after_s=600, max_per_hour=100)
    assert gate.admit(_a(), 0.0) is not None
    assert [gate.admit(_a(), t) for t in range(1, 60)] == [None] * 59
    assert gate.admit(_a(subject="ETHUSD"), 61.0) is not None  # another subject is another alert
    again = gate.admit(_a(), 600.0)
    assert again is not None and "59 more like this" in again.body
    assert gate.repeats_total == 59


def test_a_flapping_link_gives_one_alert_not_sixty() -> None:
    """The websocket drops for 40 s and comes back for 5 s, sixty times in 45 minutes: with the
    default thresholds the trader hears one 'down' and one 'back' per repeat window."""
    cfg = AlertsConfig(enabled=True)
    rules = AlertRules(cfg, now_wall=1_700_000_000.0)
    sent: list[Alert] = []
    t = 0.0
    for _ in range(60):
        for _ in range(40):
            sent += rules.monitor_pass("gateway failed (exited with code 1)", 10_000.0, None, 0.0, t, 1_700_000_000.0)
            t += 1.0
        for _ in range(5):
            sent += rules.monitor_pass("", 10_000.0, None, 0.0, t, 1_700_000_000.0)
            t += 1.0
    downs = [a for a in sent if a.subject == "down"]
    backs = [a for a in sent if a.subject == "back"]
    # 2,700 s of flapping, one alert of each per 900 s window: 3 each, not 60
    assert len(downs) == 3 and len(backs) == 3, [a.body for a in sent]
    assert "Disconnected for 30 s" in downs[0].body
    assert "more like this" in downs[1].body


def test_a_short_outage_says_nothing() -> None:
    watch = LinkWatch(after_s=30)
    assert all(watch.update("down", float(t)) is None for t in range(29))
    assert watch.update("", 29.0) is None  # back before the threshold: no 'back' either
    assert watch.update("down", 100.0) is None


def test_bursts_fire_once_per_burst_and_keep_n_times() -> None:
    w = BurstWatch(count=3, window_s=10)
    assert [w.add(t) for t in (0, 20, 40)] == [False, False, False]  # spread out: never a burst
    assert [w.add(t) for t in (41, 42)] == [False, True]  # 40, 41, 42 within 10 s
    assert w.add(43) is False  # the next alert needs a fresh burst
    assert len(w._times) <= 3


def test_rejects_over_a_rate_and_restart_storm() -> None:
    rules = AlertRules(AlertsConfig(enabled=True, rejects_count=3, rejects_window_s=60, restart_storm_count=2),
                       now_wall=0.0)
    out = []
    for t in range(3):
        out += rules.order_event("BTCUSD", "rejected", "", "buy", 1, "100.0", "insufficient_margin: x", None, float(t))
    assert len(out) == 1 and "3 order actions rejected" in out[0].body and "insufficient_margin" in out[0].body
    assert rules.restarted("worker", "BTCUSD", "exited with code 1", 0.0) == []
    storm = rules.restarted("pool", "pool-0", "hung", 1.0)
    assert len(storm) == 1 and "pool pool-0: hung" in storm[0].body


def test_stop_and_halt_texts_name_symbol_price_and_reason() -> None:
    rules = AlertRules(AlertsConfig(enabled=True), now_wall=0.0)
    [stop] = rules.order_event("ETHUSD", "triggered", "77", "sell", 12, "2950.5", "stop_trigger", 2949.0, 1.0)
    assert "ETHUSD" in stop.title and "2950.5" in stop.body and "stop_trigger" in stop.body
    # the same order's later updates do not repeat it
    assert rules.order_event("ETHUSD", "triggered", "77", "sell", 12, "2950.5", "stop_trigger", 2949.0, 2.0) == []
    [halt] = rules.halted("total notional 120.0 > limit 50.0",
                          [SymbolLine(symbol="BTCUSD", price=43210.5, position=3.0)], 3.0)
    assert "BTCUSD at 43,210.5, position +3" in halt.body and "total notional 120.0 > limit 50.0" in halt.body


def test_switches_turn_events_off_and_fills_are_off_by_default() -> None:
    rules = AlertRules(AlertsConfig(enabled=True, halt=False), now_wall=0.0)
    assert rules.halted("daily loss", [], 0.0) == []
    assert rules.fill("BTCUSD", "buy", 1, "100.0", "0.05", 0.0) == []
    rules = AlertRules(AlertsConfig(enabled=True, fills=True), now_wall=0.0)
    assert len(rules.fill("BTCUSD", "buy", 1, "100.0", "0.05", 0.0)) == 1


def test_the_hourly_cap_holds_back_all_but_halts_and_says_how_many() -> None:
    gate = AlertGate(repeat_after_s=0, max_per_hour=2)
    assert gate.admit(_a(subject="1"), 0.0) and gate.admit(_a(subject="2"), 1.0)
    assert gate.admit(_a(subject="3"), 2.0) is None
    halt = gate.admit(_a(kind="halt", subject="risk"), 3.0)
    assert halt is not None and "1 other alert(s) not sent" in halt.body
    assert gate.admit(_a(subject="4"), 3601.0) is not None  # the hour passed


def test_the_gate_forgets_the_oldest_subjects_beyond_its_bound() -> None:
    gate = AlertGate(repeat_after_s=1e9, max_per_hour=3600)
    for i in range(MAX_SUBJECTS + 500):
        gate.admit(_a(subject=str(i)), float(i) * 2)  # under the cap: one every 2 s
    assert len(gate._last_sent) == MAX_SUBJECTS and len(gate._repeats) <= MAX_SUBJECTS
    assert gate.admit(_a(subject="0"), 1e6) is not None  # forgotten, so sent again


def test_daily_summary_once_a_day_with_pnl_fees_funding_and_fills() -> None:
    day1 = calendar.timegm((2026, 11, 30, 10, 0, 0))
    t = DayTally(hour_utc=0, now_wall=day1)
    t.on_account(10_000.0, funding=-0.25)  # the funding ledger's total to date when the run started
    t.on_fill("BTCUSD", 0.25)
    t.on_fill("BTCUSD", 0.25)
    t.on_fill("ETHUSD", -0.01)
    t.on_account(10_012.5, funding=-1.0)
    assert t.close_if_due(day1 + 3600, 1.0) is None
    s = t.close_if_due(calendar.timegm((2026, 12, 1, 0, 0, 5)), 12.0)
    assert s is not None and s.kind == "daily_summary"
    assert "PnL +12.50 USD" in s.body and "fees 0.49 USD" in s.body
    assert "funding -0.75 USD (+ received, - paid; -1.00 to date)" in s.body  # the day's, not the total
    assert "fills 3 (BTCUSD 2, ETHUSD 1)" in s.body
    assert t.fills == 0 and t.equity_start == 10_012.5  # the next day starts where this one closed
    t.on_account(10_020.0, funding=-0.6)  # a payment received the next day
    s = t.close_if_due(calendar.timegm((2026, 12, 2, 0, 0, 5)), 12.0)
    assert s is not None and "funding +0.40 USD (+ received, - paid; -0.60 to date)" in s.body
    t2 = DayTally(hour_utc=0, now_wall=day1)
    s2 = t2.close_if_due(day1 + 86_400, 0.0)
    assert s2 is not None and "funding" not in s2.body  # no funding figure: not invented


def test_redact_hides_every_token_bearing_part_of_an_apprise_url() -> None:
    url = "json://alerts:p4ssw0rd@127.0.0.1:8080/hooks/T0KEN-abc123?secret=q1w2e3"
    parts = url_secrets(url)
    assert {"p4ssw0rd", "T0KEN-abc123", "q1w2e3", url} <= set(parts)
    assert "127.0.0.1" not in parts
    assert "tgramBOT123" in url_secrets("tgram://tgramBOT123/12345")  # Telegram's token is the 'host'
    text = f"failed to send to {url}: p4ssw0rd T0KEN-abc123"
    out = redact(text, parts)
    assert "p4ssw0rd" not in out and "T0KEN" not in out and "q1w2e3" not in out


def test_alerts_config_names_an_environment_variable_never_a_url() -> None:
    with pytest.raises(ConfigError, match="alerts.urls_env must be the NAME") as e:
        build_config({"alerts": {"urls_env": "discord://id/SECRETTOKEN"}}, "f.toml")
    assert "SECRETTOKEN" not in str(e.value)
    with pytest.raises(ConfigError, match="unknown key 'alerts.urls'"):
        build_config({"alerts": {"urls": ["json://x"]}}, "f.toml")
    cfg = build_config({"alerts": {"enabled": True, "urls_env": "MY_ALERTS"}}, "f.toml")
    with pytest.raises(ConfigError, match="MY_ALERTS"):
        alert_urls_from_env(cfg.alerts, {})
    assert alert_urls_from_env(cfg.alerts, {"MY_ALERTS": "json://a:1/x, ntfy://topic"}) == ["json://a:1/x",
                                                                                         "ntfy://topic"]
    assert alert_urls_from_env(build_config({}, "f").alerts, {"ORCHESTRATE_ALERT_URLS": "json://a"}) == []
