"""Opening a database an earlier release wrote upgrades it in place; a newer one is refused.

The version-1 database comes from `tests/fixtures/schema_v1.py` (that release's tables, frozen),
and every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, create_engine, inspect, text

from sweeper.errors import SchemaVersionError
from sweeper.plan import grid
from sweeper.search import Proposal, TrialResult
from sweeper.store import SCHEMA_VERSION, STATES, BestConfig, Store, StudySummary, WorkerId
from sweeper.store.schema import Base
from sweeper.study import Study, parse_study
from sweeper.tasks import TrialOutcome, get_task
from tests.fixtures import schema_v1 as v1

REPO = Path(__file__).resolve().parents[1]


def upgraded(url: str, **kwargs: Any) -> Store:
    v1.create(url, **kwargs)
    return Store(url)


def version(store: Store) -> str | None:
    with store.engine.connect() as conn:
        found: str | None = conn.scalar(
            text("SELECT value FROM sweeper_meta WHERE key = 'schema_version'")
        )
    return found


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order."""
    out = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            order = ", ".join(c.name for c in table.primary_key.columns)
            out[table.name] = [
                tuple(r) for r in conn.execute(text(f"SELECT * FROM {table.name} ORDER BY {order}"))
            ]
    return out


def test_opening_upgrades_in_place_to_the_current_schema(db_url: str) -> None:
    store = upgraded(db_url)
    assert version(store) == str(SCHEMA_VERSION) == "2"
    found = inspect(store.engine)
    # The upgraded tables are those a new database gets: same columns, nullability, keys.
    for table in Base.metadata.sorted_tables:
        columns = {c["name"]: c["nullable"] for c in found.get_columns(table.name)}
        assert columns == {c.name: c.nullable for c in table.columns}, table.name
        keys = found.get_pk_constraint(table.name)["constrained_columns"]
        assert keys == [c.name for c in table.primary_key.columns], table.name
        refs = {
            (tuple(f["constrained_columns"]), f["referred_table"], f["options"].get("ondelete"))
            for f in found.get_foreign_keys(table.name)
        }
        assert refs == {
            (tuple(f.parent.name for f in c.elements), c.referred_table.name, c.ondelete)
            for c in table.foreign_key_constraints
        }, table.name
    store.close()


def test_curves_move_to_their_own_table_unchanged(db_url: str) -> None:
    store = upgraded(db_url)
    expected = {t["id"]: json.loads(t["curves"]) for t in v1.TRIALS if t["curves"]}
    assert set(expected) == {1, 2, 3, 7, 8}
    assert store.curves(range(1, 10)) == expected
    with store.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM trial_curves")) == 5
    assert "curves" not in {c["name"] for c in inspect(store.engine).get_columns("trials")}
    store.close()


def test_every_query_returns_what_version_1_stored(db_url: str) -> None:
    store = upgraded(db_url)
    counts = {**dict.fromkeys(STATES, 0), "queued": 2, "running": 1, "completed": 2, "failed": 1}
    searched = {**dict.fromkeys(STATES, 0), "completed": 1, "pruned": 1}
    assert store.studies() == [
        # best: the seed mean of x=0 (0.5 and 0.25), the one configuration completed
        StudySummary("legacy", "toy", "grid", "loss", "minimize", counts, 0.375, 60.0),
        StudySummary("searched", "toy", "random", "loss", "minimize", searched, 0.125, 80.0),
    ]
    info = store.study("legacy")
    assert (info.id, info.created_at, info.updated_at) == (1, 50.0, 60.0)
    assert info.study == Study.from_json(v1.GRID_CONFIG)
    assert info.study.source == "studies/legacy.toml"
    assert (info.sweeper_version, info.git_commit, info.code_hash, info.code) == (None,) * 4
    assert store.counts(1) == counts
    stats = store.stats(1, "minimize")
    assert (stats.best, stats.mean_duration, stats.first_start, stats.last_finish) == (
        BestConfig(json.loads(v1.params(0.0)), 0.375, 2),
        15.0,
        100.0,
        121.0,
    )
    assert stats.running == [(5, "h2", 22)] and stats.failed == [(3, 2, "boom\n")]
    assert store.best_value(2, "minimize") == 0.125
    assert store.studies_with_work() == ["legacy", "searched"]
    assert store.proposals(2) == [
        Proposal(0, json.loads(v1.params(0.5)), {"x": 0.5}),
        Proposal(1, json.loads(v1.params(1.5)), {"x": 1.5}),
    ]
    assert store.search_trials(2, "train_loss") == [
        TrialResult(v1.params(0.5), 0, "completed", 0.125, [0.5, 0.125]),
        TrialResult(v1.params(1.5), 0, "pruned", None, [2.5]),
    ]
    frame = store.frame(1)
    rows = [t for t in v1.TRIALS if t["study_id"] == 1]
    for column in ("id", "key", "state", "seed", "attempts", "host", "error", "torch_version"):
        assert [None if pd.isna(v) else v for v in frame[column]] == [t[column] for t in rows]
    assert frame["value"].tolist()[:2] == [0.5, 0.25]
    assert frame["x"].tolist() == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    assert frame["loss"].tolist()[:2] == [0.5, 0.25] and frame["log"].isna().all()
    assert frame.attrs == {
        "params": ["epochs", "fail", "sleep", "x", "y"],
        "metrics": ["loss", "final_epoch"],
    }
    small = store.frame(1, metrics=False, bookkeeping=False)
    assert list(small.columns) == [
        "id",
        "state",
        "seed",
        "value",
        "epochs",
        "fail",
        "sleep",
        "x",
        "y",
    ]
    store.close()


