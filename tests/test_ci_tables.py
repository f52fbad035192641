"""Intervals in `sweeper best` and `sweeper table` (--ci, --sem, --select): equal to scipy's,
marks only where intervals overlap the best one's, and clear handling of odd cells."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.render import render_domain_tables, render_tables
from sweeper.report import domain_tables, grid_tables

SHIPPED = Path(__file__).resolve().parents[1] / "results.db"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    if not SHIPPED.exists():
        pytest.skip("no shipped results.db")
    path = tmp_path_factory.mktemp("shipped") / "results.db"
    src, dst = sqlite3.connect(SHIPPED), sqlite3.connect(path)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    return str(path)


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def completed(db: str, study: str) -> pd.DataFrame:
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT t.params, t.seed, t.value, t.metrics FROM trials t JOIN studies s "
            "ON s.id = t.study_id WHERE s.name = ? AND t.state = 'completed'",
            (study,),
        ).fetchall()
    finally:
        con.close()
    return pd.DataFrame(
        [{**json.loads(p), **json.loads(m or "{}"), "seed": s, "y": v} for p, s, v, m in rows]
    )


def t_interval(x: np.ndarray) -> tuple[float, float]:
    low, high = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    return float(low), float(high)


def test_best_json_always_carries_intervals_equal_to_scipy(db: str) -> None:
    result = cli("best", "obesity", "--top", "40", "--format", "json", "--db", db)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    frame = completed(db, "obesity")
    for row in rows:
        assert {"mean", "sd", "sem", "n", "ci_low", "ci_high"} <= set(row)
        cell = frame[(frame["optimizer"] == row["optimizer"]) & np.isclose(frame["lr"], row["lr"])
                     & np.isclose(frame["weight_decay"], row["weight_decay"])
                     & np.isclose(frame["sam_rho"], row["sam_rho"])]["y"].to_numpy()  # fmt: skip
        low, high = t_interval(cell)
        assert row["n"] == len(cell) == 3
        assert row["sd"] == pytest.approx(np.std(cell, ddof=1), abs=1e-12)
        assert row["ci_low"] == pytest.approx(low, abs=1e-9)
        assert row["ci_high"] == pytest.approx(high, abs=1e-9)
        overlap = row["ci_low"] <= rows[0]["ci_high"] and rows[0]["ci_low"] <= row["ci_high"]
        assert row["tied"] == (overlap and row is not rows[0])


def test_best_ci_text_and_default_unchanged(db: str) -> None:
    plain = cli("best", "obesity", "--top", "2", "--format", "csv", "--db", db)
    assert plain.stdout.splitlines()[0] == "optimizer,lr,weight_decay,sam_rho,mean,sem,std,n"
    shown = cli("best", "obesity", "--top", "2", "--ci", "--format", "markdown", "--db", db)
    lines = shown.stdout.splitlines()
    assert "mean [95% CI]" in lines[0]
    assert "| 0.7637 [0.7454, 0.7821]   |" in lines[2]
    assert lines[3].count(" ~ |") == 1  # the second interval overlaps the first's


def test_grid_ci_cells_equal_scipy_and_marks(db: str) -> None:
    result = cli("table", "obesity", "--ci", "--format", "json", "--db", db)
    assert result.exit_code == 0, result.output
    tables = json.loads(result.stdout)
    frame = completed(db, "obesity")
    first = tables[0]  # optimizer=sgd, sam_rho=0
    assert first["group"] == {"optimizer": "sgd", "sam_rho": 0.0}
    for i, lr in enumerate(first["rows"]):
        for j, wd in enumerate(first["cols"]):
            cell = frame[
                (frame["optimizer"] == "sgd")
                & (frame["sam_rho"] == 0)
                & np.isclose(frame["lr"], lr)
                & np.isclose(frame["weight_decay"], wd)
            ]
            low, high = t_interval(cell["y"].to_numpy())  # fmt: skip
            assert first["ci_low"][i][j] == pytest.approx(low, abs=1e-9)
            assert first["ci_high"][i][j] == pytest.approx(high, abs=1e-9)
    for table in tables:
        bi, bj = table["best"]
        blo, bhi = table["ci_low"][bi][bj], table["ci_high"][bi][bj]
        for i, row in enumerate(table["tied"]):
            for j, tied in enumerate(row):
                lo, hi = table["ci_low"][i][j], table["ci_high"][i][j]
                assert tied == ((i, j) != (bi, bj) and lo <= bhi and blo <= hi)
    text = cli("table", "obesity", "--ci", "--format", "markdown", "--db", db).stdout
    assert "~ marks a cell whose 95% interval overlaps the best cell's (tied for best)" in text
    assert text.count("**") == 2 * len(tables)  # one bold best per table


def test_grid_sem_works_and_is_checked(db: str) -> None:
    sem = cli("table", "obesity", "--sem", "--format", "markdown", "--db", db)
    assert sem.exit_code == 0 and "mean ± sem over seeds" in sem.stdout
    assert "| 3e-05             | 3.690 ± 0.049 | 3.690 ± 0.049 |     3.690 ± 0.049 |" in sem.stdout
    bad = cli("table", "obesity", "--sem", "--agg", "std", "--db", db)
    assert bad.exit_code == 1
    assert (
        bad.stderr
        == "Error: --sem is about the mean over seeds; drop --agg std (or use --agg mean)\n"
    )


def test_domain_avg_interval_is_a_rescaled_stratified_bootstrap(db: str) -> None:
    result = cli(
        "table", "ecg_small", "--layout", "domains", "--ci", "--format", "json", "--db", db
    )
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)[0]
    frame = completed(db, "ecg_small")
    for i, method in enumerate(table["rows"]):
        samples = [frame[(frame["method"] == method) & (frame["target"] == d)]["y"].to_numpy()
                   for d in table["cols"][:-1]]  # fmt: skip
        for j, x in enumerate(samples):
            low, high = t_interval(x)
            assert table["ci_low"][i][j] == pytest.approx(low, abs=1e-9)
        # scipy's stratified percentile bootstrap (seed 0) of the values rescaled about each
        # domain's mean by sqrt(n / (n - 1)) (Rao & Wu 1988)
        rescaled = [x.mean() + math.sqrt(len(x) / (len(x) - 1)) * (x - x.mean()) for x in samples]
        ref = stats.bootstrap(
            rescaled,
            lambda *rs, axis: np.mean([np.mean(r, axis=axis) for r in rs], axis=0),
            n_resamples=10_000, batch=1000, vectorized=True, method="percentile",
            rng=np.random.default_rng(0),
        ).confidence_interval  # fmt: skip
        assert table["ci_low"][i][-1] == pytest.approx(ref.low, abs=1e-9)
        assert table["ci_high"][i][-1] == pytest.approx(ref.high, abs=1e-9)


def test_domain_selection_titles_and_choices(db: str) -> None:
    for by in ("oracle", "source"):
        text = cli("table", "ecg_small", "--layout", "domains", "--select", by, "--ci",
                   "--format", "markdown", "--db", db).stdout  # fmt: skip
        assert f"by {by.upper()} selection" in text
    plain = cli("table", "ecg_small", "--layout", "domains", "--format", "json", "--db", db)
    chosen = cli("table", "ecg_small", "--layout", "domains", "--select", "source",
                 "--format", "json", "--db", db)  # fmt: skip
    # no hyperparameter axis: selection keeps every trial, the numbers do not change
    assert json.loads(plain.stdout)[0]["means"] == json.loads(chosen.stdout)[0]["means"]
    assert json.loads(chosen.stdout)[0]["selection"] == "source"
    grid = cli("table", "obesity", "--select", "source", "--db", db)
    assert grid.stderr == "Error: --select is for --layout domains (it picks per held-out domain)\n"


AXES = {"method": ["a", "b"], "target": ["X", "Y"]}


def odd_frame() -> pd.DataFrame:
    """Cell (a, X): three seeds; (a, Y): one seed; (b, X): all equal; (b, Y): none."""
    rows = [("a", "X", 0, 0.5), ("a", "X", 1, 0.6), ("a", "X", 2, 0.7), ("a", "Y", 0, 0.4),
            ("b", "X", 0, 0.55), ("b", "X", 1, 0.55)]  # fmt: skip
    return pd.DataFrame(
        [{"state": "completed", "method": m, "target": t, "seed": s, "f1": v}
         for m, t, s, v in rows]
    )  # fmt: skip


def test_odd_cells_never_crash() -> None:
    grids = grid_tables(
        odd_frame(),
        axes=AXES,
        seeds=[0, 1, 2],
        metric="f1",
        direction="maximize",
        rows="method",
        cols="target",
        ci=True,
        sem=True,
    )
    (table,) = grids
    assert table.ci_low is not None and table.ci_high is not None and table.tied is not None
    assert table.ci_low[0][1] is None  # one seed: no interval
    assert table.ci_low[1][0] == table.ci_high[1][0] == pytest.approx(0.55)  # all equal
    assert table.ci_low[1][1] is None  # no trials
    assert table.best == (0, 0) and table.tied == [[False, False], [True, False]]
    for fmt in ("rich", "markdown", "csv", "latex", "json"):
        assert render_tables(grids, fmt, title="t").endswith("\n")
    doms = domain_tables(odd_frame(), axes=AXES, seeds=[0, 1, 2], metric="f1",
                         direction="maximize", ci=True)  # fmt: skip
    assert doms[0].ci_low is not None and doms[0].ci_low[0][-1] is None  # Avg: a domain of n=1
    for fmt in ("rich", "markdown", "csv", "latex", "json"):
        assert render_domain_tables(doms, fmt, title="t", sem=True).endswith("\n")
    csv_text = render_tables(grids, "csv", title="t")
    assert csv_text.splitlines()[0] == "method,target,value,sem,ci_low,ci_high,tied,n,expected,best"
