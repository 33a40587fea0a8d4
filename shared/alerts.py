"""Which alerts reach the trader, and when: pure rules and small state machines, no I/O.

The supervisor feeds events in (a halt, a quarantine, a restart, an order record, a fill, the
status of each monitor pass) with the time; the rules answer with the `Alert`s to send now. The
sending (apprise, a thread, a bounded queue) lives in `orchestrator/alerts.py`.

Two layers keep the trader's phone quiet:
- conditions that only matter past a threshold are watched here (`LinkWatch`: disconnected longer
  than N s; `BurstWatch`: N restarts or rejections within W s), so one flap is not an alert;
- `AlertGate` sends the same alert (kind + subject) at most once per `repeat_after_s` and at most
  `max_per_hour` alerts in all; what it holds back is counted and said in the next one sent.
  A flapping websocket therefore gives one alert, not sixty. Memory is bounded: the gate keeps
  at most MAX_SUBJECTS subjects, a burst watch at most N times.

Every text sent passes `redact`, which replaces the run's secrets (API key and secret, the parts
of the alert URLs that carry tokens) wherever they appear.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Sequence
from typing import Annotated
from urllib.parse import parse_qsl, unquote, urlsplit

import msgspec
from msgspec import Meta

KINDS = ("stop_triggered", "halt", "quarantine", "restart_storm", "gateway_down", "rejects", "daily_summary",
         "fill")
# Never held back by the hourly cap (still de-duplicated): the trader must hear that trading
# stopped even during a storm of stops, and the day's summary is one message a day.
UNCAPPED = frozenset({"halt", "daily_summary"})
MAX_SUBJECTS = 1024  # the gate remembers this many (kind, subject) pairs, oldest forgotten first
MAX_LISTED = 20  # symbols named in one alert; the rest are counted
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SECONDS_PER_DAY = 86_400


class AlertsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[alerts]`: where alerts go (the NAME of an environment variable holding apprise URLs: they
    carry tokens, so never the URLs themselves) and which events are sent."""
    enabled: bool = False
    urls_env: str = "ORCHESTRATE_ALERT_URLS"  # its value: apprise URLs separated by spaces or commas
    # per-event switches
    stop_triggered: bool = True
    halt: bool = True
    quarantine: bool = True
    restart_storm: bool = True
    gateway_down: bool = True
    rejects: bool = True
    daily_summary: bool = True
    fills: bool = False  # one alert per fill: noisy with a grid, off by default
    # thresholds
    gateway_down_after_s: Annotated[float, Meta(ge=1, le=86_400)] = 30.0
    restart_storm_count: Annotated[int, Meta(ge=2, le=10_000)] = 5  # restarts of any process ...
    restart_storm_window_s: Annotated[float, Meta(ge=1, le=86_400)] = 300.0  # ... within this
    rejects_count: Annotated[int, Meta(ge=1, le=100_000)] = 10  # rejected order actions ...
    rejects_window_s: Annotated[float, Meta(ge=1, le=86_400)] = 60.0  # ... within this
    summary_hour_utc: Annotated[int, Meta(ge=0, le=23)] = 0  # the daily summary covers the day ending then
    # rate limits
    repeat_after_s: Annotated[float, Meta(ge=0, le=604_800)] = 900.0  # the same alert again only after this
    max_per_hour: Annotated[int, Meta(ge=1, le=3600)] = 60  # all alerts but halts and summaries
    # delivery
    queue_size: Annotated[int, Meta(ge=1, le=10_000)] = 100  # alerts waiting for the sender; beyond: dropped, counted
    send_timeout_s: Annotated[float, Meta(ge=1, le=120)] = 10.0  # per attempt, each URL

    def __post_init__(self) -> None:
        if not _ENV_NAME.fullmatch(self.urls_env):
            raise ValueError(f"alerts.urls_env must be the NAME of an environment variable (letters, digits, _), "
                             f"not {'a URL' if '://' in self.urls_env else repr(self.urls_env)}")

    def wants(self, kind: str) -> bool:
        switch = "fills" if kind == "fill" else kind
        return bool(getattr(self, switch))


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    kind: str  # one of KINDS
    subject: str  # what it is about (symbol, process, "account"): the gate's de-duplication key with kind
    title: str
    body: str


# --- secrets -------------------------------------------------------------------------------------


