// The dashboard's pages: one shell (index.html), the page chosen by the address. Data from /api/*,
// the fleet live over server-sent events, charts with uPlot (bundled in vendor/, works offline).
"use strict";

const $ = (sel, el = document) => el.querySelector(sel);
const main = $("#main");
const path = location.pathname;
let actionsEnabled = false;

function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const kid of kids.flat()) el.append(kid instanceof Node ? kid : document.createTextNode(kid ?? ""));
  return el;
}

const fmt = (x, d = 2) => (x === null || x === undefined || Number.isNaN(x)) ? "–" : Number(x).toFixed(d);
const fmtPrice = (x) => (x === null || x === undefined) ? "–" : Number(x).toPrecision(8).replace(/\.?0+$/, "");
const pct = (x) => (x === null || x === undefined) ? "–" : (100 * x).toFixed(2) + " %";
const time = (ts) => ts ? new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) : "–";

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store", credentials: "same-origin" });
  const doc = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(doc.message || `${r.status} ${r.statusText}`);
  return doc;
}

function toast(msg, err = false) {
  const t = $("#toast");
  t.textContent = msg;
  t.className = err ? "err" : "";
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
}

function banner(status) {
  const b = $("#banner");
  const parts = [];
  if (status.halted) parts.push(`HALTED: ${status.halt_reason}`);
  if ((status.order_management || "").startsWith("down")) parts.push(`ORDER MANAGEMENT ${status.order_management}`);
  if ((status.storage || "").startsWith("failing")) parts.push(`STORAGE ${status.storage}`);
  b.textContent = parts.join(" | ");
  b.hidden = parts.length === 0;
}

// --- actions: token + typed confirmation, the server checks both ---------------------------------

function setupToken(enabled) {
  actionsEnabled = enabled;
  const box = $("#token-box");
  box.hidden = !enabled;
  const input = $("#token");
  input.value = sessionStorage.getItem("dashboardToken") || "";
  input.onchange = () => sessionStorage.setItem("dashboardToken", input.value.trim());
}

async function act(cmd, symbol) {
  const target = symbol || "ALL";
  const typed = prompt(`${cmd} ${symbol || "the whole account"}: type ${target} to confirm`);
  if (typed === null) return;
  const r = await fetch("/api/action", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Dashboard-Token": $("#token").value.trim() },
    body: JSON.stringify({ cmd, symbol: symbol || "", confirm: typed.trim() }),
  });
  const doc = await r.json().catch(() => ({}));
  toast(doc.message || `${r.status}`, !r.ok);
  $("#main").dataset.lastAction = `${r.status} ${doc.message || ""}`;
}

function actionButtons(specs) {
  if (!actionsEnabled) return h("p", { class: "muted" }, "Actions are off ([dashboard] actions = false).");
  return h("p", {}, ...specs.map(([label, cmd, symbol, danger]) =>
    h("button", { class: danger ? "danger" : "", "data-action": cmd, onclick: () => act(cmd, symbol) }, label), " "));
}

// --- fleet ---------------------------------------------------------------------------------------

const FLEET_COLUMNS = [
  ["symbol", "Symbol", (w) => w.symbol, "l"],
  ["state", "State", (w) => w.state, "l"],
  ["last_price", "Price", (w) => w.last_price],
  ["signal", "Signal", (w) => w.signal, "l"],
  ["confidence", "Conf", (w) => w.confidence],
  ["votes", "Votes", (w) => Object.entries(w.votes || {}).map(([k, v]) => `${k}:${v}`).join(" "), "l"],
  ["position", "Position", (w) => w.position],
  ["open_orders", "Orders", (w) => w.open_orders],
  ["pnl", "PnL", (w) => w.realized_pnl + w.unrealized_pnl - w.fees],
  ["fees", "Fees", (w) => w.fees],
  ["stop_price", "Stop", (w) => w.stop_price],
  ["p99", "p99 µs", (w) => w.tick_to_signal_p99_us],
  ["restarts", "Restarts", (w) => w.restarts],
  ["trading", "Trading", (w) => w.trading, "l"],
];
let fleetSort = { key: "symbol", dir: 1 };

