"""The query commands: studies, status, runs, best, importance and delete (export: its own
module, `sweeper.cli.export`, registered here).

"Best" has one meaning in all of them: the configuration with the best mean over its seeds
(`Store.best_config`, the first row of `sweeper best`), never the best single trial.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn

import typer

from sweeper.cli import export as export  # registers `sweeper export`
from sweeper.cli.app import DbOpt, FormatOpt, command, out
from sweeper.cli.output import (
    check_column,
    duration,
    filter_trials,
    metric_frame,
    open_store,
    param_names,
    print_frame,
    short,
)
from sweeper.errors import SweeperError

if TYPE_CHECKING:
    import pandas as pd

    from sweeper.store import BestConfig, Store, StudyInfo, StudyStats
    from sweeper.study import Study

#: What `sweeper status` prints: its lines of text, or one JSON object.
StatusFormat = Literal["rich", "json"]


@command()
def studies(db: DbOpt = None, fmt: FormatOpt = "rich") -> None:
    """List the studies in the database with their progress and best value: the best mean over
    seeds of a configuration, as `sweeper best NAME --top 1` ranks first.

    Example: sweeper studies --db results.db
    """
    import pandas as pd

    with open_store(db) as store:
        rows = store.studies()
    frame = pd.DataFrame(
        [
            {
                "study": s.name,
                "task": s.task,
                "kind": s.kind,
                "completed": s.counts["completed"],
                "total": sum(s.counts.values()),
                "failed": s.counts["failed"],
                "running": s.counts["running"],
                "metric": s.metric,
                "best": s.best,
                "updated": time.strftime("%Y-%m-%d %H:%M", time.localtime(s.updated_at)),
            }
            for s in rows
        ]
    )
    print_frame(frame, fmt)


@command()
def status(
    name: Annotated[str, typer.Argument(help="Study name.")],
    db: DbOpt = None,
    fmt: Annotated[
        StatusFormat,
        typer.Option("--format", "-f", help="Output: lines of text (rich) or one JSON object."),
    ] = "rich",
) -> None:
    """Show a study's progress: counts per state, timing, the best configuration (best mean
    over seeds), running and failed trials, code and versions.

    --format json prints one object with the same facts (keys: name, task, kind, counts,
    total, percent, best, wall_time_s, running, failed, code_hash, versions, ...).

    Example: sweeper status obesity

    Example: sweeper status obesity --format json
    """
    with open_store(db) as store:
        info = store.study(name)
        stats = store.stats(info.id, info.study.direction)
        proposed = len(store.proposals(info.id)) if info.study.searched else 0
    if fmt == "json":
        sys.stdout.write(json.dumps(status_record(info, stats, proposed), indent=2) + "\n")
    else:
        print_status(info, stats, proposed)


def status_record(info: StudyInfo, stats: StudyStats, proposed: int) -> dict[str, Any]:
    """`sweeper status --format json`: the study's progress as one JSON-ready object."""
    study = info.study
    counts = stats.counts
    total = sum(counts.values())
    return {
        "name": study.name,
        "task": study.task,
        "kind": study.kind,
        "description": study.description,
        "metric": study.metric,
        "direction": study.direction,
        "counts": counts,
        "total": total,
        "percent": 100.0 * counts["completed"] / total if total else 0.0,
        "seeds": list(study.seeds),
        "search": {"proposed": proposed, "budget": study.budget} if study.searched else None,
        "best": _best_record(study, stats.best),
        "wall_time_s": _wall_time(stats),
        "mean_trial_s": stats.mean_duration,
        "running": [{"id": i, "host": host, "pid": pid} for i, host, pid in stats.running],
        "failed": [
            {"id": i, "attempts": attempts, "error": error} for i, attempts, error in stats.failed
        ],
        "code_hash": info.code_hash,
        "versions": {
            "sweeper": info.sweeper_version,
            "python": info.python_version,
            "torch": info.torch_version,
            "git_commit": info.git_commit,
        },
    }


