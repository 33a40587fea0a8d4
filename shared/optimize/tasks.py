"""How many trials one Dask task runs. Pure.

Each Dask task costs CPU besides its trial: the client's submit and result, the scheduler's
transitions, the worker's messages (about 8 ms a task on the 2-core machine, across the driver's
event loop and the worker's). On a short trial (a two-day backtest: ~0.1 s) that is ~8% of the
machine, taken from the trials when every core is busy; a task that runs a few trials in a row
pays it once. Long trials gain nothing from it and would only hold more trials in flight (the
sampler draws each one without its results), so a task runs just enough trials to last
`TASK_SECONDS`, and one at a time near the end of a study, where a worker finishing early would
otherwise wait for a longer task on another.
"""

from __future__ import annotations

from collections.abc import Sequence

TASK_SECONDS = 0.25
MAX_TRIALS_PER_TASK = 4


def trials_per_task(trial_seconds: Sequence[float], to_start: int, tasks_in_flight: int) -> int:
    """Trials the next task runs. `trial_seconds`: CPU seconds of this study's recent trials (none
    yet: 1; CPU rather than wall, which a loaded machine stretches); `to_start`: trials still to be
    started; `tasks_in_flight`: how many tasks the driver keeps submitted (running and queued)."""
    if to_start <= 0:
        return 0
    if not trial_seconds:
        return 1
    typical = sorted(trial_seconds)[len(trial_seconds) // 2]
    per_task = MAX_TRIALS_PER_TASK if typical <= 0 else int(TASK_SECONDS / typical)
    # the tail: once fewer trials remain than fill every task in flight, tasks shrink to one trial
    per_task = min(per_task, to_start // max(tasks_in_flight, 1), MAX_TRIALS_PER_TASK)
    return max(1, per_task)
