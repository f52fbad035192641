"""Seeds as a statistical object: `sweeper compare`, `sweeper confirm` and `sweeper seeds`."""

from __future__ import annotations

import json
import math
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sweeper.cli.app import DataDirOpt, DbOpt, FormatOpt, NameArg, WorkersOpt, command, err, out
from sweeper.cli.output import metric_frame, open_store, param_names, print_frame
from sweeper.errors import SweeperError

if TYPE_CHECKING:
    import pandas as pd

    from sweeper.store import Store, StudyInfo


@command()
def compare(
    name: NameArg,
    by: Annotated[
        str | None, typer.Option(help="The axis to compare along (e.g. sam_rho).")
    ] = None,
    baseline: Annotated[
        str | None, typer.Option(help="--by: the value compared against (default: the first).")
    ] = None,
    within: Annotated[
        list[str] | None,
        typer.Option(help="--by: repeat the comparison inside each value of this axis."),
    ] = None,
    a: Annotated[
        str | None, typer.Option("--a", help="Baseline configuration: k=v,k=v of NAME.")
    ] = None,
    b: Annotated[
        str | None, typer.Option("--b", help="Other configuration: k=v,k=v (of --study-b).")
    ] = None,
    study_b: Annotated[str | None, typer.Option(help="--b's study (default: NAME itself).")] = None,
    db: DbOpt = None,
    db_b: Annotated[
        str | None,
        typer.Option(
            help="--b's database (default: --db): a rerun in another file against the original.",
            show_default=False,
        ),
    ] = None,
    fmt: FormatOpt = "rich",
) -> None:
    """Paired comparisons over seeds: each value of an axis against a baseline, or two
    configurations (possibly of two studies) against each other.

    Trials are paired when they agree on the seed and on every other parameter; per value:
    pairs, mean difference (value - baseline) with its 95% interval, the Wilcoxon signed-rank
    p-value, Holm's adjustment over the values compared, and the probability of improvement.

    Example: sweeper compare obesity --by sam_rho --baseline 0 --within optimizer

    Example: sweeper compare obesity --a optimizer=adam,sam_rho=0 --study-b obesity_sam200

    Example: sweeper compare obesity --db results.db --db-b mine.db   (a rerun, trial by trial)
    """
    from sweeper import render

    render.check_format(fmt)
    explicit = a is not None or b is not None or study_b is not None or db_b is not None
    if (by is None) == (not explicit) or (by is not None and explicit):
        raise SweeperError(
            "give either --by AXIS (values of one axis against a baseline) or --a/--b "
            "(two configurations), e.g. sweeper compare obesity --by sam_rho --baseline 0"
        )
    with open_store(db) as store:
        if by is not None:
            _compare_by(store, name, by, baseline, within or [], fmt)
        elif db_b is not None:
            with open_store(db_b) as store_b:
                _compare_configs(store, name, a or "", b or "", study_b, fmt, store_b=store_b)
        else:
            _compare_configs(store, name, a or "", b or "", study_b, fmt)


def _compare_by(
    store: Store, name: str, by: str, baseline: str | None, within: list[str], fmt: str
) -> None:
    from sweeper import render
    from sweeper.compare import compare_by
    from sweeper.report import check_name

    info = store.study(name)
    study = info.study
    params = param_names(study)
    check_name("axis", by, params)
    for w in within:
        check_name("--within axis", w, [p for p in params if p != by])
    frame = metric_frame(store, info)
    if baseline is None:
        values = study.axes.get(by) or list(dict.fromkeys(frame[by].tolist()))
        if not values:
            raise SweeperError(f"study {name!r} has no trials to compare")
        base: Any = values[0]
    else:
        base = parse_value(baseline)
    rows = compare_by(
        frame,
        axis=by,
        baseline=base,
        params=params,
        metric=study.metric,
        direction=study.direction,
        within=within,
    )
    title = render.compare_title(study.name, study.metric, study.direction, rows)
    if fmt == "rich":
        out.print(render.rich_comparisons(rows, title=title))
    else:
        sys.stdout.write(render.render_comparisons(rows, fmt, title=title))


