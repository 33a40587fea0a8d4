"""What `orchestrate optimize --report DIR` writes: the trials table (CSV), the best trials with
train and test scores (markdown), Optuna's parameter importances and plots (its matplotlib
visualisation, Agg backend), and `best.toml`, a complete config with the winning values."""

from __future__ import annotations

import csv
import importlib.util
import math
import warnings
from pathlib import Path
from typing import Any

import msgspec
import optuna
import tomli_w
from optuna.trial import FrozenTrial, TrialState

from shared.config import Config, config_to_toml_dict
from shared.optimize.objective import comparable, much_worse
from shared.optimize.space import Dimension
from shared.optimize.trial import SUMMARY_FIELDS, TrialOutcome

from .optimize_study import FAIL_REASON, RETRY_OF, fail_reason, retry_of, train_result

NO_TEST = "not run: no --test range given"


class BestRow(msgspec.Struct, kw_only=True):
    number: int
    params: dict[str, Any]
    train: float
    train_days: float
    train_figures: dict[str, float]
    test: TrialOutcome
    much_worse: bool = False


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    return str(v)


def write_trials_csv(trials: list[FrozenTrial], dims: list[Dimension], path: Path) -> None:
    keys = [d.key for d in dims]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["trial", "state", "score", *keys, *SUMMARY_FIELDS, "elapsed_s", RETRY_OF, FAIL_REASON])
        for t in sorted(trials, key=lambda t: t.number):
            train = train_result(t)
            figures = train.get("figures", {})
            w.writerow([t.number, t.state.name, "" if t.value is None else repr(t.value),
                        *(t.params.get(k, "") for k in keys),
                        *(figures.get(f, "") for f in SUMMARY_FIELDS),
                        train.get("elapsed_s", ""), "" if retry_of(t) is None else retry_of(t),
                        fail_reason(t, len(dims))])


def trial_score(t: FrozenTrial) -> float:
    """The objective value of a trial that top_trials kept (complete, with a value)."""
    if t.value is None:
        raise ValueError(f"trial #{t.number} has no objective value")
    return t.value


def top_trials(trials: list[FrozenTrial], k: int) -> list[FrozenTrial]:
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return sorted(done, key=lambda t: (-trial_score(t), t.number))[:k]


def best_rows(top: list[FrozenTrial], tests: list[TrialOutcome], objective: str) -> list[BestRow]:
    rows = []
    for t, test in zip(top, tests, strict=True):  # one test outcome per top trial, in order
        train = train_result(t)
        row = BestRow(number=t.number, params=dict(t.params), train=trial_score(t),
                      train_days=float(train.get("days", 0.0)), train_figures=dict(train.get("figures", {})),
                      test=test)
        if test.error == NO_TEST:
            rows.append(row)
            continue
        row.much_worse = test.score is None or much_worse(objective, row.train, test.score,
                                                           row.train_days, test.days)
        rows.append(row)
    return rows


def best_markdown(rows: list[BestRow], objective: str, title: str, train_label: str, test_label: str) -> str:
    # per-day columns only where the ranges differ in length (else they repeat the scores)
    per_day = objective in ("net_pnl", "return_over_drawdown") and any(
        r.test.score is not None and abs(r.train_days - r.test.days) > 1e-6 for r in rows)
    keys = list(rows[0].params) if rows else []
    lines = [f"### {title}", "",
             f"Objective `{objective}`; train {train_label}, "
             + (f"test {test_label} (never seen by the search)." if test_label else "no test range.")
             + (" Per-day figures put ranges of different lengths on one footing." if per_day else ""), ""]
    head = ["trial", *keys, f"train {objective}", f"test {objective}"]
    if per_day:
        head += ["train / day", "test / day"]
    if objective != "net_pnl":
        head += ["train net PnL", "test net PnL"]
    head += ["test max DD %", "test fills", ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---:" for _ in head) + "|")
    for r in rows:
        test_score = ("-" if r.test.error == NO_TEST else "failed") if r.test.score is None else _fmt(r.test.score)
        cells = [f"#{r.number}", *(_fmt(r.params[k]) for k in keys), _fmt(r.train), test_score]
        if per_day:
            cells += [_fmt(comparable(objective, r.train, r.train_days)),
                      "" if r.test.score is None else _fmt(comparable(objective, r.test.score, r.test.days))]
        if objective != "net_pnl":
            cells += [_fmt(r.train_figures.get("net_pnl", "")), _fmt(r.test.figures.get("net_pnl", ""))]
        cells += [_fmt(r.test.figures.get("max_drawdown_pct", "")), _fmt(r.test.figures.get("fills", "")),
                  "**much worse on test**" if r.much_worse else ""]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [r for r in rows if r.test.score is None and r.test.error != NO_TEST]
    for r in failed:
        lines.append(f"\nTrial #{r.number} on the test range: {r.test.error}")
    if rows and rows[0].test.error == NO_TEST:
        lines.append("\nNo --test range: these scores are in-sample only; nothing here says they hold on "
                     "other data.")
    elif rows and all(r.much_worse for r in rows):
        lines.append("\n**Warning: every best trial did much worse on the test range than on train: the "
                     "search has most likely fitted noise in the train range.**")
    return "\n".join(lines) + "\n"


def write_plots(study: optuna.Study, out: Path) -> list[str]:
    """Importances (CSV + bar chart), parallel coordinates, and a contour of the two most important
    parameters. Returns notes for what could not be drawn (too few finished trials, one parameter)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    notes: list[str] = []
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if len(done) < 2:
        return [f"plots skipped: {len(done)} finished trial(s), need 2"]
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    importances: dict[str, float] = {}
    try:
        importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as exc:
        notes.append(f"importances skipped: {exc}")
    if importances:
        with (out / "importances.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["parameter", "importance"])
            for k, v in importances.items():
                w.writerow([k, f"{v:.6f}"])
    plots: list[tuple[str, Any]] = []
    if importances:
        plots.append(("importances.png", lambda: ovm.plot_param_importances(study)))
    plots.append(("parallel.png", lambda: ovm.plot_parallel_coordinate(study)))
    ranked = list(importances) or list(done[0].params)
    # Optuna interpolates the contour with scipy, which the product does not otherwise need: draw
    # it where scipy is installed; the parallel-coordinate plot always shows every parameter.
    if len(ranked) >= 2 and importlib.util.find_spec("scipy") is not None:
        plots.append(("contour.png", lambda: ovm.plot_contour(study, params=ranked[:2])))
    for name, draw in plots:
        try:
            ax = draw()
        except Exception as exc:  # a plot that cannot be drawn never loses the study's results
            notes.append(f"{name} skipped: {type(exc).__name__}: {exc}")
            continue
        fig = ax.flat[0].figure if hasattr(ax, "flat") else ax.figure
        fig.set_size_inches(10, 6)
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
    return notes


def best_toml(cfg: Config, header: list[str]) -> str:
    """A complete config (every key, so it reads the same whatever the defaults become), with the
    header lines as comments. Floats are written by repr, so they read back bit for bit."""
    body = tomli_w.dumps(config_to_toml_dict(cfg))
    return "".join(f"# {line}\n" for line in header) + "\n" + body
