"""The command line as a user meets it: exit codes, the exact error line, no traceback, and a
database left unchanged by bad input."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOY = """
name = "toy"
task = "toy"
metric = "loss"
seeds = 2
[fixed]
epochs = 2
[space]
x = [0.0, 1.0, 2.0]
y = [0.0, -2.0]
"""


def sweeper(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "120", **(env or {})}
    full_env.pop("SWEEPER_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "sweeper", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )


def digest(path: Path) -> str:
    """Content of a SQLite database as SQL text (stable across WAL checkpoints)."""
    import sqlite3

    con = sqlite3.connect(path)
    try:
        return hashlib.sha256("\n".join(con.iterdump()).encode()).hexdigest()
    finally:
        con.close()


@pytest.fixture
def toy_db(tmp_path: Path) -> Path:
    (tmp_path / "toy.toml").write_text(TOY)
    result = sweeper("run", "toy.toml", "--workers", "1", "--no-progress", "--no-table")
    assert result.returncode == 0, result.stderr
    return tmp_path / "results.db"


def test_run_then_every_query(toy_db: Path) -> None:
    assert (
        "toy: 12 completed, 0 failed, 0 left"
        in sweeper("status", "toy").stdout
        + sweeper("run", "toy.toml", "--no-progress", "--no-table").stdout
    )
    runs = sweeper("runs", "toy", "--where", "x=1", "--sort", "loss", "--format", "csv")
    assert runs.returncode == 0
    lines = runs.stdout.strip().splitlines()
    assert lines[0].startswith("id,state,x,y,seed,loss,final_epoch,duration")
    assert len(lines) == 1 + 4 and all(",1.0," in line or ",1," in line for line in lines[1:])
    best = sweeper("best", "toy", "--format", "json")
    ranked = json.loads(best.stdout)
    assert (ranked[0]["x"], ranked[0]["y"], ranked[0]["n"]) == (1.0, -2.0, 2)
    table = sweeper("table", "toy", "--format", "markdown")
    assert table.returncode == 0 and "**0.506**" in table.stdout
    exported = sweeper("export", "toy", "--format", "json", "--curves")
    rows = json.loads(exported.stdout)
    assert len(rows) == 12 and rows[0]["curves"]["train_loss"][0] > rows[0]["loss"]
    assert sweeper("export", "toy", "--format", "parquet", "-o", "t.parquet").returncode == 0
    import pandas as pd

    assert len(pd.read_parquet("t.parquet")) == 12
    studies = sweeper("studies", "--format", "csv")
    assert studies.stdout.splitlines()[1].startswith("toy,toy,grid,12,12,0,0,loss,")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ("table", "nope"),
            1,
            "Error: no study named 'nope' in sqlite:///results.db (studies: toy)",
        ),
        (
            ("table", "toy", "--agg", "median"),
            2,
            "Error: Invalid value for '--agg': Value error, 'median' is not one of 'mean', 'std', "
            "'sem', 'min', 'max', 'count'.",
        ),
        (
            ("table", "toy", "--format", "html"),
            2,
            "Error: Invalid value for '--format' / '-f': Value error, 'html' is not one of 'rich', "
            "'markdown', 'csv', 'latex', 'json'.",
        ),
        (("runs", "toy", "--where", "colour=red"), 1, "Error: --where 'colour': no such column; "),
        (
            ("run", "toy.toml", "--backend", "daks"),
            2,
            "Error: Invalid value for '--backend': Value error, 'daks' is not one of 'local', "
            "'dask'.",
        ),
    ],
)
def test_bad_arguments_fail_cleanly_and_change_nothing(
    toy_db: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    """Errors exit 1 with one line; a bad choice is a usage error (exit 2) listing the choices
    after Typer's usage lines."""
    before = digest(toy_db)
    result = sweeper(*args)
    assert result.returncode == code
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(message) if code == 2 else result.stderr.startswith(message)
    assert "Traceback" not in result.stderr
    assert digest(toy_db) == before


def test_conflicting_study_is_refused_without_writing(toy_db: Path) -> None:
    before = digest(toy_db)
    Path("toy.toml").write_text(TOY.replace("epochs = 2", "epochs = 3"))
    result = sweeper("run", "toy.toml", "--no-progress")
    assert result.returncode == 1
    assert result.stderr == (
        "Error: study 'toy' already exists with a different epochs; changing it would change "
        "the meaning of its stored trials: give the study a new name to keep both\n"
    )
    assert digest(toy_db) == before


def test_invalid_study_file_creates_no_database(tmp_path: Path) -> None:
    Path("bad.toml").write_text(TOY.replace("x = [0.0", "x = [-0.5, 'a'"))
    result = sweeper("run", "bad.toml")
    assert result.returncode == 1
    assert result.stderr == "Error: bad.toml: space.x[1]: must be a number (got 'a')\n"
    Path("bad.toml").write_text("name = [\n")
    result = sweeper("run", "bad.toml")
    assert result.stderr.startswith("Error: bad.toml: invalid TOML: ")
    assert not (tmp_path / "results.db").exists()


def test_missing_database_and_schema_mismatch(tmp_path: Path, toy_db: Path) -> None:
    result = sweeper("status", "toy", "--db", "other.db")
    assert result.returncode == 1
    assert result.stderr == (
        "Error: no sweeper database at other.db: run `sweeper run STUDY_FILE` first, or point "
        "--db / SWEEPER_DB at one\n"
    )
    assert not (tmp_path / "other.db").exists()
    import sqlite3

    con = sqlite3.connect(toy_db)
    con.execute("UPDATE sweeper_meta SET value = '7' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    result = sweeper("table", "toy", env={"SWEEPER_DB": str(toy_db)})
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: database sqlite:///{toy_db} has schema version 7")


def test_missing_dataset_names_where_to_put_it(tmp_path: Path) -> None:
    Path("o.toml").write_text(
        'name = "o"\ntask = "obesity"\nmetric = "test_mse"\n[space]\nlr = [0.001]\n'
    )
    result = sweeper(
        "run",
        "o.toml",
        "--data-dir",
        str(tmp_path / "nodata"),
        env={"SWEEPER_OBESITY_URL": "http://127.0.0.1:9/obesity.zip"},
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ")
    assert str(tmp_path / "nodata" / "obesity" / "ObesityDataSet_raw_and_data_sinthetic.csv") in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "results.db").exists()


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = sweeper("status", "toy", "--debug")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "StoreError: no sweeper database" in result.stderr


def test_usage_errors_exit_2() -> None:
    result = sweeper("run")
    assert result.returncode == 2
    assert "STUDY_FILE" in result.stderr
    assert "Missing argument" in result.stderr
