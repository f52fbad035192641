"""The store's contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import platform
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text

from sweeper import __version__
from sweeper.errors import SchemaVersionError, StoreError, StudyConflictError, UnknownStudyError
from sweeper.plan import grid
from sweeper.store import Store, WorkerId
from sweeper.store.provenance import git_commit, provenance
from sweeper.study import parse_study
from sweeper.tasks import TrialOutcome, get_task

TOY = {
    "name": "toy",
    "task": "toy",
    "metric": "loss",
    "seeds": 2,
    "fixed": {"epochs": 2},
    "space": {"x": [0.0, 1.0, 2.0], "y": [0.0, -2.0]},
}


def study_of(**changes: object):  # type: ignore[no-untyped-def]
    raw = {**TOY, **changes}
    return parse_study(raw, "toy.toml")


def saved(url: str, **changes: object) -> tuple[Store, int]:
    study = study_of(**changes)
    store = Store(url, create=True)
    report = store.save_study(study, grid(study, get_task("toy").group_key))
    return store, report.study_id


def worker(n: int) -> WorkerId:
    return WorkerId(f"test:{n}", "testhost", 10_000 + n)


def test_enqueue_is_idempotent(db_url: str) -> None:
    store, sid = saved(db_url)
    study = study_of()
    again = store.save_study(study, grid(study, get_task("toy").group_key))
    assert (again.added, again.total, again.created) == (0, 12, False)
    assert store.counts(sid) == {
        "queued": 12,
        "running": 0,
        "completed": 0,
        "failed": 0,
        "pruned": 0,
    }


def test_adding_axis_values_extends_the_study(db_url: str) -> None:
    store, sid = saved(db_url)
    bigger = study_of(space={"x": [0.0, 1.0, 2.0, 3.0], "y": [0.0, -2.0]})
    report = store.save_study(bigger, grid(bigger, get_task("toy").group_key))
    assert (report.added, report.total) == (4, 16)
    # Leaving a value out later never forgets it: the stored study keeps the union.
    smaller = study_of(space={"x": [3.0], "y": [0.0, -2.0]})
    store.save_study(smaller, grid(smaller, get_task("toy").group_key))
    assert store.study("toy").study.axes["x"] == [3.0, 0.0, 1.0, 2.0]


def test_changing_a_fixed_parameter_is_refused_and_writes_nothing(db_url: str) -> None:
    store, sid = saved(db_url)
    changed = study_of(fixed={"epochs": 5, "sleep": 0.5})
    with pytest.raises(StudyConflictError) as info:
        store.save_study(changed, grid(changed, get_task("toy").group_key))
    assert str(info.value) == (
        "study 'toy' already exists with a different epochs, sleep; changing them would change "
        "the meaning of its stored trials: give the study a new name to keep both"
    )
    assert store.study("toy").study.fixed["epochs"] == 2
    assert sum(store.counts(sid).values()) == 12


def test_claim_is_exclusive_and_record_needs_the_claim(db_url: str) -> None:
    store, sid = saved(db_url)
    a = store.claim(sid, worker(1))
    b = store.claim(sid, worker(2))
    assert len(a) == len(b) == 1 and a[0].trial_id != b[0].trial_id
    # Another worker cannot record a trial it does not hold.
    assert store.record(worker(2), [TrialOutcome(a[0].trial_id, {"loss": 1.0})], "loss") == 0
    assert store.record(worker(1), [TrialOutcome(a[0].trial_id, {"loss": 1.0})], "loss") == 1
    # ...and a completed trial cannot be recorded again.
    assert store.record(worker(1), [TrialOutcome(a[0].trial_id, {"loss": 2.0})], "loss") == 0
    frame = store.frame(sid).set_index("id")
    assert frame.loc[a[0].trial_id, "state"] == "completed"
    assert frame.loc[a[0].trial_id, "loss"] == 1.0
    assert frame.loc[b[0].trial_id, "state"] == "running"


def test_group_claims_take_one_group_and_share_it(db_url: str) -> None:
    # Two groups: sleep 0 and sleep 0.001 (group keys differ on sleep).
    store, sid = saved(db_url, fixed={"epochs": 2}, space={"x": [0.0, 1.0], "sleep": [0.0, 0.001]})
    claimed = store.claim(sid, worker(1), limit=100)
    assert len(claimed) == 4  # 2 x values x 2 seeds of the first group
    assert {t.params["sleep"] for t in claimed} == {0.0}
    shared = store.claim(sid, worker(2), limit=100, share=2)
    assert len(shared) == 2  # half of the 4 queued trials of the second group
    assert {t.params["sleep"] for t in shared} == {0.001}
    # The worker that comes back for the rest takes all of it: half the group, not half of
    # what is left (groups shrinking 2, 1, 1... would each pay a whole group's overhead).
    done = [TrialOutcome(t.trial_id, {"loss": 1.0}) for t in shared]
    assert store.record(worker(2), done, "loss") == 2
    rest = store.claim(sid, worker(2), limit=100, share=2)
    assert len(rest) == 2 and {t.params["sleep"] for t in rest} == {0.001}
    assert store.claim(sid, worker(1), limit=100, share=2) == []


def test_expired_lease_is_requeued_and_the_attempt_noted(db_url: str) -> None:
    store, sid = saved(db_url, seeds=1, space={"x": [0.0], "y": [0.0]})
    first = store.claim(sid, worker(1), lease_s=-1.0)  # lease already over
    again = store.claim(sid, worker(2))
    assert [t.trial_id for t in again] == [t.trial_id for t in first]
    assert store.record(worker(1), [TrialOutcome(first[0].trial_id, {"loss": 9.0})], "loss") == 0
    assert store.record(worker(2), [TrialOutcome(first[0].trial_id, {"loss": 1.0})], "loss") == 1
    row = store.frame(sid).iloc[0]
    assert row["attempts"] == 2
    assert row["error"] == "attempt lost: lease of test:1 expired\n"


def test_heartbeat_keeps_the_lease(db_url: str) -> None:
    store, sid = saved(db_url, seeds=1, space={"x": [0.0], "y": [0.0]})
    store.claim(sid, worker(1), lease_s=-1.0)
    assert store.heartbeat(worker(1), lease_s=60.0) == 1
    assert store.claim(sid, worker(2)) == []


def test_trials_of_a_dead_local_process_are_requeued(db_url: str) -> None:
    store, sid = saved(db_url, seeds=1, space={"x": [0.0, 1.0], "y": [0.0]})
    mine = store.claim(sid, worker(1))
    store.claim(sid, worker(2))
    n = store.requeue_lost(sid, "testhost", alive=lambda pid: pid == worker(2).pid)
    assert n == 1
    frame = store.frame(sid).set_index("id")
    assert frame.loc[mine[0].trial_id, "state"] == "queued"
    assert "process 10001 on testhost ended mid-trial" in frame.loc[mine[0].trial_id, "error"]
    assert (frame["state"] == "running").sum() == 1


def test_failed_trials_are_retried_up_to_max_retries(db_url: str) -> None:
    store, sid = saved(db_url, seeds=1, space={"x": [0.0], "y": [0.0]})
    t = store.claim(sid, worker(1))[0]
    store.record(worker(1), [TrialOutcome(t.trial_id, error="boom")], "loss")
    assert store.requeue_failed(sid, max_retries=0) == 0
    assert store.requeue_failed(sid, max_retries=1) == 1
    t2 = store.claim(sid, worker(1))[0]
    store.record(worker(1), [TrialOutcome(t2.trial_id, error="boom again")], "loss")
    assert store.requeue_failed(sid, max_retries=1) == 0
    row = store.frame(sid).iloc[0]
    assert (row["state"], row["attempts"], row["error"]) == ("failed", 2, "boom again")


def test_release_returns_trials_without_counting_an_attempt(db_url: str) -> None:
    store, sid = saved(db_url, seeds=1, space={"x": [0.0], "y": [0.0]})
    t = store.claim(sid, worker(1))[0]
    assert store.release(worker(1), [t.trial_id]) == 1
    row = store.frame(sid).iloc[0]
    assert (row["state"], row["attempts"]) == ("queued", 0)


def test_frame_has_params_metrics_and_timing(db_url: str) -> None:
    store, sid = saved(db_url, seeds=1, space={"x": [0.5], "y": [0.0]})
    t = store.claim(sid, worker(1))[0]
    out = TrialOutcome(t.trial_id, {"loss": 0.25, "final_epoch": 2.0}, {"train_loss": [1.0, 0.5]})
    store.record(worker(1), [out], "loss", torch_version="2.13.0")
    frame = store.frame(sid)
    row = frame.iloc[0]
    assert (row["x"], row["epochs"], row["loss"], row["value"]) == (0.5, 2, 0.25, 0.25)
    assert row["torch_version"] == "2.13.0" and row["host"] == "testhost"
    assert row["duration"] >= 0 and row["finished_at"] >= row["started_at"]
    assert frame.attrs["metrics"] == ["loss", "final_epoch"]
    assert store.curves([t.trial_id]) == {t.trial_id: {"train_loss": [1.0, 0.5]}}


def test_unknown_study_lists_the_known_ones(db_url: str) -> None:
    store, _ = saved(db_url)
    with pytest.raises(UnknownStudyError, match=r"no study named 'nope' in .* \(studies: toy\)"):
        store.study("nope")


def test_schema_version_mismatch_is_refused(db_url: str) -> None:
    store, _ = saved(db_url)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE sweeper_meta SET value = '99' WHERE key = 'schema_version'"))
    store.close()
    with pytest.raises(SchemaVersionError, match="has schema version 99, but this sweeper reads"):
        Store(db_url)


def test_missing_and_foreign_sqlite_files(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no sweeper database at .*absent.db"):
        Store(f"sqlite:///{tmp_path / 'absent.db'}")
    assert not (tmp_path / "absent.db").exists()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(
        StoreError, match="cannot read database .*garbage.db: file is not a database"
    ):
        Store(f"sqlite:///{garbage}", create=True)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(StoreError, match="is not a sweeper database"):
        Store(f"sqlite:///{other}")


def test_provenance_is_saved_with_the_study_and_can_be_set_later(db_url: str) -> None:
    store, sid = saved(db_url)
    assert store.study("toy").sweeper_version is None
    study = study_of()
    fields = provenance(None)
    store.save_study(study, grid(study, get_task("toy").group_key), provenance=fields)
    info = store.study("toy")
    assert (info.sweeper_version, info.python_version) == (__version__, platform.python_version())
    assert info.git_commit == fields["git_commit"] and info.code is None
    assert store.set_provenance(sid, code_hash="h1", code="def task(): ...") is True
    info = store.study("toy")
    assert (info.code_hash, info.code, info.sweeper_version) == (
        "h1",
        "def task(): ...",
        __version__,
    )
    assert store.set_provenance(sid + 100, code="x") is False
    with pytest.raises(ValueError) as error:
        store.set_provenance(sid, commit="abc")
    assert str(error.value) == (
        "unknown provenance field commit; choose from: sweeper_version, python_version, "
        "torch_version, git_commit, code_hash, code"
    )


def test_record_keeps_the_log_and_code_hash_and_curves_apart(db_url: str) -> None:
    store, sid = saved(db_url, seeds=1, space={"x": [0.5], "y": [0.0]})
    t = store.claim(sid, worker(1))[0]
    out = TrialOutcome(t.trial_id, {"loss": 0.5}, {"train_loss": [1.0, 0.5]}, log="epoch 2\n")
    assert store.record(worker(1), [out], "loss", code_hash="c0ffee") == 1
    row = store.frame(sid).iloc[0]
    assert row["log"] == "epoch 2\n" and "curves" not in store.frame(sid).columns
    assert "log" not in store.frame(sid, bookkeeping=False).columns
    with store.engine.connect() as conn:
        assert conn.scalar(text("SELECT code_hash FROM trials")) == "c0ffee"
    assert store.curves([t.trial_id]) == {t.trial_id: {"train_loss": [1.0, 0.5]}}


def test_git_commit_is_that_of_the_study_files_repository(tmp_path: Path) -> None:
    assert git_commit(tmp_path) is None  # not a repository
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git or the repository's history is not available")
    assert provenance(repo / "studies" / "toy.toml")["git_commit"] == head