def print_status(info: StudyInfo, stats: StudyStats, proposed: int) -> None:
    """`sweeper status`: the study's progress as lines of text."""
    from rich.markup import escape

    study = info.study
    counts = stats.counts
    total = sum(counts.values())
    pct = 100.0 * counts["completed"] / total if total else 0.0
    out.print(
        f"[bold]{escape(study.name)}[/] (task {escape(study.task)}, {study.kind})  "
        f"{escape(study.description)}"
    )
    pruned = f", {counts['pruned']} pruned" if counts.get("pruned") else ""
    out.print(
        f"  {counts['completed']}/{total} completed ({pct:.0f}%), {counts['failed']} failed"
        f"{pruned}, {counts['running']} running, {counts['queued']} queued"
    )
    if study.searched:
        out.print(
            f"  search: {study.kind}, {proposed} of {study.budget} configurations "
            f"proposed (sampler seed {study.sampler_seed}, pruner {study.pruner or 'none'}, "
            f"{study.aggregate} over seeds)"
        )
        out.print(f"  searched: {', '.join(study.search)}; seeds: {list(study.seeds)}")
    else:
        axes = ", ".join(f"{k} ({len(v)})" for k, v in study.axes.items())
        out.print(f"  axes: {escape(axes)}; seeds: {list(study.seeds)}")
    wall = _wall_time(stats)
    if wall is not None and stats.mean_duration is not None:
        # Not a sum of durations: members of a batched group share their group's time.
        out.print(
            f"  wall time {duration(wall)}; claim to result {stats.mean_duration:.2f}s per "
            "trial on average (batched trials share their group's)"
        )
    if stats.best is not None:
        out.print("  " + escape(best_line(study, stats.best)))
    if info.code_hash is not None:
        what = study.task if not study.command else " ".join(study.command)
        out.print(f"  code: {escape(what)} (sha256 {info.code_hash[:12]})")
    versions = [
        f"{label} {value}"
        for label, value in (
            ("sweeper", info.sweeper_version),
            ("Python", info.python_version),
            ("torch", info.torch_version),
            ("git commit", info.git_commit[:12] if info.git_commit else None),
        )
        if value
    ]
    if versions:
        out.print(f"  last run with {escape(', '.join(versions))}")
    for trial_id, host, pid in stats.running:
        out.print(f"  running: trial {trial_id} on {escape(str(host))} pid {pid}")
    for trial_id, attempts, error in stats.failed:
        out.print(
            f"  failed: trial {trial_id} after {attempts} attempt(s): {escape(first_line(error))}"
        )


def best_line(study: Study, best: BestConfig) -> str:
    """``best test_mse (mean of 3 seeds): 0.7894 at optimizer=adam, lr=0.003``."""
    seeds = f"{best.n} seed{'s' if best.n != 1 else ''}"
    params = ", ".join(f"{k}={short(v)}" for k, v in _varying(study, best).items())
    return f"best {study.metric} (mean of {seeds}): {best.mean:.4g}" + (
        f" at {params}" if params else ""
    )


def _best_record(study: Study, best: BestConfig | None) -> dict[str, Any] | None:
    if best is None:
        return None
    return {"metric": study.metric, "mean": best.mean, "n": best.n, "params": _varying(study, best)}


def _varying(study: Study, best: BestConfig) -> dict[str, Any]:
    """The best configuration's values of the parameters that vary between configurations."""
    return {k: best.params[k] for k in param_names(study) if k in best.params}


def _wall_time(stats: StudyStats) -> float | None:
    """First start to last result of the completed trials; None before any."""
    if stats.mean_duration is None:
        return None
    return (stats.last_finish or 0.0) - (stats.first_start or 0.0)


def first_line(error: str | None) -> str:
    """The first line of a trial's error (empty for none): its reason, without the traceback."""
    lines = error.strip().splitlines() if error else []
    return lines[0] if lines else ""


