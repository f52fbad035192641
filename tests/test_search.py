"""Searched studies (kind tpe / random): spec, history rebuild, seed aggregation, reproducible
proposals, the budget under concurrency and kill -9, pruning, and the query commands."""

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
from typing import Any

import pytest

from sweeper import search
from sweeper.canonical import canonical_json
from sweeper.errors import StudyFileError
from sweeper.launch.options import WorkerOptions
from sweeper.launch.worker import run_worker
from sweeper.store import Store
from sweeper.study import Study, parse_study
from sweeper.tasks import get_task

TOY_SEARCH = """
name = "{name}"
task = "toy"
kind = "{kind}"
metric = "loss"
seeds = 3
budget = {budget}
sampler_seed = {sampler_seed}
ask = {ask}
{extra}
[fixed]
epochs = {epochs}
sleep = {sleep}
[space]
x = {{ low = -4.0, high = 4.0 }}
y = {{ low = -4.0, high = 4.0 }}
"""


def toy_study(tmp_path: Path, **kw: Any) -> Path:
    values = {
        "name": "toy_search",
        "kind": "tpe",
        "budget": 12,
        "sampler_seed": 0,
        "ask": 1,
        "extra": "",
        "epochs": 3,
        "sleep": 0.0,
        **kw,
    }
    path = tmp_path / f"{values['name']}.toml"
    path.write_text(TOY_SEARCH.format(**values), encoding="utf-8")
    return path


def sweeper(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sweeper", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def load(path: Path) -> Study:
    from sweeper.study import load_study

    return load_study(path)


def proposals_in(db: Path, name: str = "toy_search") -> list[tuple[int, dict[str, Any]]]:
    with Store(f"sqlite:///{db}") as store:
        return [(p.number, p.raw) for p in store.proposals(store.study(name).id)]


def trial_rows(db: Path) -> list[tuple[str, str, int, str, int]]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT key, params, seed, state, attempts FROM trials").fetchall()
    finally:
        con.close()


# -- study files ------------------------------------------------------------------------------


def obesity_raw(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "s",
        "task": "obesity",
        "kind": "tpe",
        "metric": "test_mse",
        "seeds": 3,
        "budget": 40,
        "space": {
            "optimizer": ["sgd", "adam"],
            "lr": {"low": 1e-5, "high": 3e-2, "log": True},
            "weight_decay": {"low": 1e-5, "high": 1e-1, "log": True, "floor": 1e-4},
            "sam_rho": {"low": 0.0, "high": 0.1, "floor": 0.02},
            "epochs": {"low": 50, "high": 200, "step": 50},
        },
    }
    raw.update(over)
    return raw


def test_distributions_are_parsed_and_typed_by_the_task() -> None:
    study = parse_study(obesity_raw(), "s.toml")
    assert study.searched and study.axes == {} and study.budget == 40
    assert study.search["optimizer"] == {"type": "categorical", "choices": ["sgd", "adam"]}
    assert study.search["lr"] == {"type": "float", "low": 1e-5, "high": 3e-2, "log": True}
    assert study.search["epochs"]["type"] == "int" and study.search["epochs"]["step"] == 50
    assert study.search["weight_decay"]["floor"] == 1e-4
    # Searched parameters are not fixed ones.
    assert not set(study.search) & set(study.fixed)
    # The stored form survives a round trip, order included.
    again = Study.from_json(study.to_json())
    assert again == study and list(again.search) == list(study.search)


def test_every_search_problem_is_reported_at_once() -> None:
    bad = obesity_raw(
        budget=0,
        space={
            "lr": {"low": -1.0, "high": 1.0, "log": True},
            "sam_rho": {"low": 0.1, "high": 0.0},
            "epochs": {"low": 1.5, "high": 3},
            "weight_decay": {"low": 1e-5, "high": 1e-1, "flor": 1e-4},
            "momentum": {"low": 0.0, "high": 0.5, "floor": 0.9},
        },
    )
    with pytest.raises(StudyFileError) as info:
        parse_study(bad, "s.toml")
    assert info.value.problems == [
        "s.toml: budget: must be >= 1 (got 0)",
        "s.toml: space.lr.low: must be > 0 (got -1)",
        "s.toml: space.sam_rho.high: must be > low (0.1) (got 0)",
        "s.toml: space.epochs.low: must be an integer (got 1.5)",
        "s.toml: space.weight_decay.flor: unknown key",
        "s.toml: space.momentum.floor: must lie between low and high (got 0.9)",
    ]


def test_grid_and_search_keys_do_not_mix() -> None:
    grid = {k: v for k, v in obesity_raw(kind="grid").items() if k != "space"}
    grid["space"] = {"lr": {"low": 1e-4, "high": 1e-2}}
    with pytest.raises(StudyFileError) as info:
        parse_study(grid, "g.toml")
    assert info.value.problems == [
        'g.toml: space.lr: a distribution needs kind = "tpe" or "random"; a grid lists its values',
        'g.toml: budget: only for searched studies (kind = "tpe" or "random")',
    ]
    no_budget = {k: v for k, v in obesity_raw().items() if k != "budget"}
    with pytest.raises(StudyFileError, match="budget: required with kind = 'tpe'"):
        parse_study(no_budget, "t.toml")


def test_pruning_needs_a_validation_split() -> None:
    with pytest.raises(StudyFileError, match="pruner: pruning needs a validation split"):
        parse_study(obesity_raw(pruner="median"), "p.toml")
    study = parse_study(
        obesity_raw(pruner="median", metric="val_mse", fixed={"val_fraction": 0.15}), "p.toml"
    )
    assert study.pruner == "median"


def test_floor_maps_low_draws_to_exact_zero() -> None:
    study = parse_study(obesity_raw(), "s.toml")
    raw = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 5e-5, "sam_rho": 0.01, "epochs": 100}
    params = search.to_params(study, raw)
    assert params["weight_decay"] == 0.0 and params["sam_rho"] == 0.0
    raw.update(weight_decay=2e-4, sam_rho=0.05)
    params = search.to_params(study, raw)
    assert params["weight_decay"] == 2e-4 and params["sam_rho"] == 0.05
    assert params["batch_size"] == study.fixed["batch_size"]


