"""The query commands: studies, status, runs, best, importance, export."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sweeper.cli.app import DbOpt, FormatOpt, command, err, out
from sweeper.cli.output import (
    check_column,
    duration,
    filter_trials,
    metric_frame,
    open_store,
    param_names,
    print_frame,
)
from sweeper.errors import SweeperError, UnknownNameError

if TYPE_CHECKING:
    from sweeper.store import Store


@command()
def studies(db: DbOpt = None, fmt: FormatOpt = "rich") -> None:
    """List the studies in the database with their progress and best value.

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
def status(name: Annotated[str, typer.Argument(help="Study name.")], db: DbOpt = None) -> None:
    """Show a study's progress: counts per state, timing, running and failed trials.

    Example: sweeper status obesity
    """
    with open_store(db) as store:
        info = store.study(name)
        stats = store.stats(info.id, info.study.direction)
        stats_proposed = len(store.proposals(info.id)) if info.study.searched else 0
    study = info.study
    counts = stats.counts
    total = sum(counts.values())
    pct = 100.0 * counts["completed"] / total if total else 0.0
    out.print(f"[bold]{study.name}[/] (task {study.task}, {study.kind})  {study.description}")
    pruned = f", {counts['pruned']} pruned" if counts.get("pruned") else ""
    out.print(
        f"  {counts['completed']}/{total} completed ({pct:.0f}%), {counts['failed']} failed"
        f"{pruned}, {counts['running']} running, {counts['queued']} queued"
    )
    if study.searched:
        out.print(
            f"  search: {study.kind}, {stats_proposed} of {study.budget} configurations "
            f"proposed (sampler seed {study.sampler_seed}, pruner {study.pruner or 'none'}, "
            f"{study.aggregate} over seeds)"
        )
        out.print(f"  searched: {', '.join(study.search)}; seeds: {list(study.seeds)}")
    else:
        axes = ", ".join(f"{k} ({len(v)})" for k, v in study.axes.items())
        out.print(f"  axes: {axes}; seeds: {list(study.seeds)}")
    if stats.mean_duration is not None:
        wall = (stats.last_finish or 0.0) - (stats.first_start or 0.0)
        # Not a sum of durations: members of a batched group share their group's time.
        out.print(
            f"  wall time {duration(wall)}; claim to result {stats.mean_duration:.2f}s per "
            "trial on average (batched trials share their group's)"
        )
    if stats.best is not None:
        out.print(f"  best {study.metric}: {stats.best:.4g}")
    if info.code_hash is not None:
        what = study.task if not study.command else " ".join(study.command)
        out.print(f"  code: {what} (sha256 {info.code_hash[:12]})")
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
        out.print(f"  last run with {', '.join(versions)}")
    for trial_id, host, pid in stats.running:
        out.print(f"  running: trial {trial_id} on {host} pid {pid}")
    for trial_id, attempts, error in stats.failed:
        first = error.strip().splitlines()[0] if error else ""
        out.print(f"  failed: trial {trial_id} after {attempts} attempt(s): {first}")


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
    fmt: FormatOpt = "rich",
) -> None:
    """List a study's trials, filtered and sorted; failed trials with their reason (see one
    whole with `sweeper show NAME ID`).

    Example: sweeper runs obesity --where optimizer=adam --where sam_rho=0.05 --sort test_mse
    """
    with open_store(db) as store:
        info = store.study(name)
        frame = store.frame(info.id)
    study = info.study
    frame = filter_trials(frame, where or [], state)
    if sort is not None:
        check_column(frame, sort, "--sort")
        frame = frame.sort_values(sort, ascending=not desc, kind="stable", na_position="last")
    metrics = [m for m in frame.attrs.get("metrics", []) if m in frame.columns]
    cols = ["id", "state", *param_names(study), "seed", *metrics, "duration", "attempts", "host"]
    if "error" in frame.columns and frame["error"].notna().any():
        # The reason's first line; `sweeper show NAME ID` prints it whole, with the log's tail.
        frame = frame.assign(
            error=[
                str(e).strip().split("\n")[0] if isinstance(e, str) else None
                for e in frame["error"]
            ]
        )
        cols.append("error")
    frame = frame[[c for c in cols if c in frame.columns]]
    if limit is not None:
        frame = frame.head(limit)
    print_frame(frame, fmt)


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
def export(
    name: Annotated[str, typer.Argument(help="Study name.")],
    db: DbOpt = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="csv (default), json, parquet, or optuna: an Optuna storage for "
            "optuna-dashboard (-o FILE.db, or --to URL).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            help="--format optuna: any SQLAlchemy URL to write to instead of a SQLite file.",
            show_default=False,
        ),
    ] = None,
    curves: Annotated[
        bool,
        typer.Option(
            help="Include per-epoch curves (json), or their seed means as intermediate values "
            "(optuna; slower: Optuna writes them one row at a time)."
        ),
    ] = False,
) -> None:
    """Export every trial of a study: parameters, seed, state, metrics, timing, host; or, with
    --format optuna, one Optuna trial per configuration (its value the seed mean) that
    optuna-dashboard and Optuna's plots can open.

    Example: sweeper export obesity --format parquet -o obesity.parquet

    Example: sweeper export obesity --format optuna -o optuna.db
    """
    fmt = fmt or ("optuna" if to is not None else "csv")
    formats = ("csv", "json", "parquet", "optuna")
    if fmt not in formats:
        raise UnknownNameError(
            f"unknown export format {fmt!r}; choose one of: {', '.join(formats)}"
        )
    if output is not None and output.is_dir():
        raise SweeperError(
            f"--output {output} is a folder: give a file, e.g. {output / name}.{fmt}"
        )
    if output is not None and not output.parent.is_dir():
        raise SweeperError(f"--output {output}: no folder {output.parent}; create it first")
    if fmt == "optuna":
        export_optuna_storage(db, name, output, to, curves)
        return
    if to is not None:
        raise SweeperError("--to is for --format optuna; give a file with --output FILE")
    if fmt == "parquet" and output is None:
        raise SweeperError("parquet is binary: give a file with --output FILE")
    if curves and fmt != "json":
        raise SweeperError(
            "--curves needs --format json (curves are lists per trial) or --format optuna"
        )
    with open_store(db) as store:
        info = store.study(name)
        frame = store.frame(info.id)
        if curves:
            by_id = store.curves(frame["id"].tolist())
            frame["curves"] = [by_id.get(i) for i in frame["id"]]
    frame.insert(0, "study", info.name)
    if fmt == "csv":
        text = frame.to_csv(index=False)
    elif fmt == "json":
        text = frame.to_json(orient="records", indent=1) + "\n"
    else:
        assert output is not None
        try:
            frame.to_parquet(output, index=False)
        except ImportError:
            raise SweeperError(
                "parquet export needs pyarrow: pip install 'sweeper[parquet]'"
            ) from None
        err.print(f"wrote {len(frame)} trials to {output}")
        return
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {len(frame)} trials to {output}")


