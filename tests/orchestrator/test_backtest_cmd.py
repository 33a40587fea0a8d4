"""`orchestrate backtest`'s shell: bad input (the real CLI: exit 2, names the thing, no traceback),
the console table, and `--report` (files exist, PNGs decode) from a backtest JSON document."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import backtest_cmd
from orchestrator.report import console_summary, drawdown_pct, markdown_summary, write_report

from backtest_doc import sample_doc  # tests/orchestrator is on sys.path (no __init__.py: rootdir imports)

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