# -- history rebuild and seed aggregation ------------------------------------------------------


def _toy(aggregate: str = "mean", seeds: int = 3) -> Study:
    raw = {
        "name": "h",
        "task": "toy",
        "kind": "tpe",
        "metric": "loss",
        "seeds": seeds,
        "budget": 10,
        "aggregate": aggregate,
        "space": {"x": {"low": -4.0, "high": 4.0}, "y": {"low": -4.0, "high": 4.0}},
    }
    return parse_study(raw, "h.toml")


def _proposal(study: Study, n: int, x: float) -> search.Proposal:
    raw = {"x": x, "y": 0.0}
    return search.Proposal(n, search.to_params(study, raw), raw)


def _result(
    p: search.Proposal, seed: int, state: str, value: float | None, curve: list[float] | None = None
) -> search.TrialResult:
    return search.TrialResult(canonical_json(p.params), seed, state, value, curve)


@pytest.mark.parametrize("aggregate", ["mean", "median"])
def test_summarize_aggregates_seeds_and_derives_states(aggregate: str) -> None:
    study = _toy(aggregate)
    done, waiting, pruned, failed = (_proposal(study, i, float(i)) for i in range(4))
    trials = [
        _result(done, 0, "completed", 1.0, [3.0, 2.0]),
        _result(done, 1, "completed", 2.0, [5.0, 4.0]),
        _result(done, 2, "completed", 6.0, [4.0]),
        _result(waiting, 0, "completed", 1.0),
        _result(waiting, 1, "running", None),
        _result(waiting, 2, "queued", None),
        _result(pruned, 0, "pruned", None, [9.0]),
        _result(pruned, 1, "completed", 2.0),
        _result(pruned, 2, "pruned", None),
        _result(failed, 0, "completed", 1.0),
        _result(failed, 1, "failed", None),
        _result(failed, 2, "completed", 1.0),
    ]
    history = search.summarize(study, [done, waiting, pruned, failed], trials)
    assert [c.state for c in history] == ["complete", "running", "pruned", "fail"]
    assert history[0].value == (3.0 if aggregate == "mean" else 2.0)
    assert [c.value for c in history[1:]] == [None, None, None]
    # Intermediate values: the mean over the seeds that reached each epoch.
    assert history[0].intermediate == {1: 4.0, 2: 3.0}
    assert history[2].intermediate == {1: 9.0}


