"""The per-domain table (`sweeper table NAME --layout domains`): numbers, then every format."""

from __future__ import annotations

import csv
import io
import json
import math

import pandas as pd
import pytest

from sweeper.render import render_domain_tables
from sweeper.report import domain_tables

AXES = {"method": ["baseline", "swa"], "target": ["CPSC", "Ningbo", "PTB-XL"]}
# score = base[method] + offset[target] + 0.01 * seed; swa has no PTB-XL trial at seed 1.
BASE = {"baseline": 0.40, "swa": 0.50}
OFFSET = {"CPSC": -0.2, "Ningbo": 0.0, "PTB-XL": 0.1}


def frame() -> pd.DataFrame:
    rows = []
    for method in AXES["method"]:
        for target in AXES["target"]:
            for seed in (0, 1):
                if method == "swa" and target == "PTB-XL" and seed == 1:
                    continue
                value = BASE[method] + OFFSET[target] + 0.01 * seed
                rows.append(
                    {"state": "completed", "seed": seed, "method": method, "target": target,
                     "macro_f1": value}
                )  # fmt: skip
    rows.append({"state": "failed", "seed": 0, "method": "swa", "target": "CPSC", "macro_f1": None})
    return pd.DataFrame(rows)


def tables() -> list:  # type: ignore[type-arg]
    return domain_tables(frame(), axes=AXES, seeds=[0, 1], metric="macro_f1", direction="maximize")


def test_means_sems_average_and_best() -> None:
    [table] = tables()
    assert table.rows == ["baseline", "swa"] and table.domains == ["CPSC", "Ningbo", "PTB-XL"]
    assert table.means[0] == pytest.approx([0.205, 0.405, 0.505])
    assert table.means[1] == pytest.approx([0.305, 0.505, 0.6])
    assert table.counts == [[2, 2, 2], [2, 2, 1]] and table.expected == 2
    sem = (0.01 / math.sqrt(2)) / math.sqrt(2)  # two seeds 0.01 apart: std 0.00707, sem 0.005
    assert table.sems[0] == pytest.approx([sem] * 3)
    assert table.sems[1][2] is None  # one trial: no sem
    assert table.avg[0] == pytest.approx((0.205 + 0.405 + 0.505) / 3)
    assert table.avg_sem[0] == pytest.approx(math.sqrt(3 * sem**2) / 3)
    assert table.avg[1] == pytest.approx((0.305 + 0.505 + 0.6) / 3) and table.avg_sem[1] is None
    assert table.best == [1, 1, 1, 1]
    worst = domain_tables(
        frame(), axes=AXES, seeds=[0, 1], metric="macro_f1", direction="minimize"
    )[0]
    assert worst.best == [0, 0, 0, 0]


def test_average_needs_every_domain() -> None:
    df = frame()
    df = df[~((df["method"] == "baseline") & (df["target"] == "CPSC"))]
    [table] = domain_tables(df, axes=AXES, seeds=[0, 1], metric="macro_f1", direction="maximize")
    assert table.means[0][0] is None and table.avg[0] is None and table.avg_sem[0] is None
    assert table.best[-1] == 1


def test_markdown_is_the_tutorials_layout() -> None:
    text = render_domain_tables(tables(), "markdown", title="t: macro_f1")
    assert text == (
        "t: macro_f1\n"
        "\n"
        "| method \\ target |      CPSC |    Ningbo |          PTB-XL |       Avg |\n"
        "|-----------------|----------:|----------:|----------------:|----------:|\n"
        "| baseline        |     0.205 |     0.405 |           0.505 |     0.372 |\n"
        "| swa             | **0.305** | **0.505** | **0.600** (1/2) | **0.470** |\n"
    )
    with_sem = render_domain_tables(tables(), "markdown", title="t", sem=True)
    assert " 0.205 ± 0.005 |" in with_sem and " **0.600** (1/2) |" in with_sem
    assert " 0.372 ± 0.003 |" in with_sem  # sqrt(3 * 0.005^2) / 3


def test_csv_json_latex_and_rich() -> None:
    rows = list(csv.DictReader(io.StringIO(render_domain_tables(tables(), "csv", title="t"))))
    assert len(rows) == 2 * 4
    assert list(rows[0]) == ["method", "target", "mean", "sem", "n", "expected", "best"]
    avg = [r for r in rows if r["target"] == "Avg"]
    assert [r["method"] for r in avg] == ["baseline", "swa"]
    assert float(avg[0]["mean"]) == pytest.approx((0.205 + 0.405 + 0.505) / 3)
    assert avg[0]["n"] == "6" and avg[0]["expected"] == "6" and avg[1]["sem"] == ""
    assert [r["best"] for r in rows if r["method"] == "swa"] == ["true"] * 4
    [obj] = json.loads(render_domain_tables(tables(), "json", title="t"))
    assert obj["cols"] == ["CPSC", "Ningbo", "PTB-XL", "Avg"]
    assert obj["means"][1][2] == pytest.approx(0.6) and obj["sems"][1][2] is None
    assert obj["best"] == [1, 1, 1, 1] and obj["direction"] == "maximize"
    latex = render_domain_tables(tables(), "latex", title="t: synthetic", sem=True)
    assert "\\textbf{0.305 $\\pm$ 0.005}" in latex and "PTB-XL & Avg" in latex
    rich = render_domain_tables(tables(), "rich", title="t: synthetic")
    assert "Avg" in rich and "0.305 *" in rich and "t: synthetic" in rich
