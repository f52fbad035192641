"""Every executor passes the same suite; workers on several processes share one study safely.

The Dask tests run a real `distributed.LocalCluster`: separate worker processes talking to the
scheduler over loopback TCP, as hosts of a small cluster would.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweeper.launch.backends import get_backend
from sweeper.launch.options import WorkerOptions
from sweeper.plan import grid
from sweeper.store import Store
from sweeper.study import parse_study
from sweeper.tasks import get_task


@pytest.fixture(scope="module")
def toy_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One execution log for the module: Dask worker processes inherit it when they start."""
    log = tmp_path_factory.mktemp("log") / "executions.log"
    old = os.environ.get("SWEEPER_TOY_LOG")
    os.environ["SWEEPER_TOY_LOG"] = str(log)
    yield log
    if old is None:
        os.environ.pop("SWEEPER_TOY_LOG", None)
    else:
        os.environ["SWEEPER_TOY_LOG"] = old


@pytest.fixture(scope="module")
def scheduler(toy_log: Path) -> Iterator[str]:
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def toy_study(name: str, offset: float, n: int, *, sleep: float = 0.01, seeds: int = 2):  # type: ignore[no-untyped-def]
    # Distinct x values per test keep trial keys (and log lines) apart within the module.
    xs = [offset + i for i in range(n // seeds)]
    raw = {
        "name": name,
        "task": "toy",
        "metric": "loss",
        "seeds": seeds,
        "fixed": {"epochs": 2, "sleep": sleep},
        "space": {"x": xs},
    }
    return parse_study(raw, name)


def executions(log: Path, keys: set[str]) -> Counter[str]:
    return Counter(k for line in log.read_text().splitlines() if (k := line.split()[0]) in keys)


@pytest.mark.parametrize("backend", ["local", "dask"])
def test_executor_contract(
    backend: str, db_url: str, toy_log: Path, request: pytest.FixtureRequest
) -> None:
    address = request.getfixturevalue("scheduler") if backend == "dask" else None
    offset = 1000.0 if backend == "local" else 2000.0
    offset += 500.0 if db_url.startswith("postgresql") else 0.0
    # 0.2 s per trial: long enough that the second worker is up (a Dask worker imports torch on
    # its first task) before the first one has drained the queue.
    study = toy_study("contract", offset, 24, sleep=0.1)
    with Store(db_url, create=True) as store:
        sid = store.save_study(study, grid(study, get_task("toy").group_key)).study_id
    reports = get_backend(backend)(db_url, "contract", 2, WorkerOptions(None), address)
    assert len(reports) == 2 and sum(r.completed for r in reports) == 24
    with Store(db_url) as store:
        frame = store.frame(sid)
    assert (frame["state"] == "completed").all() and (frame["attempts"] == 1).all()
    assert set(executions(toy_log, set(frame["key"])).values()) == {1}
    assert len(set(frame["pid"])) == 2  # both workers took part


def _sweeper(*args: str, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sweeper", *args],
        env={**os.environ, "SWEEPER_TOY_LOG": str(log)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(condition, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


def _study_exists(url: str, name: str) -> bool:
    try:
        with Store(url) as store:
            store.study(name)
        return True
    except Exception:  # noqa: BLE001 - not there yet
        return False


def _study_file(tmp_path: Path, name: str, xs: list[float], sleep: float, seeds: int) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\ntask = "toy"\nmetric = "loss"\nseeds = {seeds}\n'
        f"[fixed]\nepochs = 2\nsleep = {sleep}\n[space]\nx = {xs}\n"
    )
    return path


def test_stress_four_workers_two_kinds_every_trial_once(
    db_url: str, scheduler: str, toy_log: Path, tmp_path: Path
) -> None:
    """200 short trials; 2 Dask workers (via sweeper run) and 2 `sweeper worker` processes."""
    offset = 10_000.0 if db_url.startswith("sqlite") else 20_000.0
    xs = [offset + i for i in range(100)]
    study_file = _study_file(tmp_path, "stress", xs, sleep=0.04, seeds=2)
    common = ("--db", db_url, "--executor", "trial")
    runner = _sweeper(
        "run",
        str(study_file),
        *common,
        "--backend",
        "dask",
        "--scheduler",
        scheduler,
        "--no-progress",
        "--no-table",
        log=toy_log,
    )
    _wait_for(lambda: _study_exists(db_url, "stress"))
    workers = [
        _sweeper("worker", *common, "--study", "stress", "--workers", "1", log=toy_log)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in [runner, *workers]]
    assert [p.returncode for p in [runner, *workers]] == [0, 0, 0], outputs
    with Store(db_url) as store:
        frame = store.frame(store.study("stress").id)
    assert len(frame) == 200
    assert (frame["state"] == "completed").all() and (frame["attempts"] == 1).all()
    runs = executions(toy_log, set(frame["key"]))
    assert len(runs) == 200 and set(runs.values()) == {1}
    assert frame["pid"].nunique() == 4, "all four workers should have taken trials"


def test_kill_9_of_a_worker_mid_trial_is_taken_over_after_its_lease(
    tmp_path: Path, toy_log: Path
) -> None:
    db = tmp_path / "kill.db"
    url = f"sqlite:///{db}"
    xs = [30_000.0 + i for i in range(12)]
    study_file = _study_file(tmp_path, "kill", xs, sleep=0.4, seeds=1)
    common = ("--db", url, "--executor", "trial", "--lease", "3")
    runner = _sweeper(
        "run",
        str(study_file),
        *common,
        "--workers",
        "1",
        "--no-progress",
        "--no-table",
        log=toy_log,
    )
    _wait_for(lambda: _study_exists(url, "kill"))
    victim = _sweeper("worker", *common, "--study", "kill", "--workers", "1", log=toy_log)

    def victim_trial() -> int | None:
        con = sqlite3.connect(db)
        try:
            row = con.execute(
                "SELECT id FROM trials WHERE state = 'running' AND pid = ?", (victim.pid,)
            ).fetchone()
        finally:
            con.close()
        return row[0] if row else None

    _wait_for(lambda: victim_trial() is not None)
    killed = victim_trial()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    output, _ = runner.communicate(timeout=120)
    assert runner.returncode == 0, output
    with Store(url) as store:
        frame = store.frame(store.study("kill").id).set_index("id")
    assert (frame["state"] == "completed").all()
    row = frame.loc[killed]
    assert row["attempts"] == 2
    assert f"attempt lost: lease of {os.uname().nodename}:{victim.pid}:" in row["error"]
    assert row["pid"] == runner.pid
    runs = executions(toy_log, set(frame["key"]))
    assert set(runs.values()) == {1}  # the killed attempt never finished
