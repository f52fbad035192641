"""Sweeping a user's own code, as a new user does it: an empty directory outside the
repository, a train.py and a study file, then `sweeper run` and the queries."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

BIN = str(Path(sys.executable).parent)

TRAIN = """
import math

def train(params, seed, trial):
    loss = 1.0
    for epoch in range(1, params["epochs"] + 1):
        loss = (params["lr"] - 0.1) ** 2 + params["wd"] + 1.0 / epoch + seed * 1e-3
        trial.report(epoch, val_loss=loss, train_loss=loss * 0.9)
    (trial.dir / "note.txt").write_text("kept")
    return {"val_loss": loss, "acc": 1.0 - loss / 10}
"""

FUNCTION_STUDY = """
name = "mine"
task = "train.py:train"
metric = "val_loss"
seeds = 2
[fixed]
epochs = 3
[space]
lr = [0.01, 0.1]
wd = [0.0, 0.01]
"""

SCRIPT = """
import argparse, json, sys
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float)
p.add_argument("--wd", type=float)
p.add_argument("--seed", type=int)
a = p.parse_args()
loss = 1.0
for step in range(1, 4):
    loss = (a.lr - 0.1) ** 2 + a.wd + 1.0 / step + a.seed * 1e-3
    print(json.dumps({"step": step, "val_loss": loss}), flush=True)
print("a log line")
print(json.dumps({"val_loss": loss, "acc": 1.0 - loss / 10}))
"""

COMMAND_STUDY = """
name = "cmd"
command = ["python", "train.py", "--lr", "{lr}", "--wd", "{wd}", "--seed", "{seed}"]
metric = "val_loss"
timeout = 60
seeds = 2
[space]
lr = [0.01, 0.1]
wd = [0.0, 0.01]
"""


def sweeper(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "COLUMNS": "200", "PATH": BIN + os.pathsep + os.environ["PATH"]}
    full.pop("SWEEPER_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "sweeper", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**full, **(env or {})},
        timeout=timeout,
    )


def expected_loss(lr: float, wd: float, seed: int) -> float:
    return (lr - 0.1) ** 2 + wd + 1.0 / 3 + seed * 1e-3


@pytest.mark.parametrize("kind", ["function", "command"])
def test_a_new_users_study_runs_and_every_query_shows_it(tmp_path: Path, kind: str) -> None:
    (tmp_path / "train.py").write_text(TRAIN if kind == "function" else SCRIPT)
    (tmp_path / "study.toml").write_text(FUNCTION_STUDY if kind == "function" else COMMAND_STUDY)
    name = "mine" if kind == "function" else "cmd"
    run = sweeper(tmp_path, "run", "study.toml", "--workers", "2", "--no-progress")
    assert run.returncode == 0, run.stderr
    assert f"{name}: 8 completed, 0 failed, 0 left" in run.stdout
    runs = sweeper(tmp_path, "runs", name, "--format", "json")
    rows = json.loads(runs.stdout)
    assert len(rows) == 8 and {r["state"] for r in rows} == {"completed"}
    for r in rows:
        assert r["val_loss"] == pytest.approx(expected_loss(r["lr"], r["wd"], r["seed"]), abs=1e-12)
    assert {type(r["lr"]) for r in rows} == {float}
    best = json.loads(sweeper(tmp_path, "best", name, "--format", "json").stdout)
    assert (best[0]["lr"], best[0]["wd"], best[0]["n"]) == (0.1, 0.0, 2)
    table = sweeper(tmp_path, "table", name, "--format", "csv")
    assert table.returncode == 0 and len(table.stdout.strip().splitlines()) == 1 + 4
    exported = json.loads(sweeper(tmp_path, "export", name, "--format", "json", "--curves").stdout)
    assert all(len(r["curves"]["val_loss"]) == 3 for r in exported)
    import sweeper as api

    curves = api.load_curves(name, db=str(tmp_path / "results.db"))
    assert len(curves[curves["curve"] == "val_loss"]) == 8 * 3
    if kind == "function":
        assert sorted(p.read_text() for p in tmp_path.glob("sweeper-trials/mine/*/note.txt")) == (
            ["kept"] * 8
        )
    else:
        shown = sweeper(tmp_path, "show", name, str(rows[0]["id"]))
        assert "a log line" in shown.stdout
    status = sweeper(tmp_path, "status", name)
    assert "code: " in status.stdout and "sha256 " in status.stdout


def test_python_api_runs_and_loads_the_documented_frames(tmp_path: Path) -> None:
    import sweeper as api

    (tmp_path / "train.py").write_text(TRAIN)
    study = api.Study.from_dict(
        {
            "name": "api",
            "task": "train.py:train",
            "metric": "val_loss",
            "seeds": 2,
            "fixed": {"epochs": 3},
            "space": {"lr": [0.01, 0.1], "wd": [0.0]},
        },
        base_dir=tmp_path,
    )
    db = str(tmp_path / "api.db")
    summary = api.run(study, db=db, workers=1)
    assert (summary.completed, summary.failed, summary.left) == (4, 0, 0)
    trials = api.load_trials("api", db=db)
    assert len(trials) == 4
    assert {"id", "state", "lr", "wd", "seed", "val_loss", "acc"} <= set(trials.columns)
    curves = api.load_curves("api", db=db)
    assert list(curves.columns) == ["trial", "curve", "step", "value"]
    assert set(curves["curve"]) == {"val_loss", "train_loss"}
    one = curves[(curves["trial"] == trials["id"].iloc[0]) & (curves["curve"] == "val_loss")]
    assert one["step"].tolist() == [1, 2, 3]
    last = trials.set_index("id").loc[trials["id"].iloc[0], "val_loss"]
    assert one["value"].iloc[-1] == pytest.approx(last)
    # The CLI's queries read the same frames.
    out = sweeper(tmp_path, "runs", "api", "--db", db, "--format", "json")
    assert [r["id"] for r in json.loads(out.stdout)] == trials["id"].tolist()


FAILING = """
import time