def _compare_configs(
    store: Store,
    name: str,
    a: str,
    b: str,
    study_b: str | None,
    fmt: str,
    *,
    store_b: Store | None = None,
) -> None:
    from sweeper import render
    from sweeper.compare import compare_configs

    info_a = store.study(name)
    other = store_b or store
    info_b = other.study(study_b or name) if store_b or study_b else info_a
    spec_a, spec_b = parse_config(a, "--a"), parse_config(b, "--b")
    free_a = [p for p in param_names(info_a.study) if p not in spec_a]
    free_b = [p for p in param_names(info_b.study) if p not in spec_b]
    pair_on = [p for p in free_a if p in free_b]
    for option, free, info in (("--a", free_a, info_a), ("--b", free_b, info_b)):
        loose = [p for p in free if p not in pair_on]
        if loose:
            raise SweeperError(
                f"{option}: give {', '.join(loose)} (axes of study {info.name!r} that the other "
                "side does not pair on), e.g. " + ",".join(f"{p}=..." for p in loose)
            )
    frame_a = _matching(metric_frame(store, info_a), info_a, spec_a, "--a")
    frame_b = _matching(metric_frame(other, info_b), info_b, spec_b, "--b")
    if info_a.study.metric != info_b.study.metric:
        raise SweeperError(
            f"the studies measure different metrics ({info_a.study.metric} and "
            f"{info_b.study.metric}); compare studies of one metric"
        )
    study = info_a.study
    result = compare_configs(
        frame_a,
        frame_b,
        metric=study.metric,
        direction=study.direction,
        pair_on=["seed", *pair_on],
    )
    labels = {"study_a": info_a.name, "a": spec_a, "study_b": info_b.name, "b": spec_b}
    better = "negative" if study.direction == "minimize" else "positive"
    where_a = where_b = ""
    if store_b is not None:
        from sweeper.store import safe_url

        where_a, where_b = f" in {safe_url(store.url)}", f" in {safe_url(store_b.url)}"
    title = (
        f"{study.metric} ({study.direction}): b = {info_b.name}{where_b} {_spec_text(spec_b)} "
        f"against a = {info_a.name}{where_a} {_spec_text(spec_a)}, paired on "
        f"{', '.join(result.pair_on)}. "
        f"diff = mean of (b - a) ({better} is better), 95% CI (t below 10 pairs, else "
        "bootstrap, seed 0); p: two-sided Wilcoxon signed-rank; P(better): share of pairs "
        "where b beats a (ties half)"
    )
    if fmt == "rich":
        _print(render.config_frame(result, "rich"), "rich", title)
    else:
        sys.stdout.write(render.render_config_comparison(result, fmt, title=title, labels=labels))


def _matching(
    frame: pd.DataFrame, info: StudyInfo, spec: dict[str, Any], option: str
) -> pd.DataFrame:
    """The trials of `frame` whose parameters match `spec` (fixed parameters must agree)."""
    from sweeper.report.confirm import same_value

    study = info.study
    params = param_names(study)
    for key, value in spec.items():
        if key in params:
            frame = frame[[same_value(v, value) for v in frame[key]]]
        elif key in study.fixed:
            if not same_value(study.fixed[key], value):
                raise SweeperError(
                    f"{option}: study {info.name!r} fixes {key} = {study.fixed[key]!r} "
                    f"(asked for {value!r})"
                )
        else:
            raise SweeperError(
                f"{option}: {key!r} is not a parameter of study {info.name!r}; choose one "
                f"of: {', '.join(sorted([*params, *study.fixed]))}"
            )
    if not (frame["state"] == "completed").any():
        raise SweeperError(f"{option}: no completed trial of {info.name!r} matches {spec}")
    return frame


