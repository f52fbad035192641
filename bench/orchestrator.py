"""Per-trial orchestrator overhead: sweeper's store against Optuna's RDB storage, in one run.

sweeper, per trial: claim one queued trial and record its outcome (two metrics and a 200-point
per-epoch curve) through the `Store` API, one worker; the trials are enqueued beforehand with
`save_study` (not timed). Optuna, per trial: one trial of `study.optimize` with a trivial
objective (one suggested float). Its headline figure uses `RandomSampler`, so that no sampler
work is timed, only Optuna's storage: the cheapest Optuna configuration, hence the conservative
ratio. Also shown: the default sampler (TPE), and the objective storing the same 200-point curve
as a user attribute, or with `trial.report` once per epoch.

Both run on the same kinds of databases: a SQLite file in a temporary directory (sweeper in WAL
mode with synchronous=NORMAL, as its store configures it; Optuna as `RDBStorage` configures it:
a rollback journal and an fsync at every commit) and a temporary PostgreSQL database on
127.0.0.1:5432 (user postgres, dropped afterwards; skipped, with the reason, where no server
answers). One more SQLite row gives Optuna sweeper's pragmas, which separates the storage code
from the durability setting. Each contender has its own database. Rounds alternate the
contenders, so that a busy machine slows them alike; the table shows each contender's median
round, the range over rounds, and ratios to sweeper taken within each round.

    python bench/orchestrator.py                      # about 1.5 minutes on 2 cores
    python bench/orchestrator.py --rounds 5 --no-pg
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sweeper.plan import grid  # noqa: E402
from sweeper.store import Store, WorkerId  # noqa: E402
from sweeper.study import parse_study  # noqa: E402
from sweeper.tasks import get_task  # noqa: E402
from sweeper.tasks.base import TrialOutcome  # noqa: E402

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
EPOCHS = 200


def make_curve(seed: int = 0) -> list[float]:
    """A plausible training-loss curve: full-precision floats, as a task reports them."""
    rng = random.Random(seed)
    return [0.3 + 2.5 * math.exp(-e / 40) + 0.02 * rng.random() for e in range(EPOCHS)]


class Runner(Protocol):
    def run(self, n: int) -> float:
        """Run `n` trials; return the seconds they took."""
        ...

    def close(self) -> None: ...


@dataclass
class Contender:
    label: str
    trials: int  # per round
    runner: Runner
    ms: list[float] = field(default_factory=list)  # per round, ms per trial


class SweeperContender:
    """One worker claiming and recording trials of a pre-enqueued toy study."""

    def __init__(self, url: str, total: int) -> None:
        study = parse_study(
            {
                "name": "orchestrator",
                "task": "toy",
                "metric": "loss",
                "seeds": 1,
                "fixed": {"epochs": EPOCHS},
                "space": {"x": [float(i) for i in range(total)]},
            },
            "orchestrator",
        )
        self.store = Store(url, create=True)
        self.study_id = self.store.save_study(
            study, grid(study, get_task("toy").group_key)
        ).study_id
        self.me = WorkerId.here()
        self.curve = make_curve()

    def run(self, n: int) -> float:
        store, me, curve = self.store, self.me, self.curve
        start = time.perf_counter()
        for _ in range(n):
            (trial,) = store.claim(self.study_id, me)
            out = TrialOutcome(
                trial.trial_id,
                metrics={"loss": curve[-1], "final_epoch": float(EPOCHS)},
                curves={"train_loss": curve},
            )
            if store.record(me, [out], "loss", "2.13.0") != 1:
                raise SystemExit("sweeper: a result was not written")
        return time.perf_counter() - start

    def close(self) -> None:
        self.store.close()


class OptunaContender:
    """`study.optimize` on an `RDBStorage`, with one of the objectives below."""

    def __init__(self, url: str, objective: str, sampler: str, like_sweeper: bool) -> None:
        import optuna
        from sqlalchemy import event

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.storage = optuna.storages.RDBStorage(url)
        if like_sweeper:
            # SQLite as sweeper's store sets it up: WAL, and no fsync at each commit.
            @event.listens_for(self.storage.engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.execute("PRAGMA journal_mode = WAL")
                dbapi_conn.execute("PRAGMA synchronous = NORMAL")

            self.storage.engine.dispose()  # connections made from now on get the pragmas
        chosen = (
            optuna.samplers.RandomSampler(seed=0)
            if sampler == "random"
            else optuna.samplers.TPESampler(seed=0)
        )
        self.study = optuna.create_study(
            storage=self.storage, study_name="orchestrator", sampler=chosen
        )
        curve = make_curve()

        def trivial(trial: Any) -> float:
            x: float = trial.suggest_float("x", -10.0, 10.0)
            return (x - 1.0) ** 2

        def user_attr(trial: Any) -> float:
            x: float = trial.suggest_float("x", -10.0, 10.0)
            trial.set_user_attr("train_loss", curve)
            return (x - 1.0) ** 2

        def report(trial: Any) -> float:
            x: float = trial.suggest_float("x", -10.0, 10.0)
            for epoch, value in enumerate(curve):
                trial.report(value, epoch)
            return (x - 1.0) ** 2

        self.objective = {"trivial": trivial, "user_attr": user_attr, "report": report}[objective]

    def run(self, n: int) -> float:
        start = time.perf_counter()
        self.study.optimize(self.objective, n_trials=n)
        return time.perf_counter() - start

    def close(self) -> None:
        self.storage.engine.dispose()


class PgDatabases:
    """Fresh PostgreSQL databases on demand, all dropped on exit."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __enter__(self) -> PgDatabases:
        return self

    def new(self) -> str:
        import psycopg

        name = f"sweeper_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return PG_URL.format(name=name)

    def __exit__(self, *exc: object) -> None:
        import psycopg

        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            for name in self.names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_unavailable() -> str | None:
    """Why PostgreSQL cannot be used here, or None."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'sweeper[postgres]')"
    try:
        with psycopg.connect(PG_DSN) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means: skip, saying why
        return f"no PostgreSQL server answers at 127.0.0.1:5432 ({type(exc).__name__}: {exc})"
    print(f"PostgreSQL {row[0] if row else '?'} at 127.0.0.1:5432")
    return None


HEADLINE = "optuna: trivial objective, RandomSampler"


def build(new_url: Callable[[], str], sqlite: bool, args: argparse.Namespace) -> list[Contender]:
    """The contenders, each on a database of its own: sweeper first, then Optuna's."""
    n, n_report = args.optuna_trials, args.report_trials
    variants = [
        (HEADLINE, "trivial", "random", n, False),
        ("optuna: trivial objective, default TPESampler", "trivial", "tpe", n, False),
        ("optuna: + curve as a user attr", "user_attr", "random", n, False),
        ("optuna: + curve, trial.report per epoch", "report", "random", n_report, False),
    ]
    if sqlite:
        label = "optuna: trivial, RandomSampler, sweeper's pragmas"
        variants.insert(1, (label, "trivial", "random", n, True))
    sweeper = SweeperContender(new_url(), (args.rounds + 1) * args.trials)
    contenders = [Contender("sweeper: claim + record (metrics, curve)", args.trials, sweeper)]
    for label, objective, sampler, trials, like_sweeper in variants:
        runner = OptunaContender(new_url(), objective, sampler, like_sweeper)
        contenders.append(Contender(label, trials, runner))
    return contenders