function renderFleet(doc) {
  const s = doc.status;
  banner(s);
  const get = Object.fromEntries(FLEET_COLUMNS.map(([k, , f]) => [k, f]));
  const rows = [...s.workers].sort((a, b) => {
    const x = get[fleetSort.key](a), y = get[fleetSort.key](b);
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * fleetSort.dir;
  });
  const head = h("tr", {}, FLEET_COLUMNS.map(([k, label, , cls]) => h("th", {
    class: (cls || "") + (fleetSort.key === k ? (fleetSort.dir > 0 ? " sorted-asc" : " sorted-desc") : ""),
    "data-key": k,
    onclick: () => { fleetSort = { key: k, dir: fleetSort.key === k ? -fleetSort.dir : 1 }; renderFleet(doc); },
  }, label)));
  const body = rows.map((w) => h("tr", { "data-symbol": w.symbol },
    h("td", { class: "l" }, h("a", { href: `/symbol/${encodeURIComponent(w.symbol)}` }, w.symbol)),
    h("td", { class: "l" }, w.state),
    h("td", {}, fmtPrice(w.last_price)),
    h("td", { class: "l " + w.signal, "data-signal": w.signal }, w.signal),
    h("td", {}, fmt(w.confidence)),
    h("td", { class: "l muted" }, get.votes(w)),
    h("td", {}, fmt(w.position, 0)),
    h("td", {}, w.open_orders),
    h("td", {}, fmt(get.pnl(w), 4)),
    h("td", {}, fmt(w.fees, 4)),
    h("td", {}, fmtPrice(w.stop_price)),
    h("td", {}, fmt(w.tick_to_signal_p99_us, 0)),
    h("td", {}, w.restarts),
    h("td", { class: "l muted" }, w.trading || w.note || ""),
  ));
  const table = h("table", { id: "fleet" }, h("thead", {}, head), h("tbody", {}, body));
  main.replaceChildren(
    h("h1", {}, `Fleet: ${s.workers.length} symbols, ${s.mode} on ${s.venue}`),
    h("div", { class: "cards" },
      card("Up", `${fmt(s.uptime_s, 0)} s`), card("Order management", s.order_management),
      card("Storage", s.storage), card("Signals", s.workers.filter((w) => w.signal !== "NONE").length)),
    table,
    h("h2", {}, "Processes"),
    h("table", {}, h("tr", {}, ["Kind", "Name", "State", "PID", "Restarts", "CPU %", "USS MB", "Note"].map((x) => h("th", { class: "l" }, x))),
      s.processes.map((p) => h("tr", {}, [p.kind, p.name, p.state, p.pid, p.restarts, fmt(p.cpu_percent, 1),
        fmt(p.uss_mb, 1), p.note].map((x) => h("td", { class: "l" }, x))))));
}

function card(label, value) {
  return h("div", { class: "card" }, h("span", { class: "muted" }, label), h("b", {}, String(value)));
}

function liveFleet() {
  const es = new EventSource("/api/stream");
  es.onmessage = (ev) => {
    const doc = JSON.parse(ev.data);
    if (!liveFleet.started) { setupToken(doc.actions); liveFleet.started = true; }
    $("#live").textContent = "live " + time(doc.now);
    renderFleet(doc);
  };
  es.onerror = () => { $("#live").textContent = "disconnected, retrying…"; };
}

// --- one symbol ----------------------------------------------------------------------------------

function levelsPlugin(getBook) {
  // Horizontal lines for the grid levels, resting orders and the stop; dots for fills.
  return {
    hooks: {
      draw: (u) => {
        const book = getBook();
        const ctx = u.ctx, { left, top, width, height } = u.bbox;
        const line = (price, color, dash, w = 1, from = 0) => {
          const y = u.valToPos(price, "y", true);
          if (y < top || y > top + height) return false;
          ctx.save(); ctx.strokeStyle = color; ctx.setLineDash(dash); ctx.lineWidth = w * devicePixelRatio;
          ctx.beginPath(); ctx.moveTo(left + from * width, y); ctx.lineTo(left + width, y); ctx.stroke(); ctx.restore();
          return true;
        };
        let drawn = 0;
        for (const p of book.grid_levels) if (line(p, "rgba(40,110,220,.55)", [6, 4])) drawn++;
        for (const [side, purpose, price] of book.resting_orders) {
          if (purpose === "stop") continue;
          // A thick mark at the right edge: the order rests now; the dashed grid line stays visible.
          line(price, side === "buy" ? "rgba(27,138,58,.9)" : "rgba(198,40,40,.9)", [], 4, 0.88);
        }
        if (book.stop_price !== null) line(book.stop_price, "#c62828", [2, 3], 2);
        for (const [ts, side, price] of book.fills_seen) {
          const x = u.valToPos(ts, "x", true), y = u.valToPos(price, "y", true);
          if (x < left || x > left + width) continue;
          ctx.save(); ctx.fillStyle = side === "buy" ? "#1b8a3a" : "#c62828";
          ctx.beginPath(); ctx.arc(x, y, 4 * devicePixelRatio, 0, 2 * Math.PI); ctx.fill(); ctx.restore();
        }
        u.root.dataset.gridLevelsDrawn = String(drawn);
        u.root.dataset.gridLevelsWanted = String(book.grid_levels.length);
      },
    },
  };
}

