"""Bad input, as a user types it: one line ``Error: ...`` (no traceback, never "unexpected"),
exit 1 (2 for a usage error, whose lines are click's usage header plus one ``Error:`` line),
the database's bytes unchanged, in seconds and well under 500 MB.

Every case runs `sweeper` as a subprocess under a 2 GiB address-space limit (a safety net: a
regression that reads /dev/zero fails instead of swapping); its time and peak RSS are printed
(`pytest -s`), and the RSS is held to the acceptance bound of 500 MB.
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

MAX_RSS_MB = 500
ADDRESS_SPACE = 2 << 30
PASSWORD = "hunter2secret"
HEAD = 'name = "bad"\ntask = "toy"\nmetric = "loss"\n'
TWO = HEAD + "[space]\nx = [1.0, 2.0]\n"
X20, Y20 = [float(i) for i in range(20)], [float(-i) for i in range(20)]
X100, Y100 = [float(i) for i in range(100)], [float(-i) for i in range(100)]
#: 4,000 trials: enqueueing them needs far more than the few kB a limited file may grow.
BIG = HEAD + f"seeds = 10\n[space]\nx = {X20}\ny = {Y20}\n"
#: 100 x 100 x 100 configurations.
MILLION = HEAD + f"[space]\nx = {X100}\ny = {Y100}\nepochs = {list(range(1, 101))}\n"
TPE = HEAD + 'kind = "tpe"\nbudget = 3\n[space]\n'


@dataclass(frozen=True)
class Case:
    """One bad input: `args` after ``sweeper`` ({db}: the database's path), the study file's
    text (study.toml), which database there is, and a pattern the error line must match."""

    id: str
    args: tuple[str, ...]
    expect: str
    study: str | None = None
    db: str = "sweeper"  # "sweeper" (a study "ok" of 2 trials), "other" (another app's), "none"
    code: int = 1
    setup: str | None = None  # "zero" (a link to /dev/zero), "lock", "fsize"


def run(study: str, *extra: str, **kw: str) -> tuple[str, ...]:
    return ("run", study, "--db", "{db}", "--no-progress", *extra)


CASES = [
    # -- study files: finite values, bounded nesting, size, seeds and trials -----------------
    Case("grid-inf", run("study.toml"), r"space\.x\[1\]: must be a finite number \(got inf\)",
         HEAD + "[space]\nx = [1.0, inf]\n"),
    Case("grid-nan", run("study.toml"), r"space\.x\[0\]: must be a finite number \(got nan\)",
         HEAD + "[space]\nx = [nan, 1.0]\n"),
    Case("fixed-inf", run("study.toml"), r"fixed\.y: must be a finite number \(got -inf\)",
         HEAD + "[fixed]\ny = -inf\n"),
    Case("tpe-high-inf", run("study.toml"), r"space\.x\.high: must be a finite number",
         TPE + "x = { low = 0.0, high = inf }\n"),
    Case("tpe-too-wide", run("study.toml"), r"space\.x: the range .* is too wide to sample",
         TPE + "x = { low = -1e308, high = 1e308 }\n"),
    Case("toml-nested-deep", run("study.toml"), r"invalid TOML: nested deeper than 32 levels",
         HEAD + "[fixed]\nx = " + "[" * 5000 + "]" * 5000 + "\n"),
    Case("toml-nested-40", run("study.toml"), r"nested deeper than 32 levels",
         HEAD + "[fixed]\nx = " + "[" * 40 + "1" + "]" * 40 + "\n"),
    Case("file-dev-zero", run("study.toml"), r"study\.toml: larger than 1024 KiB", setup="zero"),
    Case("file-2-mib", run("study.toml"), r"study\.toml: larger than 1024 KiB",
         TWO + ("# padding\n" * 210_000)),
    Case("seed-over-int32", run("study.toml"), r"seeds\[0\]: must be < 2\*\*31 = 2147483648",
         HEAD + "seeds = [2147483648]\n"),
    Case("seeds-ten-million", run("study.toml"), r"seeds: at most 10000 replicate seeds",
         HEAD + "seeds = 10000000\n"),
    Case("grid-million", run("study.toml"),
         r"plans 1,000,000 trials \(100 x 100 x 100 configurations x 1 seed\), more than the "
         r"limit of 100,000: .* --max-trials 1000000",
         MILLION),
    Case("budget-1e12", run("study.toml"), r"budget: must be < 2147483648",
         TPE.replace("budget = 3", "budget = 1000000000000") + "x = { low = 0.0, high = 1.0 }\n"),
    Case("budget-over-limit", run("study.toml"),
         r"plans 400,000 trials \(a budget of 200,000 configurations x 2 seeds\).*--max-trials",
         TPE.replace("budget = 3", "budget = 200000\nseeds = 2")
         + "x = { low = 0.0, high = 1.0 }\n"),
    Case("max-trials-option", run("study.toml", "--max-trials", "1"),
         r"plans 2 trials .*more than the limit of 1: .*--max-trials 2", TWO),
    Case("resume-max-trials", ("resume", "ok", "--db", "{db}", "--max-trials", "1"),
         r"plans 2 trials .*--max-trials 2"),
    Case("obesity-epochs", run("study.toml"), r"fixed\.epochs: must be <= 100000",
         'name = "bad"\ntask = "obesity"\nmetric = "test_mse"\n[fixed]\nepochs = 1000000000\n'),
    Case("obesity-batch", run("study.toml"), r"space\.batch_size\[1\]: must be <= 65536",
         'name = "bad"\ntask = "obesity"\nmetric = "test_mse"\n[space]\n'
         "batch_size = [32, 100000000]\n"),
    Case("ecg-epochs", run("study.toml"), r"fixed\.epochs: must be <= 10000",
         'name = "bad"\ntask = "ecg"\nmetric = "macro_f1"\n[fixed]\nepochs = 1000000\n'),
    Case("toy-sleep", run("study.toml"), r"fixed\.sleep: must be <= 3600",
         HEAD + "[fixed]\nsleep = 1e9\n"),
    # -- options -------------------------------------------------------------------------------
    Case("workers-10000", run("study.toml", "--workers", "10000"),
         r"--workers 10000 x --threads 1 would start 10000 worker threads .*--force-workers", TWO),
    Case("threads-huge", run("study.toml", "--threads", "100000"),
         r"--threads 100,000: must be between 1 and 4,096", TWO),
    Case("lease-1e9", run("study.toml", "--lease", "1e9"),
         r"--lease 1,000,000,000: must be between 2 and 86,400", TWO),
    Case("lease-usage", run("study.toml", "--lease", "0.5"), r"'--lease'", TWO, code=2),
    Case("max-trials-usage", run("study.toml", "--max-trials", "0"), r"'--max-trials'", TWO,
         code=2),
    # -- database URLs and files ---------------------------------------------------------------
    Case("pg-port-not-a-number",
         ("run", "study.toml", "--db", f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:abc/x"),
         r"cannot parse database URL 'postgresql\+psycopg://u:\*\*\*@127\.0\.0\.1:abc/x'",
         TWO, db="none"),
    Case("pg-port-out-of-range",
         ("studies", "--db", f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:99999/x"),
         r"cannot connect to postgresql\+psycopg://u:\*\*\*@127\.0\.0\.1:99999/x: .*port",
         db="none"),
    Case("pg-port-closed",
         ("run", "study.toml", "--db", f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:1/x"),
         r"cannot connect to postgresql\+psycopg://u:\*\*\*@127\.0\.0\.1:1/x: .*refused",
         TWO, db="none"),
    Case("sqlite-timeout-bad", ("studies", "--db", "sqlite:///{db}?timeout=abc"),
         r"timeout must be a number of seconds"),
    Case("other-app-run", run("study.toml"), r"is not a sweeper database .*it holds notes",
         TWO, db="other"),
    Case("other-app-query", ("studies", "--db", "{db}"), r"is not a sweeper database",
         db="other"),
    Case("dask-unreachable",
         run("study.toml", "--backend", "dask", "--scheduler", "tcp://127.0.0.1:1"),
         r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:1: .*nothing was written|"
         r"--backend dask needs dask\.distributed", TWO),
    Case("dask-port-not-a-number",
         run("study.toml", "--backend", "dask", "--scheduler", "tcp://127.0.0.1:abc"),
         r"--scheduler tcp://127\.0\.0\.1:abc: not a valid port|needs dask\.distributed", TWO),
    Case("export-to-a-folder", ("export", "ok", "--db", "{db}", "-o", "."),
         r"--output \. is a folder: give a file, e\.g\. ok\.csv"),
    Case("export-missing-folder", ("export", "ok", "--db", "{db}", "-o", "no/such/x.csv"),
         r"--output no/such/x\.csv: no folder no/such; create it first"),
    Case("lock-held", ("run", "study.toml", "--db", "sqlite:///{db}?timeout=0.5"),
         r"the database .*db\.db is locked: another process held its write lock for more than "
         r"0\.5 s", TWO, setup="lock"),
    Case("file-size-limit", run("study.toml", "--no-table"),
         r"cannot write the database .*db\.db: disk I/O error: the disk holding it may be full",
         BIG, setup="fsize"),
]  # fmt: skip


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweeper database holding study "ok" (toy, 2 trials queued)."""
    from sweeper.plan import grid
    from sweeper.store import Store
    from sweeper.study import Study
    from sweeper.tasks import get_task

    path = tmp_path_factory.mktemp("template") / "sweeper.db"
    raw = {"name": "ok", "task": "toy", "metric": "loss", "space": {"x": [1.0, 2.0]}}
    study = Study.from_dict(raw)
    with Store(f"sqlite:///{path}", create=True) as store:
        store.save_study(study, grid(study, get_task("toy").group_key))
    return path


def other_app_db(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE notes (body TEXT)")
    con.execute("INSERT INTO notes VALUES ('not sweeper')")
    con.commit()
    con.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Result:
    code: int
    stderr: str
    seconds: float
    rss_mb: float


def limits(fsize: int | None) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return apply


def sweeper(args: list[str], cwd: Path, fsize: int | None = None) -> Result:
    """Run ``python -m sweeper ARGS``; its exit code, stderr, wall time and peak RSS (of it
    and any process it waited for, from `os.wait4`)."""
    env = {**os.environ, "COLUMNS": "200"}
    for key in ("SWEEPER_DB", "SWEEPER_DEBUG", "SWEEPER_DB_PASSWORD_FILE"):
        env.pop(key, None)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "sweeper", *args],
            cwd=cwd,
            stdout=out,
            stderr=err,
            env=env,
            preexec_fn=limits(fsize),
        )
        guard = threading.Timer(120, proc.kill)  # a hang fails the test instead of the suite
        guard.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            guard.cancel()
        seconds = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    return Result(proc.returncode, text, seconds, usage.ru_maxrss / 1024)


@contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Hold `path`'s SQLite write lock (as a long transaction of another process would)."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        yield
        con.execute("ROLLBACK")
    finally:
        con.close()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(
    case: Case, template: Path, tmp_path: Path
) -> None:
    db = tmp_path / "db.db"
    if case.db == "sweeper":
        shutil.copy(template, db)
    elif case.db == "other":
        other_app_db(db)
    if case.setup == "zero":
        (tmp_path / "study.toml").symlink_to("/dev/zero")
    elif case.study is not None:
        (tmp_path / "study.toml").write_text(case.study, encoding="utf-8")
    before = sha256(db) if db.exists() else None
    args = [a.replace("{db}", str(db)) for a in case.args]
    fsize = db.stat().st_size if case.setup == "fsize" else None
    if case.setup == "lock":
        with write_lock(db):
            result = sweeper(args, tmp_path)
    else:
        result = sweeper(args, tmp_path, fsize)
    print(f"{case.id}: {result.seconds:.2f} s, peak RSS {result.rss_mb:.0f} MB")

    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert result.code == case.code, result.stderr
    assert len(errors) == 1, result.stderr
    if case.code == 1:
        assert lines == errors, result.stderr  # the one line, nothing else
    assert re.search(case.expect, errors[0]), errors[0]
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr
    assert PASSWORD not in result.stderr
    assert result.rss_mb < MAX_RSS_MB
    if before is not None:
        assert sha256(db) == before, "the database changed"
    else:
        assert not db.exists()
    # A run refused before its trials leaves no database behind where there was none, and no
    # journal beside the one there was.
    assert not (tmp_path / "results.db").exists()
    assert not Path(str(db) + "-journal").exists()


