"""Paired comparisons (`sweeper compare`) and confirmation tables in every format.

Human formats (rich, Markdown, LaTeX) round: differences and intervals to four decimals
with a sign, p-values to three, the probability of improvement to two decimals; a
missing value is a dash. CSV and JSON keep every digit (JSON: NaN as null).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from rich.table import Table

from sweeper.compare import Comparison, ConfigComparison
from sweeper.render.frames import render_frame, rich_frame
from sweeper.render.text import check_format, json_scalar
from sweeper.report import axis_label


def compare_title(study_name: str, metric: str, direction: str, rows: Sequence[Comparison]) -> str:
    """The title of `sweeper compare NAME --by AXIS`: what is paired, what the columns mean."""
    first = rows[0] if rows else None
    axis = first.axis if first is not None else "?"
    base = axis_label(first.baseline) if first is not None else "?"
    within = f" within each {', '.join(first.within)}" if first is not None and first.within else ""
    better = "negative" if direction == "minimize" else "positive"
    return (
        f"{study_name}: {metric} ({direction}), each {axis} against {axis}={base}, paired on the "
        f"seed and every other axis{within}. diff = mean of (value - baseline) over the pairs "
        f"({better} is better), 95% CI (t below 10 pairs, else bootstrap of pairs, seed 0); "
        "p: two-sided Wilcoxon signed-rank; p_holm: Holm-adjusted over the values compared"
        f"{' in each group' if within else ''}; P(better): share of pairs where the value "
        "beats the baseline (ties count half)"
    )


def render_comparisons(rows: Sequence[Comparison], fmt: str, *, title: str) -> str:
    """`compare_by` results as text: JSON a list of `Comparison.to_dict` objects; CSV one
    line per comparison with every digit; the human formats a table under `title`.

    Raises:
        UnknownNameError: an unknown format.
    """
    check_format(fmt)
    if fmt == "json":
        return _json([r.to_dict() for r in rows])
    if fmt == "csv":
        frame = pd.DataFrame(
            [{**r.within, **r.to_dict(), "n_unpaired": r.n_unpaired} for r in rows]
        ).drop(columns="within", errors="ignore")
        return render_frame(frame, "csv")
    return render_frame(comparison_frame(rows, fmt), fmt, title=title)


def rich_comparisons(rows: Sequence[Comparison], *, title: str) -> Table:
    """`compare_by` results as a rich table titled `title`."""
    return rich_frame(comparison_frame(rows, "rich"), title=title)


def comparison_frame(rows: Sequence[Comparison], fmt: str) -> pd.DataFrame:
    """The human table: within axes, value, pairs, diff, 95% CI, p, p_holm, P(better)."""
    records = []
    for r in rows:
        record: dict[str, Any] = {k: axis_label(v) for k, v in r.within.items()}
        record[r.axis] = axis_label(r.value)
        record.update(_stat_cells(r.n_pairs, r.mean_diff, r.ci_low, r.ci_high))
        record["p"] = _p(r.p_value)
        record["p_holm"] = _p(r.p_holm)
        record["P(better)"] = _share(r.prob_improvement)
        if r.n_unpaired:
            record["unpaired"] = str(r.n_unpaired)
        records.append(record)
    frame = pd.DataFrame(records)
    if "unpaired" in frame.columns:
        frame["unpaired"] = frame["unpaired"].fillna("0")
    return frame


def render_config_comparison(
    result: ConfigComparison, fmt: str, *, title: str, labels: Mapping[str, Any]
) -> str:
    """`compare_configs`'s result: JSON one object (`ConfigComparison.to_dict` plus
    `labels`, e.g. ``a``, ``b``, ``study_a``, ``study_b``); the other formats one row."""
    check_format(fmt)
    if fmt == "json":
        return _json({**labels, **result.to_dict()})
    if fmt == "csv":
        body = {**labels, **result.to_dict()}
        body["pair_on"] = " ".join(result.pair_on)
        return render_frame(pd.DataFrame([body]), "csv")
    return render_frame(config_frame(result, fmt), fmt, title=title)


def config_frame(result: ConfigComparison, fmt: str) -> pd.DataFrame:
    """The human one-row table of a `ConfigComparison`."""
    record: dict[str, Any] = {"paired on": ", ".join(result.pair_on)}
    record.update(_stat_cells(result.n_pairs, result.mean_diff, result.ci_low, result.ci_high))
    record["p"] = _p(result.p_value)
    record["P(better)"] = _share(result.prob_improvement)
    record["unpaired"] = str(result.n_unpaired)
    return pd.DataFrame([record])


def interval_cell(mean: float, low: float, high: float) -> str:
    """``0.7894 [0.7320, 0.8468]``: a mean with its interval, four decimals; dashes if NaN."""
    if not math.isfinite(mean):
        return "—"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{mean:.4f} [—]"
    return f"{mean:.4f} [{low:.4f}, {high:.4f}]"


def _stat_cells(n: int, mean: float, low: float, high: float) -> dict[str, Any]:
    ci = "—" if not (math.isfinite(low) and math.isfinite(high)) else f"[{low:+.4f}, {high:+.4f}]"
    return {"pairs": n, "diff": _signed(mean), "95% CI": ci}


def _signed(value: float) -> str:
    return f"{value:+.4f}" if math.isfinite(value) else "—"


def _p(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else "—"


def _share(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "—"


def _json(body: Any) -> str:
    if isinstance(body, list):
        clean: Any = [{k: _clean(v) for k, v in item.items()} for item in body]
    else:
        clean = {k: _clean(v) for k, v in body.items()}
    return json.dumps(clean, indent=2, allow_nan=False) + "\n"


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: json_scalar(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_scalar(v) for v in value]
    return json_scalar(value)