@command()
def confirm(
    name: NameArg,
    top: Annotated[int, typer.Option(help="How many of the best configurations.", min=1)] = 3,
    seeds: Annotated[int, typer.Option(help="Fresh seeds per configuration.", min=1)] = 5,
    db: DbOpt = None,
    workers: WorkersOpt = None,
    data_dir: DataDirOpt = None,
    fmt: FormatOpt = "rich",
) -> None:
    """Re-run the study's top configurations on fresh seeds (never used in the study) in a
    confirmation study NAME-confirm, and print the fresh-seed estimates next to the
    selection-time ones (mean [95% CI]). Running it again reuses the same fresh seeds.

    Example: sweeper confirm obesity --top 3 --seeds 5
    """
    from sweeper.launch.options import RunOptions
    from sweeper.launch.run import execute, start, summarize
    from sweeper.report.best import observed_axes
    from sweeper.report.confirm import (
        confirmation_studies,
        confirmation_table,
        fresh_seeds,
    )
    from sweeper.report.intervals import best_with_intervals

    with open_store(db) as store:
        info = store.study(name)
        study = info.study
        names = param_names(study)
        frame = metric_frame(store, info)
        axes = observed_axes(frame, names) if study.searched else study.axes
        ranked = best_with_intervals(
            frame, axes=axes, metric=study.metric, direction=study.direction, top=top
        )
    if not len(ranked):
        raise SweeperError(f"study {name!r} has no completed trials to confirm")
    fresh = fresh_seeds([*study.seeds, *frame["seed"].tolist()], seeds)
    # Records keep each column's own type: an int axis must not come back as a float.
    configs = [dict(c) for c in ranked[names].to_dict("records")]
    plans = confirmation_studies(study, configs, fresh, top)
    options = RunOptions(workers=workers, data_dir=data_dir)
    started = [start(plan, db, options) for plan in plans]
    # A machine format's stdout is the table alone; the progress line goes to stderr then.
    (err if fmt in ("csv", "json") else out).print(
        f"{plans[0].name}: {len(configs)} configurations x {len(fresh)} fresh seeds "
        f"({fresh[0]}..{fresh[-1]}); {started[-1].todo} to run"
    )
    execute(started[-1])
    summary = summarize(started[-1].url, plans[0].name)
    if summary.failed:
        err.print(f"{summary.failed} failed; first error: {summary.first_error}")
    with open_store(started[-1].url) as store:
        fresh_frame = metric_frame(store, store.study(plans[0].name))
    table = confirmation_table(ranked, fresh_frame, names, study.metric, study.direction)
    if fmt in ("csv", "json"):
        print_frame(table, fmt)
        return
    from sweeper.render import interval_cell

    shown = table[["rank", *names]].copy()
    shown["selected"] = [
        interval_cell(m, lo, hi) + f" n={n}"
        for m, lo, hi, n in table[
            ["selected_mean", "selected_ci_low", "selected_ci_high", "selected_n"]
        ].itertuples(index=False)
    ]
    shown["fresh"] = [
        interval_cell(m, lo, hi) + f" n={n}"
        for m, lo, hi, n in table[
            ["fresh_mean", "fresh_ci_low", "fresh_ci_high", "fresh_n"]
        ].itertuples(index=False)
    ]
    shown["shift"] = [f"{v:+.4g}" if math.isfinite(v) else "—" for v in table["shift"]]
    shown["fresh rank"] = table["fresh_rank"].astype(str)
    title = (
        f"{name} -> {plans[0].name}: {study.metric} ({study.direction}), mean [95% CI] of the "
        f"top {len(configs)} as selected and on fresh seeds {fresh[0]}..{fresh[-1]}; shift = "
        "fresh - selected (the winner's curse shows as a shift against the direction)"
    )
    _print(shown, fmt, title)


