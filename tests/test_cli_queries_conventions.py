"""The query commands' conventions (issue 14): `delete`, `runs --columns` and its error column,
`status --format json`, `export` choosing the format from the file's extension, and one
meaning of "best" (the best seed mean of a configuration) in `studies`, `status` and `best`.

The databases are built through the store with made-up values, so every number is known.
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.plan import grid
from sweeper.store import Store, WorkerId
from sweeper.study import parse_study
from sweeper.tasks import TrialOutcome, get_task
from tests.fixtures.searched import add_searched_study

SHIPPED = Path(__file__).resolve().parents[1] / "results.db"

#: loss per (x, seed): x=0 holds the best single trial (0.125) but the worse mean (0.625);
#: x=1 has the best mean, 0.5. Trial x=2 seed 2 fails.
LOSS = {
    (0.0, 0): 0.125,
    (0.0, 1): 0.875,
    (0.0, 2): 0.875,
    (1.0, 0): 0.375,
    (1.0, 1): 0.5,
    (1.0, 2): 0.625,
    (2.0, 0): 1.25,
    (2.0, 1): 1.5,
}
ERROR = "diverged: [nan] at epoch 7\nTraceback (most recent call last):\n  ..."


def add_grid_study(url: str, name: str = "mix") -> None:
    """Study `name`: toy task, x in 0, 1, 2, seeds 0..2, values `LOSS`, x=2 seed 2 failed."""
    study = parse_study(
        {
            "name": name,
            "task": "toy",
            "metric": "loss",
            "seeds": 3,
            "fixed": {"epochs": 2},
            "space": {"x": [0.0, 1.0, 2.0]},
        },
        f"{name}.toml",
    )
    worker = WorkerId("test:1", "testhost", 4242)
    with Store(url, create=True) as store:
        sid = store.save_study(study, grid(study, get_task("toy").group_key)).study_id
        outcomes = []
        for t in store.claim(sid, worker, limit=100):
            loss = LOSS.get((float(t.params["x"]), t.seed))
            if loss is None:
                outcomes.append(TrialOutcome(t.trial_id, error=ERROR))
            else:
                curve = {"train_loss": [loss + 1.0, loss]}
                outcomes.append(TrialOutcome(t.trial_id, metrics={"loss": loss}, curves=curve))
        store.record(worker, outcomes, "loss")


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A SQLite file with the grid study `mix` and the searched study `toy_random`."""
    path = tmp_path / "q.db"
    add_grid_study(f"sqlite:///{path}")
    add_searched_study(f"sqlite:///{path}")
    return str(path)


def cli(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)