function priceRange(book, hist) {
  const vals = [...hist.price.filter((x) => x !== null), ...book.grid_levels,
    ...book.resting_orders.map((r) => r[2]), ...(book.stop_price !== null ? [book.stop_price] : [])];
  if (!vals.length) return [0, 1];
  const lo = Math.min(...vals), hi = Math.max(...vals), pad = (hi - lo) * 0.05 || hi * 0.001 || 1;
  return [lo - pad, hi + pad];
}

async function symbolPage(sym) {
  let doc = await getJSON(`/api/symbol/${encodeURIComponent(sym)}`);
  setupToken(doc.actions);
  const width = () => Math.max(400, main.clientWidth - 20);
  const cards = h("div", { class: "cards" });
  const priceEl = h("div", { class: "chart", id: "price-chart" });
  const sigEl = h("div", { class: "chart", id: "signal-chart" });
  const pnlEl = h("div", { class: "chart", id: "pnl-chart" });
  const orders = h("div", {});
  const fills = h("div", {});
  const votes = h("div", {});
  main.replaceChildren(h("h1", {}, sym), cards,
    actionButtons([["Pause", "pause", sym], ["Resume", "resume", sym], ["Flatten", "flatten", sym, true]]),
    h("p", { class: "muted" }, "Price with the grid",
      h("span", { class: "legend-key", style: "border-color:rgba(40,110,220,.8)" }), "grid levels",
      h("span", { class: "legend-key", style: "border-color:#1b8a3a;border-top-style:solid" }), "resting buy",
      h("span", { class: "legend-key", style: "border-color:#c62828;border-top-style:solid" }), "resting sell",
      h("span", { class: "legend-key", style: "border-color:#c62828;border-top-style:dotted" }), "protective stop"),
    priceEl, h("h2", {}, "Signal: confidence, signed by direction"), sigEl, votes,
    h("h2", {}, "Position and PnL"), pnlEl, h("h2", {}, "Resting orders"), orders, h("h2", {}, "Latest fills"), fills);
  const x = () => doc.history.ts;
  const priceChart = new uPlot({
    width: width(), height: 340, plugins: [levelsPlugin(() => doc)],
    scales: { x: { time: true }, y: { range: () => priceRange(doc, doc.history) } },
    series: [{}, { label: "price", stroke: "#1d2330", width: 1.5, spanGaps: true }],
    axes: [{}, { size: 80 }],
  }, [x(), doc.history.price], priceEl);
  const signed = () => doc.history.confidence.map((c, i) =>
    doc.history.signal[i] === "UP" ? c : doc.history.signal[i] === "DOWN" ? -c : 0);
  const sigChart = new uPlot({
    width: width(), height: 160, scales: { x: { time: true }, y: { range: [-1, 1] } },
    series: [{}, { label: "confidence (UP +, DOWN −)", stroke: "#5a3fc0", fill: "rgba(90,63,192,.12)", width: 1.5 }],
  }, [x(), signed()], sigEl);
  const pnlChart = new uPlot({
    width: width(), height: 180, scales: { x: { time: true } },
    series: [{}, { label: "position", stroke: "#8a5a00", scale: "pos" },
      { label: "PnL (net of fees)", stroke: "#1b8a3a", width: 1.5 }],
    axes: [{}, {}, { scale: "pos", side: 1, grid: { show: false } }],
  }, [x(), doc.history.position, doc.history.pnl], pnlEl);

  const render = () => {
    const w = doc.status || {};
    banner({ halted: false });
    cards.replaceChildren(card("Price", fmtPrice(w.last_price)), card("Signal", `${w.signal} ${fmt(w.confidence)}`),
      card("Position", fmt(w.position, 0)), card("PnL", fmt((w.realized_pnl || 0) + (w.unrealized_pnl || 0) - (w.fees || 0), 4)),
      card("Realised", fmt(w.realized_pnl, 4)), card("Fees", fmt(w.fees, 4)), card("Stop", fmtPrice(doc.stop_price)),
      card("Grid levels", doc.grid_levels.length), card("State", w.state), card("Trading", w.trading || "–"));
    priceChart.setData([x(), doc.history.price]);
    sigChart.setData([x(), signed()]);
    pnlChart.setData([x(), doc.history.position, doc.history.pnl]);
    const changes = [];
    doc.history.votes.forEach((v, i) => { if (i === 0 || v !== doc.history.votes[i - 1]) changes.push([doc.history.ts[i], doc.history.signal[i], v]); });
    votes.replaceChildren(h("table", { id: "votes" }, h("tr", {}, ["Since", "Signal", "Votes"].map((t) => h("th", { class: "l" }, t))),
      changes.slice(-15).reverse().map(([ts, s, v]) => h("tr", {}, h("td", { class: "l" }, time(ts)), h("td", { class: "l " + s }, s), h("td", { class: "l" }, v)))));
    orders.replaceChildren(h("table", { id: "resting" }, h("tr", {}, ["Side", "Purpose", "Price", "Contracts"].map((t) => h("th", { class: "l" }, t))),
      doc.resting_orders.map(([side, purpose, price, size]) => h("tr", {}, [side, purpose, fmtPrice(price), size].map((c) => h("td", { class: "l" }, c))))));
    fills.replaceChildren(fillsTable(doc.fills));
  };
  render();
  setInterval(async () => {
    try { doc = await getJSON(`/api/symbol/${encodeURIComponent(sym)}`); render(); $("#live").textContent = "live " + time(Date.now() / 1000); }
    catch (e) { $("#live").textContent = "disconnected: " + e.message; }
  }, 2000);
  window.addEventListener("resize", () => { for (const c of [priceChart, sigChart, pnlChart]) c.setSize({ width: width(), height: c.height }); });
}