def url_secrets(url: str) -> list[str]:
    """The parts of an apprise URL that may be secret: user, password, every path segment and
    query value (webhook tokens live there: discord://id/token, tgram://bottoken/chat,
    json://host/hooks/TOKEN). Host and port are not. The whole URL too."""
    out = [url]
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        return out
    out += [p for p in (user, password) if p]
    # apprise puts the first token where a host would be for many services (tgram://TOKEN/...):
    # a "host" without a dot or a colon-free name of a machine is likely a token, keep it secret
    host = parts.netloc.rsplit("@", 1)[-1].split(":", 1)[0]  # as written: hostname is lower-cased
    if host and "." not in host and host != "localhost":
        out.append(host)
    out += [unquote(s) for s in parts.path.split("/") if s]
    out += [v for _, v in parse_qsl(parts.query) if v]
    return [s for s in dict.fromkeys(out) if len(s) >= 4]  # a 1-3 character "secret" would redact half the text


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by <hidden>, longest first (a token inside a URL)."""
    for s in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(s, "<hidden>")
    return text


# --- the gate: de-duplication and the hourly cap --------------------------------------------------


class AlertGate:
    """Sends an alert unless the same (kind, subject) went out less than `repeat_after_s` ago or
    the hour's cap is used up; what it holds back is counted and mentioned in the next alert of
    the same subject (repeats) or the next alert at all (over the cap)."""

    def __init__(self, repeat_after_s: float, max_per_hour: int, max_subjects: int = MAX_SUBJECTS) -> None:
        self.repeat_after_s = repeat_after_s
        self.max_per_hour = max_per_hour
        self.max_subjects = max_subjects
        self._last_sent: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._repeats: dict[tuple[str, str], int] = {}  # held back since the last one sent
        self._sent: deque[float] = deque(maxlen=max_per_hour)  # times of the last capped alerts
        self._over_cap = 0  # held back by the cap since the last alert sent
        self.repeats_total = 0
        self.over_cap_total = 0

    def admit(self, alert: Alert, now: float) -> Alert | None:
        key = (alert.kind, alert.subject)
        last = self._last_sent.get(key)
        if last is not None and now - last < self.repeat_after_s:
            self._repeats[key] = self._repeats.get(key, 0) + 1
            self.repeats_total += 1
            return None
        capped = alert.kind not in UNCAPPED
        if capped and len(self._sent) >= self.max_per_hour and now - self._sent[0] < 3600.0:
            self._over_cap += 1
            self.over_cap_total += 1
            return None
        if capped:
            self._sent.append(now)
        self._last_sent[key] = now
        self._last_sent.move_to_end(key)
        while len(self._last_sent) > self.max_subjects:
            old, _ = self._last_sent.popitem(last=False)
            self._repeats.pop(old, None)
        notes = []
        if n := self._repeats.pop(key, 0):
            notes.append(f"{n} more like this in the last {_duration(now - last if last is not None else 0)} "
                         "not sent")
        if self._over_cap:
            notes.append(f"{self._over_cap} other alert(s) not sent: over alerts.max_per_hour "
                         f"({self.max_per_hour})")
            self._over_cap = 0
        if not notes:
            return alert
        return msgspec.structs.replace(alert, body=alert.body + "\n(" + "; ".join(notes) + ")")


# --- conditions that matter past a threshold ------------------------------------------------------


class LinkWatch:
    """Disconnected longer than `after_s`: one alert when the outage reaches it, one when the
    link is back (only after an alert). A down/up flap shorter than `after_s` says nothing."""

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self.down_since: float | None = None
        self.alerted = False

    def update(self, down_why: str, now: float) -> Alert | None:
        if not down_why:
            was, alerted = self.down_since, self.alerted
            self.down_since, self.alerted = None, False
            if alerted and was is not None:
                return Alert(kind="gateway_down", subject="back", title="Order management back",
                             body=f"The link to the exchange is back after {_duration(now - was)}.")
            return None
        if self.down_since is None:
            self.down_since = now
        if not self.alerted and now - self.down_since >= self.after_s:
            self.alerted = True
            return Alert(kind="gateway_down", subject="down", title="Order management down",
                         body=f"Disconnected for {_duration(now - self.down_since)}: {down_why}. Orders resting "
                              "on the exchange are managed by nobody until it is back.")
        return None


class BurstWatch:
    """`count` events within `window_s` (restarts, rejected orders): True once per burst (the
    times are forgotten when it fires, so the next alert needs a fresh burst). Keeps `count` times."""

    def __init__(self, count: int, window_s: float) -> None:
        self.count = count
        self.window_s = window_s
        self._times: deque[float] = deque(maxlen=count)

    def add(self, now: float) -> bool:
        self._times.append(now)
        if len(self._times) == self.count and now - self._times[0] <= self.window_s:
            self._times.clear()
            return True
        return False


class DayTally:
    """The trading day's figures for the daily summary: fills and fees as they come, equity at the
    day's start and now, the day's funding from the supervisor's funding ledger (its total to date
