"""`sweeper show` (one trial, whole) and `sweeper tasks` (what a study can run)."""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer

from sweeper.cli.app import DbOpt, command, out
from sweeper.cli.output import open_store, param_names, short
from sweeper.errors import SweeperError


@command()
def show(
    name: Annotated[str, typer.Argument(help="Study name.")],
    trial_id: Annotated[int, typer.Argument(help="Trial id (the `id` column of `runs`).")],
    db: DbOpt = None,
) -> None:
    """Everything about one trial: parameters, seed, state, metrics, curves, error and log.

    Example: sweeper show mystudy 7
    """
    from rich.markup import escape

    with open_store(db) as store:
        info = store.study(name)
        frame = store.frame(info.id)
        rows = frame[frame["id"] == trial_id]
        if rows.empty:
            raise SweeperError(
                f"study {name!r} has no trial {trial_id}; its ids: "
                f"{int(frame['id'].min()) if len(frame) else '-'}.."
                f"{int(frame['id'].max()) if len(frame) else '-'} (see `sweeper runs {name}`)"
            )
        curves = store.curves([trial_id]).get(trial_id) or {}
    row = rows.iloc[0]
    study = info.study
    out.print(f"[bold]{escape(study.name)}[/] trial {trial_id}: {row['state']}")
    params = ", ".join(f"{k}={short(row[k])}" for k in param_names(study))
    out.print(f"  parameters: {escape(params) or '(none)'}; seed {int(row['seed'])}")
    metrics = [m for m in frame.attrs.get("metrics", []) if _present(row.get(m))]
    if metrics:
        out.print("  metrics: " + ", ".join(f"{m} {float(row[m]):.6g}" for m in metrics))
    for label, key in (("attempts", "attempts"), ("host", "host"), ("duration s", "duration")):
        if _present(row.get(key)):
            out.print(f"  {label}: {escape(short(row[key]))}")
    for curve, values in curves.items():
        if curve.endswith("@step") or not values:
            continue
        out.print(
            f"  curve {escape(curve)}: {len(values)} points, first {values[0]:.4g}, "
            f"last {values[-1]:.4g}, min {min(values):.4g}, max {max(values):.4g}"
        )
    if _present(row.get("error")):
        out.print("  [red]error:[/] " + escape(str(row["error"]).strip()))
    if _present(row.get("log")):
        out.print("  log (tail):")
        for line in str(row["log"]).rstrip().splitlines():
            out.print("    " + escape(line))


@command("tasks")
def tasks_cmd() -> None:
    """List the tasks a study can name: built in, and installed by packages (entry points of
    the group ``sweeper.tasks``), with their parameters and metrics. A study can also run your
    own code: task = "train.py:train", or command = [...].

    Example: sweeper tasks
    """
    from sweeper.tasks import REGISTRY, get_task, plugins
    from sweeper.tasks.base import params_model

    found = [(n, "built in") for n in sorted(REGISTRY)]
    found += [
        (n, f"from {ep.dist.name if ep.dist else ep.value}") for n, ep in sorted(plugins().items())
    ]
    for task_name, origin in found:
        try:
            task = get_task(task_name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the others
            out.print(f"[bold]{task_name}[/] ({origin}): cannot be loaded: {exc}")
            continue
        model = params_model(task)
        fields = ", ".join(model.model_fields) if model is not None else "(any)"
        out.print(f"[bold]{task_name}[/] ({origin})")
        out.print(f"  parameters: {fields}")
        out.print(f"  metrics: {', '.join(task.metrics) or '(whatever it returns)'}")
    out.print('your own code: task = "train.py:train" (a function) or command = [...]')


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return str(value) != ""
