"""Reliability: one sick worker never ends a sweep, signals stop a run cleanly, kills lose nothing.

- kill -9 of one local worker mid-run: the run goes on (a replacement starts), finishes every
  trial with exit 0, and no trial runs twice; past --max-retries the dead worker's trial fails,
  saying why.
- SIGINT (Ctrl-C, to the whole process group or to `sweeper run` alone) and SIGTERM with 2
  workers: exit 130 / 143 with the resume hint, no trial left running, attempts unchanged, no
  resource-tracker warning; the next run finishes every trial in its first attempt.
- A soak: `sweeper run` killed with kill -9 at random moments, then a final run completes every
  trial; a completed trial is never touched again. The short form runs in CI; the long form
  (the batched obesity study and a per-trial toy study, each run killed 3-8 s after its first
  claim, so that a loaded machine's slow start cannot swallow the kills) runs with
  SWEEPER_SOAK=1 (or SWEEPER_SOAK=<random seed>; SWEEPER_SOAK_KILLS, default 10) and prints its
  figures (`pytest -s`; also appended to $SWEEPER_SOAK_REPORT as JSON lines).

The toy task appends ``<key> <pid> <data dir>`` to $SWEEPER_TOY_LOG when an execution finishes:
the tests count executions with it, as tests/test_resume.py does.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO

Row = tuple[int, str, str, int, int | None, float | None, float | None, str | None]


def toy_file(tmp_path: Path, *, sleep: float, xs: int = 4, seeds: int = 3) -> Path:
    """A toy study of `xs` x 3 configurations x `seeds` seeds, 2 epochs of `sleep` s each."""
    path = tmp_path / "toy.toml"
    path.write_text(
        'name = "toy"\ntask = "toy"\nmetric = "loss"\n'
        f"seeds = {seeds}\n[fixed]\nepochs = 2\nsleep = {sleep}\n"
        f"[space]\nx = {[float(i) for i in range(xs)]}\ny = [0.0, -1.0, -2.0]\n"
    )
    return path


def sweeper_run(
    study: Path, db: Path, log: Path, *extra: str, session: bool = False
) -> subprocess.Popen[str]:
    """`sweeper run STUDY --db DB ...` in the background; `session`: its own process group,
    so that a test can press Ctrl-C on the group as a terminal does."""
    return subprocess.Popen(
        [sys.executable, "-m", "sweeper", "run", str(study), "--db", str(db), "--no-progress",
         "--no-table", *extra],
        cwd=db.parent,
        env={**os.environ, "SWEEPER_TOY_LOG": str(log)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=session,
    )  # fmt: skip


def rows(db: Path) -> list[Row]:
    """(id, key, state, attempts, pid, started_at, finished_at, error) of every trial."""
    if not db.exists():
        return []
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(
            "SELECT id, key, state, attempts, pid, started_at, finished_at, error FROM trials "
            "ORDER BY id"
        ).fetchall()
    except sqlite3.OperationalError:  # the tables are not there yet
        return []
    finally:
        con.close()


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def executions(log: Path) -> list[tuple[str, int]]:
    """(key, pid) of every finished execution, in order."""
    if not log.exists():
        return []
    return [(line.split()[0], int(line.split()[1])) for line in log.read_text().splitlines()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def no_warnings(stderr: str) -> None:
    for bad in ("leaked", "resource_tracker", "Traceback", "unexpected"):
        assert bad not in stderr, stderr


# -- one worker dies ---------------------------------------------------------------------------


def _victim(db: Path, parent: int, *, fresh: bool) -> tuple[int, list[int]] | None:
    """A worker process (not `parent`) running trials now, and their ids; with `fresh`, only
    one whose trial started less than 0.1 s ago (its execution cannot have finished)."""
    running = [r for r in rows(db) if r[2] == "running" and r[4] not in (None, parent)]
    if fresh:
        running = [r for r in running if r[5] is not None and time.time() - r[5] < 0.1]
    if not running or sum(r[2] == "completed" for r in rows(db)) < 4:
        return None
    pid = running[0][4]
    assert pid is not None
    return pid, [r[0] for r in running if r[4] == pid]


@pytest.mark.parametrize("mode", ["per-trial", "batched"])
def test_kill_9_of_one_worker_the_run_finishes_every_trial_once(tmp_path: Path, mode: str) -> None:
    # 36 trials of 0.3 s; batched: each worker claims half of the one group.
    study, db, log = toy_file(tmp_path, sleep=0.15), tmp_path / "r.db", tmp_path / "exec.log"
    proc = sweeper_run(study, db, log, "--workers", "2", "--mode", mode)
    found: list[tuple[int, list[int]]] = []

    def pick() -> bool:
        # Per trial, a trial that has just started: its execution is 0.3 s from logging, so
        # the kill cannot fall between its log line and its result (which would run it twice
        # for reasons outside sweeper). Batched, when every logged execution is recorded.
        v = _victim(db, proc.pid, fresh=mode == "per-trial")
        if v is None:
            return False
        done = {r[1] for r in rows(db) if r[2] == "completed"}
        if mode == "batched" and any(k not in done for k, _ in executions(log)):
            return False
        found.append(v)
        os.kill(v[0], signal.SIGKILL)
        return True

    wait_for(pick, 120, "a worker running trials")
    victim, held = found[0]
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, out + err
    line = re.search(
        rf"worker [12] \(pid {victim}\) died \(SIGKILL\); its (\d+) trials? went back to the "
        r"queue; started a replacement \(pid (\d+)\)",
        err,
    )
    assert line, err
    no_warnings(err)

    after = rows(db)
    assert len(after) == 36 and all(r[2] == "completed" for r in after), after
    # The trials it held are exactly those re-queued: a lost attempt, counted and said so,
    # finished by another worker; the others ran once.
    lost = [r for r in after if f"attempt lost: process {victim} on " in (r[7] or "")]
    assert len(lost) == int(line[1]) >= 1 and set(held) >= {r[0] for r in lost}
    assert all(r[3] == 2 and r[4] != victim for r in lost)
    assert all(r[3] == 1 for r in after if r not in lost)
    runs = Counter(k for k, _ in executions(log))
    assert set(runs) == {r[1] for r in after} and set(runs.values()) == {1}, runs


def test_a_trial_whose_worker_dies_past_max_retries_fails_saying_why(tmp_path: Path) -> None:
    study, db, log = toy_file(tmp_path, sleep=0.15, seeds=1), tmp_path / "r.db", tmp_path / "x"
    args = ("--workers", "2", "--mode", "per-trial", "--max-retries", "0")
    proc = sweeper_run(study, db, log, *args)
    found: list[tuple[int, list[int]]] = []

    def pick() -> bool:
        running = [r for r in rows(db) if r[2] == "running" and r[4] not in (None, proc.pid)]
        running = [r for r in running if r[5] is not None and time.time() - r[5] < 0.1]
        if not running:
            return False
        found.append((int(running[0][4] or 0), [running[0][0]]))
        os.kill(found[0][0], signal.SIGKILL)
        return True

    wait_for(pick, 120, "a worker running a trial")
    victim, (killed,) = found[0]
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 3, out + err  # finished, one trial failed
    assert re.search(
        rf"worker [12] \(pid {victim}\) died \(SIGKILL\); its 1 trial failed \(no attempts "
        r"left, --max-retries 0\); started a replacement",
        err,
    ), err
    assert "11 completed, 1 failed, 0 left" in out
    after = {r[0]: r for r in rows(db)}
    assert after[killed][2] == "failed" and after[killed][3] == 1
    assert (
        f"worker process {victim} on {os.uname().nodename} died (SIGKILL) while running this "
        "trial, and no attempts are left (--max-retries 0)" in (after[killed][7] or "")
    )
    assert all(r[2] == "completed" and r[3] == 1 for i, r in after.items() if i != killed)


def test_workers_that_keep_dying_end_the_run_with_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sweeper.errors import SweeperError
    from sweeper.launch import supervisor
    from sweeper.launch.backends import launch_local
    from sweeper.launch.options import WorkerOptions
    from sweeper.plan import grid
    from sweeper.store import Store
    from sweeper.study import load_study
    from sweeper.tasks import get_task

    monkeypatch.setattr(supervisor, "REPLACEMENTS_PER_WORKER", 0)
    study, db = load_study(toy_file(tmp_path, sleep=0.15)), tmp_path / "r.db"
    url = f"sqlite:///{db}"
    with Store(url, create=True) as store:
        store.save_study(study, grid(study, get_task("toy").group_key))
    killed: set[int] = set()

    def killer() -> None:  # kill -9 each worker once it holds a trial
        deadline = time.time() + 120
        while len(killed) < 2 and time.time() < deadline:
            for r in rows(db):
                if r[2] == "running" and r[4] is not None and r[4] not in killed:
                    os.kill(r[4], signal.SIGKILL)
                    killed.add(r[4])
            time.sleep(0.05)

    events: list[str] = []
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    options = WorkerOptions(None, group_size=1)
    with pytest.raises(SweeperError) as error:
        launch_local(url, "toy", 2, options, on_event=events.append)
    thread.join()
    left = sum(r[2] == "queued" for r in rows(db))
    assert str(error.value) == (
        f"worker processes kept dying (2 in this run, 0 replaced), leaving {left} trials of "
        "'toy' in the queue: run the same command again to finish them (SIGKILL usually means "
        "out of memory: try fewer --workers or a smaller --max-memory)"
    )
    assert len(events) == 2 and all(
        re.fullmatch(
            # (it held no trial if it died between a result and its next claim; the second kill
            # may hit the trial the first one sent back, which then has no attempt left)
            r"worker [12] \(pid \d+\) died \(SIGKILL\); (its 1 trial went back to the queue|"
            r"its 1 trial failed \(no attempts left, --max-retries 1\)|"
            r"it held no trial); not replaced: this run already replaced 0 workers",
            e,
        )
        for e in events
    ), events
    assert not [r for r in rows(db) if r[2] == "running"] and left > 0


# -- signals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "to", "mode"),
    [
        ("SIGINT", "group", "batched"),  # Ctrl-C in a terminal: every process of the group
        ("SIGINT", "run", "per-trial"),  # kill -INT of `sweeper run` alone
        ("SIGTERM", "run", "per-trial"),  # what systemd, docker stop and SLURM send
    ],
)
def test_a_signal_stops_the_run_and_puts_its_trials_back(
    tmp_path: Path, name: str, to: str, mode: str
) -> None:
    signum = signal.Signals[name]
    study, db, log = toy_file(tmp_path, sleep=0.15), tmp_path / "r.db", tmp_path / "exec.log"
    proc = sweeper_run(study, db, log, "--workers", "2", "--mode", mode, session=to == "group")

    def busy() -> bool:
        now = rows(db)
        return sum(r[2] == "completed" for r in now) >= 3 and any(r[2] == "running" for r in now)

    wait_for(busy, 120, "trials completed and others running")
    if to == "group":
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, out + err
    by = "" if name == "SIGINT" else f" by {name}"
    assert re.search(
        rf"^Interrupted{by}: \d+ of 36 trials completed and saved\. Run the same command again "
        r"\(or `sweeper resume toy`\) to finish\.$",
        err,
        re.M,
    ), err
    no_warnings(err)
    stopped = rows(db)
    assert not [r for r in stopped if r[2] == "running"]
    # Attempts unchanged: trials that were in flight are queued with no attempt charged.
    assert all(r[3] == (1 if r[2] == "completed" else 0) for r in stopped), stopped
    assert any(r[2] == "queued" for r in stopped)

    again = sweeper_run(study, db, log, "--workers", "2", "--mode", mode)
    out, err = again.communicate(timeout=180)
    assert again.returncode == 0, out + err
    assert "re-queued" not in out  # nothing was left running for the next run to take back
    final = rows(db)
    assert all(r[2] == "completed" and r[3] == 1 for r in final), final
    for before in stopped:
        if before[2] == "completed":
            assert before in final  # untouched


def test_sigterm_stops_sweeper_worker_and_puts_its_trials_back(tmp_path: Path) -> None:
    study, db, log = toy_file(tmp_path, sleep=0.15), tmp_path / "r.db", tmp_path / "exec.log"
    # The study is queued by a run that stops at once (one worker, SIGTERM after its claim).
    first = sweeper_run(study, db, log, "--workers", "1", "--mode", "per-trial")
    wait_for(lambda: any(r[2] == "running" for r in rows(db)), 120, "a first claim")
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 143 and "Interrupted by SIGTERM: " in err, out + err
    assert all(r[3] == (r[2] == "completed") for r in rows(db))

    worker = subprocess.Popen(
        [sys.executable, "-m", "sweeper", "worker", "--db", str(db), "--workers", "2"],
        cwd=tmp_path,
        env={**os.environ, "SWEEPER_TOY_LOG": str(log)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def busy() -> bool:
        now = rows(db)
        return sum(r[2] == "completed" for r in now) >= 4 and any(r[2] == "running" for r in now)

    wait_for(busy, 120, "the workers to complete trials and run others")
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 143, out + err
    *progress, last = err.strip().splitlines()
    assert last == (
        "Interrupted by SIGTERM: the trials in flight went back to the queue. Run "
        "`sweeper worker` again to go on."
    )
    # Before it, only the worker's progress lines (a job log has no terminal).
    assert all(re.match(r"\S+: \d+/\d+ done, ", line) for line in progress), err
    stopped = rows(db)
    assert not [r for r in stopped if r[2] == "running"]
    assert all(r[3] == (1 if r[2] == "completed" else 0) for r in stopped), stopped
    assert any(r[2] == "queued" for r in stopped)


# -- soak: kill -9 of `sweeper run` at random moments ------------------------------------------


def soak(
    study: Path,
    db: Path,
    log: Path,
    args: tuple[str, ...],
    *,
    kills: int,
    gap: tuple[float, float],
    after_first_claim: bool,
    seed: int,
) -> dict[str, object]:
    """Kill `sweeper run` `kills` times, `gap` seconds apart (counted from the moment it first
    holds a trial when `after_first_claim`), then run it to the end; check and return figures.

    Checks: every run but the last dies of SIGKILL, the last exits 0; every trial completes; a
    trial completed before a kill is never touched again; every trial's attempts beyond the
    first are attempts lost in a kill.
    """
    rng = random.Random(seed)
    began = time.time()
    frozen: dict[int, Row] = {}
    killed_pids: set[int] = set()
    progress: list[int] = []
    for _ in range(kills):
        proc = sweeper_run(study, db, log, *args)
        if after_first_claim:
            # A claim of this run's workers (the killed run's trials stay `running` until this
            # run re-queues them).
            def claimed(proc: subprocess.Popen[str] = proc, old: set[int] = killed_pids) -> bool:
                return proc.poll() is not None or any(
                    r[2] == "running" and r[4] not in old for r in rows(db)
                )

            wait_for(claimed, 120, "a claimed trial")
        time.sleep(rng.uniform(*gap))
        workers = {r[4] for r in rows(db) if r[2] == "running" and r[4] is not None}
        if proc.poll() is not None:  # the study was done before this kill
            out, err = proc.communicate()
            assert proc.returncode == 0, out + err
            break
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        killed_pids |= workers
        # Orphaned workers notice within a second and exit (their trials are then re-queued
        # by the next run at once, not when their lease ends).
        gone = workers.copy()
        wait_for(lambda: not any(alive(p) for p in gone), 15, "orphaned workers to exit")  # noqa: B023
        for r in rows(db):
            if r[2] == "completed":
                assert frozen.setdefault(r[0], r) == r, "a completed trial changed"
        progress.append(len(frozen))
    final_began = time.time()
    final = sweeper_run(study, db, log, *args)
    out, err = final.communicate(timeout=3000)
    assert final.returncode == 0, out + err
    no_warnings(err)
    after = rows(db)
    assert after and all(r[2] == "completed" for r in after), after
    for trial_id, r in frozen.items():
        assert next(a for a in after if a[0] == trial_id) == r, "a completed trial changed"
    attempts = Counter(r[3] for r in after)
    rerun = sum(r[3] - 1 for r in after)
    lost = sum((r[7] or "").count("attempt lost") for r in after)
    assert rerun == lost, "every attempt beyond the first is one lost in a kill"
    return {
        "kills": len(progress),
        "trials": len(after),
        "seconds": round(time.time() - began, 1),
        "completed after each kill": progress,
        "final run seconds": round(time.time() - final_began, 1),
        "attempts (count of trials)": dict(sorted(attempts.items())),
        "attempts lost in kills (trials re-run)": rerun,
        "worker processes killed with their run": len(killed_pids),
    }


def check_toy_executions(log: Path, db: Path, kills: int, workers: int) -> int:
    """Each trial's result came from one execution; others were in flight at a kill. Returns
    how many executions there were beyond one per trial."""
    after = {r[1]: r for r in rows(db)}
    runs = Counter(k for k, _ in executions(log))
    assert set(runs) == set(after)
    extra = {k: n - 1 for k, n in runs.items() if n > 1}
    # Per trial, each kill catches at most one execution per worker between its log line and
    # its result: a window of a millisecond.
    assert sum(extra.values()) <= kills * workers, extra
    return sum(extra.values())


@pytest.mark.parametrize("mode", ["per-trial", "batched"])
def test_soak_short_random_kills_then_every_trial_completes_once(tmp_path: Path, mode: str) -> None:
    # 36 trials of 0.2 s (3.6 s for 2 workers); each run dies 0.3-1 s after its first claim.
    study, db, log = toy_file(tmp_path, sleep=0.1), tmp_path / "r.db", tmp_path / "x"
    args = ("--workers", "2", "--mode", mode)
    kills = 3 if mode == "per-trial" else 2
    figures = soak(
        study, db, log, args, kills=kills, gap=(0.3, 1.0), after_first_claim=True, seed=15
    )
    assert figures["kills"] == kills and figures["trials"] == 36
    check_toy_executions(log, db, kills, 2)


SOAK = os.environ.get("SWEEPER_SOAK")


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(not SOAK, reason="the long soak (minutes): run with SWEEPER_SOAK=1")
@pytest.mark.parametrize("study_name", ["obesity", "toy"])
def test_soak_long_kills_every_3_to_8_s_then_every_trial_completes(
    tmp_path: Path, study_name: str
) -> None:
    kills = int(os.environ.get("SWEEPER_SOAK_KILLS", "10"))
    log = tmp_path / "exec.log"
    if study_name == "obesity":
        found = [os.environ.get("SWEEPER_DATA_DIR"), str(REPO.parent / "shared" / "data")]
        data = next((Path(d) for d in found if d and (Path(d) / "obesity").is_dir()), None)
        if data is None:
            pytest.skip(f"the obesity dataset is in none of {found}")
        study = REPO / "studies" / "obesity.toml"
        args: tuple[str, ...] = ("--workers", "2", "--mode", "batched", "--data-dir", str(data))
    else:
        study = toy_file(tmp_path, sleep=0.25, xs=40, seeds=4)  # 480 trials of 0.5 s
        args = ("--workers", "2", "--mode", "per-trial")
    figures = soak(
        study, tmp_path / "r.db", log, args, kills=kills, gap=(3.0, 8.0),
        after_first_claim=True, seed=int(SOAK or 0) if (SOAK or "").isdigit() else 15,
    )  # fmt: skip
    report = {"study": study_name, "mode": args[3], **figures}
    if study_name == "toy":
        kills_made = int(str(figures["kills"]))
        extra = check_toy_executions(log, tmp_path / "r.db", kills_made, 2)
        report["executions beyond one per trial"] = extra
    print(json.dumps(report))  # the figures, with pytest -s
    if path := os.environ.get("SWEEPER_SOAK_REPORT"):
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(report) + "\n")
