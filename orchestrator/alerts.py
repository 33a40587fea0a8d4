"""Alerts to the trader through apprise (Telegram, Discord, Slack, email, ntfy, webhooks and ~100
more, each by URL), off the supervisor's loop.

The supervisor calls one method per event where it happens (`halted`, `quarantined`,
`restarted`, `order_record`, `fill`, `monitor_pass`); the rules in `shared/alerts.py` decide what
to send; `AlertSender` puts it on a bounded queue that one thread drains through apprise. A slow or
hanging webhook therefore costs the thread its time, never the supervisor's: `submit` never
blocks, a full queue drops the alert (counted, logged). A failed send is logged and counted,
never raised. Every text sent and every apprise log line pass `redact`: the run's API key and
secret and the alert URLs' tokens never leave in a message or reach a log.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from shared.alerts import Alert, AlertRules, AlertsConfig, SymbolLine, redact, url_secrets
from shared.config import ConfigError
from shared.status import StatusSnapshot

log = logging.getLogger("alerts")
_STOP = object()
LOG_EVERY_S = 60.0  # a dead webhook: one failure line a minute, not one per alert


def check_urls(cfg: AlertsConfig, urls: Sequence[str]) -> None:
    """Refuse (exit 2) a URL apprise does not know, naming the variable, the URL's position and
    scheme, never the URL (it carries a token)."""
    import apprise
    for i, url in enumerate(urls, 1):
        probe = apprise.Apprise()
        if not probe.add(url):
            scheme = url.split("://", 1)[0] if "://" in url else "(no scheme)"
            raise ConfigError(f"{cfg.urls_env}: URL {i} of {len(urls)} (scheme {scheme!r}) is not one apprise can "
                              "send to (see https://github.com/caronc/apprise/wiki)")


class _Redacting(logging.Filter):
    """apprise logs hosts and sometimes more; a Telegram bot token is the URL's host."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        return True


class AlertSender:
    """One thread, one bounded queue, one apprise object. `submit` never blocks."""

    def __init__(self, urls: Sequence[str], secrets: Iterable[str], *, queue_size: int, timeout_s: float) -> None:
        import apprise
        self.secrets = [s for u in urls for s in url_secrets(u)] + [s for s in secrets if s]
        self._apprise = apprise.Apprise()
        for url in urls:
            self._apprise.add(url)
        for server in self._apprise:
            server.socket_connect_timeout = min(timeout_s, 4.0)
            server.socket_read_timeout = timeout_s
        self.timeout_s = timeout_s
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._logged_failure_at = -math.inf
        self._logged_drop_at = -math.inf
        apprise_log = logging.getLogger("apprise")
        apprise_log.setLevel(logging.WARNING)  # its INFO/DEBUG lines name URLs and payloads
        self._filter = _Redacting(self.secrets)
        apprise_log.addFilter(self._filter)
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()

    def submit(self, alert: Alert) -> bool:
        clean = Alert(kind=alert.kind, subject=alert.subject, title=redact(alert.title, self.secrets),
                      body=redact(alert.body, self.secrets))
        try:
            self._queue.put_nowait(clean)
            return True
        except queue.Full:
            self.dropped += 1
            now = time.monotonic()
            if now - self._logged_drop_at >= LOG_EVERY_S:
                self._logged_drop_at = now
                log.warning("alert queue full (the receiver is slow or down): %s alert dropped, %d in all",
                            alert.kind, self.dropped)
            return False

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                ok = bool(self._apprise.notify(body=item.body, title=item.title))
            except Exception as exc:  # apprise or a plugin bug: an alert lost, never the supervisor
                ok = False
                log.debug("apprise raised %s", redact(type(exc).__name__, self.secrets))
            if ok:
                self.sent += 1
                log.info("alert sent: %s (%s)", item.title, item.kind)
                continue
            self.failed += 1
            now = time.monotonic()
            if now - self._logged_failure_at >= LOG_EVERY_S:
                self._logged_failure_at = now
                log.warning("alert not delivered: %s (%s); %d failed in all (logs/supervisor.log has apprise's "
                            "reason)", item.title, item.kind, self.failed)

    def close(self, timeout_s: float = 2.0) -> None:
        """Give queued alerts `timeout_s` to go out (the halt that ended a run), then leave the
        daemon thread to die with the process."""
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return  # the filter stays: the thread may still log for a hung receiver
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            logging.getLogger("apprise").removeFilter(self._filter)