function fillsTable(rows) {
  return h("table", { class: "fills" }, h("tr", {}, ["Time (venue)", "Symbol", "Side", "Contracts", "Price", "Fee", "Role", "Order"].map((t) => h("th", { class: "l" }, t))),
    rows.slice().reverse().map((f) => h("tr", {}, [time(f.ts), f.symbol, f.side, f.size, f.price, f.fee, f.role || "-", f.client_order_id].map((c) => h("td", { class: "l" }, c)))));
}

// --- account -------------------------------------------------------------------------------------

async function accountPage() {
  const el = h("div", { class: "chart", id: "equity-chart" });
  const cards = h("div", { class: "cards" });
  const rest = h("div", {});
  let chart = null;
  let first = true;
  const load = async () => {
    const a = await getJSON("/api/account");
    if (first) {
      setupToken(a.actions);
      main.replaceChildren(h("h1", {}, "Account"), cards,
        actionButtons([["Halt all", "halt", "", true], ["Flatten all", "flatten", "", true],
          ["Resume all (lifts the halt)", "resume", ""]]), el, rest);
      first = false;
    }
    banner(a);
    cards.replaceChildren(card("Equity", fmt(a.equity, 4)), card("Day start", fmt(a.day_start_equity, 4)),
      card("Drawdown today", pct(a.drawdown_today)), card("Drawdown over the run", pct(a.drawdown_run)),
      card("Realised", fmt(a.realized_pnl, 4)), card("Unrealised", fmt(a.unrealized_pnl, 4)),
      card("Fees", fmt(a.fees, 4)), card("Halted", a.halted ? "yes" : "no"));
    const data = [a.equity_series.ts, a.equity_series.equity];
    if (!chart) chart = new uPlot({ width: Math.max(400, main.clientWidth - 20), height: 260, scales: { x: { time: true } },
      series: [{}, { label: "equity", stroke: "#1d2330", width: 1.5 }], axes: [{}, { size: 90 }] }, data, el);
    else chart.setData(data);
    const parts = [h("h2", {}, "Halts (the ledger's log, newest first)"), a.halts.length
      ? h("table", { id: "halts" }, h("tr", {}, ["Time", "Event", "Reason", "By"].map((t) => h("th", { class: "l" }, t))),
        a.halts.map((x) => h("tr", { "data-event": x.event }, [time(x.ts), x.event === "clear" ? "lifted" : "halt", x.reason, x.by]
          .map((c) => h("td", { class: "l" }, c)))))
      : h("p", { class: "muted" }, "No halt recorded in this run's ledger.")];
    if (a.funding) {
      parts.push(h("h2", {}, `Funding (total ${a.funding.total ?? "–"}; newest 200 below)`), h("table", { id: "funding" }, h("tr", {}, a.funding.columns.map((c) => h("th", { class: "l" }, c))),
        a.funding.rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { class: "l" }, a.funding.columns[i] === "ts" ? time(c) : c))))));
    }
    rest.replaceChildren(...parts);
  };
  await load();
  setInterval(() => load().catch((e) => { $("#live").textContent = "disconnected: " + e.message; }), 5000);
}