def train(params, seed, trial):
    if params["case"] == "raise":
        raise ValueError("boom")
    if params["case"] == "nan":
        return {"val_loss": float("nan")}
    if params["case"] == "missing":
        return {"loss": 1.0}
    return {"val_loss": 0.5}
"""


def test_failures_of_a_function_are_one_line_each_and_the_study_goes_on(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(FAILING)
    (tmp_path / "s.toml").write_text(
        'name = "f"\ntask = "train.py:train"\nmetric = "val_loss"\n'
        '[space]\ncase = ["raise", "nan", "missing", "ok"]\n'
    )
    run = sweeper(tmp_path, "run", "s.toml", "--workers", "1", "--no-progress", "--no-table")
    rows = {r["case"]: r for r in json.loads(sweeper(tmp_path, "runs", "f", "-f", "json").stdout)}
    assert rows["ok"]["state"] == "completed"
    assert rows["raise"]["error"] == "ValueError: boom (train.py:6 in train)"
    assert rows["nan"]["error"] == "metric 'val_loss' is nan"
    assert rows["missing"]["error"] == ("returned metrics have no 'val_loss' (returned keys: loss)")
    assert "3 failed" in run.stdout


BAD_COMMANDS = {
    "exit3": 'import sys; print("oops", file=sys.stderr); sys.exit(3)',
    "nofinal": 'import json; print(json.dumps({"step": 1, "val_loss": 1.0}))',
    "hang": "import time; time.sleep(60)",
    "nan": "print('{\"val_loss\": NaN}')",
    "ok": "print('{\"val_loss\": 0.25}')",
}


def test_failures_of_a_command_are_one_line_each_and_the_study_goes_on(tmp_path: Path) -> None:
    for case, code in BAD_COMMANDS.items():
        (tmp_path / f"{case}.py").write_text(code + "\n")
    (tmp_path / "s.toml").write_text(
        'name = "c"\ncommand = ["python", "{case}.py"]\nmetric = "val_loss"\ntimeout = 2\n'
        f"[space]\ncase = {json.dumps(list(BAD_COMMANDS))}\n"
    )
    sweeper(tmp_path, "run", "s.toml", "--workers", "2", "--no-progress", "--no-table")
    rows = {r["case"]: r for r in json.loads(sweeper(tmp_path, "runs", "c", "-f", "json").stdout)}
    assert rows["ok"]["state"] == "completed" and rows["ok"]["val_loss"] == 0.25
    assert rows["exit3"]["error"] == "command exited with code 3: oops"
    assert rows["nofinal"]["error"].startswith("command printed no final metrics")
    assert rows["hang"]["error"] == "timed out after 2 s"
    assert rows["nan"]["error"] == "metric 'val_loss' is nan"
    for case in ("exit3", "nofinal", "hang", "nan"):
        assert "\n" not in rows[case]["error"]


@pytest.mark.parametrize(
    ("study", "message"),
    [
        (
            'name = "x"\ntask = "nope.py:train"\nmetric = "m"\n',
            "Error: s.toml: task: ",
        ),
        (
            'name = "x"\ntask = "train.py:two"\nmetric = "m"\n',
            "Error: s.toml: task: ",
        ),
        (
            'name = "x"\ncommand = ["python", "t.py", "{lrr}"]\nmetric = "m"\n[space]\nlr = [1]\n',
            "Error: s.toml: command[2]: unknown placeholder {lrr}",
        ),
    ],
)
def test_a_bad_task_is_one_line_before_anything_is_written(
    tmp_path: Path, study: str, message: str
) -> None:
    (tmp_path / "train.py").write_text("def two(params, seed):\n    return {}\n")
    (tmp_path / "s.toml").write_text(study)
    run = sweeper(tmp_path, "run", "s.toml")
    assert run.returncode == 1
    assert run.stderr.startswith(message), run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results.db").exists()


def test_editing_the_code_is_refused_and_a_worker_elsewhere_runs_the_stored_code(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    (project / "study.toml").write_text(FUNCTION_STUDY)
    db = str(tmp_path / "shared.db")
    first = sweeper(project, "run", "study.toml", "--db", db, "--workers", "1", "--no-progress")
    assert first.returncode == 0, first.stderr
    before = sqlite3.connect(db).execute("SELECT count(*) FROM trials").fetchone()
    (project / "train.py").write_text(TRAIN.replace("seed * 1e-3", "seed * 2e-3"))
    (project / "study.toml").write_text(FUNCTION_STUDY.replace("seeds = 2", "seeds = 3"))
    refused = sweeper(project, "run", "study.toml", "--db", db)
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: train.py changed since study 'mine' ran it")
    assert "--code-changed new-trials" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert sqlite3.connect(db).execute("SELECT count(*) FROM trials").fetchone() == before
    # Going on with the new code: the old results stay, the new seed's trials run, each trial
    # records which code it ran.
    again = sweeper(
        project, "run", "study.toml", "--db", db, "--code-changed", "new-trials", "--no-progress"
    )
    assert again.returncode == 0, again.stderr
    hashes = (
        sqlite3.connect(db)
        .execute("SELECT seed, count(DISTINCT code_hash) FROM trials GROUP BY seed ORDER BY seed")
        .fetchall()
    )
    assert [n for _seed, n in hashes] == [1, 1, 1]
    codes = sqlite3.connect(db).execute("SELECT DISTINCT code_hash FROM trials").fetchall()
    assert len(codes) == 2

    # A worker started from another directory (where no train.py exists) runs the stored code.
    from sweeper.launch.options import RunOptions
    from sweeper.launch.run import start
    from sweeper.study import Study

    (project / "study.toml").write_text(FUNCTION_STUDY.replace("seeds = 2", "seeds = 4"))
    queued = start(
        Study.from_file(project / "study.toml"), db, RunOptions(code_changed="new-trials")
    )
    assert queued.todo == 4
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (project / "train.py").rename(project / "moved.py")
    work = sweeper(elsewhere, "worker", "--db", db, "--study", "mine", "--workers", "1")
    assert work.returncode == 0, work.stderr
    states = sqlite3.connect(db).execute("SELECT state, count(*) FROM trials GROUP BY state")
    assert dict(states.fetchall()) == {"completed": 16}


PLUGIN = """
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from sweeper.tasks.base import TrialOutcome


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    a: float = 1.0


