"""`sweeper confirm` and `sweeper seeds` end to end on the toy task, in a temporary database."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.stats import seeds_needed, t_test_power

TOY = """
name = "toy"
task = "toy"
metric = "loss"
seeds = [0, 1, 2]
[fixed]
epochs = 2
[space]
x = [0.0, 1.0, 2.0]
y = [0.0, -2.0]
"""


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def toy_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SWEEPER_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "toy.toml").write_text(TOY)
    db = str(tmp_path / "toy.db")
    result = cli("run", str(tmp_path / "toy.toml"), "--db", db, "--workers", "1",
                 "--no-progress", "--no-table")  # fmt: skip
    assert result.exit_code == 0, result.output
    return db


def trials(db: str, study: str) -> pd.DataFrame:
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT t.params, t.seed, t.value, t.state FROM trials t JOIN studies s "
            "ON s.id = t.study_id WHERE s.name = ?",
            (study,),
        ).fetchall()
    finally:
        con.close()
    return pd.DataFrame([{**json.loads(p), "seed": s, "v": v, "state": st}
                         for p, s, v, st in rows])  # fmt: skip


def test_confirm_runs_the_top_configurations_on_fresh_seeds(toy_db: str) -> None:
    result = cli("confirm", "toy", "--top", "2", "--seeds", "3", "--db", toy_db, "--workers",
                 "1", "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stderr == "toy-confirm: 2 configurations x 3 fresh seeds (3..5); 6 to run\n"
    rows = json.loads(result.stdout)
    fresh = trials(toy_db, "toy-confirm")
    # exactly the two best configurations, each on seeds never used in the study
    assert len(fresh) == 6 and set(fresh["state"]) == {"completed"}
    assert sorted(set(fresh["seed"])) == [3, 4, 5]
    assert [(r["x"], r["y"]) for r in rows] == [(1.0, -2.0), (0.0, -2.0)]
    assert {(x, y) for x, y in zip(fresh["x"], fresh["y"], strict=True)} == {
        (1.0, -2.0),
        (0.0, -2.0),
    }
    original = trials(toy_db, "toy")
    for row in rows:
        old = original[(original["x"] == row["x"]) & (original["y"] == row["y"])]["v"].to_numpy()
        new = fresh[(fresh["x"] == row["x"]) & (fresh["y"] == row["y"])]["v"].to_numpy()
        for prefix, x in (("selected", old), ("fresh", new)):
            low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
            assert row[f"{prefix}_mean"] == pytest.approx(x.mean(), abs=1e-12)
            assert row[f"{prefix}_ci_low"] == pytest.approx(low, abs=1e-9)
            assert row[f"{prefix}_ci_high"] == pytest.approx(high, abs=1e-9)
            assert row[f"{prefix}_n"] == 3
        assert row["shift"] == pytest.approx(new.mean() - old.mean(), abs=1e-12)
    from sweeper.store import Store

    with Store(f"sqlite:///{toy_db}") as store:
        linked = store.study("toy-confirm").study
    assert linked.seeds == (3, 4, 5) and linked.axes == {"x": [0.0, 1.0], "y": [-2.0]}
    assert linked.description == (
        "confirmation of study 'toy': its top 2 configurations on fresh seeds 3..5"
    )
    again = cli("confirm", "toy", "--top", "2", "--seeds", "3", "--db", toy_db, "-f", "markdown")
    assert again.exit_code == 0 and "; 0 to run" in again.stdout  # same fresh seeds: no rerun
    old = rows[0]
    selected = f"{old['selected_mean']:.4f} [{old['selected_ci_low']:.4f}, "
    assert f"| {selected}" in again.stdout and "| selected " in again.stdout


def test_confirm_unknown_study_is_an_error(toy_db: str) -> None:
    result = cli("confirm", "nope", "--db", toy_db)
    assert result.exit_code == 1 and result.stderr.startswith("Error: no study named 'nope'")


def test_seeds_from_observed_variance(toy_db: str) -> None:
    result = cli("seeds", "toy", "--delta", "0.001", "--by", "x", "--db", toy_db,
                 "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    unpaired, paired = json.loads(result.stdout)
    frame = trials(toy_db, "toy")
    sds = frame.groupby(["x", "y"])["v"].agg(lambda v: np.var(v, ddof=1))
    pooled = float(np.sqrt(sds.mean()))  # equal seeds per configuration: the plain mean
    assert unpaired["sd"] == pytest.approx(pooled, rel=1e-9)
    assert unpaired["seeds_needed"] == seeds_needed(pooled, 0.001, paired=False)
    assert unpaired["power_now"] == pytest.approx(
        t_test_power(3, 0.001 / pooled, paired=False), abs=1e-12
    )
    # The toy's noise depends on the seed only, so paired differences have no spread
    # beyond rounding: a paired design needs the fewest seeds.
    assert (
        paired["sd"] < 1e-12
        and paired["seeds_needed"] == 2
        and paired["design"].startswith("paired by seed along x")
    )
    bad = cli("seeds", "toy", "--delta", "0", "--db", toy_db)
    assert bad.exit_code == 1
    assert bad.stderr == "Error: --delta 0.0: delta must be finite and non-zero (got 0.0)\n"