class SupervisorAlerts:
    """The supervisor's hooks: one call each where the event happens. Disabled (no URLs), every
    call is a no-op."""

    def __init__(self, cfg: AlertsConfig, sender: AlertSender | None) -> None:
        self.cfg = cfg
        self.sender = sender
        self.rules = AlertRules(cfg, time.time())
        self._last_prices: dict[str, float] = {}

    @classmethod
    def start(cls, cfg: AlertsConfig, urls: Sequence[str], secrets: Iterable[str] = ()) -> SupervisorAlerts:
        if not cfg.enabled or not urls:
            return cls(cfg, None)
        hidden = [*secrets, os.environ.get("DELTA_API_KEY", ""), os.environ.get("DELTA_API_SECRET", "")]
        sender = AlertSender(urls, hidden, queue_size=cfg.queue_size, timeout_s=cfg.send_timeout_s)
        log.info("alerts on: %d URL(s) from %s", len(urls), cfg.urls_env)
        return cls(cfg, sender)

    @classmethod
    def disabled(cls) -> SupervisorAlerts:
        return cls(AlertsConfig(), None)

    def _send(self, alerts: list[Alert]) -> None:
        if self.sender is not None:
            for a in alerts:
                self.sender.submit(a)

    def _guard(self, what: str, fn: Any, *args: Any) -> None:
        """An alert bug must never cost the supervisor its loop."""
        if self.sender is None:
            return
        try:
            self._send(fn(*args))
        except Exception:
            log.exception("alert rule for %s failed", what)

    # --- hooks -------------------------------------------------------------------------------

    def halted(self, reason: str, snap: StatusSnapshot | None) -> None:
        bots = [SymbolLine(symbol=w.symbol, price=w.last_price, position=w.position)
                for w in (snap.workers if snap is not None else [])]
        self._guard("halt", self.rules.halted, reason, bots, time.monotonic())

    def quarantined(self, kind: str, name: str, reason: str) -> None:
        self._guard("quarantine", self.rules.quarantined, kind, name, reason, time.monotonic())

    def restarted(self, kind: str, name: str, why: str) -> None:
        self._guard("restart", self.rules.restarted, kind, name, why, time.monotonic())

    def order_record(self, rec: Any) -> None:  # shared.messages.OrderRecord
        if self.sender is None:
            return
        last = self._last_prices.get(rec.symbol)
        self._guard("order event", self.rules.order_event, rec.symbol, rec.event, rec.order_id, rec.side, rec.size,
                    rec.price, rec.detail, last, time.monotonic())

    def fill(self, ev: Any) -> None:  # shared.messages.FillEvent
        f = ev.fill
        self._guard("fill", self.rules.fill, ev.symbol, f.side, f.size, f.price, f.fee, time.monotonic())

    def monitor_pass(self, snap: StatusSnapshot | None, gateway_figures: Any, funding: float | None = None) -> None:
        """Once a monitor pass: the link's state, and the day's figures (`funding`: the funding
        ledger's total to date, the daily summary's funding being its change over the day)."""
        if self.sender is None or snap is None:
            return
        for w in snap.workers:
            if w.last_price is not None:
                self._last_prices[w.symbol] = w.last_price
        down = snap.order_management[len("down: "):] if snap.order_management.startswith("down") else ""
        ws_down = float(getattr(gateway_figures, "ws_down_s", 0.0) or 0.0)
        if not down and ws_down > 0:
            down = f"the gateway's account websocket is disconnected (reconnecting for {ws_down:.0f} s)"
        equity = float(getattr(gateway_figures, "equity", math.nan))
        realised = sum(w.realized_pnl for w in snap.workers)
        self._guard("monitor pass", self.rules.monitor_pass, down, equity, funding, realised, time.monotonic(),
                    time.time())

    def into_status(self, snap: StatusSnapshot) -> None:
        """The sender's counters into the status document (and so the metrics); left None when off."""
        if self.sender is not None:
            snap.alerts_sent, snap.alerts_failed, snap.alerts_dropped = \
                self.sender.sent, self.sender.failed, self.sender.dropped

    def close(self, timeout_s: float = 2.0) -> None:
        if self.sender is not None:
            self.sender.close(timeout_s)