def cli(*args: str) -> tuple[int, str]:
    """Run a command in this process (Typer's CliRunner): its exit code and stderr."""
    from typer.testing import CliRunner

    from sweeper.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stderr


def test_queries_leave_a_sweeper_database_byte_identical(template: Path, tmp_path: Path) -> None:
    """Reading never writes: a version-2 database in rollback-journal mode (as a copy or an
    older tool leaves it) keeps its bytes, its journal mode included."""
    db = tmp_path / "db.db"
    shutil.copy(template, db)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
    con.close()
    before = sha256(db)
    for args in (
        ("studies",),
        ("status", "ok"),
        ("runs", "ok"),
        ("export", "ok", "-o", str(tmp_path / "ok.csv")),
    ):
        code, stderr = cli(*args, "--db", str(db))
        assert code == 0, stderr
        assert sha256(db) == before, f"`sweeper {args[0]}` changed the database"
    assert db.read_bytes()[18:20] == b"\x01\x01"  # still a rollback-journal file, not WAL


def test_a_run_switches_to_wal_on_its_first_write(template: Path, tmp_path: Path) -> None:
    db = tmp_path / "db.db"
    shutil.copy(template, db)
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode = DELETE")
    con.close()
    from sweeper.store import Store

    with Store(f"sqlite:///{db}") as store:
        store.counts(store.study("ok").id)
        assert db.read_bytes()[18:20] == b"\x01\x01"
        store.requeue_failed(store.study("ok").id, 1)  # a write transaction
    assert db.read_bytes()[18:20] == b"\x02\x02"  # WAL: readers and writers never block