at the day's start and now). A day runs from `hour_utc` to
    `hour_utc` the next day. Kept in memory: a restart mid-day starts counting again (said in the
    summary as the time it covers)."""

    def __init__(self, hour_utc: int, now_wall: float) -> None:
        self.hour_utc = hour_utc
        self._reset(now_wall)

    def _day(self, now_wall: float) -> int:
        return int((now_wall - self.hour_utc * 3600) // SECONDS_PER_DAY)

    def _reset(self, now_wall: float) -> None:
        self.day = self._day(now_wall)
        self.since = now_wall
        self.fills = 0
        self.fees = 0.0
        self.by_symbol: Counter[str] = Counter()
        self.equity_start = math.nan
        self.equity_now = math.nan
        self.funding_start: float | None = None  # the ledger's funding to date when the day began
        self.funding: float | None = None  # ... and now

    def on_fill(self, symbol: str, fee: float) -> None:
        self.fills += 1
        if math.isfinite(fee):
            self.fees += fee
        if symbol in self.by_symbol or len(self.by_symbol) < 10_000:  # bounded whatever the venue sends
            self.by_symbol[symbol] += 1

    def on_account(self, equity: float, funding: float | None = None) -> None:
        if math.isfinite(equity):
            if not math.isfinite(self.equity_start):
                self.equity_start = equity
            self.equity_now = equity
        """`funding`: the funding ledger's total to date (+ received, - paid); None when unknown."""
        if funding is not None and math.isfinite(funding):
            if self.funding_start is None:
                self.funding_start = funding
            self.funding = funding

    def close_if_due(self, now_wall: float, realised_pnl: float) -> Alert | None:
        """At the first call of a new day: the finished day's summary (and a fresh tally)."""
        if self._day(now_wall) == self.day:
            return None
        alert = summary_alert(self, now_wall, realised_pnl)
        close, funding = self.equity_now, self.funding
        self._reset(now_wall)
        self.equity_start = self.equity_now = close  # today starts where yesterday closed
        self.funding_start = self.funding = funding
        return alert


def summary_alert(t: DayTally, now_wall: float, realised_pnl: float) -> Alert:
    start = time.strftime("%Y-%m-%d %H:%M", time.gmtime(t.since))  # formatting only: no clock is read
    end = time.strftime("%Y-%m-%d %H:%M", time.gmtime(now_wall))
    lines = [f"{start} .. {end} UTC"]
    if math.isfinite(t.equity_start) and math.isfinite(t.equity_now):
        lines.append(f"PnL {t.equity_now - t.equity_start:+,.2f} USD (equity {t.equity_start:,.2f} -> "
                     f"{t.equity_now:,.2f}, fees and funding included)")
    if math.isfinite(realised_pnl):
        lines.append(f"realised PnL of the bots since their start {realised_pnl:+,.2f} USD")
    lines.append(f"fees {t.fees:,.2f} USD")
    if t.funding is not None and t.funding_start is not None:
        lines.append(f"funding {t.funding - t.funding_start:+,.2f} USD (+ received, - paid; "
                     f"{t.funding:+,.2f} to date)")
    top = ", ".join(f"{s} {n}" for s, n in t.by_symbol.most_common(MAX_LISTED))
    more = len(t.by_symbol) - MAX_LISTED
    lines.append(f"fills {t.fills}" + (f" ({top}{f', +{more} more symbols' if more > 0 else ''})" if top else ""))
    return Alert(kind="daily_summary", subject=end[:10], title="Daily summary", body="\n".join(lines))


# --- the events, in the trader's words ----------------------------------------------------------


class SymbolLine(msgspec.Struct, frozen=True, kw_only=True):
    """One bot as a halt alert names it."""
    symbol: str
    price: float | None
    position: float


def halt_alert(reason: str, bots: Sequence[SymbolLine]) -> Alert:
    listed = [f"{b.symbol} at {_price(b.price)}, position {b.position:+g}" for b in bots[:MAX_LISTED]]
    if len(bots) > MAX_LISTED:
        listed.append(f"+{len(bots) - MAX_LISTED} more symbols")
    return Alert(kind="halt", subject=reason.split(":", 1)[0], title="Trading halted",
                 body=f"Reason: {reason}\nEvery bot stopped new entries and cancels its orders.\n"
                      + "\n".join(listed))