def rows_of_other_studies(path: str, name: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row, table by table, that does not belong to study `name` (plain SQL)."""
    con = sqlite3.connect(path)
    try:
        (sid,) = con.execute("SELECT id FROM studies WHERE name = ?", (name,)).fetchone() or (-1,)
        trials = "SELECT id FROM trials WHERE study_id = ?"
        queries = {
            "sweeper_meta": ("SELECT * FROM sweeper_meta ORDER BY key", ()),
            "studies": ("SELECT * FROM studies WHERE id != ? ORDER BY id", (sid,)),
            "trials": ("SELECT * FROM trials WHERE study_id != ? ORDER BY id", (sid,)),
            "proposals": ("SELECT * FROM proposals WHERE study_id != ? ORDER BY id", (sid,)),
            "trial_curves": (
                f"SELECT * FROM trial_curves WHERE trial_id NOT IN ({trials}) ORDER BY trial_id",
                (sid,),
            ),
        }
        return {table: con.execute(sql, args).fetchall() for table, (sql, args) in queries.items()}
    finally:
        con.close()


def row_counts(path: str) -> dict[str, int]:
    con = sqlite3.connect(path)
    try:
        tables = ("studies", "trials", "proposals", "trial_curves")
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        con.close()


# -- "best" is the best seed mean ---------------------------------------------------------------


def test_studies_best_is_the_best_seed_mean_not_the_best_trial(db: str) -> None:
    result = cli("studies", "--db", db, "--format", "csv")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "study,task,kind,completed,total,failed,running,metric,best,updated"
    assert lines[1].startswith("mix,toy,grid,8,9,1,0,loss,0.5,")
    ranked = json.loads(cli("best", "toy_random", "--db", db, "--top", "1", "-f", "json").stdout)
    assert lines[2].startswith(
        f"toy_random,obesity,random,23,24,1,0,test_mse,{ranked[0]['mean']!r},"
    )


def test_status_best_line_names_the_configuration_and_its_seeds(db: str) -> None:
    result = cli("status", "mix", "--db", db)
    assert result.exit_code == 0, result.output
    assert "  best loss (mean of 3 seeds): 0.5 at x=1\n" in result.stdout
    assert "  failed: trial 9 after 1 attempt(s): diverged: [nan] at epoch 7\n" in result.stdout


def test_status_best_agrees_with_best_top_1_on_a_searched_study(db: str) -> None:
    ranked = json.loads(cli("best", "toy_random", "--db", db, "--top", "1", "-f", "json").stdout)
    status = json.loads(cli("status", "toy_random", "--db", db, "--format", "json").stdout)
    top = ranked[0]
    assert status["best"] == {
        "metric": "test_mse",
        "mean": pytest.approx(top["mean"], abs=1e-12),
        "n": top["n"],
        "params": {"optimizer": top["optimizer"], "lr": top["lr"]},
    }


def test_store_best_matches_best_configs_on_every_shipped_study(tmp_path: Path) -> None:
    """The database's GROUP BY and pandas' ranking (`sweeper best`) are one definition."""
    if not SHIPPED.exists():
        pytest.skip("no shipped results.db")
    path = tmp_path / "shipped.db"
    src, dst = sqlite3.connect(SHIPPED), sqlite3.connect(path)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    from sweeper.cli.output import metric_frame, param_names
    from sweeper.report import study_best

    with Store(f"sqlite:///{path}") as store:
        summaries = {s.name: s for s in store.studies()}
        assert summaries
        for name, summary in summaries.items():
            info = store.study(name)
            top = study_best(metric_frame(store, info), info.study, 1).iloc[0]
            best = store.best_config(info.id, info.study.direction)
            assert best is not None
            assert best.mean == pytest.approx(top["mean"], rel=1e-12), name
            assert summary.best == best.mean
            assert best.n == top["n"]
            assert {k: best.params[k] for k in param_names(info.study)} == {
                k: top[k] for k in param_names(info.study)
            }


# -- status --format json -----------------------------------------------------------------------


def test_status_json_has_every_fact_of_the_text(db: str) -> None:
    result = cli("status", "mix", "--db", db, "--format", "json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["wall_time_s"] >= 0 and status["mean_trial_s"] >= 0
    assert status["versions"]["python"] is None  # the test wrote no provenance
    del status["wall_time_s"], status["mean_trial_s"]
    assert status == {
        "name": "mix",
        "task": "toy",
        "kind": "grid",
        "description": "",
        "metric": "loss",
        "direction": "minimize",
        "counts": {"queued": 0, "running": 0, "completed": 8, "failed": 1, "pruned": 0},
        "total": 9,
        "percent": pytest.approx(800 / 9),
        "seeds": [0, 1, 2],
        "search": None,
        "best": {"metric": "loss", "mean": 0.5, "n": 3, "params": {"x": 1.0}},
        "running": [],
        "failed": [{"id": 9, "attempts": 1, "error": ERROR}],
        "code_hash": None,
        "versions": {"sweeper": None, "python": None, "torch": None, "git_commit": None},
    }


def test_status_json_of_a_searched_study_and_an_unknown_format(db: str) -> None:
    status = json.loads(cli("status", "toy_random", "--db", db, "-f", "json").stdout)
    assert status["search"] == {"proposed": 12, "budget": 12}
    assert status["failed"] == [{"id": 13, "attempts": 1, "error": "diverged: <nan> at epoch 7"}]
    bad = cli("status", "mix", "--db", db, "--format", "csv")
    assert bad.exit_code == 2 and "'csv' is not one of 'rich', 'json'" in bad.stderr


# -- runs: the error column and --columns ---------------------------------------------------------


def test_runs_shows_the_first_line_of_each_error(db: str) -> None:
    result = cli("runs", "mix", "--db", db, "--format", "csv", "--where", "x=2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "id,state,x,seed,loss,duration,attempts,host,error"
    assert [line.split(",")[1] for line in lines[1:]] == ["completed", "completed", "failed"]
    assert lines[1].endswith(",1,testhost,") and lines[3].endswith(
        ",1,testhost,diverged: [nan] at epoch 7"
    )


def test_runs_columns_chooses_and_orders_the_columns(db: str) -> None:
    result = cli(
        "runs", "mix", "--db", db, "-f", "csv", "--columns", "error, seed,id", "--state", "failed"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "error,seed,id\ndiverged: [nan] at epoch 7,2,9\n"
    # Any column of the trials, not only the default ones.
    keyed = cli("runs", "mix", "--db", db, "-f", "csv", "-c", "id,key,value", "--limit", "1")
    assert keyed.stdout.splitlines()[0] == "id,key,value"


def test_runs_unknown_column_is_a_usage_error_listing_the_choices(db: str) -> None:
    before = row_counts(db)
    result = cli("runs", "mix", "--db", db, "--columns", "id,colour")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(
        "Error: --columns: no column 'colour'; choose from: id, key, state, seed, attempts, host,"
    )
    assert result.stderr.count("\n") == 1 and "error" in result.stderr
    empty = cli("runs", "mix", "--db", db, "--columns", " , ")
    assert empty.exit_code == 2
    assert empty.stderr.startswith("Error: --columns ' , ': name at least one column; choose from:")
    assert row_counts(db) == before


# -- export: the format from the file's extension -------------------------------------------------


def test_export_parquet_by_extension_is_real_parquet_with_the_csv_rows(
    db: str, tmp_path: Path
) -> None:
    out = tmp_path / "x.parquet"
    result = cli("export", "mix", "--db", db, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stderr == f"wrote 9 trials to {out}\n"
    assert out.read_bytes()[:4] == b"PAR1"
    csv = cli("export", "mix", "--db", db, "--format", "csv").stdout
    (tmp_path / "x.csv").write_text(csv, encoding="utf-8")
    expected = pd.read_csv(tmp_path / "x.csv")
    got = pd.read_parquet(out)
    assert list(got.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(
        got.astype(str).replace({"None": "nan"}),
        expected.astype(str),
        check_dtype=False,
    )
    assert got["value"].tolist()[:3] == [0.125, 0.875, 0.875]


@pytest.mark.parametrize(
    ("file", "check"),
    [
        ("x.csv", lambda text: text.startswith("study,id,key,state,")),
        ("x.TSV", lambda text: text.startswith("study\tid\tkey\tstate\t")),
        ("x.json", lambda text: len(json.loads(text)) == 9),
    ],
)
def test_export_text_formats_by_extension(db: str, tmp_path: Path, file: str, check: Any) -> None:
    result = cli("export", "mix", "--db", db, "-o", str(tmp_path / file))
    assert result.exit_code == 0, result.output
    assert check((tmp_path / file).read_text(encoding="utf-8"))


def test_export_explicit_format_wins_over_the_extension(db: str, tmp_path: Path) -> None:
    out = tmp_path / "trials.txt"
    result = cli("export", "mix", "--db", db, "-o", str(out), "--format", "json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(out.read_text(encoding="utf-8"))) == 9


def test_export_unknown_extension_lists_the_known_ones(db: str, tmp_path: Path) -> None:
    result = cli("export", "mix", "--db", db, "-o", str(tmp_path / "trials.txt"))
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: cannot tell the export format from 'trials.txt': give --format, or a file "
        "ending in .csv, .tsv, .json, .parquet, .pq, .db, .sqlite, .sqlite3\n"
    )
    assert not (tmp_path / "trials.txt").exists()


def test_export_db_extension_writes_an_optuna_storage(db: str, tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    out = tmp_path / "optuna.db"
    result = cli("export", "mix", "--db", db, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"wrote 3 configurations of mix to sqlite:///{out}")
    # A results database given by mistake is refused, not extended with Optuna's tables.
    refused = cli("export", "mix", "--db", db, "-o", db)
    assert refused.exit_code == 1 and "is not an Optuna storage" in refused.stderr


def test_export_parquet_without_pyarrow_names_the_extra(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    out = tmp_path / "x.parquet"
    result = cli("export", "mix", "--db", db, "-o", str(out))
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: parquet export needs the 'parquet' extra (pyarrow is not installed): "
        "pip install 'sweeper[parquet]'\n"
    )
    assert not out.exists()


# -- delete ---------------------------------------------------------------------------------------


def test_delete_yes_removes_the_study_and_nothing_else(db: str) -> None:
    others = rows_of_other_studies(db, "mix")
    assert row_counts(db) == {"studies": 2, "trials": 33, "proposals": 12, "trial_curves": 31}
    result = cli("delete", "mix", "--db", db, "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == "deleted study 'mix': 9 trials, 8 curves, 0 proposals\n"
    assert row_counts(db) == {"studies": 1, "trials": 24, "proposals": 12, "trial_curves": 23}
    assert rows_of_other_studies(db, "mix") == others
    assert "toy_random" in cli("studies", "--db", db, "-f", "csv").stdout


def test_delete_a_searched_study_takes_its_proposals(db: str) -> None:
    others = rows_of_other_studies(db, "toy_random")
    result = cli("delete", "toy_random", "--db", db, "-y")
    assert result.exit_code == 0, result.output
    assert result.stderr == "deleted study 'toy_random': 24 trials, 23 curves, 12 proposals\n"
    assert row_counts(db) == {"studies": 1, "trials": 9, "proposals": 0, "trial_curves": 8}
    assert rows_of_other_studies(db, "toy_random") == others


def test_delete_without_a_terminal_refuses_and_deletes_nothing(db: str) -> None:
    before = shutil.copyfile(db, db + ".before")
    result = cli("delete", "mix", "--db", db)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: not deleting study 'mix' (9 trials): there is no terminal to confirm on; "
        "add --yes to delete it\n"
    )
    assert rows_of_other_studies(db, "nope") == rows_of_other_studies(before, "nope")


@pytest.mark.parametrize("answer", ["n\n", "\n", ""])
def test_delete_asks_and_anything_but_yes_keeps_the_study(
    db: str, monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    monkeypatch.setattr("sweeper.cli.query.interactive", lambda: True)
    before = row_counts(db)
    result = cli("delete", "mix", "--db", db, input=answer)
    assert result.exit_code == 1
    # Click writes the prompt's last space with the answer (to stdout).
    assert result.stderr.startswith(f"Delete study 'mix' and its 9 trials from {db}? [y/N]:")
    assert result.stderr.endswith("nothing deleted: study 'mix' is still there\n")
    assert row_counts(db) == before


def test_delete_asks_and_yes_deletes(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sweeper.cli.query.interactive", lambda: True)
    result = cli("delete", "mix", "--db", db, input="y\n")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"Delete study 'mix' and its 9 trials from {db}? [y/N]:"
        "deleted study 'mix': 9 trials, 8 curves, 0 proposals\n"
    )
    assert row_counts(db)["studies"] == 1


def test_delete_unknown_study_is_one_line_and_changes_nothing(db: str) -> None:
    before = rows_of_other_studies(db, "nope")
    result = cli("delete", "nope", "--db", db, "--yes")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: no study named 'nope' in sqlite:///{db} (studies: mix, toy_random)\n"
    )
    assert rows_of_other_studies(db, "nope") == before


def test_delete_on_every_store(db_url: str) -> None:
    """The same deletion on SQLite and PostgreSQL: the study's rows go, the other's stay."""
    add_grid_study(db_url, "mix")
    add_grid_study(db_url, "keep")
    with Store(db_url) as store:
        keep = store.study("keep")
        frame = store.frame(keep.id)
        curves = store.curves(frame["id"].tolist())
        report = store.delete_study(store.study("mix").id)
        assert (report.trials, report.curves, report.proposals) == (9, 8, 0)
        assert [s.name for s in store.studies()] == ["keep"]
        pd.testing.assert_frame_equal(store.frame(keep.id), frame)
        assert store.curves(frame["id"].tolist()) == curves
        from sweeper.errors import UnknownStudyError

        with pytest.raises(UnknownStudyError, match="no study with id"):
            store.delete_study(keep.id + 1000)
    result = cli("delete", "keep", "--db", db_url, "--yes")
    assert result.exit_code == 0, result.output
    with Store(db_url) as store:
        assert store.studies() == []


def test_store_best_is_the_seed_mean_on_every_store(db_url: str) -> None:
    add_grid_study(db_url, "mix")
    with Store(db_url) as store:
        info = store.study("mix")
        best = store.best_config(info.id, "minimize")
        assert best is not None
        assert (best.params["x"], best.mean, best.n) == (1.0, 0.5, 3)
        assert store.best_value(info.id, "minimize") == 0.5
        assert store.stats(info.id, "minimize").best == best
        assert [s.best for s in store.studies()] == [0.5]
        worst = store.best_config(info.id, "maximize")
        assert worst is not None and (worst.params["x"], worst.mean, worst.n) == (2.0, 1.375, 2)
        assert math.isclose(store.best_value(info.id, "maximize") or 0.0, 1.375)


def test_export_unknown_format_is_a_usage_error_naming_the_choices(db: str) -> None:
    result = cli("export", "mix", "--db", db, "--format", "xml")
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith("'xml' is not one of 'csv', 'tsv', 'json', 'parquet', 'optuna'.")
    )
