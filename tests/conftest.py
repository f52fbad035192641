"""Shared fixtures: temporary databases (SQLite, and PostgreSQL where a server answers),
the data directory, and a helper to write study files."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"


@pytest.fixture(autouse=True, scope="session")
def _kernel_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Compiled C kernels go to a temporary directory, not the user's ~/.cache/sweeper.

    Set in the environment, so worker processes the tests start use it too.
    """
    os.environ["SWEEPER_CACHE_DIR"] = str(tmp_path_factory.mktemp("kernels"))


@pytest.fixture(autouse=True)
def _no_results_db(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never touch the repository's results.db: run them in a temporary directory."""
    monkeypatch.delenv("SWEEPER_DB", raising=False)
    monkeypatch.chdir(tmp_path)


OBESITY_CSV_NAME = "ObesityDataSet_raw_and_data_sinthetic.csv"


def data_dir_candidates() -> list[Path]:
    """Where the tests look for the datasets, in order: ``$SWEEPER_DATA_DIR``, ../shared/data
    beside the repository, and the directory sweeper itself downloads into when neither
    ``--data-dir`` nor ``SWEEPER_DATA_DIR`` is given (so one download is enough)."""
    from sweeper.data import DATA_ENV, default_data_dir

    found = [Path(p) for p in [os.environ.get(DATA_ENV)] if p]
    return [*found, REPO.parent / "shared" / "data", default_data_dir()]


def find_data_dir() -> Path | None:
    """The first candidate holding the obesity CSV (not checked against its checksum here:
    a damaged file makes the tests fail, which is what should happen), or None."""
    for candidate in data_dir_candidates():
        if (candidate / "obesity" / OBESITY_CSV_NAME).is_file():
            return candidate
    return None


@pytest.fixture
def data_dir() -> Path:
    """The data directory holding the obesity dataset; skipped, saying where it looked, if none."""
    found = find_data_dir()
    if found is None:
        where = ", ".join(str(c) for c in data_dir_candidates())
        pytest.skip(
            f"obesity dataset not found in {where}: run `sweeper run quick` once (it downloads "
            "it) or set SWEEPER_DATA_DIR"
        )
    return found


def _pg_available() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        psycopg.connect(PG_DSN, connect_timeout=2).close()
    except Exception as exc:  # noqa: BLE001 - any failure means: skip
        return f"no PostgreSQL server answers at 127.0.0.1:5432 ({type(exc).__name__})"
    return None


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread, as a worker runs (tiny models are several times slower on two, and
    much slower on a busy machine); use with ``pytest.mark.usefixtures``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file every checkpoint `Cadence` appends a line to per trained epoch
    (``$SWEEPER_CHECKPOINT_TRACE``; `tests.fixtures.checkpoints.epochs_in` counts them)."""
    path = tmp_path / "trace.txt"
    monkeypatch.setenv("SWEEPER_CHECKPOINT_TRACE", str(path))
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards; skipped where no server answers."""
    reason = _pg_available()
    if reason:
        pytest.skip(reason)
    import psycopg

    name = f"sweeper_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Every store test runs on SQLite and on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(name)
    return url


def write_study(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
