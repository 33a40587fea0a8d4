"""`orchestrate backtest`'s shell: bad input (the real CLI: exit 2, names the thing, no traceback),
the console table, and `--report` (files exist, PNGs decode) from a backtest JSON document."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator import backtest_cmd
from orchestrator.report import console_summary, drawdown_pct, markdown_summary, write_report
from tests.orchestrator.backtest_doc import sample_doc

REPO = Path(__file__).resolve().parents[2]
BTC = REPO / "shared" / "data" / "BTCUSD-coinbase-1m.csv.gz"
ETH = REPO / "shared" / "data" / "ETHUSD-coinbase-1m.csv.gz"
HEADER = "ts,open,high,low,close,volume\n"


def run_cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", "backtest", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def _files(tmp: Path) -> dict[str, Path]:
    f = {
        "unsorted": HEADER + "60,1,2,0.5,1.5,3\n180,1,2,0.5,1.5,3\n120,1,2,0.5,1.5,3\n",
        "duplicate": HEADER + "60,1,2,0.5,1.5,3\n120,1,2,0.5,1.5,3\n120,1,2,0.5,1.5,3\n",
        "json": '{"symbol": "BTCUSD", "candles": []}\n',
        "millis": HEADER + "1475798400000,1,2,0.5,1.5,3\n",
        "short": HEADER + "60,1,2,0.5,1.5,3\n120,1,2\n",
        "negative": HEADER + "60,1,2,0.5,1.5,3\n120,-1,2,0.5,1.5,3\n",
        "empty": HEADER,
        "config": "[grid]\nlevels = 'five'\n",
        "unknown_key": "[grid]\nlevles = 5\n",
    }
    out = {}
    for name, text in f.items():
        p = tmp / (f"{name}.toml" if name in ("config", "unknown_key") else f"{name}.csv")
        p.write_text(text)
        out[name] = p
    return out


BAD_INPUTS = [
    # (arguments with {name} placeholders, every fragment the message must hold)
    (["--data", "BTCUSD={unsorted}"], ["unsorted.csv:4", "before 180 on line 3", "sorted"]),
    (["--data", "BTCUSD={duplicate}"], ["duplicate.csv:4", "duplicate timestamp 120", "line 3"]),
    (["--data", "BTCUSD={json}"], ["json.csv:1", "not an OHLCV file"]),
    (["--data", "BTCUSD={millis}"], ["millis.csv:2", "milliseconds"]),
    (["--data", "BTCUSD={short}"], ["short.csv:3", "expected 6 columns"]),
    (["--data", "BTCUSD={negative}"], ["negative.csv:3", "non-positive price"]),
    (["--data", "BTCUSD={empty}"], ["empty.csv", "no data rows"]),
    (["--data", "BTCUSD={tmp}/missing.csv"], ["missing.csv", "cannot read"]),
    (["--data", "BTCUSDT={btc}"], ["BTCUSDT", "did you mean BTCUSD", "--spec BTCUSDT="]),
    (["--data", "SOLUSD={btc}"], ["SOLUSD", "--spec SOLUSD=contract_value:tick_size:maker_fee:taker_fee"]),
    (["--data", "BTCUSD"], ["--data 'BTCUSD'", "SYMBOL=FILE"]),
    (["--data", "BTCUSD={btc}", "--data", "BTCUSD={eth}"], ["--data BTCUSD given twice"]),
    (["--data", "BTCUSD={btc}", "--from", "2018-01-01", "--to", "2017-06-01"],
     ["--from 2018-01-01 00:00 UTC is after --to 2017-06-01 23:59 UTC"]),
    (["--data", "BTCUSD={btc}", "--from", "2019-01-01"],
     ["--from 2019-01-01", "after the last bar of BTCUSD", "BTCUSD-coinbase-1m.csv.gz holds 2016-10-07 00:00"]),
    (["--data", "BTCUSD={btc}", "--to", "2015-06-01"], ["--to 2015-06-01", "before the first bar of BTCUSD"]),
    (["--data", "BTCUSD={btc}", "--from", "last tuesday"], ["--from 'last tuesday'", "not a UTC date"]),
    (["--data", "BTCUSD={btc}", "--spec", "BTCUSD=0.001:0.5:0.05:0.05"], ["--spec", "maker_fee 0.05 is 5%"]),
    (["--data", "BTCUSD={btc}", "--spec", "BTCUSD=0.001:0.5"], ["--spec", "expected 4 numbers"]),
    (["--data", "BTCUSD={btc}", "--spec", "BTCUSD=0.001:zero:0:0"], ["--spec", "tick_size 'zero' is not a number"]),
    (["--data", "BTCUSD={btc}", "--spec", "XRPUSD=1:0.0001:0:0.0005"], ["--spec XRPUSD", "no --data XRPUSD"]),
    (["--data", "BTCUSD={btc}", "--funding", "ETHUSD={btc}"], ["--funding ETHUSD", "no --data ETHUSD"]),
    (["--data", "BTCUSD={btc}", "--latency-ticks", "0"], ["--latency-ticks 0", ">= 1"]),
    (["--data", "BTCUSD={btc}", "--warmup-bars", "-3"], ["--warmup-bars -3"]),
    (["--data", "BTCUSD={btc}", "--warmup-bars", "5000"], ["--warmup-bars 5000", "market.window_bars - 1 = 1023"]),
    (["--data", "BTCUSD={btc}", "--balance", "0"], ["--balance 0"]),
    (["--data", "BTCUSD={btc}", "--balance", "lots"], ["--balance", "invalid float value: 'lots'"]),
    (["--data", "BTCUSD={btc}", "--config", "{config}"], ["--config", "config.toml", "grid.levels"]),
    (["--data", "BTCUSD={btc}", "--config", "{unknown_key}"], ["--config", "unknown_key.toml", "levles"]),
    (["--data", "BTCUSD={btc}", "--report", "{unsorted}"], ["--report", "unsorted.csv", "not a directory"]),
    (["--data", "BTCUSD={btc}", "--frobnicate"], ["unrecognized arguments: --frobnicate"]),
    ([], ["the following arguments are required: --data"]),
]


@pytest.mark.parametrize("argv, fragments", BAD_INPUTS, ids=[" ".join(a)[:60] for a, _ in BAD_INPUTS])
def test_bad_input_exits_2_naming_the_file_line_or_option(tmp_path: Path, argv: list[str],
                                                         fragments: list[str]) -> None:
    names = {k: str(v) for k, v in _files(tmp_path).items()} | {"btc": str(BTC), "eth": str(ETH), "tmp": str(tmp_path)}
    r = run_cli(*(a.format(**names) for a in argv))
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    assert r.stdout == ""  # nothing on stdout: a --json consumer never parses an error
    for fragment in fragments:
        assert fragment in r.stderr, (fragment, r.stderr)


def test_gaps_are_warned_with_length_and_place(tmp_path: Path) -> None:
    ns = backtest_cmd.build_parser().parse_args(["--data", f"BTCUSD={BTC}"])
    inputs = backtest_cmd.prepare(ns)
    [note] = [n for n in inputs.notes if "gap" in n]
    assert "99 gap(s) in BTCUSD's data" in note and "328 d from 2016-10-10 00:00" in note
    assert "no bars invented" in note
    # only the traded range counts: one day in the middle of a dense stretch
    ns = backtest_cmd.build_parser().parse_args(["--data", f"BTCUSD={BTC}", "--from", "2016-10-07",
                                                 "--to", "2016-10-07"])
    [note] = [n for n in backtest_cmd.prepare(ns).notes if "gap" in n]
    assert "longest: 2 min from 2016-10-07" in note
    # and a file with a quiet hour says where and how long
    p = tmp_path / "gap.csv"
    rows = [f"{t},1,2,0.5,1.5,3" for t in list(range(0, 6000, 60)) + list(range(9600, 20000, 60))]
    p.write_text(HEADER + "\n".join(rows) + "\n")
    [note] = backtest_cmd.gap_notes("SYN_0001", str(p), backtest_cmd.read_ohlcv_csv(p), None, None)
    assert "1 gap(s)" in note and "1 h from 1970-01-01 01:40" in note


def test_spec_flag_builds_the_product_and_overrides_known_fees() -> None:
    spec = backtest_cmd.parse_spec("solusd=0.1:0.001:-0.0001:0.0005", 1)
    assert (spec.symbol, spec.contract_value, spec.tick_size, spec.maker_fee, spec.taker_fee) == \
        ("SOLUSD", 0.1, 0.001, -0.0001, 0.0005)
    specs = backtest_cmd.resolve_specs(["SOLUSD", "BTCUSD", "SYN_0007"], {"SOLUSD": spec})
    assert specs["BTCUSD"].contract_value == 0.001 and specs["SYN_0007"].product_id == 900_007
    cheap = backtest_cmd.parse_spec("BTCUSD=0.001:0.5:0:0.0004", 2)
    assert backtest_cmd.resolve_specs(["BTCUSD"], {"BTCUSD": cheap})["BTCUSD"].taker_fee == 0.0004


def test_console_summary_has_a_row_per_symbol_and_a_total() -> None:
    doc = sample_doc()
    text = console_summary(doc)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("SYMBOL"))
    assert lines[header].split() == ["SYMBOL", "NET", "USD", "FEES", "USD", "FUNDING", "USD", "MAX", "DD", "%",
                                     "FILLS", "ORDERS/H", "POSITION"]
    btc, eth, total = lines[header + 1:header + 4]
    assert btc.split()[:7] == ["BTCUSD", "12.50", "1.25", "0.00", "2.50", "15", "6.0"] and btc.split()[7] == "3"
    assert eth.split()[1] == "-17.50" and total.split()[:2] == ["TOTAL", "-5.00"]
    assert "funding: BTCUSD none (no series given)" in text
    doc["interrupted"] = True
    doc["halted"] = "daily loss 5.1% >= 5%"
    text = console_summary(doc)
    assert "INTERRUPTED" in text and "HALTED" in text and "daily loss" in text


def test_orders_per_hour_falls_back_to_counts_over_traded_hours() -> None:
    doc = sample_doc()
    fig = dict(doc["per_symbol"]["BTCUSD"])
    del fig["orders_per_hour"]
    # 80 orders (40 placed + 10 amended + 30 cancelled) over 3,000 one-minute bars = 50 h
    from orchestrator.report import orders_per_hour
    assert orders_per_hour(doc, fig) == pytest.approx(80 / 50)


def test_drawdown_is_the_fall_from_the_running_peak() -> None:
    assert drawdown_pct([100, 110, 99, 121, 108.9]) == pytest.approx([0, 0, -10, 0, -10])


def _png_size(path: Path) -> tuple[int, int]:
    import matplotlib.image as mpimg
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", path
    img = mpimg.imread(path)  # decodes the whole image: a truncated file fails here
    return img.shape[1], img.shape[0]


def test_report_writes_json_markdown_and_decodable_plots(tmp_path: Path) -> None:
    doc = sample_doc()
    raw = json.dumps(doc).encode()
    paths = write_report(doc, raw, tmp_path / "out", command="orchestrate backtest --data BTCUSD=x")
    names = [p.name for p in paths]
    assert names == ["backtest.json", "summary.md", "equity.png", "pnl.png", "price-BTCUSD.png", "price-ETHUSD.png"]
    assert (tmp_path / "out" / "backtest.json").read_bytes() == raw + b"\n"
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "orchestrate backtest --data BTCUSD=x" in md and "| BTCUSD | 12.50 |" in md
    assert "![price-BTCUSD.png](price-BTCUSD.png)" in md and "Data gaps in ETHUSD: 1," in md
    for p in paths[2:]:
        w, h = _png_size(p)
        assert w >= 600 and h >= 400, (p, w, h)


def test_report_survives_a_run_with_no_fills_orders_or_equity(tmp_path: Path) -> None:
    doc = sample_doc(("BTCUSD",))
    doc["fills"], doc["equity"] = [], []
    doc["timeline"]["BTCUSD"].update(orders=[], stop=[])
    paths = write_report(doc, json.dumps(doc).encode(), tmp_path)
    for p in paths[2:]:
        _png_size(p)


def test_markdown_lists_plots_in_order() -> None:
    md = markdown_summary(sample_doc(("BTCUSD",)), plots=["equity.png", "pnl.png"])
    assert md.index("equity.png") < md.index("pnl.png")


def test_gz_data_with_a_bad_row_names_the_gz_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "btc.csv.gz"
    p.write_bytes(gzip.compress((HEADER + "60,1,2,0.5,1.5,3\n120,1,2,0.5,inf,3\n").encode()))
    r = run_cli("--data", f"BTCUSD={p}")
    assert r.returncode == 2 and "btc.csv.gz:3: NaN or infinite value" in r.stderr, r.stderr


# ------------------------------------------------------------------ the real command, end to end

DENSE = ["--data", f"BTCUSD={BTC}", "--data", f"ETHUSD={ETH}", "--from", "2017-09-04T06:00", "--to", "2017-09-04T18:00"]
FIGURE_TYPES = {"net_pnl": float, "realised_pnl": float, "unrealised_pnl": float, "fees": float, "funding": float,
                "return_pct": float, "max_drawdown_pct": float, "sharpe": float, "fills": int,
                "orders_placed": int, "orders_amended": int, "orders_cancelled": int,
                "time_in_market_pct": float}


def _number(value: object, kind: type) -> bool:
    return isinstance(value, int) if kind is int else isinstance(value, (int, float)) and not isinstance(value, bool)


def test_json_is_one_document_on_stdout_in_the_issue_schema() -> None:
    r = run_cli(*DENSE, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # the whole of stdout is one document
    assert r.stdout.count("\n") == 1 and r.stdout.startswith("{")
    assert doc["symbols"] == ["BTCUSD", "ETHUSD"]
    assert isinstance(doc["bars"], int) and doc["bars"] == 2 * 721  # 06:00 .. 18:00 inclusive, two symbols
    assert _number(doc["elapsed_s"], float)
    for fig in [doc["summary"], *doc["per_symbol"].values()]:
        for key, kind in FIGURE_TYPES.items():
            assert _number(fig[key], kind), (key, fig[key])
        assert fig["net_pnl"] == pytest.approx(fig["realised_pnl"] + fig["unrealised_pnl"] - fig["fees"]
                                               + fig["funding"], abs=1e-6)
    assert set(doc["per_symbol"]) == {"BTCUSD", "ETHUSD"}
    assert all(isinstance(doc["per_symbol"][s]["position"], int) for s in doc["symbols"])
    assert doc["fills"], "the dense stretch trades: a schema check over no fills checks nothing"
    for f in doc["fills"]:
        assert set(f) >= {"ts", "symbol", "side", "size", "price", "fee", "role", "client_order_id"}
        assert f["side"] in ("buy", "sell") and f["role"] in ("maker", "taker") and isinstance(f["size"], int)
    assert [f["ts"] for f in doc["fills"]] == sorted(f["ts"] for f in doc["fills"])
    assert doc["summary"]["fills"] == len(doc["fills"])
    assert all(len(p) == 2 for p in doc["equity"]) and doc["equity"][0][0] <= doc["equity"][-1][0]
    assert doc["funding_source"] == {"BTCUSD": "none", "ETHUSD": "none"}
    assert doc["interrupted"] is False


def test_two_runs_print_byte_identical_json_but_for_elapsed(tmp_path: Path) -> None:
    a = run_cli(*DENSE, "--json")
    b = run_cli(*DENSE, "--json", "--report", str(tmp_path / "rep"))
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)

    def bar_elapsed(text: str) -> str:
        import re
        return re.sub(r'"elapsed_s":[0-9.e+-]+', '"elapsed_s":0', text)

    assert bar_elapsed(a.stdout) == bar_elapsed(b.stdout)
    assert (tmp_path / "rep" / "backtest.json").read_text() == b.stdout  # the report keeps the same bytes


def test_console_summary_and_report_from_the_real_command(tmp_path: Path) -> None:
    out = tmp_path / "report"
    r = run_cli(*DENSE, "--report", str(out))
    assert r.returncode == 0, r.stderr
    assert "SYMBOL" in r.stdout and "BTCUSD" in r.stdout and "TOTAL" in r.stdout
    assert "report in" in r.stderr and "bar/s" not in r.stderr  # no progress bar into a pipe
    doc = json.loads((out / "backtest.json").read_text())
    for sym in ("BTCUSD", "ETHUSD"):
        row = next(line for line in r.stdout.splitlines() if line.startswith(sym))
        assert row.split()[1] == f"{doc['per_symbol'][sym]['net_pnl']:,.2f}"
        _png_size(out / f"price-{sym}.png")
    for name in ("equity.png", "pnl.png"):
        _png_size(out / name)
    md = (out / "summary.md").read_text()
    assert f"--report {out}" in md and "| TOTAL |" in md
    assert "[grid]\nlevels = 5\n" in md  # the settings that made it
    import tomllib
    toml = md.split("```toml\n", 1)[1].split("```", 1)[0]
    assert tomllib.loads(toml)["grid"] == doc["config"]["grid"]


def test_ctrl_c_prints_the_partial_result(tmp_path: Path) -> None:
    """A year of 1m bars (longer than any machine finishes in a few seconds): the progress bar
    shows up on stderr, Ctrl-C stops the run, and the result so far is printed as JSON."""
    import os
    import signal
    import threading
    import time

    from shared.marketdata import synthetic_candles
    c = synthetic_candles("SYN_0001", 525_600, seed=5)
    p = tmp_path / "year.csv"
    with open(p, "w") as fh:
        fh.write(HEADER)
        fh.writelines(f"{t},{o!r},{h!r},{lo!r},{cl!r},{v!r}\n" for t, o, h, lo, cl, v in
                      zip(c.ts.tolist(), c.open.tolist(), c.high.tolist(), c.low.tolist(), c.close.tolist(),
                          c.volume.tolist(), strict=True))
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "backtest", "--data", f"SYN_0001={p}",
                             "--json", "--progress", "always"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    err, out = bytearray(), bytearray()

    def drain(stream: Any, into: bytearray) -> None:  # one reader per pipe: nothing read twice
        while chunk := os.read(stream.fileno(), 65536):
            into.extend(chunk)

    readers = [threading.Thread(target=drain, args=(proc.stderr, err), daemon=True),
               threading.Thread(target=drain, args=(proc.stdout, out), daemon=True)]
    for r in readers:
        r.start()
    deadline = time.monotonic() + 120
    while b"bar/s" not in err and b"bar [" not in err:  # tqdm's bar, shown once the run passed 2 s
        assert proc.poll() is None, err.decode()
        assert time.monotonic() < deadline, err.decode()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    for r in readers:
        r.join(10)
    text, stdout = err.decode(), out.decode()
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "interrupted" in text
    doc = json.loads(stdout)
    assert doc["interrupted"] is True
    assert 0 < doc["bars"] < 525_600 - doc["warmup_bars"]
    assert doc["summary"]["net_pnl"] == pytest.approx(doc["summary"]["realised_pnl"] + doc["summary"]["unrealised_pnl"]
                                                      - doc["summary"]["fees"] + doc["summary"]["funding"], abs=1e-6)


def test_spec_and_funding_files_reach_the_loop(tmp_path: Path) -> None:
    """An unknown symbol trades with the --spec given, and a FUNDING series (negative rates
    allowed) is used and named as the funding source."""
    funding = tmp_path / "funding.csv"
    start, end = 1_504_483_200, 1_504_569_600  # 2017-09-04, the whole day every 8 h
    funding.write_text(HEADER + "".join(f"{t},-0.0001,-0.0001,-0.0001,-0.0001,0\n"
                                        for t in range(start - 28_800, end, 28_800)))
    r = run_cli("--data", f"XBTUSD={BTC}", "--spec", "XBTUSD=0.001:0.5:0.0002:0.0005", "--funding",
                f"XBTUSD={funding}", "--from", "2017-09-04T06:00", "--to", "2017-09-04T18:00", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["symbols"] == ["XBTUSD"] and doc["funding_source"] == {"XBTUSD": "series"}
    assert doc["per_symbol"]["XBTUSD"]["fills"] > 0


def test_a_warm_up_across_a_long_gap_is_warned() -> None:
    # 2017-09-03 00:00 is the first bar after the 328-day gap: its warm-up bars are from 2016
    ns = backtest_cmd.build_parser().parse_args(["--data", f"BTCUSD={BTC}", "--from", "2017-09-03T01:00"])
    notes = backtest_cmd.prepare(ns).notes
    assert any("warm-up bars cross a gap of 328 d" in n for n in notes), notes
    ns = backtest_cmd.build_parser().parse_args(["--data", f"BTCUSD={BTC}", "--from", "2017-09-03T06:00"])
    assert not any("warm-up" in n for n in backtest_cmd.prepare(ns).notes)


def test_a_gap_right_before_from_is_the_warm_ups_not_the_traded_ranges() -> None:
    # ETH has no bar from 2018-04-04 16:53 to 2018-04-05 00:00: it precedes the traded day
    ns = backtest_cmd.build_parser().parse_args(["--data", f"ETHUSD={ETH}", "--from", "2018-04-05",
                                                 "--to", "2018-04-05"])
    notes = backtest_cmd.prepare(ns).notes
    assert not any("gap(s) in ETHUSD's data" in n for n in notes), notes
    assert any("warm-up bars cross a gap of 7 h 7 min from 2018-04-04 16:53" in n for n in notes), notes


def test_a_failure_inside_the_loop_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator import cli

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("loop bug")

    monkeypatch.setattr(backtest_cmd, "_run_core", broken)
    monkeypatch.delenv("ORCHESTRATE_TRACEBACK", raising=False)
    assert cli.main(["backtest", "--data", f"ETHUSD={ETH}", "--from", "2018-04-05T06:00"]) == 1
    err = capsys.readouterr().err
    assert "orchestrate: backtest failed: RuntimeError: loop bug" in err and "Traceback" not in err


# Run in the signal series helper only (its command names `_serve`): the faults a real run can meet.
_HELPER_FAULTS = '''
import os, signal, sys, time
if "_serve" in " ".join(sys.orig_argv):
    fault = os.environ.get("TEST_SERIES_HELPER_FAULT")
    if fault == "raise":  # a failure inside the helper's computation, after its first chunk
        import shared.signals.series as series
        real = series.iter_series
        def failing(*a, **k):
            it = real(*a, **k)
            yield next(it)
            raise ValueError("indicator window broke")
        series.iter_series = failing
    elif fault == "die":  # killed from outside (the OOM killer)
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault == "slow":  # a slow start-up (cold imports): a Ctrl-C lands in it
        time.sleep(3)
'''


def _helper_fault_env(tmp: Path, fault: str) -> dict[str, str]:
    import os
    (tmp / "site").mkdir(exist_ok=True)
    (tmp / "site" / "sitecustomize.py").write_text(_HELPER_FAULTS)
    env = dict(os.environ, TEST_SERIES_HELPER_FAULT=fault, PYTHONPATH=str(tmp / "site"))
    env.pop("ORCHESTRATE_TRACEBACK", None)
    return env


def _synthetic_csv(tmp: Path, bars: int) -> Path:
    from shared.marketdata import synthetic_candles
    c = synthetic_candles("SYN_0001", bars, seed=5)
    p = tmp / "syn.csv"
    with open(p, "w") as fh:
        fh.write(HEADER)
        fh.writelines(f"{t},{o!r},{h!r},{lo!r},{cl!r},{v!r}\n" for t, o, h, lo, cl, v in
                      zip(c.ts.tolist(), c.open.tolist(), c.high.tolist(), c.low.tolist(), c.close.tolist(),
                          c.volume.tolist(), strict=True))
    return p


@pytest.mark.parametrize(("fault", "says"), [
    ("raise", "orchestrate backtest: the signal series helper failed: ValueError: indicator window broke; no result"),
    ("die", "orchestrate backtest: the signal series helper was killed by SIGKILL; no result"),
])
def test_a_failing_signal_series_helper_is_one_line_and_exit_1(tmp_path: Path, fault: str, says: str) -> None:
    """The real command with the real helper process (more bars than one chunk, so the helper is
    used): its failure reaches the user as one line naming it, not the helper's traceback."""
    data = _synthetic_csv(tmp_path, 12_000)
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "backtest", "--data", f"SYN_0001={data}", "--json"],
                       cwd=REPO, capture_output=True, text=True, timeout=120, env=_helper_fault_env(tmp_path, fault))
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines() == [says], r.stderr
    assert r.stdout == ""


def test_ctrl_c_while_the_helper_starts_is_the_loops_to_answer(tmp_path: Path) -> None:
    """A terminal's Ctrl-C goes to the whole foreground process group. The helper, still starting
    (not yet ignoring SIGINT), must not get it: the command stops as a Ctrl-C asks (the partial
    result, exit 130), with no traceback from the helper on the terminal."""
    import os
    import signal
    import time

    import psutil
    data = _synthetic_csv(tmp_path, 100_000)
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "backtest", "--data", f"SYN_0001={data}",
                             "--json"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_helper_fault_env(tmp_path, "slow"), start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if "_serve" in " ".join(p.cmdline())]:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = err.decode()
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert json.loads(out)["interrupted"] is True