def export_optuna_storage(
    db: str | None, name: str, output: Path | None, to: str | None, curves: bool
) -> None:
    """`sweeper export NAME --format optuna`: write the Optuna storage, say how to open it."""
    from sweeper.optuna_export import export_optuna
    from sweeper.store import safe_url

    if (output is None) == (to is None):
        raise SweeperError(
            "--format optuna writes an Optuna storage: give a SQLite file with --output "
            "optuna.db, or a SQLAlchemy URL with --to (one of them)"
        )
    if output is not None:
        check_optuna_file(output)
    url = to if to is not None else f"sqlite:///{output}"
    with open_store(db) as store:
        count = export_optuna(store, name, url, intermediate=curves)
    shown = safe_url(url)
    lines = [f"wrote {count} configurations of {name} to {shown}: one Optuna trial each"]
    if not curves:
        lines.append("per-epoch intermediate values left out: add --curves for them (slower)")
    lines.append(f"open it with: pip install optuna-dashboard; optuna-dashboard {shown}")
    # Plain text: a URL that a console wrapped or read as markup could not be pasted.
    sys.stderr.write("".join(line + "\n" for line in lines))


def check_optuna_file(path: Path) -> None:
    """Refuse to add Optuna's tables to a SQLite file that holds something else (a results
    database given by mistake); a new file or an Optuna storage is fine.

    Raises:
        SweeperError: `path` is a SQLite file with tables and no Optuna ``version_info``.
    """
    import sqlite3

    if not path.is_file() or path.stat().st_size == 0:
        return
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError:
        tables = {"(not SQLite)"}
    finally:
        conn.close()
    if tables and "version_info" not in tables:
        raise SweeperError(
            f"{path} exists and is not an Optuna storage; give a new file, e.g. -o optuna.db"
        )