// --- order events and fills: paged, filtered, from SQLite ------------------------------------------

async function pagedPage(kind) {
  const isOrders = kind === "orders";
  const params = new URLSearchParams(location.search);
  const symbol = h("input", { placeholder: "symbol", value: params.get("symbol") || "", size: 10 });
  const second = h("input", { placeholder: isOrders ? "event (placed, cancelled…)" : "side (buy/sell)",
    value: params.get(isOrders ? "event" : "side") || "", size: 18 });
  const out = h("div", {});
  const older = h("button", {}, "Older");
  const newest = h("button", {}, "Newest");
  let stack = [];
  let before = null;
  const load = async () => {
    const q = new URLSearchParams({ limit: 50 });
    if (symbol.value) q.set("symbol", symbol.value.trim());
    if (second.value) q.set(isOrders ? "event" : "side", second.value.trim());
    if (before) q.set("before", before);
    const doc = await getJSON(`/api/${kind}?${q}`);
    out.replaceChildren(isOrders
      ? h("table", { id: "orders" }, h("tr", {}, ["#", "Time", "Symbol", "Event", "Side", "Price", "Size", "Client order id", "Detail"].map((t) => h("th", { class: "l" }, t))),
        doc.rows.map((r) => h("tr", {}, [r.id, time(r.ts), r.symbol, r.event, r.side, r.price, r.size, r.client_order_id, r.detail].map((c) => h("td", { class: "l" }, c)))))
      : fillsTable(doc.rows.slice().reverse()));
    older.disabled = !doc.next_before;
    older.onclick = () => { stack.push(before); before = doc.next_before; load(); };
    if (!doc.rows.length) out.append(h("p", { class: "muted" }, "Nothing stored yet for this filter."));
  };
  newest.onclick = () => { before = null; stack = []; load(); };
  const apply = h("button", { onclick: () => { before = null; stack = []; load(); } }, "Filter");
  main.replaceChildren(h("h1", {}, isOrders ? "Order events" : "Fills"),
    h("div", { class: "filters" }, symbol, second, apply, newest, older), out);
  await load();
}

// --- reports -------------------------------------------------------------------------------------

async function reportsPage() {
  const doc = await getJSON("/api/reports");
  const items = doc.reports.map((r) => {
    const base = `/reports/${encodeURIComponent(r.group)}/${encodeURIComponent(r.name)}/`;
    return h("section", {}, h("h2", {}, `${r.group}/${r.name}`),
      h("p", {}, r.files.map((f) => [h("a", { href: base + encodeURIComponent(f) }, f), " "])),
      r.files.filter((f) => f.endsWith(".png")).slice(0, 4).map((f) => h("img", { class: "report", src: base + encodeURIComponent(f), alt: f })));
  });
  main.replaceChildren(h("h1", {}, "Backtest and optimize reports"),
    items.length ? h("div", {}, items) : h("p", { class: "muted" },
      "No report in this run dir yet: `orchestrate optimize` writes to <run dir>/optimize/STUDY, and `orchestrate backtest --report <run dir>/reports/NAME` shows here."));
}

// --- router --------------------------------------------------------------------------------------

function route() {
  const nav = path === "/" ? "fleet" : path.split("/")[1];
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === nav);
  let page;
  if (path === "/") { liveFleet(); return; }
  if (path.startsWith("/symbol/")) page = symbolPage(decodeURIComponent(path.slice(8)));
  else if (path === "/account") page = accountPage();
  else if (path === "/orders") page = pagedPage("orders");
  else if (path === "/fills") page = pagedPage("fills");
  else if (path === "/reports") page = reportsPage();
  if (path !== "/") $("#live").textContent = "";
  Promise.resolve(page).catch((e) => { main.replaceChildren(h("p", { class: "muted" }, "Could not load: " + e.message)); });
}

route();
