"""The dashboard in a real browser: a paper run, Debian's Chromium driven by Playwright (never
`playwright install`: the system's browser), the fleet table, a symbol's chart with its grid,
actions refused without the token and carried out with it. Saves screenshots (to
$DASHBOARD_SCREENSHOT_DIR when set: that is how docs/dashboard.png is made)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

# same directory: pytest puts it on sys.path; mypy knows it as tests.orchestrator.*
from test_trading_e2e import ours, venue_state  # type: ignore[import-not-found]  # see above

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]
SYMBOLS = ("BTCUSD", "ETHUSD", "SYN_0001")
VENUE_SYMBOLS = ("BTCUSD", "ETHUSD")  # the ones venue_state reads orders of
LAST_ACTION_OK = "() => (document.querySelector('#main').dataset.lastAction || '').startsWith('200')"
# A tight grid on fast replay (fills within seconds, so the chart has fills, a position and a stop).
CONFIG = ("[grid]\nlevels = 4\nwidth = 0.002\nregrid_fraction = 0.5\nmax_actions_per_minute = 600\n"
          "[risk]\nrisk_percentage = 2.0\nmax_open_orders = 12\nmax_position_contracts = 5000\n"
          "[market]\nbar_seconds = 0.25\n[processes]\npool_size = 1\n[dashboard]\nactions = true\n")


def _browser_or_skip() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright (the `test` extra) is not installed")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; or set CHROMIUM=path)")
    return sync_playwright


def _worker(doc: dict[str, Any], symbol: str) -> dict[str, Any]:
    return next(w for w in doc["workers"] if w["symbol"] == symbol)


def test_dashboard_in_chromium(start_run, tmp_path: Path) -> None:
    sync_playwright = _browser_or_skip()
    cfg = tmp_path / "dash.toml"
    cfg.write_text(CONFIG)
    run = start_run(["--config", str(cfg), "--symbols", ",".join(SYMBOLS)])
    run.wait_for(lambda d: len(d["workers"]) == len(SYMBOLS) and all(
        w["first_signal_after_launch_s"] is not None and w["open_orders"] > 0 for w in d["workers"]),
        90, "a signal and a grid on every symbol")
    url = (run.run_dir / "dashboard.url").read_text().strip()
    assert url.startswith("http://127.0.0.1:")
    assert (run.status() or {})["dashboard_url"] == url  # and the status table's header shows it
    token_file = run.run_dir / "dashboard.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 24
    shots = Path(os.environ.get("DASHBOARD_SCREENSHOT_DIR") or tmp_path)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            offsite: list[str] = []  # the page must work offline: nothing but our own server
            page.on("request", lambda r: None if r.url.startswith((url, "data:")) else offsite.append(r.url))

            # Fleet: every symbol, each with its signal, live over server-sent events.
            page.goto(url)
            page.wait_for_function(
                "n => document.querySelectorAll('#fleet tbody tr[data-symbol]').length === n", arg=len(SYMBOLS))
            rows = page.eval_on_selector_all(
                "#fleet tbody tr",
                "rs => rs.map(r => [r.dataset.symbol, r.querySelector('[data-signal]').textContent])")
            assert sorted(s for s, _ in rows) == sorted(SYMBOLS)
            assert all(sig in ("UP", "DOWN", "NONE") for _, sig in rows), rows
            first_live = page.inner_text("#live")
            page.wait_for_function("t => document.querySelector('#live').textContent !== t", arg=first_live,
                                   timeout=10_000)
            # Sortable: a second click on Symbol sorts descending.
            page.click("th[data-key=symbol]")
            order = page.eval_on_selector_all("#fleet tbody tr", "rs => rs.map(r => r.dataset.symbol)")
            assert order == sorted(SYMBOLS, reverse=True)
            page.screenshot(path=str(shots / "dashboard-fleet.png"))

            if os.environ.get("DASHBOARD_SCREENSHOT_DIR"):  # a picture for docs/: let the history grow first
                time.sleep(float(os.environ.get("DASHBOARD_SCREENSHOT_WAIT_S", "45")))
            # One symbol: the row links to it; its chart draws every grid level the bot wants.
            # The one holding a position if any (its chart also has fills and a stop: the README's picture).
            deadline = time.monotonic() + 30
            while (doc := run.status() or {"workers": []}) and time.monotonic() < deadline and not any(
                    w["position"] and w["stop_price"] for w in doc["workers"]):
                time.sleep(1)
            sym = next((w["symbol"] for w in doc["workers"] if w["position"] and w["stop_price"]), "BTCUSD")
            page.click(f"#fleet a[href='/symbol/{sym}']")
            page.wait_for_url(url + f"symbol/{sym}")
            page.wait_for_selector("#price-chart .uplot canvas")
            page.wait_for_function(
                "() => Number(document.querySelector('#price-chart .uplot').dataset.gridLevelsDrawn) > 0")
            time.sleep(2.5)  # one refresh of the page, then compare with what the bot reports
            api = json.loads(urllib.request.urlopen(url + f"api/symbol/{sym}", timeout=5).read())
            assert api["grid_levels"], "the bot reports no grid"
            # Every level of the grid the chart was given is drawn inside the plot (same draw, no race).
            chart = page.eval_on_selector("#price-chart .uplot",
                                          "e => [e.dataset.gridLevelsDrawn, e.dataset.gridLevelsWanted]")
            assert int(chart[0]) == int(chart[1]) > 0, chart
            page.screenshot(path=str(shots / "dashboard-symbol.png"))

            # An action without the token is refused, and nothing is paused.
            page.once("dialog", lambda d: d.accept(sym))
            page.click("button[data-action=pause]")
            page.wait_for_function("() => document.querySelector('#main').dataset.lastAction")
            assert page.get_attribute("#main", "data-last-action").startswith("401")
            assert _worker(run.status() or {}, sym)["state"] != "paused"

            # With the token but a wrong confirmation: refused too.
            page.fill("#token", token)
            page.dispatch_event("#token", "change")
            page.once("dialog", lambda d: d.accept(sym + "X"))
            page.click("button[data-action=pause]")
            page.wait_for_function("() => document.querySelector('#main').dataset.lastAction.startsWith('400')")

            # Token and confirmation: the symbol pauses, the others keep running; then it resumes.
            page.once("dialog", lambda d: d.accept(sym))
            page.click("button[data-action=pause]")
            page.wait_for_function("() => document.querySelector('#main').dataset.lastAction.startsWith('200')")
            doc = run.wait_for(lambda d: _worker(d, sym)["state"] == "paused", 15, f"{sym} paused")
            assert all(w["state"] != "paused" for w in doc["workers"] if w["symbol"] != sym)
            page.once("dialog", lambda d: d.accept(sym))
            page.click("button[data-action=resume]")
            run.wait_for(lambda d: _worker(d, sym)["state"] != "paused", 15, f"{sym} resumed")

            # Halt from the account page (the token and ALL typed back): the supervisor's own command,
            # so the fleet page shows the halt and every bot stops trading; then "Resume all" lifts it.
            page.goto(url + "account")
            page.once("dialog", lambda d: d.accept("ALL"))
            page.click("button[data-action=halt]")
            page.wait_for_function(LAST_ACTION_OK)
            run.wait_for(lambda d: d["halted"] and d["halted_by"] == "dashboard" and all(
                w["trading"].startswith("halted") for w in d["workers"]), 30, "the fleet halted from the page")
            page.goto(url)
            page.wait_for_function("() => document.querySelector('#banner').textContent"
                                   ".includes('HALTED: operator: from the dashboard')")
            page.wait_for_function("n => [...document.querySelectorAll('#fleet tbody tr[data-symbol]')]"
                                   ".filter(r => r.textContent.includes('halted: operator')).length === n",
                                   arg=len(SYMBOLS))
            page.screenshot(path=str(shots / "dashboard-halted.png"))
            page.goto(url + "account")
            page.once("dialog", lambda d: d.accept("ALL"))
            page.click("button[data-action=resume]")
            page.wait_for_function(LAST_ACTION_OK)
            run.wait_for(lambda d: not d["halted"] and not any(w["trading"].startswith("halted") for w in d["workers"]),
                         30, "the halt lifted from the page")

            # Flatten one symbol from its page (its name typed back): its orders cancelled, its position
            # closed, confirmed on the venue; the other symbols keep their grids.
            doc = run.status() or {"workers": []}
            target = next((w["symbol"] for w in doc["workers"] if w["symbol"] in VENUE_SYMBOLS and w["position"]),
                          VENUE_SYMBOLS[0])
            page.goto(url + f"symbol/{target}")
            page.once("dialog", lambda d: d.accept(target))
            page.click("button[data-action=flatten]")
            page.wait_for_function(LAST_ACTION_OK)
            doc = run.wait_for(lambda d: _worker(d, target)["flatten"].startswith("flat: confirmed on the venue"),
                               60, f"{target} flat on the venue")
            assert _worker(doc, target)["position"] == 0 and _worker(doc, target)["trading"] == "paused"
            with ThreadPoolExecutor(1) as pool:  # Playwright's own loop runs in this thread
                state = pool.submit(asyncio.run, venue_state(run.run_dir)).result(timeout=30)
            pos = state["positions"].get(target)
            assert pos is None or pos.size == 0, f"{target} still holds {pos.size} on the venue"
            left = [o.client_order_id for o in state["orders"] if o.product_symbol == target
                    and ours(o.client_order_id, target)]
            assert left == [], f"orders of ours on {target} after the flatten: {left}"
            others = [w for w in doc["workers"] if w["symbol"] != target]
            assert all(w["state"] != "paused" and not w["flatten"] for w in others), others

            # The account, order events and fills pages render from the ledger.
            page.goto(url + "account")
            page.wait_for_selector("#equity-chart .uplot canvas")
            assert "Drawdown today" in page.inner_text("main")
            # The halt log from the ledger: the page's halt and its lifting, newest first, by the dashboard.
            page.wait_for_selector("#halts tr[data-event]")
            log_rows = page.eval_on_selector_all(
                "#halts tr[data-event]", "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
            assert [r[1] for r in log_rows[:2]] == ["lifted", "halt"], log_rows
            assert all(r[2] == "operator: from the dashboard" and r[3] == "dashboard" for r in log_rows[:2]), log_rows
            page.screenshot(path=str(shots / "dashboard-account.png"), full_page=True)
            page.goto(url + "orders?symbol=ETHUSD")
            page.wait_for_selector("#orders tr td")
            events = page.eval_on_selector_all("#orders tr td:nth-child(3)", "cs => cs.map(c => c.textContent)")
            assert events and set(events) == {"ETHUSD"}
            assert not errors, errors
            assert not offsite, offsite
        finally:
            browser.close()
    run.terminate()
    assert run.proc.returncode == 0
    out = run.proc.stdout.read() if run.proc.stdout else ""
    assert f"dashboard {url}" in out  # the start-up line (what `make run` shows) names it
    assert not token_file.exists() and not (run.run_dir / "dashboard.url").exists()