def test_a_config_is_complete_only_when_every_seed_is() -> None:
    study = _toy(seeds=2)
    p = _proposal(study, 0, 1.0)
    one = search.summarize(study, [p], [_result(p, 0, "completed", 1.0)])
    assert one[0].state == "running"
    # A trial of a seed the study no longer has does not count.
    stray = search.summarize(
        study, [p], [_result(p, 0, "completed", 1.0), _result(p, 7, "completed", 1.0)]
    )
    assert stray[0].state == "running"
    both = search.summarize(
        study, [p], [_result(p, 0, "completed", 1.0), _result(p, 1, "completed", 3.0)]
    )
    assert both[0].state == "complete" and both[0].value == 2.0 and both[0].seeds_done == 2


def test_rebuilt_optuna_study_holds_the_history() -> None:
    from optuna.trial import TrialState

    study = _toy()
    ps = [_proposal(study, i, float(i)) for i in range(3)]
    history = [
        search.ConfigResult(0, ps[0].params, ps[0].raw, "complete", 1.5, 3, {1: 2.0}),
        search.ConfigResult(1, ps[1].params, ps[1].raw, "running", None, 1),
        search.ConfigResult(2, ps[2].params, ps[2].raw, "pruned", None, 1, {1: 9.0}),
    ]
    ostudy = search.build_study(study, history, None)
    trials = ostudy.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED]
    assert trials[0].value == 1.5 and trials[0].intermediate_values == {1: 2.0}
    assert [t.params["x"] for t in trials] == [0.0, 1.0, 2.0]


# -- proposals through the store -----------------------------------------------------------------


def test_store_budget_is_never_overshot_and_seeds_are_enqueued(sqlite_url: str) -> None:
    study = _toy()
    task = get_task("toy")
    with Store(sqlite_url, create=True) as store:
        sid = store.save_study(study, []).study_id

        def propose(
            proposals: list[search.Proposal], trials: list[search.TrialResult]
        ) -> list[search.NewProposal]:
            history = search.summarize(study, proposals, trials)
            return search.propose(study, history, 4, task.group_key)

        assert [store.extend_search(sid, 10, 4, propose) for _ in range(4)] == [4, 4, 2, 0]
        proposals = store.proposals(sid)
        assert [p.number for p in proposals] == list(range(10))
        assert store.counts(sid)["queued"] == 30
        # Enqueueing the seed plan again is a no-op.
        before = store.counts(sid)
        store.save_study(study, search.seed_plan(study, proposals, task.group_key))
        assert store.counts(sid) == before


def test_an_old_database_gains_the_proposals_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with Store(url, create=True):
        pass
    con = sqlite3.connect(tmp_path / "old.db")
    con.execute("DROP TABLE proposals")
    con.commit()
    con.close()
    with Store(url) as store:  # read-only use: nothing is created, searched lists are empty
        assert store.proposals(1) == []
    with Store(url, create=True) as store:
        sid = store.save_study(_toy(), []).study_id
        assert store.proposals(sid) == []
    con = sqlite3.connect(tmp_path / "old.db")
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    assert "proposals" in tables


def _run_in_process(db: str, study_file: Path, max_claims: int | None = None) -> None:
    study = load(study_file)
    with Store(db, create=True) as store:
        store.save_study(study, [])
    run_worker(db, study.name, WorkerOptions(data_dir=None, max_claims=max_claims))


def test_one_worker_proposals_are_reproducible_and_survive_a_restart(tmp_path: Path) -> None:
    study_file = toy_study(tmp_path, budget=14)
    a, b, c = (f"sqlite:///{tmp_path / n}" for n in ("a.db", "b.db", "c.db"))
    _run_in_process(a, study_file)
    _run_in_process(b, study_file)
    # c stops after 11 claims (3 configurations and 2 seeds of the fourth), then resumes.
    _run_in_process(c, study_file, max_claims=11)
    assert len(proposals_in(tmp_path / "c.db")) == 4
    _run_in_process(c, study_file)
    first = proposals_in(tmp_path / "a.db")
    assert len(first) == 14
    assert proposals_in(tmp_path / "b.db") == first
    assert proposals_in(tmp_path / "c.db") == first
    # TPE took over from random start-up: the later proposals differ from a random sampler's.
    random_file = toy_study(tmp_path, name="toy_random", kind="random", budget=14)
    d = f"sqlite:///{tmp_path / 'd.db'}"
    _run_in_process(d, random_file)
    rnd = proposals_in(tmp_path / "d.db", "toy_random")
    assert [r for _, r in rnd] != [r for _, r in first]