@command()
def seeds(
    name: NameArg,
    delta: Annotated[float, typer.Option(help="The difference to detect, in metric units.")],
    power: Annotated[float, typer.Option(help="Wanted power.", min=0.0, max=1.0)] = 0.8,
    alpha: Annotated[float, typer.Option(help="Two-sided significance level.")] = 0.05,
    by: Annotated[
        str | None,
        typer.Option(help="Also the paired design along this axis (sd of seed differences)."),
    ] = None,
    db: DbOpt = None,
    fmt: FormatOpt = "rich",
) -> None:
    """How many seeds per configuration a t test needs to detect a difference --delta with
    the given power, from the study's observed seed variance: unpaired (pooled sd within
    configurations) and, with --by AXIS, paired by seed (the sd over seeds of the differences
    of each value against the axis's first value, within each configuration of the other
    axes, pooled).

    Example: sweeper seeds obesity --delta 0.01 --by sam_rho
    """
    import pandas as pd

    from sweeper.compare import compare_by, observed_sd
    from sweeper.report import check_name
    from sweeper.stats import seeds_needed, t_test_power

    with open_store(db) as store:
        info = store.study(name)
        frame = metric_frame(store, info)
    study = info.study
    params = param_names(study)
    current = len(study.seeds)
    designs: list[tuple[str, float, bool]] = [
        (
            "unpaired (pooled sd within configurations)",
            observed_sd(frame, params, study.metric),
            False,
        )
    ]
    if by is not None:
        check_name("axis", by, params)
        # Within every configuration of the other axes, so that the spread is the seeds'
        # alone, not how the axis's effect varies across the grid.
        rows = compare_by(
            frame,
            axis=by,
            baseline=(study.axes.get(by) or frame[by].tolist())[0],
            params=params,
            metric=study.metric,
            direction=study.direction,
            within=[p for p in params if p != by],
        )
        usable = [r for r in rows if r.n_pairs >= 2 and math.isfinite(r.sd_diff)]
        dof = sum(r.n_pairs - 1 for r in usable)
        var = sum((r.n_pairs - 1) * r.sd_diff**2 for r in usable)
        sd_pair = math.sqrt(var / dof) if dof else math.nan
        designs.append(
            (
                f"paired by seed along {by} (pooled sd of differences within configurations)",
                sd_pair,
                True,
            )
        )
    records = []
    for design, sd, paired in designs:
        if not math.isfinite(sd):
            raise SweeperError(
                f"study {name!r}: no seed variance to go on ({design}); it needs a "
                "configuration with two completed seeds"
            )
        if delta == 0 or not math.isfinite(delta):
            raise SweeperError(f"--delta {delta}: delta must be finite and non-zero (got {delta})")
        if sd < 1e-12 * abs(delta):
            # No spread at all (e.g. the seed's effect cancels in pairs): two seeds detect it.
            needed, power_now = 2, 1.0 if current >= 2 else 0.0
        else:
            try:
                needed = seeds_needed(sd, delta, power=power, alpha=alpha, paired=paired)
            except ValueError as exc:
                raise SweeperError(f"--delta {delta}: {exc}") from None
            power_now = t_test_power(current, delta / sd, alpha=alpha, paired=paired)
        records.append(
            {
                "design": design,
                "sd": sd,
                "delta": delta,
                "seeds_needed": needed,
                "seeds_now": current,
                "power_now": power_now,
            }
        )
    frame_out = pd.DataFrame(records)
    title = (
        f"{name}: seeds per configuration for a two-sided t test to detect |diff| = {delta} "
        f"in {study.metric} with power {power} at alpha {alpha}"
    )
    _print(frame_out, fmt, title)


def parse_value(raw: str) -> Any:
    """A command-line value: a JSON number or boolean, else the text itself."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    return value if isinstance(value, int | float | bool) else raw


def parse_config(text: str, option: str) -> dict[str, Any]:
    """``k=v,k=v`` as a dict of parsed values (empty text: no constraint).

    Raises:
        SweeperError: a part without ``=``.
    """
    spec: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = part.partition("=")
        if not sep or not key.strip():
            raise SweeperError(f"{option} {text!r}: write k=v,k=v, e.g. optimizer=adam,lr=0.001")
        spec[key.strip()] = parse_value(raw.strip())
    return spec


def _print(frame: pd.DataFrame, fmt: str, title: str) -> None:
    """A frame under a title (rich, Markdown, LaTeX); CSV and JSON without it."""
    from sweeper import render

    if fmt == "rich":
        out.print(render.rich_frame(frame, title=title))
    else:
        sys.stdout.write(render.render_frame(frame, fmt, title=title))


def _spec_text(spec: dict[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in spec.items()) + ")" if spec else "(all)"


__all__ = ["compare", "confirm", "parse_config", "parse_value", "seeds"]