def test_a_full_disk_is_one_line_and_the_database_unchanged(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's "database or disk is full", made real by capping the file at its current size
    (a full disk cannot be made in a test that runs anywhere)."""
    from sqlalchemy import event

    from sweeper.store import engine

    db = tmp_path / "db.db"
    shutil.copy(template, db)
    pages = db.stat().st_size // 4096
    configure = engine._configure_sqlite

    def capped(eng: object, *args: object) -> None:
        configure(eng, *args)  # type: ignore[arg-type]

        @event.listens_for(eng, "connect")
        def _cap(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

    monkeypatch.setattr(engine, "_configure_sqlite", capped)
    (tmp_path / "big.toml").write_text(BIG, encoding="utf-8")
    before = sha256(db)
    code, stderr = cli("run", "big.toml", "--db", str(db), "--no-progress")
    assert code == 1
    assert stderr.splitlines() == [
        f"Error: the disk holding {db} is full (in {tmp_path}): free some space, or give --db "
        "a file on another disk, and run the command again; the transaction that failed was "
        "rolled back"
    ]
    assert sha256(db) == before


def test_the_password_comes_from_a_file_and_is_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sweeper.errors import StoreError
    from sweeper.store import Store
    from sweeper.store.engine import Database

    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    monkeypatch.setenv("SWEEPER_DB_PASSWORD_FILE", str(secret))
    url = "postgresql+psycopg://sweeper@127.0.0.1:1/sweeper"
    db = Database(url, create=False)
    assert db.engine.url.password == PASSWORD  # the engine has it; the URL given to workers not
    assert db.url == url
    db.close()
    with pytest.raises(StoreError) as info:
        Store(url)
    assert PASSWORD not in str(info.value) and "127.0.0.1:1" in str(info.value)
    # A password in the URL wins over the file.
    db = Database("postgresql+psycopg://sweeper:inline@127.0.0.1:1/sweeper", create=False)
    assert db.engine.url.password == "inline"
    db.close()
    monkeypatch.setenv("SWEEPER_DB_PASSWORD_FILE", str(tmp_path / "absent"))
    with pytest.raises(StoreError, match=r"SWEEPER_DB_PASSWORD_FILE=.*absent: cannot read"):
        Database(url, create=False)


def test_a_seed_too_large_for_postgres_is_refused_before_the_database(
    pg_url: str, tmp_path: Path
) -> None:
    import psycopg

    (tmp_path / "study.toml").write_text(HEAD + "seeds = [0, 3000000000]\n", encoding="utf-8")
    result = sweeper(["run", "study.toml", "--db", pg_url, "--no-progress"], tmp_path)
    assert result.code == 1
    assert result.stderr.splitlines() == [
        "Error: study.toml: seeds[1]: must be < 2**31 = 2147483648 (the database stores seeds "
        "as 32-bit integers) (got 3000000000)"
    ]
    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as con:
        tables = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)


def test_options_are_bounded_and_workers_can_be_forced() -> None:
    from sweeper.errors import SweeperError
    from sweeper.launch.options import MAX_WORKERS_PER_CORE, RunOptions
    from sweeper.launch.run import check

    cores = os.cpu_count() or 1
    most = MAX_WORKERS_PER_CORE * cores
    assert check(RunOptions(workers=most)).workers == most
    with pytest.raises(SweeperError, match=f"at most {most}: 4 per core.*--force-workers"):
        check(RunOptions(workers=most + 1))
    with pytest.raises(SweeperError, match=f"--workers {cores} x --threads {most}"):
        check(RunOptions(threads=most))
    assert check(RunOptions(workers=most + 1, force_workers=True)).force_workers
    # The dask backend's workers are the cluster's threads, not this host's cores.
    assert check(RunOptions(workers=most + 1, backend="dask", scheduler="tcp://h:1")).workers
    for field, value, message in (
        ("lease_s", float("nan"), "--lease nan"),
        ("lease_s", 1e9, "--lease 1,000,000,000: must be between 2 and 86,400"),
        ("max_retries", -1, "--max-retries -1: must be between 0 and 1,000"),
        ("max_trials", 0, "--max-trials 0"),
        ("group_size", 10**9, "--group-size"),
        ("max_memory_mb", 10**9, "--max-memory"),
    ):
        with pytest.raises(SweeperError, match=re.escape(message)):
            check(RunOptions(**{field: value}))


def test_a_study_is_counted_without_being_built() -> None:
    from sweeper.errors import SweeperError
    from sweeper.launch.limits import check_size, planned_trials
    from sweeper.study import Study

    grid = Study.from_dict(
        {"name": "g", "task": "toy", "metric": "loss", "seeds": 3,
         "space": {"x": X100, "y": Y100, "epochs": list(range(1, 101))}}
    )  # fmt: skip
    assert planned_trials(grid) == (3_000_000, "100 x 100 x 100 configurations x 3 seeds")
    check_size(grid, 3_000_000)
    with pytest.raises(SweeperError, match=r"plans 3,000,000 trials .* --max-trials 3000000$"):
        check_size(grid, 2_999_999)
    search = Study.from_dict(
        {"name": "s", "task": "toy", "metric": "loss", "kind": "random", "budget": 50,
         "seeds": [4, 9], "space": {"x": {"low": 0.0, "high": 1.0}}}
    )  # fmt: skip
    assert planned_trials(search) == (100, "a budget of 50 configurations x 2 seeds")


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_the_sampler_is_asked_once_in_memory_before_anything_is_stored() -> None:
    """A space the validator let through but the sampler cannot draw from (here built past
    the validator) is refused by `start` before the database."""
    from sweeper.errors import SweeperError
    from sweeper.launch.limits import check_sampling
    from sweeper.study import Study
    from sweeper.tasks import get_task

    ok = Study.from_dict(
        {"name": "s", "task": "toy", "metric": "loss", "kind": "tpe", "budget": 5,
         "space": {"x": {"low": 0.0, "high": 1.0}}}
    )  # fmt: skip
    check_sampling(ok, get_task("toy").group_key)
    wide = {"type": "float", "low": -1e308, "high": 1e308, "log": False}
    broken = Study(**{**ok.__dict__, "search": {"x": wide}})
    with pytest.raises(SweeperError, match="space: the tpe sampler cannot draw from it"):
        check_sampling(broken, get_task("toy").group_key)


def test_the_scheduler_check_connects_and_explains() -> None:
    pytest.importorskip("distributed")
    from sweeper.errors import SweeperError
    from sweeper.launch.dask_check import check_scheduler

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        check_scheduler(f"tcp://127.0.0.1:{port}")
        check_scheduler(f"127.0.0.1:{port}")
    with pytest.raises(SweeperError, match=f"tcp://127.0.0.1:{port}: connection refused"):
        check_scheduler(f"tcp://127.0.0.1:{port}")
    with pytest.raises(SweeperError, match="not a valid port"):
        check_scheduler("tcp://127.0.0.1:99999")
    check_scheduler("ucx://127.0.0.1:1")  # not TCP: left to Dask's own client