def test_a_different_sampler_seed_proposes_differently(tmp_path: Path) -> None:
    one = toy_study(tmp_path, budget=3)
    other = toy_study(tmp_path, name="toy_other", budget=3, sampler_seed=1)
    _run_in_process(f"sqlite:///{tmp_path / 'one.db'}", one)
    _run_in_process(f"sqlite:///{tmp_path / 'two.db'}", other)
    assert proposals_in(tmp_path / "one.db") != proposals_in(tmp_path / "two.db", "toy_other")


def test_tpe_beats_random_on_the_toy_quadratic(tmp_path: Path) -> None:
    """A smoke test that the history reaches the sampler: with the told values TPE closes in on
    the optimum (x=1, y=-2) far better than random draws from the same budget."""
    best: dict[str, float] = {}
    for kind in ("tpe", "random"):
        path = toy_study(tmp_path, name=f"toy_{kind}", kind=kind, budget=40)
        db = f"sqlite:///{tmp_path / f'{kind}.db'}"
        _run_in_process(db, path)
        with Store(db) as store:
            sid = store.study(f"toy_{kind}").id
            study = store.study(f"toy_{kind}").study
            history = search.summarize(study, store.proposals(sid), store.search_trials(sid))
        best[kind] = min(c.value for c in history if c.value is not None)
    assert best["tpe"] < best["random"], best


# -- whole runs: two processes, kill -9 ----------------------------------------------------------


def test_two_runs_at_once_respect_the_budget(tmp_path: Path) -> None:
    study_file = toy_study(tmp_path, budget=16, sleep=0.05, ask=2)
    log = tmp_path / "executions.log"
    args = ("run", study_file.name, "--workers", "1", "--executor", "trial", "--no-progress")
    procs = [sweeper(*args, cwd=tmp_path, env={"SWEEPER_TOY_LOG": str(log)}) for _ in range(2)]
    outputs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    db = tmp_path / "results.db"
    assert len(proposals_in(db)) == 16
    rows = trial_rows(db)
    assert len(rows) == 48 and {r[3] for r in rows} == {"completed"}
    assert len({r[1] for r in rows}) == 16  # 16 distinct configurations, 3 seeds each
    runs = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert len(runs) == 48 and set(runs.values()) == {1}
    assert len({line.split()[1] for line in log.read_text().splitlines()}) == 2


def test_kill_9_mid_search_then_resume_finishes_the_budget_exactly(tmp_path: Path) -> None:
    study_file = toy_study(tmp_path, budget=12, sleep=0.1, ask=2)
    log = tmp_path / "executions.log"
    env = {"SWEEPER_TOY_LOG": str(log)}
    args = ("run", study_file.name, "--workers", "2", "--executor", "trial", "--no-progress")
    proc = sweeper(*args, cwd=tmp_path, env=env)
    db = tmp_path / "results.db"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if sum(r[3] == "completed" for r in trial_rows(db)) >= 10:
                break
        except sqlite3.OperationalError:
            pass
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = trial_rows(db)
    assert 10 <= sum(r[3] == "completed" for r in before) < 36, "the kill should land mid-study"
    assert len(proposals_in(db)) < 12
    time.sleep(1.5)  # orphaned workers notice their parent is gone and exit

    again = sweeper(*args, cwd=tmp_path, env=env)
    output, _ = again.communicate(timeout=180)
    assert again.returncode == 0, output
    after = trial_rows(db)
    assert len(proposals_in(db)) == 12
    assert len(after) == 36 and {r[3] for r in after} == {"completed"}
    assert len({r[1] for r in after}) == 12
    assert Counter((r[1], r[2]) for r in after).most_common(1)[0][1] == 1
    runs = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert set(runs) == {r[0] for r in after}
    assert sum(n > 1 for n in runs.values()) <= 2  # only trials in flight at the kill re-ran


# -- pruning --------------------------------------------------------------------------------------