def stop_triggered_alert(symbol: str, order_id: str, side: str, size: int, price: str, reason: str,
                         last_price: float | None) -> Alert:
    market = f"; last trade {_price(last_price)}" if last_price is not None else ""
    return Alert(kind="stop_triggered", subject=f"{symbol}:{order_id}", title=f"{symbol}: protective stop triggered",
                 body=f"{symbol} stop {side} {size} triggered at {price}{market}. Reason: {reason or 'stop_trigger'}."
                      " No new entries during the cool-down.")


def quarantine_alert(kind: str, name: str, reason: str) -> Alert:
    return Alert(kind="quarantine", subject=name, title=f"{name} quarantined",
                 body=f"The {kind} {name} is given up on after repeated failures: {reason}. "
                      "It stays stopped until the next start.")


def restart_storm_alert(count: int, window_s: float, last: str) -> Alert:
    return Alert(kind="restart_storm", subject="fleet", title="Restart storm",
                 body=f"{count} process restarts within {_duration(window_s)}; last: {last}.")


def rejects_alert(count: int, window_s: float, symbol: str, detail: str) -> Alert:
    return Alert(kind="rejects", subject="orders", title="Orders rejected",
                 body=f"{count} order actions rejected within {_duration(window_s)}; last: {symbol}: {detail}.")


def fill_alert(symbol: str, side: str, size: int, price: str, fee: str) -> Alert:
    return Alert(kind="fill", subject=f"{symbol}:{side}:{price}:{size}", title=f"{symbol} fill",
                 body=f"{symbol} {side} {size} at {price}, fee {fee}.")


def _price(p: float | None) -> str:
    return "no price yet" if p is None or not math.isfinite(p) else f"{p:,.10g}"


def _duration(s: float) -> str:
    s = max(0.0, s)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


# --- all of it together: what the supervisor calls ------------------------------------------------

REJECT_EVENTS = frozenset({"rejected", "amend_rejected", "cancel_rejected"})


class AlertRules:
    """The supervisor's events in, the alerts to send now out. `now` is monotonic seconds (the
    gate, the watches), `now_wall` epoch seconds (the trading day)."""

    def __init__(self, cfg: AlertsConfig, now_wall: float) -> None:
        self.cfg = cfg
        self.gate = AlertGate(cfg.repeat_after_s, cfg.max_per_hour)
        self.link = LinkWatch(cfg.gateway_down_after_s)
        self.restarts = BurstWatch(cfg.restart_storm_count, cfg.restart_storm_window_s)
        self.rejects = BurstWatch(cfg.rejects_count, cfg.rejects_window_s)
        self.day = DayTally(cfg.summary_hour_utc, now_wall)

    def _out(self, alert: Alert | None, now: float) -> list[Alert]:
        if alert is None or not self.cfg.wants(alert.kind):
            return []
        admitted = self.gate.admit(alert, now)
        return [admitted] if admitted is not None else []

    def halted(self, reason: str, bots: Sequence[SymbolLine], now: float) -> list[Alert]:
        return self._out(halt_alert(reason, bots), now)

    def quarantined(self, kind: str, name: str, reason: str, now: float) -> list[Alert]:
        return self._out(quarantine_alert(kind, name, reason), now)

    def restarted(self, kind: str, name: str, why: str, now: float) -> list[Alert]:
        if not self.restarts.add(now):
            return []
        return self._out(restart_storm_alert(self.cfg.restart_storm_count, self.cfg.restart_storm_window_s,
                                             f"{kind} {name}: {why}"), now)

    def order_event(self, symbol: str, event: str, order_id: str, side: str, size: int, price: str, detail: str,
                    last_price: float | None, now: float) -> list[Alert]:
        if event == "triggered":
            return self._out(stop_triggered_alert(symbol, order_id, side, size, price, detail, last_price), now)
        if event in REJECT_EVENTS and self.rejects.add(now):
            return self._out(rejects_alert(self.cfg.rejects_count, self.cfg.rejects_window_s, symbol, detail), now)
        return []

    def fill(self, symbol: str, side: str, size: int, price: str, fee: str, now: float) -> list[Alert]:
        try:
            fee_usd = float(fee)
        except ValueError:
            fee_usd = math.nan
        self.day.on_fill(symbol, fee_usd)
        return self._out(fill_alert(symbol, side, size, price, fee), now)

    def monitor_pass(self, link_down_why: str, equity: float, funding: float | None, realised_pnl: float,
                     now: float, now_wall: float) -> list[Alert]:
        out = self._out(self.link.update(link_down_why, now), now)
        self.day.on_account(equity, funding)
        return out + self._out(self.day.close_if_due(now_wall, realised_pnl), now)