def test_an_upgraded_database_takes_new_work(db_url: str) -> None:
    store = upgraded(db_url)
    me = WorkerId("test:1", "testhost", 10_001)
    # The queued trials of the old study...
    claimed = store.claim(1, me, limit=10)
    assert [t.trial_id for t in claimed] == [4, 6]
    outcome = TrialOutcome(4, {"loss": 0.1}, {"train_loss": [0.2, 0.1]}, log="epoch 2 done")
    assert store.record(me, [outcome], "loss", "2.5.0", code_hash="abc") == 1
    assert store.curves([4]) == {4: {"train_loss": [0.2, 0.1]}}
    row = store.frame(1).set_index("id").loc[4]
    assert (row["state"], row["value"], row["log"]) == ("completed", 0.1, "epoch 2 done")
    # ...a failed one retried: its new attempt has no curves, so the old attempt's go.
    assert store.requeue_failed(1, max_retries=2) == 1
    (retry,) = store.claim(1, me)
    assert retry.trial_id == 3
    assert store.record(me, [TrialOutcome(3, error="again")], "loss") == 1
    assert 3 not in store.curves([3])
    # ...and a new study with new provenance.
    study = parse_study(
        {"name": "new", "task": "toy", "metric": "loss", "space": {"x": [1.0]}}, "new.toml"
    )
    report = store.save_study(
        study, grid(study, get_task("toy").group_key), provenance={"git_commit": "f00"}
    )
    assert (report.created, report.added) == (True, 1)
    (trial,) = store.claim(report.study_id, me)
    out = TrialOutcome(trial.trial_id, {"loss": 3.0}, {"train_loss": [4.0, 3.0]})
    assert store.record(me, [out], "loss") == 1
    assert store.curves([trial.trial_id]) == {trial.trial_id: {"train_loss": [4.0, 3.0]}}
    assert store.study("new").git_commit == "f00"
    with store.engine.connect() as conn:
        assert conn.scalar(text("SELECT code_hash FROM trials WHERE id = 4")) == "abc"
    store.close()


def test_opening_again_is_a_no_op(db_url: str) -> None:
    store = upgraded(db_url)
    before = dump(store.engine)
    store.close()
    again = Store(db_url)
    assert dump(again.engine) == before and version(again) == "2"
    again.close()


def test_a_database_from_before_searched_studies_gets_its_tables(db_url: str) -> None:
    store = upgraded(db_url, with_proposals=False)
    assert version(store) == "2"
    assert store.proposals(1) == [] and store.curves([1]) == {1: {"train_loss": [1.0, 0.5]}}
    assert {"proposals", "trial_curves"} <= set(inspect(store.engine).get_table_names())
    store.close()


def test_a_newer_database_is_refused_and_left_alone(db_url: str) -> None:
    v1.create(db_url)
    store = Store(db_url)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE sweeper_meta SET value = '99' WHERE key = 'schema_version'"))
    before = dump(store.engine)
    store.close()
    with pytest.raises(SchemaVersionError) as info:
        Store(db_url, create=True)
    assert str(info.value) == (
        f"database {db_url} has schema version 99, but this sweeper reads version 2 at most: "
        "a newer sweeper wrote it; upgrade sweeper (pip install -U sweeper) to open it"
    )
    engine = create_engine(db_url)
    assert dump(engine) == before
    engine.dispose()