class Square:
    name: ClassVar[str] = "square"
    Params: ClassVar[type[BaseModel]] = Params
    supports_batching: ClassVar[bool] = False
    metrics: ClassVar[tuple[str, ...]] = ("sq",)

    def group_key(self, params):
        return ""

    def member_bytes(self, params):
        return 0

    def check_data(self, params, data_dir):
        return None

    def run(self, trials, ctx):
        for t in trials:
            yield TrialOutcome(t.trial_id, metrics={"sq": t.params["a"] ** 2 + t.seed})
"""


def test_an_installed_plugin_task_is_listed_and_runs(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "sqplugin-1.0.dist-info").mkdir(parents=True)
    (site / "sqplugin.py").write_text(PLUGIN)
    (site / "sqplugin-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: sqplugin\nVersion: 1.0\n"
    )
    (site / "sqplugin-1.0.dist-info" / "entry_points.txt").write_text(
        "[sweeper.tasks]\nsquare = sqplugin:Square\n"
    )
    env = {"PYTHONPATH": str(site)}
    listed = sweeper(tmp_path, "tasks", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "square (from sqplugin)" in listed.stdout
    assert "parameters: a" in listed.stdout and "metrics: sq" in listed.stdout
    (tmp_path / "s.toml").write_text(
        'name = "p"\ntask = "square"\nmetric = "sq"\nseeds = 2\n[space]\na = [1.0, 3.0]\n'
    )
    run = sweeper(tmp_path, "run", "s.toml", "--workers", "1", "--no-progress", env=env)
    assert run.returncode == 0, run.stderr
    best = json.loads(sweeper(tmp_path, "best", "p", "-f", "json", env=env).stdout)
    assert [(r["a"], r["mean"]) for r in best] == [(1.0, 1.5), (3.0, 9.5)]


@pytest.mark.parametrize("example", ["function", "command"])
def test_the_shipped_examples_run(tmp_path: Path, example: str) -> None:
    study = Path(__file__).resolve().parents[1] / "studies" / "examples" / example / "study.toml"
    env = {"SWEEPER_TRIALS_DIR": str(tmp_path / "trials")}
    db = str(tmp_path / "e.db")
    run = sweeper(tmp_path, "run", str(study), "--db", db, "--workers", "2", "--no-progress",
                  env=env)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "8 completed, 0 failed, 0 left" in run.stdout
    best = json.loads(
        sweeper(tmp_path, "best", f"example_{example}", "--db", db, "-f", "json").stdout
    )
    assert len(best) == 4 and all(r["n"] == 2 for r in best)
    if example == "function":
        assert len(list((tmp_path / "trials").glob("example_function/*/model.pt"))) == 8


def test_parameters_are_typed_by_the_values_the_study_gives(tmp_path: Path) -> None:
    from sweeper.errors import StudyFileError
    from sweeper.study import Study

    (tmp_path / "train.py").write_text(TRAIN)
    raw = {
        "name": "typed",
        "task": "train.py:train",
        "metric": "val_loss",
        "fixed": {"epochs": 3, "tag": "a"},
        "space": {"width": [16, 32], "lr": [1, 0.5], "wd": [0.0]},
    }
    study = Study.from_dict(raw, base_dir=tmp_path)
    assert study.axes["width"] == [16, 32] and all(type(v) is int for v in study.axes["width"])
    assert study.axes["lr"] == [1.0, 0.5] and all(type(v) is float for v in study.axes["lr"])
    assert study.fixed == {"epochs": 3, "tag": "a"}
    bad = {**raw, "space": {"width": [16, "wide"], "lr": [0.1]}}
    with pytest.raises(StudyFileError) as err:
        Study.from_dict(bad, "s.toml", base_dir=tmp_path)
    assert err.value.problems == ["s.toml: space.width: mixes int and str values; use one type"]