def measure(contenders: list[Contender], rounds: int) -> None:
    """Warm each contender up (untimed), then alternate them for `rounds` timed rounds."""
    for c in contenders:
        c.runner.run(max(3, c.trials // 20))
    for _ in range(rounds):
        for c in contenders:
            c.ms.append(c.runner.run(c.trials) / c.trials * 1000.0)


def report(title: str, contenders: list[Contender]) -> dict[str, tuple[float, float]]:
    """Print one backend's table; return each contender's median ms and median ratio."""
    base = contenders[0].ms
    print(f"\n{title}")
    print(
        f"  {'contender':<51} {'trials':>6} {'ms/trial':>9} {'range':>15} "
        f"{'vs sweeper':>11} {'range':>13}"
    )
    out = {}
    for c in contenders:
        # Ratios within each round: both sides saw the same load.
        ratios = [m / b for m, b in zip(c.ms, base, strict=True)]
        spread = f"{min(c.ms):.2f}-{max(c.ms):.2f}"
        rspread = f"{min(ratios):.1f}-{max(ratios):.1f}x"
        ms, ratio = statistics.median(c.ms), statistics.median(ratios)
        print(
            f"  {c.label:<51} {c.trials:>6} {ms:>9.2f} {spread:>15} {ratio:>10.1f}x {rspread:>13}"
        )
        out[c.label] = (ms, ratio)
    for c in contenders:
        c.runner.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=1000, help="sweeper trials per round")
    parser.add_argument(
        "--optuna-trials", type=int, default=100, help="Optuna trials per round and variant"
    )
    parser.add_argument(
        "--report-trials",
        type=int,
        default=5,
        help="Optuna trials per round with trial.report per epoch (each writes 200 values)",
    )
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = parser.parse_args()
    try:
        import optuna
    except ImportError:
        raise SystemExit("optuna is not installed: pip install optuna") from None
    import sqlalchemy

    print(
        f"python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
        f"optuna {optuna.__version__}, SQLite {sqlite3.sqlite_version}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start"
    )
    print(
        f"{args.rounds} rounds; per round: sweeper {args.trials} trials, each Optuna variant "
        f"{args.optuna_trials} ({args.report_trials} with trial.report); "
        f"curves of {EPOCHS} points"
    )
    results: dict[str, dict[str, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = (f"sqlite:///{tmp}/db{i}.db" for i in range(100))
        contenders = build(lambda: next(files), True, args)
        measure(contenders, args.rounds)
        results["SQLite"] = report("SQLite (a file in a temporary directory)", contenders)

    reason = "--no-pg" if args.no_pg else pg_unavailable()
    if reason:
        print(f"\nPostgreSQL skipped: {reason}")
    else:
        with PgDatabases() as pg:
            contenders = build(pg.new, False, args)
            measure(contenders, args.rounds)
            results["PostgreSQL"] = report(
                "PostgreSQL (127.0.0.1, a temporary database)", contenders
            )

    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    for backend, rows in results.items():
        ours = next(iter(rows.values()))[0]
        theirs, ratio = rows[HEADLINE]
        print(
            f"{backend}: sweeper {ours:.2f} ms per trial; Optuna, trivial objective "
            f"(RandomSampler) {theirs:.1f} ms: {ratio:.1f}x"
        )
    ours = next(iter(results["SQLite"].values()))[0]
    ratio = results["SQLite"][HEADLINE][1]
    ok = ours <= 2.0 and ratio >= 20.0
    print(f"target on SQLite (sweeper <= 2 ms, >= 20x below Optuna): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