@command()
def runs(
    name: Annotated[str, typer.Argument(help="Study name.")],
    db: DbOpt = None,
    where: Annotated[
        list[str] | None, typer.Option("--where", "-w", help="Filter KEY=VALUE (repeatable).")
    ] = None,
    state: Annotated[str | None, typer.Option(help="Only trials in this state.")] = None,
    sort: Annotated[str | None, typer.Option(help="Sort by this column (e.g. a metric).")] = None,
    desc: Annotated[bool, typer.Option(help="Sort descending.")] = False,
    limit: Annotated[int | None, typer.Option(help="Show at most this many.", min=1)] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns",
            "-c",
            help="Comma-separated columns to show, in that order (default: id, state, the "
            "parameters, seed, metrics, duration, attempts, host, error).",
            show_default=False,
        ),
    ] = None,
    fmt: FormatOpt = "rich",
) -> None:
    """List a study's trials, filtered and sorted; failed trials with the first line of their
    error (see one whole with `sweeper show NAME ID`).

    Example: sweeper runs obesity --where optimizer=adam --where sam_rho=0.05 --sort test_mse

    Example: sweeper runs obesity --state failed --columns id,seed,error
    """
    with open_store(db) as store:
        info = store.study(name)
        frame = store.frame(info.id)
    study = info.study
    frame = filter_trials(frame, where or [], state)
    if sort is not None:
        check_column(frame, sort, "--sort")
        frame = frame.sort_values(sort, ascending=not desc, kind="stable", na_position="last")
    # The reason's first line; `sweeper show NAME ID` prints it whole, with the log's tail.
    frame = frame.assign(
        error=[first_line(e if isinstance(e, str) else None) for e in frame["error"]]
    )
    metrics = [m for m in frame.attrs.get("metrics", []) if m in frame.columns]
    default = ["id", "state", *param_names(study), "seed", *metrics]
    default += ["duration", "attempts", "host", "error"]
    chosen = [c for c in default if c in frame.columns]
    if columns is not None:
        chosen = choose_columns(frame, columns)
    frame = frame[chosen]
    if limit is not None:
        frame = frame.head(limit)
    print_frame(frame, fmt)


def choose_columns(frame: pd.DataFrame, columns: str) -> list[str]:
    """The columns `--columns a,b,c` names, in that order (each once); an unknown or missing
    one is a usage error (exit 2) listing the choices."""
    names = list(dict.fromkeys(c.strip() for c in columns.split(",") if c.strip()))
    known = [str(c) for c in frame.columns]
    if not names:
        usage_error(
            f"--columns {columns!r}: name at least one column; choose from: {', '.join(known)}"
        )
    unknown = [c for c in names if c not in known]
    if unknown:
        usage_error(
            f"--columns: no column {', '.join(map(repr, unknown))}; choose from: {', '.join(known)}"
        )
    return names


def usage_error(message: str) -> NoReturn:
    """A usage error found after the arguments were parsed (the study's columns are known
    only then): one line ``Error: ...`` on stderr and exit 2, as Typer's own."""
    sys.stderr.write(f"Error: {message}\n")
    raise typer.Exit(2)


@command()
def best(
    name: Annotated[str, typer.Argument(help="Study name.")],
    db: DbOpt = None,
    top: Annotated[int, typer.Option(help="How many configurations.", min=1)] = 10,
    fmt: FormatOpt = "rich",
    ci: Annotated[
        bool,
        typer.Option(
            help="Add each configuration's 95% interval of the mean (t below 10 seeds, "
            "bootstrap from 10) and mark with ~ those overlapping the first one's."
        ),
    ] = False,
) -> None:
    """Rank configurations by their mean over seeds (with sem and the number of seeds).

    A searched study's configurations are those its sampler proposed. --format json always
    carries mean, sd, sem, n, ci_low and ci_high (and std, tied).

    Example: sweeper best obesity --top 5 --ci
    """
    with open_store(db) as store:
        print_best(store, name, top, fmt, ci=ci)