def test_pruned_trials_are_stored_with_their_last_epoch(tmp_path: Path) -> None:
    study_file = toy_study(
        tmp_path, name="toy_pruned", budget=24, epochs=20, extra='pruner = "median"'
    )
    db = f"sqlite:///{tmp_path / 'p.db'}"
    _run_in_process(db, study_file)
    con = sqlite3.connect(tmp_path / "p.db")
    rows = con.execute(
        "SELECT t.params, t.seed, t.state, t.value, c.curves, t.metrics FROM trials t "
        "LEFT JOIN trial_curves c ON c.trial_id = t.id"
    ).fetchall()
    con.close()
    states = Counter(r[2] for r in rows)
    assert states["pruned"] > 0 and states["completed"] > 0, states
    assert set(states) <= {"completed", "pruned"}
    for _params, _seed, state, value, curves, metrics in rows:
        if state == "pruned" and curves:  # stopped mid-training (not skipped while queued)
            length = len(json.loads(curves)["train_loss"])
            assert 5 <= length < 20  # not before the warm-up ends (epoch 5), before the end
            assert json.loads(metrics)["final_epoch"] == length
            assert value is None
        if state == "completed":
            assert len(json.loads(curves)["train_loss"]) == 20 and value is not None
    # A configuration is pruned as a whole: no configuration is both pruned and complete.
    by_config: dict[str, set[str]] = {}
    for params, _seed, state, *_ in rows:
        by_config.setdefault(params, set()).add(state)
    assert all(s in ({"completed"}, {"pruned"}) for s in by_config.values()), by_config
    with Store(db) as store:
        info = store.study("toy_pruned")
        history = search.summarize(
            info.study, store.proposals(info.id), store.search_trials(info.id, "train_loss")
        )
    assert len(history) == 24
    assert {c.state for c in history} == {"complete", "pruned"}


def test_pruning_with_successive_halving_runs(tmp_path: Path) -> None:
    study_file = toy_study(
        tmp_path, name="toy_halving", budget=16, epochs=20, extra='pruner = "halving"'
    )
    db = f"sqlite:///{tmp_path / 'h.db'}"
    _run_in_process(db, study_file)
    con = sqlite3.connect(tmp_path / "h.db")
    states = Counter(r[0] for r in con.execute("SELECT state FROM trials"))
    con.close()
    assert states["pruned"] > 0 and states["completed"] > 0, states


def test_a_worker_asked_to_batch_a_pruned_study_claims_one_trial_at_a_time(
    tmp_path: Path,
) -> None:
    # `sweeper worker` on another host may be started with batching on: the worker itself must
    # keep a pruned study per trial, since a batched group cannot stop one member.
    study_file = toy_study(tmp_path, name="toy_pw", budget=8, epochs=10, extra='pruner = "median"')
    db = f"sqlite:///{tmp_path / 'pw.db'}"
    with Store(db, create=True) as store:
        store.save_study(load(study_file), [])
    run_worker(db, "toy_pw", WorkerOptions(data_dir=None, batched=True, group_size=8))
    con = sqlite3.connect(tmp_path / "pw.db")
    starts = [
        r[0] for r in con.execute("SELECT started_at FROM trials WHERE started_at IS NOT NULL")
    ]
    con.close()
    assert len(starts) > 8 and len(set(starts)) == len(starts)  # one claim per trial


def test_a_batched_run_of_a_pruned_study_is_refused(tmp_path: Path) -> None:
    study_file = toy_study(tmp_path, name="toy_p", extra='pruner = "median"')
    proc = sweeper("run", study_file.name, "--executor", "batched", cwd=tmp_path)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "prunes trials epoch by epoch" in output and "Traceback" not in output
    assert not (tmp_path / "results.db").exists()


# -- queries ------------------------------------------------------------------------------------


