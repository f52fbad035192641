"""The Python API: run a study and read its results, the same functions the CLI calls.

    import sweeper

    study = sweeper.Study.from_file("study.toml")        # or Study.from_dict({...})
    summary = sweeper.run(study, db="results.db", workers=2)
    trials = sweeper.load_trials(study.name, db="results.db")   # one row per trial
    curves = sweeper.load_curves(study.name, db="results.db")   # trial, curve, step, value
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.launch.options import RunOptions
from sweeper.study import Study

if TYPE_CHECKING:
    import pandas as pd

    from sweeper.launch.run import RunSummary


def run(
    study: Study | str | Path,
    *,
    db: str | None = None,
    workers: int | None = None,
    **options: Any,
) -> RunSummary:
    """Run a study, or finish it (completed trials are never re-run), and summarise it.

    Args:
        study: a `Study`, or the path of a study file.
        db: database URL or SQLite file (default: $SWEEPER_DB, else ``results.db`` here).
        workers: worker processes (default: one per core).
        **options: any other field of `sweeper.launch.RunOptions` (``mode``, ``data_dir``,
            ``threads``, ``backend``, ``scheduler``, ``max_retries``, ``lease_s``, ...).

    Returns:
        Counts, the best configuration (seed mean), the best single trial and the failures
        (`sweeper.launch.run.RunSummary`).

    Raises:
        SweeperError: an invalid study or option, a conflict with the stored study, a missing
            dataset; nothing is written when the input is at fault.
    """
    import time

    from sweeper.launch.run import execute, start, summarize

    if not isinstance(study, Study):
        study = Study.from_file(study)
    began = time.time()
    started = start(study, db, RunOptions(workers=workers, **options))
    execute(started)
    return summarize(started.url, study.name, time.time() - began)


def load_trials(name: str, *, db: str | None = None) -> pd.DataFrame:
    """Every trial of the study called `name`, one row each.

    Columns: ``id``, ``state``, one per parameter that varies, ``seed``, one per metric the
    trials reported, then ``value`` (the study's metric), ``duration``, ``attempts``, ``host``,
    ``error`` and the other bookkeeping columns the store keeps. ``frame.attrs["metrics"]``
    names the metric columns.

    Raises:
        StoreError: no database; UnknownStudyError: no study of that name.
    """
    from sweeper.store import Store, resolve_url

    with Store(resolve_url(db)) as store:
        return store.frame(store.study(name).id)


def load_curves(name: str, *, db: str | None = None) -> pd.DataFrame:
    """The per-step curves of the study called `name` in long format.

    Returns:
        Columns ``trial`` (the trial id), ``curve`` (e.g. ``train_loss``), ``step`` (the step
        the task reported, 1, 2, ... for built-in tasks' epochs) and ``value``; one row per
        point, trials in id order, each curve's points in step order.

    Raises:
        StoreError: no database; UnknownStudyError: no study of that name.
    """
    import pandas as pd

    from sweeper.store import Store, resolve_url
    from sweeper.trial import STEP_SUFFIX, curve_steps

    with Store(resolve_url(db)) as store:
        ids = store.frame(store.study(name).id, metrics=False, bookkeeping=False)["id"].tolist()
        curves = store.curves(ids)
    rows: list[tuple[int, str, int, float]] = []
    for trial_id in ids:
        by_name = curves.get(trial_id) or {}
        for curve, values in by_name.items():
            if curve.endswith(STEP_SUFFIX):
                continue
            steps = curve_steps(by_name, curve)
            rows.extend((trial_id, curve, s, float(v)) for s, v in zip(steps, values, strict=True))
    frame = pd.DataFrame(rows, columns=["trial", "curve", "step", "value"])
    return frame.astype({"trial": "int64", "curve": "object", "step": "int64", "value": "float64"})