def print_best(store: Store, name: str, top: int, fmt: str, *, ci: bool = False) -> None:
    """Print the study's `top` configurations ranked by seed mean; with `ci` (always in
    JSON) their intervals too."""
    from sweeper.report import study_best

    info = store.study(name)
    ranked = study_best(metric_frame(store, info), info.study, top, ci=ci or fmt == "json")
    if ci and fmt not in ("csv", "json"):
        from sweeper.render import interval_cell

        shown = ranked.drop(columns=["std", "ci_low", "ci_high", "tied"])
        shown.insert(
            shown.columns.get_loc("mean"),
            "mean [95% CI]",
            [
                interval_cell(m, lo, hi) + (" ~" if t else "")
                for m, lo, hi, t in ranked[["mean", "ci_low", "ci_high", "tied"]].itertuples(
                    index=False
                )
            ],
        )
        shown = shown.drop(columns="mean")
        if fmt == "rich":
            out.print(
                f"{name}: {info.study.metric} ({info.study.direction}), mean [95% CI] over "
                "seeds; ~ marks an interval overlapping the first configuration's (tied for best)"
            )
        print_frame(shown, fmt)
        return
    print_frame(ranked, fmt)


@command()
def importance(
    name: Annotated[str, typer.Argument(help="Study name (a searched study).")],
    db: DbOpt = None,
    fmt: FormatOpt = "rich",
) -> None:
    """Print Optuna's parameter importances (fANOVA) over the completed configurations,
    each judged by its seed aggregate.

    Example: sweeper importance obesity_tpe
    """
    import pandas as pd

    from sweeper import search

    with open_store(db) as store:
        info = store.study(name)
        study = info.study
        if not study.searched:
            raise SweeperError(
                f"study {name!r} is a grid; importances are for searched studies (kind tpe or "
                "random). For a grid, compare its tables: sweeper table " + name
            )
        history = search.summarize(study, store.proposals(info.id), store.search_trials(info.id))
    values = search.importances(study, history)
    done = sum(c.state == search.COMPLETE for c in history)
    frame = pd.DataFrame({"parameter": list(values), "importance": list(values.values())})
    if fmt == "rich":
        out.print(f"{name}: importance for {study.metric} over {done} completed configurations")
    print_frame(frame, fmt)


@command()
def delete(
    name: Annotated[str, typer.Argument(help="Study name.")],
    db: DbOpt = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Delete without asking (for scripts).")
    ] = False,
) -> None:
    """Delete a study with all its trials, their curves and its proposals, in one transaction;
    other studies are untouched. Asks first unless --yes; without a terminal to ask on,
    refuses unless --yes.

    Example: sweeper delete old_study --yes
    """
    with open_store(db) as store:
        info = store.study(name)
        total = sum(store.counts(info.id).values())
        if not yes:
            _confirm_delete(name, total, store.url)
        report = store.delete_study(info.id)
    sys.stderr.write(
        f"deleted study {name!r}: {_trials(report.trials)}, {report.curves} curves, "
        f"{report.proposals} proposals\n"
    )


def _confirm_delete(name: str, total: int, url: str) -> None:
    """Ask on stderr; leave (exit 1, nothing deleted) unless the answer is yes."""
    question = f"Delete study {name!r} and its {_trials(total)} from {database_name(url)}?"
    if not interactive():
        raise SweeperError(
            f"not deleting study {name!r} ({_trials(total)}): there is no terminal to confirm "
            "on; add --yes to delete it"
        )
    try:
        agreed = typer.confirm(question, default=False, err=True)
    except typer.Abort:  # end of input (Ctrl-D): no answer is no
        agreed = False
    if not agreed:
        sys.stderr.write(f"nothing deleted: study {name!r} is still there\n")
        raise typer.Exit(1)


def interactive() -> bool:
    """Whether stdin is a terminal a person can answer a question on."""
    return sys.stdin is not None and not sys.stdin.closed and sys.stdin.isatty()


def database_name(url: str) -> str:
    """A SQLite database's file path, any other database's URL (its password masked)."""
    from sqlalchemy.engine import make_url

    from sweeper.store import safe_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown masked, as it is
        return safe_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return str(parsed.database)
    return safe_url(url)


def _trials(n: int) -> str:
    return f"{n} trial{'s' if n != 1 else ''}"