def test_best_table_importance_and_status_on_a_searched_study(tmp_path: Path) -> None:
    study_file = toy_study(tmp_path, budget=12)
    run = sweeper("run", study_file.name, "--workers", "1", "--no-progress", cwd=tmp_path)
    output, _ = run.communicate(timeout=120)
    assert run.returncode == 0, output

    def cli(*args: str) -> str:
        proc = sweeper(*args, cwd=tmp_path)
        text, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, text
        return text

    best = cli("best", "toy_search", "--format", "csv")
    lines = best.strip().splitlines()
    assert lines[0] == "x,y,mean,sem,std,n" and len(lines) == 11
    means = [float(line.split(",")[2]) for line in lines[1:]]
    assert means == sorted(means) and all(line.endswith(",3") for line in lines[1:])

    table = cli("table", "toy_search", "--bins", "2", "--format", "csv", "--agg", "count")
    counts = [int(row.split(",")[3]) for row in table.strip().splitlines()[1:]]
    assert len(counts) == 4 and sum(counts) == 36  # every trial falls into one of 2 x 2 bins

    imp = cli("importance", "toy_search", "--format", "csv")
    rows = [line.split(",") for line in imp.strip().splitlines()[1:]]
    assert {r[0] for r in rows} == {"x", "y"}
    assert abs(sum(float(r[1]) for r in rows) - 1.0) < 1e-6

    status = cli("status", "toy_search")
    assert "12 of 12 configurations proposed" in status


def test_importance_on_a_grid_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "g.toml").write_text(
        'name = "g"\ntask = "toy"\nmetric = "loss"\n[space]\nx = [0.0, 1.0]\n', encoding="utf-8"
    )
    run = sweeper("run", "g.toml", "--workers", "1", "--no-progress", cwd=tmp_path)
    assert run.wait(timeout=60) == 0
    proc = sweeper("importance", "g", cwd=tmp_path)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "is a grid" in output and "Traceback" not in output


# -- ask = "auto": asks sized so that batched groups stay large -------------------------------


@pytest.mark.parametrize(
    ("seeds", "budget", "group_size", "expected"),
    [
        (3, 60, 256, 15),  # the budget's quarter: 45 trials a group, 4 asks
        (2, 1000, 256, 128),  # the group's cap: 256 trials, 16 whole blocks of 16 lanes
        (3, 4000, 256, 80),  # 85 configurations would leave a block of 15 lanes: 80 (240)
        (3, 60, 1, 1),  # per trial: one at a time, the sampler learns after each
        (1, 3, 256, 1),  # a tiny budget still asks at least one
        (5, 100, 4, 1),  # a group smaller than the seeds: one configuration
    ],
)
def test_an_automatic_ask_keeps_groups_large_and_leaves_rounds(
    seeds: int, budget: int, group_size: int, expected: int
) -> None:
    raw = {**obesity_raw(), "seeds": seeds, "budget": budget, "ask": "auto"}
    study = Study.from_dict(raw)
    assert study.ask == "auto"
    assert search.ask_size(study, group_size) == expected
    assert search.ask_size(Study.from_dict({**raw, "ask": 7}), group_size) == 7


@pytest.mark.parametrize("bad", ["many", 0, 1001, 2.5, True, "8"])
def test_a_bad_ask_is_one_line(bad: Any) -> None:
    with pytest.raises(StudyFileError) as info:
        Study.from_dict({**obesity_raw(), "ask": bad})
    assert [p for p in info.value.problems if "ask" in p] == [
        f'<study>: ask: must be an integer from 1 to 1000, or "auto" (got {bad!r})'
        if not isinstance(bad, bool)
        else '<study>: ask: must be an integer from 1 to 1000, or "auto" (got true)'
    ]


def test_a_batched_worker_asks_as_many_as_fill_its_group(tmp_path: Path) -> None:
    study_file = toy_study(tmp_path, budget=16, ask='"auto"')
    study = load(study_file)
    db = f"sqlite:///{tmp_path / 'auto.db'}"
    with Store(db, create=True) as store:
        store.save_study(study, [])
    options = WorkerOptions(data_dir=None, batched=True, group_size=64, max_claims=1)
    run_worker(db, study.name, options)
    # 64 // 3 seeds = 21 configurations (63 trials: 48 in whole blocks of 16, so 16), capped
    # by the budget's quarter: 4 configurations, 12 trials, claimed as one group.
    assert len(proposals_in(tmp_path / "auto.db")) == 4
    rows = trial_rows(tmp_path / "auto.db")
    assert len(rows) == 12 and sum(r[3] == "completed" for r in rows) == 12
    # The same study per trial asks one configuration at a time.
    one = f"sqlite:///{tmp_path / 'one.db'}"
    with Store(one, create=True) as store:
        store.save_study(study, [])
    run_worker(one, study.name, WorkerOptions(data_dir=None, max_claims=1))
    assert len(proposals_in(tmp_path / "one.db")) == 1
