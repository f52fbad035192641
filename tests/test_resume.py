"""Resuming is a promise: after kill -9 the study finishes with every trial completed once, and
two runs of one study at once never execute a trial twice."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sweeper.plan import grid
from sweeper.store import Store, WorkerId
from sweeper.study import parse_study
from sweeper.tasks import TrialOutcome, get_task

SLOW_TOY = """
name = "slow"
task = "toy"
metric = "loss"
seeds = 3
[fixed]
epochs = 2
sleep = {sleep}
[space]
x = [0.0, 1.0, 2.0, 3.0]
y = [0.0, -1.0, -2.0]
"""


def start(tmp_path: Path, log: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SWEEPER_TOY_LOG": str(log)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sweeper",
            "run",
            "slow.toml",
            "--no-progress",
            "--no-table",
            *extra,
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def trials(db: Path) -> list[tuple[int, str, str, int, float | None, float | None]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(
            "SELECT id, key, state, attempts, started_at, finished_at FROM trials ORDER BY id"
        ).fetchall()
    finally:
        con.close()


def completed_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        return sum(1 for t in trials(db) if t[2] == "completed")
    except sqlite3.OperationalError:
        return 0


@pytest.mark.parametrize("executor", ["trial", "batched"])
def test_kill_9_then_resume_completes_every_trial_once(tmp_path: Path, executor: str) -> None:
    (tmp_path / "slow.toml").write_text(SLOW_TOY.format(sleep=0.1))
    db, log = tmp_path / "results.db", tmp_path / "executions.log"
    # Batched: each worker claims half the study as one group; the kill lands mid-group.
    proc = start(tmp_path, log, "--workers", "2", "--executor", executor)
    deadline = time.time() + 120
    while completed_count(db) < 8 and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t[0]: t for t in trials(db) if t[2] == "completed"}
    assert 8 <= len(before) < 36, "the kill should land mid-study"
    time.sleep(1.5)  # the orphaned workers notice their parent is gone and exit

    again = start(tmp_path, log, "--workers", "2", "--executor", executor)
    output, _ = again.communicate(timeout=180)
    assert again.returncode == 0, output
    after = trials(db)
    assert len(after) == 36 and all(t[2] == "completed" for t in after)
    # Completed trials were not touched: same ids, same timestamps.
    for trial_id, row in before.items():
        assert next(t for t in after if t[0] == trial_id) == row
    # Every trial was recorded once; only trials in flight at the kill ran again.
    runs = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert set(runs) == {t[1] for t in after}
    rerun = [k for k, n in runs.items() if n > 1]
    assert len(rerun) <= 2, rerun


def test_two_runs_at_once_never_execute_a_trial_twice(tmp_path: Path) -> None:
    # 36 trials of 0.3 s: long enough that both processes are up before the queue empties.
    (tmp_path / "slow.toml").write_text(SLOW_TOY.format(sleep=0.15))
    db, log = tmp_path / "results.db", tmp_path / "executions.log"
    # Per-trial claims, so that both processes compete for every trial.
    procs = [start(tmp_path, log, "--workers", "1", "--executor", "trial") for _ in range(2)]
    outputs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    rows = trials(db)
    assert len(rows) == 36 and all(t[2] == "completed" and t[3] == 1 for t in rows)
    runs = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert len(runs) == 36 and set(runs.values()) == {1}
    # Both processes did work (the race was real).
    assert len({line.split()[1] for line in log.read_text().splitlines()}) == 2


def _claim_loop(url: str, n: int, queue: mp.Queue, start: Any) -> None:  # type: ignore[type-arg]
    me = WorkerId(f"racer:{n}", "racehost", os.getpid())
    got: list[int] = []
    with Store(url) as store:
        sid = store.study("race").id
        # Both racers start claiming together; a spawned process can take seconds to import,
        # and without the gate the first one up may drain the queue alone.
        start.wait(timeout=120)
        while batch := store.claim(sid, me):
            for t in batch:
                time.sleep(0.002)  # a trial that takes a moment, so the other racer gets a turn
                store.record(me, [TrialOutcome(t.trial_id, {"loss": 0.0})], "loss")
                got.append(t.trial_id)
    queue.put(got)


def test_claim_race_between_two_processes(db_url: str) -> None:
    study = parse_study(
        {
            "name": "race",
            "task": "toy",
            "metric": "loss",
            "seeds": 10,
            "space": {"x": [float(i) for i in range(20)]},
        },
        "race",
    )
    with Store(db_url, create=True) as store:
        store.save_study(study, grid(study, get_task("toy").group_key))
    ctx = mp.get_context("spawn")
    queue, start = ctx.Queue(), ctx.Barrier(2)
    procs = [ctx.Process(target=_claim_loop, args=(db_url, i, queue, start)) for i in range(2)]
    for p in procs:
        p.start()
    claimed = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    a, b = set(claimed[0]), set(claimed[1])
    assert not a & b
    assert len(a | b) == 200 and len(claimed[0]) + len(claimed[1]) == 200
    assert a and b