def test_processes_opening_at_once_upgrade_once(db_url: str) -> None:
    v1.create(db_url)
    n = 4
    start = threading.Barrier(n)
    errors: list[BaseException] = []

    def open_it() -> None:
        start.wait()
        try:
            Store(db_url).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = Store(db_url)
    assert version(store) == "2" and len(store.curves(range(1, 10))) == 5
    store.close()


def test_sqlite_without_drop_column_empties_the_old_column(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    store = upgraded(sqlite_url)
    with store.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM trials WHERE curves IS NOT NULL")) == 0
    assert store.curves([1, 8]) == {1: {"train_loss": [1.0, 0.5]}, 8: {"train_loss": [2.5]}}
    me = WorkerId("test:1", "testhost", 10_001)
    (trial,) = store.claim(1, me)
    assert store.record(me, [TrialOutcome(trial.trial_id, {"loss": 1.0}, {"a": [1.0]})], "loss")
    assert store.curves([trial.trial_id]) == {trial.trial_id: {"a": [1.0]}}
    store.close()


def test_the_shipped_results_db_upgrades(tmp_path: Path) -> None:
    shipped = REPO / "results.db"
    if not shipped.exists():
        pytest.skip("no results.db in the repository")
    copy = tmp_path / "results.db"
    # Copied as files (with any write-ahead log): opening the shipped file, even read-only,
    # would create its -shm and -wal files beside it.
    for suffix in ("", "-wal"):
        if Path(f"{shipped}{suffix}").exists():
            shutil.copyfile(f"{shipped}{suffix}", f"{copy}{suffix}")
    with sqlite3.connect(copy) as old:
        found = old.execute("SELECT value FROM sweeper_meta WHERE key = 'schema_version'")
        if found.fetchone()[0] != "1":
            pytest.skip("results.db is not at schema version 1 any more")
    with sqlite3.connect(copy) as old:
        per_state = old.execute(
            "SELECT study_id, state, count(*) FROM trials GROUP BY study_id, state"
        ).fetchall()
        curves = dict(old.execute("SELECT id, curves FROM trials WHERE curves IS NOT NULL"))
        studies = old.execute("SELECT id, name FROM studies ORDER BY name").fetchall()
        first = old.execute("SELECT id, value, metrics FROM trials ORDER BY id LIMIT 1").fetchone()
    store = Store(f"sqlite:///{copy}")
    assert version(store) == "2"
    assert [(s.name) for s in store.studies()] == [name for _, name in studies]
    for study_id, _name in studies:
        counts = store.counts(study_id)
        assert {s: n for s, n in counts.items() if n} == {
            state: n for sid, state, n in per_state if sid == study_id
        }
        assert len(store.frame(study_id)) == sum(counts.values())
    moved = store.curves(list(curves))
    assert len(moved) == len(curves) and all(moved[i] == json.loads(c) for i, c in curves.items())
    row = store.frame(1, bookkeeping=False).set_index("id").loc[first[0]]
    assert row["value"] == first[1] or first[1] is None
    store.close()


def test_connections_switching_an_old_file_to_wal_at_once_all_succeed(tmp_path: Path) -> None:
    """Two connections switching a rollback-journal file to WAL together deadlock on its lock,
    and SQLite answers one of them "database is locked" at once, without waiting: the switch is
    retried (the cause of a rare failure of `test_processes_opening_at_once_upgrade_once`)."""
    from sweeper.store.engine import _use_wal

    failures = []
    for round_ in range(60):
        path = tmp_path / f"old{round_}.db"
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE t (a)")  # the default rollback journal, as v1 files are
        start = threading.Barrier(4)

        def switch(path: Path = path, start: threading.Barrier = start) -> None:
            conn = sqlite3.connect(path, isolation_level=None, timeout=10)
            try:
                conn.execute("BEGIN")
                conn.execute("SELECT count(*) FROM t").fetchall()  # a read first, as Store does
                conn.execute("COMMIT")
                start.wait()
                _use_wal(conn, 10.0)
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                failures.append(str(exc))
            finally:
                conn.close()

        threads = [threading.Thread(target=switch) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []
