"""`sweeper run A B`: several studies checked before any is saved, then run by the same
workers (started once), each with its own summary, table and progress line."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sweeper.cli import app

TRAIN = """
import os

def train(params, seed, trial):
    if params["lr"] >= 1.0:
        raise ValueError("lr too large")
    return {"loss": params["lr"] + seed, "pid": float(os.getpid())}
"""


def study(tmp_path: Path, name: str, space: str, *, seeds: int = 2) -> str:
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / f"{name}.toml").write_text(
        f'name = "{name}"\ntask = "train.py:train"\nmetric = "loss"\nseeds = {seeds}\n'
        f"[space]\n{space}\n"
    )
    return str(tmp_path / f"{name}.toml")


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def pids(db: Path, name: str) -> set[int]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT t.pid FROM trials t JOIN studies s ON s.id = t.study_id WHERE s.name = ?",
            (name,),
        ).fetchall()
    return {int(pid) for (pid,) in rows}


def test_two_studies_run_on_workers_started_once(tmp_path: Path) -> None:
    a = study(tmp_path, "a", "lr = [0.1, 0.2, 0.3]")
    b = study(tmp_path, "b", "lr = [0.4, 0.5]")
    db = tmp_path / "r.db"
    code, out, err = invoke("run", a, b, "--db", str(db), "--workers", "2", "--no-progress")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("a: 6 trials (new study); 6 to run on 2 local workers")
    assert lines[1].startswith("b: 4 trials (new study); 4 to run on 2 local workers")
    assert "a: 6 completed, 0 failed, 0 left" in out and "b: 4 completed, 0 failed, 0 left" in out
    assert out.index("a: 6 completed") < out.index("b: 4 completed")
    # Two worker processes did every trial of both studies (two runs would have started four).
    both = pids(db, "a") | pids(db, "b")
    assert len(both) <= 2 and pids(db, "b") <= both
    # Running both again finds nothing to do.
    code, out, _ = invoke("run", a, b, "--db", str(db), "--workers", "2", "--no-progress")
    assert code == 0 and "6 to run" not in out and "0 to run" in out


def test_failed_trials_of_any_study_exit_3_after_both_tables(tmp_path: Path) -> None:
    a = study(tmp_path, "a", "lr = [0.1, 1.0]", seeds=1)
    b = study(tmp_path, "b", "lr = [0.4, 0.5]", seeds=1)
    db = tmp_path / "r.db"
    code, out, err = invoke("run", a, b, "--db", str(db), "--workers", "1", "--no-progress")
    assert code == 3
    assert "a: 1 completed, 1 failed, 0 left" in out and "b: 2 completed, 0 failed, 0 left" in out
    assert err.startswith("1 trial failed: ValueError: lr too large") and "`sweeper runs a " in err


def test_a_mistake_in_the_last_study_writes_nothing(tmp_path: Path) -> None:
    a = study(tmp_path, "a", "lr = [0.1, 0.2]")
    big = study(tmp_path, "big", "lr = [" + ", ".join(str(i / 100) for i in range(60)) + "]")
    db = tmp_path / "r.db"
    code, _, err = invoke("run", a, big, "--db", str(db), "--max-trials", "100", "--no-progress")
    assert code == 1 and "120" in err and "Traceback" not in err
    assert not db.exists()  # not even study a was saved


@pytest.mark.parametrize("second", ["a.toml", "a"])
def test_the_same_study_twice_is_a_usage_error(tmp_path: Path, second: str) -> None:
    a = study(tmp_path, "a", "lr = [0.1]")
    (tmp_path / "copy").mkdir()
    again = study(tmp_path / "copy", "a", "lr = [0.2]")
    other = again if second == "a.toml" else a
    code, _, err = invoke("run", a, other, "--db", str(tmp_path / "r.db"))
    assert code == 2 and "study 'a' given more than once" in err


def test_outside_a_terminal_each_study_ends_with_its_last_line(tmp_path: Path) -> None:
    a = study(tmp_path, "a", "lr = [0.1, 0.2]", seeds=1)
    b = study(tmp_path, "b", "lr = [0.3]", seeds=1)
    code, _, err = invoke("run", a, b, "--db", str(tmp_path / "r.db"), "--workers", "1")
    assert code == 0, err
    assert re.search(
        r"a: 2/2 done, 0 failed, 0 running, [\d.]+s elapsed, eta 0\.0s, best loss 0\.1\n"
        r"b: 1/1 done, 0 failed, 0 running, [\d.]+s elapsed, eta 0\.0s, best loss 0\.3\n$",
        err,
    ), err
