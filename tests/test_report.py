"""Report numbers on a hand-built trials frame, and golden texts of every render format.

Set ``SWEEPER_UPDATE_GOLDEN=1`` to rewrite the files under ``tests/golden/`` from the current
output (then read the diff before committing it).
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from rich.console import Console
from rich.text import Text

from sweeper.errors import UnknownNameError
from sweeper.render import (
    format_value,
    grid_title,
    render_frame,
    render_tables,
    rich_tables,
)
from sweeper.report import GridTable, axis_label, best_configs, grid_tables

GOLDEN = Path(__file__).parent / "golden"

AXES: dict[str, list[Any]] = {
    "optimizer": ["sgd", "adam"],
    "lr": [1e-3, 1e-2],
    "weight_decay": [0.0, 1e-4],
    "sam_rho": [0.0, 0.05],
}
SEEDS = [0, 1, 2]

# test_mse = sum of one term per axis value + 0.02 * seed, so a complete cell has
# mean = base + 0.02, std = 0.02 and sem = 0.02 / sqrt(3). Every mean is a multiple of 0.01, far
# from a rounding boundary of the three-decimal golden texts.
TERMS: dict[str, dict[Any, float]] = {
    "optimizer": {"sgd": 1.0, "adam": 0.5},
    "lr": {1e-3: 0.0, 1e-2: 0.25},
    "weight_decay": {0.0: 0.12, 1e-4: 0.0},
    "sam_rho": {0.0: 0.06, 0.05: 0.0},
}
# (optimizer, lr, weight_decay, sam_rho, seed) -> state, for the trials that did not complete.
NOT_COMPLETED = {
    ("sgd", 1e-2, 1e-4, 0.05, 2): "failed",
    ("adam", 1e-3, 0.0, 0.0, 1): "queued",
    ("adam", 1e-3, 0.0, 0.0, 2): "running",
    ("adam", 1e-2, 1e-4, 0.05, 0): "failed",
    ("adam", 1e-2, 1e-4, 0.05, 1): "failed",
    ("adam", 1e-2, 1e-4, 0.05, 2): "failed",
}
SEM3 = 0.02 / math.sqrt(3)


def base(optimizer: str, lr: float, weight_decay: float, sam_rho: float) -> float:
    return (
        TERMS["optimizer"][optimizer]
        + TERMS["lr"][lr]
        + TERMS["weight_decay"][weight_decay]
        + TERMS["sam_rho"][sam_rho]
    )


def make_trials() -> pd.DataFrame:
    """48 trials in the store's layout; axis values round-trip through JSON like the store's."""
    rows: list[dict[str, Any]] = []
    for optimizer, lr, wd, rho, seed in itertools.product(*AXES.values(), SEEDS):
        params = json.loads(json.dumps({"lr": lr, "wd": wd, "rho": rho}))
        state = NOT_COMPLETED.get((optimizer, lr, wd, rho, seed), "completed")
        done = state == "completed"
        mse = base(optimizer, lr, wd, rho) + 0.02 * seed if done else math.nan
        rows.append(
            {
                "id": len(rows) + 1,
                "state": state,
                "seed": seed,
                "attempts": 0 if state == "queued" else 1,
                "host": None if state == "queued" else "node1",
                "duration": 10.0 + seed if done else math.nan,
                "error": "TrialDiverged: loss is nan" if state == "failed" else None,
                "optimizer": optimizer,
                "lr": params["lr"],
                "weight_decay": params["wd"],
                "sam_rho": params["rho"],
                "epochs": 100,
                "test_mse": mse,
                "train_mse": mse / 2,
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture
def trials() -> pd.DataFrame:
    return make_trials()


def tables_of(df: pd.DataFrame, **kwargs: Any) -> list[GridTable]:
    options: dict[str, Any] = {"metric": "test_mse", "direction": "minimize", **kwargs}
    return grid_tables(df, axes=AXES, seeds=SEEDS, **options)


def by_group(tables: list[GridTable], **group: Any) -> GridTable:
    (table,) = [t for t in tables if t.group == group]
    return table


# --- grid_tables ---------------------------------------------------------------------------


def test_one_table_per_group_in_axis_order(trials: pd.DataFrame) -> None:
    tables = tables_of(trials)
    assert [t.group for t in tables] == [
        {"optimizer": "sgd", "sam_rho": 0.0},
        {"optimizer": "sgd", "sam_rho": 0.05},
        {"optimizer": "adam", "sam_rho": 0.0},
        {"optimizer": "adam", "sam_rho": 0.05},
    ]
    for table in tables:
        assert (table.row_axis, table.col_axis) == ("lr", "weight_decay")
        assert table.rows == [1e-3, 1e-2]
        assert table.cols == [0.0, 1e-4]
        assert table.expected == 3
        assert table.pooled == ()
        assert (table.metric, table.agg) == ("test_mse", "mean")


def test_complete_cell_mean_sem_count(trials: pd.DataFrame) -> None:
    tables = tables_of(trials)
    sgd = by_group(tables, optimizer="sgd", sam_rho=0.0)
    assert sgd.values[0][0] == pytest.approx(1.0 + 0.12 + 0.06 + 0.02)
    assert sgd.counts == [[3, 3], [3, 3]]
    sem = by_group(tables_of(trials, agg="sem"), optimizer="sgd", sam_rho=0.0)
    assert sem.values[0][0] == pytest.approx(SEM3)
    std = by_group(tables_of(trials, agg="std"), optimizer="sgd", sam_rho=0.0)
    assert std.values[1][1] == pytest.approx(0.02)
    low = by_group(tables_of(trials, agg="min"), optimizer="sgd", sam_rho=0.0)
    high = by_group(tables_of(trials, agg="max"), optimizer="sgd", sam_rho=0.0)
    assert (low.values[1][1], high.values[1][1]) == pytest.approx((1.31, 1.35))


def test_incomplete_cells_count_only_completed_trials(trials: pd.DataFrame) -> None:
    tables = tables_of(trials)
    # seed 2 failed: the mean of seeds 0 and 1
    sgd = by_group(tables, optimizer="sgd", sam_rho=0.05)
    assert sgd.counts == [[3, 3], [3, 2]]
    assert sgd.values[1][1] == pytest.approx(1.25 + 0.01)
    # seed 1 queued, seed 2 running: seed 0 alone, whose std and sem are undefined
    adam = by_group(tables, optimizer="adam", sam_rho=0.0)
    assert adam.counts == [[1, 3], [3, 3]]
    assert adam.values[0][0] == pytest.approx(0.68)
    sem = by_group(tables_of(trials, agg="sem"), optimizer="adam", sam_rho=0.0)
    assert sem.values[0][0] is None
    # every seed failed: an empty cell
    empty = by_group(tables, optimizer="adam", sam_rho=0.05)
    assert empty.counts == [[3, 3], [3, 0]]
    assert empty.values[1][1] is None
    count = by_group(tables_of(trials, agg="count"), optimizer="adam", sam_rho=0.05)
    assert count.values == [[3.0, 3.0], [3.0, 0.0]]


def test_best_cell_by_direction(trials: pd.DataFrame) -> None:
    assert [t.best for t in tables_of(trials)] == [(0, 1)] * 4
    # the empty cell (1, 1) of the last table is never best
    assert [t.best for t in tables_of(trials, direction="maximize")] == [(1, 0)] * 4


@pytest.mark.parametrize("agg", ["std", "sem", "count", "max"])
def test_best_cell_is_judged_on_the_mean_whatever_is_shown(trials: pd.DataFrame, agg: str) -> None:
    assert [t.best for t in tables_of(trials, agg=agg)] == [(0, 1)] * 4


def test_best_cell_tie_goes_to_more_trials() -> None:
    df = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "state": ["completed"] * 4,
            "seed": [0, 0, 1, 2],
            "lr": [0.1, 0.2, 0.2, 0.2],
            "loss": [1.0, 0.5, 1.0, 1.5],
        }
    )
    (table,) = grid_tables(
        df,
        axes={"lr": [0.1, 0.2]},
        seeds=[0, 1, 2],
        metric="loss",
        direction="minimize",
        rows="lr",
        cols=None,
    )
    assert table.values == [[1.0], [1.0]]
    assert table.best == (1, 0)


def test_grouping_on_fewer_axes_pools_the_rest(trials: pd.DataFrame) -> None:
    tables = tables_of(trials, groups=["optimizer"])
    assert [t.group for t in tables] == [{"optimizer": "sgd"}, {"optimizer": "adam"}]
    adam = tables[1]
    assert adam.expected == 6
    assert adam.pooled == ("sam_rho",)
    # sam_rho 0.0 (seed 0 only) and sam_rho 0.05 (all seeds) pooled
    assert adam.counts[0][0] == 4
    assert adam.values[0][0] == pytest.approx((0.68 + 3 * 0.62 + 0.06) / 4)
    assert adam.counts[1][1] == 3


def test_other_rows_cols_and_groups(trials: pd.DataFrame) -> None:
    tables = tables_of(trials, rows="sam_rho", cols="optimizer", groups=["lr"])
    assert [t.group for t in tables] == [{"lr": 1e-3}, {"lr": 1e-2}]
    assert tables[0].rows == [0.0, 0.05]
    assert tables[0].cols == ["sgd", "adam"]
    assert tables[0].expected == 6


def test_single_axis_study_has_one_metric_column() -> None:
    df = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "state": ["completed", "completed", "failed"],
            "seed": [0, 1, 0],
            "lr": [0.1, 0.1, 0.2],
            "loss": [1.0, 2.0, math.nan],
        }
    )
    (table,) = grid_tables(
        df,
        axes={"lr": [0.1, 0.2]},
        seeds=[0, 1],
        metric="loss",
        direction="minimize",
        rows="lr",
        cols=None,
    )
    assert (table.group, table.col_axis, table.cols) == ({}, None, ["loss"])
    assert table.values == [[1.5], [None]]
    assert table.counts == [[2], [0]]
    assert table.best == (0, 0)


def test_axis_values_match_exactly_or_within_tolerance(trials: pd.DataFrame) -> None:
    extra = trials.iloc[[0]].assign(id=100, lr=1e-3 * (1 + 1e-15), seed=5)  # 0.001000000000000001
    outside = trials.iloc[[0]].assign(id=101, lr=0.5, seed=6)  # not an axis value: left out
    assert extra["lr"].iloc[0] != 1e-3
    df = pd.concat([trials, extra, outside], ignore_index=True)
    sgd = by_group(tables_of(df), optimizer="sgd", sam_rho=0.0)
    assert sgd.counts[0] == [4, 3]
    assert sgd.counts[1] == [3, 3]


def test_no_trials_gives_empty_cells() -> None:
    tables = tables_of(pd.DataFrame(columns=["id", "state", "seed"]))
    assert len(tables) == 4
    assert all(t.best is None and t.counts == [[0, 0], [0, 0]] for t in tables)
    assert tables[0].values == [[None, None], [None, None]]


def test_unknown_aggregate(trials: pd.DataFrame) -> None:
    with pytest.raises(UnknownNameError) as err:
        tables_of(trials, agg="median")
    assert str(err.value) == (
        "unknown aggregate 'median'; choose one of: count, max, mean, min, sem, std"
    )


@pytest.mark.parametrize(
    "kwargs",
    [{"rows": "momentum"}, {"cols": "momentum"}, {"groups": ["optimizer", "momentum"]}],
)
def test_unknown_axis(trials: pd.DataFrame, kwargs: dict[str, Any]) -> None:
    with pytest.raises(UnknownNameError) as err:
        tables_of(trials, **kwargs)
    assert str(err.value) == (
        "unknown axis 'momentum'; choose one of: lr, optimizer, sam_rho, weight_decay"
    )


@pytest.mark.parametrize(
    "kwargs",
    [{"rows": "lr", "cols": "lr"}, {"groups": ["optimizer", "lr"]}],
)
def test_axis_used_twice(trials: pd.DataFrame, kwargs: dict[str, Any]) -> None:
    with pytest.raises(UnknownNameError) as err:
        tables_of(trials, **kwargs)
    assert str(err.value) == "axis 'lr' is used more than once in rows, cols, groups"


def test_unknown_direction_and_metric(trials: pd.DataFrame) -> None:
    with pytest.raises(UnknownNameError) as err:
        tables_of(trials, direction="min")
    assert str(err.value) == "unknown direction 'min'; choose one of: maximize, minimize"
    with pytest.raises(UnknownNameError) as err:
        tables_of(trials, metric="test_acc")
    assert str(err.value) == (
        "unknown metric 'test_acc'; choose one of: epochs, test_mse, train_mse"
    )


# --- best_configs --------------------------------------------------------


def test_best_configs_ranking(trials: pd.DataFrame) -> None:
    best = best_configs(trials, axes=AXES, metric="test_mse", direction="minimize")
    assert list(best.columns) == [*AXES, "mean", "sem", "std", "n"]
    assert len(best) == 15  # 16 configurations, one without a completed trial
    assert list(best.index) == list(range(15))
    top = best.iloc[0]
    assert (top["optimizer"], top["lr"], top["weight_decay"], top["sam_rho"]) == (
        "adam",
        1e-3,
        1e-4,
        0.05,
    )
    assert (top["mean"], top["sem"], top["std"], top["n"]) == pytest.approx((0.52, SEM3, 0.02, 3))
    assert list(best["mean"]) == sorted(best["mean"])
    worst = best.iloc[-1]
    assert (worst["optimizer"], worst["lr"], worst["weight_decay"], worst["sam_rho"]) == (
        "sgd",
        1e-2,
        0.0,
        0.0,
    )
    single = best[best["n"] == 1].iloc[0]
    assert single["mean"] == pytest.approx(0.68)
    assert math.isnan(single["sem"]) and math.isnan(single["std"])


def test_best_configs_maximize_top_and_ties() -> None:
    df = pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            "state": ["completed"] * 5,
            "seed": [0, 0, 1, 0, 1],
            "lr": [0.1, 0.2, 0.2, 0.3, 0.3],
            "acc": [0.9, 0.8, 1.0, 0.5, 0.7],
        }
    )
    best = best_configs(df, axes={"lr": [0.1, 0.2, 0.3]}, metric="acc", direction="maximize")
    # lr 0.1 and 0.2 tie at 0.9: the one with more seeds first
    assert list(best["lr"]) == [0.2, 0.1, 0.3]
    assert list(best["n"]) == [2, 1, 2]
    assert best["sem"].iloc[0] == pytest.approx(math.sqrt(0.02) / math.sqrt(2))
    top = best_configs(df, axes={"lr": [0.1, 0.2, 0.3]}, metric="acc", direction="maximize", top=1)
    assert list(top["lr"]) == [0.2]


def test_best_configs_without_completed_trials(trials: pd.DataFrame) -> None:
    best = best_configs(
        trials[trials["state"] != "completed"], axes=AXES, metric="test_mse", direction="minimize"
    )
    assert list(best.columns) == [*AXES, "mean", "sem", "std", "n"]
    assert len(best) == 0


def test_format_value_and_axis_value() -> None:
    assert format_value(0.51234, "mean", "markdown") == "0.512"
    assert format_value(0.51234, "mean", "csv") == "0.51234"
    assert format_value(0.51234, "mean", "json") == "0.51234"
    assert format_value(2.0, "count", "latex") == "2"
    assert format_value(1.2e-5, "sem", "rich") == "1.2e-05"
    none = {fmt: format_value(None, "mean", fmt) for fmt in ("rich", "markdown", "csv", "latex")}
    assert none == {"rich": "—", "markdown": "—", "csv": "", "latex": "--"}
    assert format_value(None, "mean", "json") == "null"
    assert [axis_label(v) for v in (0.0, 1e-4, 1e-3, 3e-5, "adam", 200)] == [
        "0",
        "0.0001",
        "0.001",
        "3e-05",
        "adam",
        "200",
    ]


def test_unknown_format(trials: pd.DataFrame) -> None:
    with pytest.raises(UnknownNameError) as err:
        render_tables(tables_of(trials), "html", title="t")
    assert str(err.value) == (
        "unknown format 'html'; choose one of: csv, json, latex, markdown, rich"
    )


def test_title() -> None:
    from sweeper.study import Study

    df = make_trials()
    study = Study(
        name="obesity",
        task="obesity",
        kind="grid",
        metric="test_mse",
        direction="minimize",
        description="",
        fixed={},
        axes=AXES,
        seeds=(0, 1, 2),
    )
    assert grid_title(study, tables_of(df), "mean") == (
        "obesity: test_mse (minimize), mean over seeds (a complete cell holds 3 trials)"
    )
    synthetic = Study(**{**study.__dict__, "fixed": {"dataset": "synthetic"}})
    assert grid_title(synthetic, tables_of(df, groups=["optimizer"]), "sem") == (
        "obesity: test_mse (minimize), sem over seeds (a complete cell holds 6 trials)"
        " [SYNTHETIC data, not real ECGs]"
    )


def test_rich_marks_the_best_cell_bold_green(trials: pd.DataFrame) -> None:
    table = rich_tables(tables_of(trials), title="t")[0]
    best_cell = table.columns[2]._cells[0]  # row lr=0.001, column weight_decay=0.0001
    assert isinstance(best_cell, Text)
    assert best_cell.plain == "1.080 *"
    assert best_cell.style == "bold green"


def test_json_round_trips_the_numbers(trials: pd.DataFrame) -> None:
    tables = tables_of(trials)
    parsed = json.loads(render_tables(tables, "json", title="t"))
    assert [p["group"] for p in parsed] == [t.group for t in tables]
    assert [p["values"] for p in parsed] == [t.values for t in tables]
    assert [p["best"] for p in parsed] == [list(t.best or ()) for t in tables]


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("SWEEPER_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


TITLE = "fixture: test_mse, mean over seeds (expected 3 per cell)"


@pytest.mark.parametrize(
    ("fmt", "name"),
    [("markdown", "grid.md"), ("csv", "grid.csv"), ("latex", "grid.tex"), ("json", "grid.json")],
)
def test_golden_grid(trials: pd.DataFrame, fmt: str, name: str) -> None:
    check_golden(name, render_tables(tables_of(trials), fmt, title=TITLE))


def test_golden_grid_rich(trials: pd.DataFrame) -> None:
    console = Console(width=120, record=True, file=io.StringIO(), color_system=None)
    for k, table in enumerate(rich_tables(tables_of(trials), title=TITLE)):
        if k:
            console.print()
        console.print(table)
    text = console.export_text()
    check_golden("grid_rich.txt", text)
    assert render_tables(tables_of(trials), "rich", title=TITLE) == text


@pytest.mark.parametrize(
    ("fmt", "name"),
    [
        ("markdown", "best.md"),
        ("csv", "best.csv"),
        ("latex", "best.tex"),
        ("json", "best.json"),
        ("rich", "best_rich.txt"),
    ],
)
def test_golden_best_configs(trials: pd.DataFrame, fmt: str, name: str) -> None:
    best = best_configs(trials, axes=AXES, metric="test_mse", direction="minimize", top=5)
    check_golden(name, render_frame(best, fmt, title="fixture: best configurations"))


def test_frame_text_is_escaped() -> None:
    df = pd.DataFrame({"sam_rho": [0.05, math.nan], "error": ["a|b_c\n>1", None]})
    assert render_frame(df, "markdown").splitlines() == [
        "| sam_rho | error     |",
        "|--------:|-----------|",
        "|    0.05 | a\\|b_c >1 |",
        "|       — | —         |",
    ]
    latex = render_frame(df, "latex").splitlines()
    assert latex[2] == r"sam\_rho & error \\"
    assert latex[4:6] == [r"0.05 & a\textbar{}b\_c \textgreater{}1 \\", r"-- & -- \\"]
    assert render_frame(df, "csv") == 'sam_rho,error\n0.05,"a|b_c\n>1"\n,\n'
