"""A user's function and command under Optuna search, pruning, and kill -9."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.test_own_code import BIN, sweeper

FUNCTION = """
def train(params, seed, trial):
    loss = 0.0
    for epoch in range(1, params["epochs"] + 1):
        loss = (params["x"] - 0.3) ** 2 + 1.0 / epoch
        trial.report(epoch, val_loss=loss)
    return {"val_loss": loss}
"""

COMMAND = """
import json, sys
x, epochs = float(sys.argv[1]), int(sys.argv[2])
loss = 0.0
for epoch in range(1, epochs + 1):
    loss = (x - 0.3) ** 2 + 1.0 / epoch
    print(json.dumps({"step": epoch, "val_loss": loss}), flush=True)
print(json.dumps({"val_loss": loss}))
"""

TASK = {
    "function": 'task = "train.py:train"',
    "command": 'command = ["python", "train.py", "{x}", "{epochs}"]',
}


def search_study(kind: str, *, pruner: str | None, budget: int, epochs: int) -> str:
    return (
        f'name = "s"\n{TASK[kind]}\nmetric = "val_loss"\n'
        f'kind = "{"tpe" if not pruner else "random"}"\n'
        f"budget = {budget}\nseeds = 1\nsampler_seed = 3\n"
        + (f'pruner = "{pruner}"\n' if pruner else "")
        + f"[fixed]\nepochs = {epochs}\n[space]\nx = {{ low = 0.0, high = 1.0 }}\n"
    )


@pytest.mark.parametrize("kind", ["function", "command"])
def test_tpe_searches_a_users_code(tmp_path: Path, kind: str) -> None:
    (tmp_path / "train.py").write_text(FUNCTION if kind == "function" else COMMAND)
    (tmp_path / "s.toml").write_text(search_study(kind, pruner=None, budget=12, epochs=3))
    run = sweeper(tmp_path, "run", "s.toml", "--workers", "1", "--no-progress", "--no-table")
    assert run.returncode == 0, run.stderr
    con = sqlite3.connect(tmp_path / "results.db")
    assert con.execute("SELECT count(*) FROM proposals").fetchone() == (12,)
    rows = con.execute("SELECT state, value, params FROM trials").fetchall()
    assert len(rows) == 12 and {r[0] for r in rows} == {"completed"}
    for _state, value, params in rows:
        x = json.loads(params)["x"]
        assert value == pytest.approx((x - 0.3) ** 2 + 1 / 3)
    # TPE, having seen 10 random start-up proposals, proposes near the optimum.
    best = min(value for _s, value, _p in rows)
    assert best < 0.02 + 1 / 3


@pytest.mark.parametrize("kind", ["function", "command"])
def test_median_pruning_stops_a_users_code(tmp_path: Path, kind: str) -> None:
    (tmp_path / "train.py").write_text(FUNCTION if kind == "function" else COMMAND)
    (tmp_path / "s.toml").write_text(search_study(kind, pruner="median", budget=16, epochs=10))
    run = sweeper(tmp_path, "run", "s.toml", "--workers", "1", "--no-progress", "--no-table")
    assert run.returncode == 0, run.stderr
    con = sqlite3.connect(tmp_path / "results.db")
    rows = con.execute(
        "SELECT t.state, c.curves FROM trials t LEFT JOIN trial_curves c ON c.trial_id = t.id"
    ).fetchall()
    states = Counter(state for state, _ in rows)
    assert states["pruned"] > 0 and states["completed"] > 0, states
    assert set(states) == {"completed", "pruned"}
    for state, curves in rows:
        n = len(json.loads(curves)["val_loss"])
        # Pruned once the warm-up (epoch 5) is over, with its curve so far; completed: all 10.
        assert (5 <= n < 10) if state == "pruned" else n == 10


SLEEPER = """
import json, os, sys, time
x = sys.argv[1]
(open(f"pids/{x}.pid", "w")).write(str(os.getpid()))
time.sleep(1.5)
with open("done.log", "a") as f:
    f.write(x + "\\n")
print(json.dumps({"val_loss": float(x)}))
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state  # a zombie has exited


def test_kill_9_of_a_command_run_leaves_no_child_and_resumes_exactly_once(tmp_path: Path) -> None:
    (tmp_path / "pids").mkdir()
    (tmp_path / "train.py").write_text(SLEEPER)
    xs = list(range(8))
    (tmp_path / "s.toml").write_text(
        'name = "k"\ncommand = ["python", "train.py", "{x}"]\nmetric = "val_loss"\n'
        f"[space]\nx = {xs}\n"
    )
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"]}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweeper", "run", "s.toml", "--workers", "2", "--no-progress"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    done = tmp_path / "done.log"
    # Kill while two programs run and at least one trial has finished.
    while time.time() < deadline:
        finished = done.read_text().split() if done.exists() else []
        started = [p.stem for p in (tmp_path / "pids").glob("*.pid")]
        if finished and len(set(started) - set(finished)) >= 2:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the run never had two programs in flight")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    pids = [int(p.read_text()) for p in (tmp_path / "pids").glob("*.pid") if p.read_text()]
    limit = time.time() + 15
    while time.time() < limit and any(alive(pid) for pid in pids):
        time.sleep(0.2)
    assert [pid for pid in pids if alive(pid)] == []
    again = sweeper(tmp_path, "run", "s.toml", "--workers", "2", "--no-progress", "--no-table")
    assert again.returncode == 0, again.stderr
    assert "k: 8 completed, 0 failed, 0 left" in again.stdout
    assert Counter(done.read_text().split()) == Counter(str(x) for x in xs)
    con = sqlite3.connect(tmp_path / "results.db")
    assert con.execute(
        "SELECT count(DISTINCT key) FROM trials WHERE state = 'completed'"
    ).fetchone() == (8,)
