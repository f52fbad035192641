"""Query speed at scale: `sweeper table` and `sweeper status` on a study of 100,000 trials.

The study is written straight into the database (the store creates the schema and the study
row; the trials go in by bulk INSERTs through SQLAlchemy core, in chunks): the obesity task,
2 optimizers x 10 learning rates x 10 weight decays x 5 SAM radii (x 5 batch sizes with
--configs 5000), seeds making up the 100,000 trials, with realistic rows: canonical parameter
JSON and trial keys as `sweeper run` writes them, three metrics, a 200-point per-epoch curve of
full-precision floats (3.8 kB of JSON), timing, hosts, and a mix of states (94% completed, 2%
failed with a traceback, 1% running, 3% queued). Then each command runs as a fresh subprocess,
as a user would run it, --repeat times: the best and the median wall time are printed, and the
median CPU time (user + system), which a busy machine inflates less than wall time; a bare
`sweeper --help` shows the interpreter's start-up.

SQLite (a file in a temporary directory) always; PostgreSQL (a temporary database on
127.0.0.1:5432, dropped afterwards) where a server answers, else skipped with the reason.

    python bench/scale.py                    # about 2 minutes on 2 cores
    python bench/scale.py --configs 5000     # the wider grid: 50 tables
    python bench/scale.py --trials 20000 --no-pg
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sweeper.canonical import canonical_json  # noqa: E402
from sweeper.plan import PlannedTrial, grid  # noqa: E402
from sweeper.store import Store  # noqa: E402
from sweeper.study import Study, parse_study  # noqa: E402
from sweeper.tasks import get_task  # noqa: E402

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
NAME = "scale"
EPOCHS = 200
CHUNK = 5000
TABLE_IMPORTS = "import pydantic, sweeper.cli, sweeper.store, sweeper.report, sweeper.render"


def scale_study(trials: int, configs: int) -> Study:
    """The obesity grid widened to `configs` configurations, with seeds to reach `trials`.

    1,000 configurations: optimizer x 10 lr x 10 weight decays x 5 SAM radii (10 tables of
    10 x 10 cells); 5,000: the same x 5 batch sizes (50 tables).
    """
    space: dict[str, list[Any]] = {
        "optimizer": ["sgd", "adam"],
        "lr": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 2e-2, 5e-2, 1e-1],
        "weight_decay": [0.0, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
        "sam_rho": [0.0, 0.02, 0.05, 0.1, 0.2],
    }
    if configs == 5000:
        space["batch_size"] = [16, 32, 64, 128, 256]
    return parse_study(
        {
            "name": NAME,
            "task": "obesity",
            "metric": "test_mse",
            "description": "bench/scale.py: generated results, nothing was trained",
            "seeds": max(1, math.ceil(trials / configs)),
            "fixed": {"epochs": EPOCHS, "sam_epochs": EPOCHS // 2},
            "space": space,
        },
        NAME,
    )


def rows(plan: list[PlannedTrial], rng: random.Random, now: float) -> list[dict[str, Any]]:
    """Trial rows as the store writes them, with made-up results."""
    out = []
    for t in plan:
        u = rng.random()
        state = (
            "completed"
            if u < 0.94
            else "failed"
            if u < 0.96
            else "running"
            if u < 0.97
            else "queued"
        )
        row: dict[str, Any] = {
            "key": t.key,
            "group_key": t.group,
            "params": canonical_json(t.params),
            "seed": t.seed,
            "state": state,
            "attempts": 0 if state == "queued" else 1 + (rng.random() < 0.05),
            "worker": None,
            "host": None,
            "pid": None,
            "lease_until": None,
            "created_at": now - 86400.0,
            "started_at": None,
            "finished_at": None,
            "duration": None,
            "value": None,
            "metrics": None,
            "error": None,
            "torch_version": None,
        }
        if state != "queued":
            start = now - 86400.0 + rng.random() * 80000.0
            host = f"node{rng.randrange(8)}"
            pid = rng.randrange(1000, 60000)
            row.update(
                worker=f"{host}:{pid}:{rng.getrandbits(32):08x}",
                host=host,
                pid=pid,
                started_at=start,
                torch_version="2.13.0+cpu",
            )
        if state == "running":
            row["lease_until"] = now + 30.0
        if state in ("completed", "failed"):
            duration = 5.0 + rng.random() * 10.0
            row.update(finished_at=row["started_at"] + duration, duration=duration)
        if state == "completed":
            floor = 0.7 + rng.random() * 2.0
            curve = [floor + 3.0 * math.exp(-e / 30.0) + 0.02 * rng.random() for e in range(EPOCHS)]
            test = floor + 0.1 * rng.random()
            metrics = {"test_mse": test, "train_mse": curve[-1], "val_mse": test * 1.01}
            # The curve goes to its own table (`trial_curves`) once the trial has an id.
            row.update(
                value=test, metrics=json.dumps(metrics), _curves=json.dumps({"train_loss": curve})
            )
        if state == "failed":
            row["error"] = (
                "RuntimeError: loss is nan at epoch 17 (diverged)\n"
                '  File "sweeper/tasks/obesity.py", line 210, in train\n'
                "    raise RuntimeError(...)\n"
            )
        out.append(row)
    return out


def generate(url: str, n: int, configs: int) -> float:
    """Write the study and its `n` trials into `url`; return the seconds it took."""
    from sqlalchemy import MetaData, Table, insert

    start = time.perf_counter()
    study = scale_study(n, configs)
    plan = grid(study, get_task("obesity").group_key)[:n]
    rng = random.Random(0)
    now = time.time()
    with Store(url, create=True) as store:
        study_id = store.save_study(study, []).study_id  # the study row, no trials
        # The table as the database has it: a bench writes rows, it needs no ORM classes.
        trials = Table("trials", MetaData(), autoload_with=store.engine)
        curves_table = Table("trial_curves", MetaData(), autoload_with=store.engine)
        with store.engine.begin() as conn:
            for i in range(0, len(plan), CHUNK):
                batch = rows(plan[i : i + CHUNK], rng, now)
                curves = {}
                for r in batch:
                    r["study_id"] = study_id
                    curve = r.pop("_curves", None)
                    if curve is not None:
                        curves[r["key"]] = curve
                conn.execute(insert(trials), batch)
                if curves:
                    ids = dict(
                        conn.execute(
                            trials.select()
                            .with_only_columns(trials.c.key, trials.c.id)
                            .where(trials.c.study_id == study_id, trials.c.key.in_(list(curves)))
                        ).all()
                    )
                    conn.execute(
                        insert(curves_table),
                        [{"trial_id": ids[k], "curves": c} for k, c in curves.items()],
                    )
        if store.engine.dialect.name == "postgresql":
            with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE trials")
        else:
            with store.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - start


def timed(args: list[str], repeat: int) -> tuple[float, float, float, str]:
    """Best and median wall seconds, median CPU seconds of `python ARGS`, and its output."""
    times, cpu, first = [], [], ""
    for i in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=False,
        )
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(f"python {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        if i == 0:
            first = done.stdout
    return min(times), statistics.median(times), statistics.median(cpu), first


def measure(label: str, url: str, args: argparse.Namespace) -> list[tuple[str, str, float, float]]:
    n, repeat = args.trials, args.repeat
    seconds = generate(url, n, args.configs)
    size = ""
    if url.startswith("sqlite:///"):
        size = f", {Path(url.removeprefix('sqlite:///')).stat().st_size / 2**20:.0f} MiB file"
    print(f"\n{label}: {n} trials generated in {seconds:.1f} s{size}")
    results = []
    cli = ["-m", "sweeper"]
    for name, args in (
        ("sweeper --help", [*cli, "--help"]),
        # What `sweeper table` imports before it reads anything: the floor under its time.
        ("imports of sweeper table", ["-c", TABLE_IMPORTS]),
        (f"sweeper status {NAME}", [*cli, "status", NAME, "--db", url]),
        (f"sweeper table {NAME}", [*cli, "table", NAME, "--db", url]),
        (f"sweeper table {NAME} -f csv", [*cli, "table", NAME, "--db", url, "--format", "csv"]),
    ):
        best, median, cpu, output = timed(args, repeat)
        results.append((label, name, best, median))
        lines = output.splitlines()
        print(
            f"  {name:<28} best {best:5.2f} s  median {median:5.2f} s  "
            f"CPU {cpu:5.2f} s  ({len(lines)} lines)"
        )
        if name.startswith("sweeper status"):
            print("\n".join(f"    {line[:96]}" for line in lines[:3]))
    return results


def pg_unavailable() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'sweeper[postgres]')"
    try:
        psycopg.connect(PG_DSN).close()
    except Exception as exc:  # noqa: BLE001 - any failure means: skip, saying why
        return f"no PostgreSQL server answers at 127.0.0.1:5432 ({type(exc).__name__}: {exc})"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument(
        "--configs",
        type=int,
        choices=(1000, 5000),
        default=1000,
        help="configurations of the grid (10 or 50 tables); seeds make up the trials",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
        f"each command run {args.repeat} times as a subprocess"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/scale.db"
        results += measure("SQLite", url, args)

    reason = "--no-pg" if args.no_pg else pg_unavailable()
    if reason:
        print(f"\nPostgreSQL skipped: {reason}")
    else:
        import psycopg

        name = f"sweeper_scale_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
            results += measure("PostgreSQL", url, args)
        finally:
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    slow = [r for r in results if r[1].startswith("sweeper ") and r[1] != "sweeper --help"]
    slow = [r for r in slow if r[2] >= 2.0]
    for backend, name, best, _ in slow:
        print(f"over 2 s: {name} on {backend} (best {best:.2f} s)")
    print(f"target (each under 2 s): {'NOT met' if slow else 'met'}")


if __name__ == "__main__":
    main()
