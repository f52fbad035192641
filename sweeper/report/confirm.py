"""The winner's curse, measured: re-run a study's top configurations on fresh seeds.

Choosing the best of many configurations by their seed means picks, among near-equals, the
one whose seeds happened to be lucky; its mean is biased towards the good side. Fresh seeds,
never used in the selection, give an unbiased estimate of the chosen configurations. This
module plans the confirmation study and puts both estimates side by side; `sweeper.launch`
runs it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from sweeper.report.intervals import LEVEL
from sweeper.stats import interval
from sweeper.study import Study

#: the suffix of a confirmation study's name: ``obesity`` -> ``obesity-confirm``.
CONFIRM_SUFFIX = "-confirm"


def confirmation_name(name: str) -> str:
    """The name of the confirmation study of study `name`."""
    return f"{name}{CONFIRM_SUFFIX}"


def fresh_seeds(used: Iterable[int], n: int) -> tuple[int, ...]:
    """`n` seeds after the largest of `used` (every seed the study has ever held), so none of
    them took part in the selection; the same study always gives the same fresh seeds, so
    confirming twice runs nothing new.

    Raises:
        ValueError: `n` is below 1.
    """
    if n < 1:
        raise ValueError(f"the number of fresh seeds must be >= 1 (got {n})")
    start = max((int(s) for s in used), default=-1) + 1
    return tuple(range(start, start + n))


def confirmation_studies(
    study: Study, configs: Sequence[dict[str, Any]], seeds: Sequence[int], top: int
) -> list[Study]:
    """One single-configuration study per configuration, all with the confirmation study's
    name: started one after another into one store, they enqueue exactly these
    configurations with the fresh seeds (a grid of their values would run more).

    The link to the source study is in the name (`confirmation_name`) and the description,
    e.g. ``confirmation of study 'obesity': its top 3 configurations on fresh seeds 3..7``.
    """
    label = f"{seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    description = (
        f"confirmation of study {study.name!r}: its top {top} configurations on fresh seeds {label}"
    )
    return [
        replace(
            study,
            name=confirmation_name(study.name),
            kind="grid",
            description=description,
            axes={k: [v] for k, v in config.items()},
            seeds=tuple(seeds),
            search={},
            budget=None,
            pruner=None,
            source=None,
        )
        for config in configs
    ]


def confirmation_table(
    ranked: pd.DataFrame, fresh: pd.DataFrame, names: Sequence[str], metric: str, direction: str
) -> pd.DataFrame:
    """The selection-time and fresh-seed estimates of each ranked configuration.

    Args:
        ranked: the top configurations as `best_with_intervals` gives them (axes, ``mean``,
            ``n``, ``ci_low``, ``ci_high``), best first.
        fresh: the confirmation study's trials (with the `metric` column).
        names: the configuration's parameters.

    Returns:
        One row per configuration: ``rank``, the parameters, ``selected_mean``,
        ``selected_ci_low``, ``selected_ci_high``, ``selected_n``, ``fresh_mean``,
        ``fresh_ci_low``, ``fresh_ci_high``, ``fresh_n`` (`sweeper.stats.interval` of the fresh
        values; NaN without), ``shift`` (fresh minus selected mean) and ``fresh_rank`` (the
        rank by fresh mean; 0 without fresh values).
    """
    done = fresh[fresh["state"] == "completed"] if "state" in fresh.columns else fresh
    rows = []
    for k, row in enumerate(ranked.itertuples(index=False), start=1):
        values = dict(zip(ranked.columns, row, strict=True))
        mask = np.ones(len(done), dtype=bool)
        for name in names:
            mask &= np.array([same_value(v, values[name]) for v in done[name]], dtype=bool)
        ci = interval(done.loc[mask, metric].to_numpy(dtype=float), LEVEL)
        rows.append(
            {
                "rank": k,
                **{n: values[n] for n in names},
                "selected_mean": float(values["mean"]),
                "selected_ci_low": float(values["ci_low"]),
                "selected_ci_high": float(values["ci_high"]),
                "selected_n": int(values["n"]),
                "fresh_mean": ci.mean,
                "fresh_ci_low": ci.low,
                "fresh_ci_high": ci.high,
                "fresh_n": ci.n,
                "shift": ci.mean - float(values["mean"]),
            }
        )
    out = pd.DataFrame(rows)
    if len(out):
        sign = 1.0 if direction == "minimize" else -1.0
        known = out["fresh_mean"].notna()
        order = (sign * out.loc[known, "fresh_mean"]).rank(method="min").astype(int)
        out["fresh_rank"] = 0
        out.loc[known, "fresh_rank"] = order
    return out


def same_value(a: Any, b: Any) -> bool:
    """Equal values; numbers (not booleans) within a relative 1e-9, as the tables match them."""
    numbers = (int, float, np.integer, np.floating)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool | np.bool_):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return bool(a == b)
