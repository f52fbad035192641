"""Pruning inside a batched group of a model task.

The contract: a member the pruner stops leaves the group after that epoch and is stored as
pruned with its curves so far; the members that go on give exactly (``==``, float64) the numbers
of the same group run without the pruner. The pruner sees what a per-trial run reports, through
each member's own `sweeper.Trial`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import sweeper as api
from sweeper.launch.modes import batching
from sweeper.store import Store
from sweeper.study import Study
from sweeper.tasks.base import RunContext, TrialInput
from sweeper.tasks.function import FunctionTask
from sweeper.tasks.model import ModelResult, ModelSpec, accuracy
from sweeper.tasks.model.batched import run_batched, train_batched
from sweeper.tasks.model.task import ModelTask, as_model_task
from sweeper.tasks.resolve import task_for

SPEC = """
import torch
from torch import nn
from sweeper.tasks.model import ModelSpec, accuracy

def data(params):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 6, generator=g, dtype=torch.float64)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 0.8).long()
    return (x[:72], y[:72]), (x[72:96], y[72:96]), (x[96:], y[96:])

def build(params):
    w = params["width"]
    return nn.Sequential(nn.Linear(6, w), nn.Tanh(), nn.Linear(w, 3))

spec = ModelSpec(build, data, "cross_entropy", {"accuracy": accuracy}, "float64")
"""

EPOCHS = 8
#: (lr, seed) -> (state, metrics, curves, proposal number) of each trial of a run.
Runs = dict[tuple[float, int], Any]
#: The median pruner (`sweeper.samplers`): 5 finished configurations, not before epoch 5.
STARTUP, WARMUP = 5, 5


def study(tmp_path: Path, name: str, *, pruner: str | None) -> Study:
    """16 learning rates drawn at random, 2 seeds, asked 8 at a time: two groups of 16 trials.

    The random sampler ignores the results, so every variant proposes the same learning rates;
    the pruner judges the second group against the 8 configurations of the first."""
    (tmp_path / "model.py").write_text(SPEC, encoding="utf-8")
    raw: dict[str, Any] = {
        "name": name,
        "task": "model.py:spec",
        "kind": "random",
        "metric": "val_loss",
        "seeds": 2,
        "budget": 16,
        "ask": 8,
        # Its second group has configurations whose two seeds the rule alone would stop at
        # different epochs, or only one of them.
        "sampler_seed": 1,
        "fixed": {"width": 8, "optimizer": "sgd", "epochs": EPOCHS, "batch_size": 16},
        "space": {"lr": {"low": 0.001, "high": 1.0, "log": True}},
    }
    if pruner is not None:
        raw["pruner"] = pruner
    return Study.from_dict(raw, base_dir=tmp_path)


def run(tmp_path: Path, name: str, *, pruner: str | None, mode: str) -> Runs:
    """Run the study; (lr, seed) -> (state, metrics, curves, proposal number) of each trial."""
    db = str(tmp_path / f"{name}.db")
    api.run(study(tmp_path, name, pruner=pruner), db=db, workers=1, mode=mode, group_size=16)
    trials = api.load_trials(name, db=db)
    metrics = trials.attrs["metrics"]
    curves = api.load_curves(name, db=db)
    with Store(f"sqlite:///{db}") as store:
        number = {p.params["lr"]: p.number for p in store.proposals(store.study(name).id)}
    out = {}
    for row in trials.itertuples(index=False):
        mine = curves[curves["trial"] == row.id]
        out[(row.lr, row.seed)] = (
            row.state,
            {m: getattr(row, m) for m in metrics if not pd.isna(getattr(row, m))},
            {c: mine[mine["curve"] == c]["value"].tolist() for c in sorted(set(mine["curve"]))},
            number[row.lr],
        )
    return out


def median_stop(finished: list[list[float]], curve: list[float]) -> int | None:
    """Optuna's median rule worked out by hand: the epoch a trial with this val_loss `curve`
    is stopped at, judged against the `finished` configurations' mean curves (None: never).
    It needs STARTUP finished configurations and judges from epoch WARMUP on: a trial stops
    when its best value so far is above the finished configurations' median at that epoch."""
    if len(finished) < STARTUP:
        return None
    for epoch in range(WARMUP, len(curve) + 1):
        # np.nanpercentile, as Optuna takes it (np.median may round the last bit otherwise).
        median = float(np.nanpercentile([f[epoch - 1] for f in finished], 50))
        if min(curve[:epoch]) > median:
            return epoch
    return None


def mean_curve(runs: Runs, lr: float) -> list[float]:
    """A configuration's val_loss per epoch, the mean of its seeds (as `sweeper.search`)."""
    curves = [t[2]["val_loss"] for (x, _), t in runs.items() if x == lr]
    return [sum(vs) / len(vs) for vs in zip(*curves, strict=True)]


def by_proposal(runs: Runs) -> list[float]:
    return sorted({lr for lr, _ in runs}, key=lambda lr: runs[(lr, 0)][3])


def expected_prunes(
    unpruned: Runs,
) -> tuple[dict[tuple[float, int], int], dict[tuple[float, int], int | None]]:
    """(lr, seed) -> the epoch its batched group stops it, from the unpruned run's curves; and
    the epoch the rule would stop each trial of the second group at by its own values alone.

    Every member of the second group is judged against the first group's 8 configurations
    (finished when the group was claimed; its fellow members are running, so never part of
    the history). A configuration is pruned as a whole: its other seed stops then too."""
    lrs = by_proposal(unpruned)
    finished = [mean_curve(unpruned, lr) for lr in lrs[:8]]
    alone = {
        key: median_stop(finished, t[2]["val_loss"])
        for key, t in unpruned.items()
        if key[0] in lrs[8:]
    }
    stop: dict[float, int] = {}
    for (lr, _), epoch in alone.items():
        if epoch is not None:
            stop[lr] = min(epoch, stop.get(lr, epoch))
    return {key: stop[key[0]] for key in unpruned if key[0] in stop}, alone


def test_median_pruning_inside_a_batched_group(tmp_path: Path) -> None:
    pruned = run(tmp_path, "pruned", pruner="median", mode="batched")
    unpruned = run(tmp_path, "unpruned", pruner=None, mode="batched")
    assert pruned.keys() == unpruned.keys() and len(pruned) == 32
    assert {t[0] for t in unpruned.values()} == {"completed"}

    expected, alone = expected_prunes(unpruned)
    # Some seeds stop with their configuration, not by their own values.
    assert any(alone[key] != epoch for key, epoch in expected.items())
    states = Counter(t[0] for t in pruned.values())
    assert states == {"pruned": len(expected), "completed": 32 - len(expected)}
    assert 0 < len(expected) < 16  # some of the second group pruned, some go on
    assert any(epoch < EPOCHS for epoch in expected.values())
    for key, (state, metrics, curves, _) in pruned.items():
        full_metrics, full_curves = unpruned[key][1], unpruned[key][2]
        if key in expected:
            # Stored as pruned, its curves up to the epoch it was stopped at (exactly the
            # unpruned run's values so far), its metrics those of that moment.
            assert state == "pruned", key
            epoch = expected[key]
            assert curves.keys() == full_curves.keys() == {"train_loss", "val_loss", "val_accuracy"}
            assert curves == {c: v[:epoch] for c, v in full_curves.items()}, key
            assert metrics == {c: v[-1] for c, v in curves.items()}
        else:
            # A survivor: bit for bit the unpruned group's numbers.
            assert state == "completed", key
            assert metrics == full_metrics, key
            assert curves == full_curves, key
            assert len(curves["val_loss"]) == EPOCHS


def test_successive_halving_inside_a_batched_group(tmp_path: Path) -> None:
    pruned = run(tmp_path, "halving", pruner="halving", mode="batched")
    unpruned = run(tmp_path, "unpruned", pruner=None, mode="batched")
    states = Counter(t[0] for t in pruned.values())
    assert states["pruned"] > 0 and states["completed"] >= 16, states
    for key, (state, metrics, curves, number) in pruned.items():
        full_metrics, full_curves = unpruned[key][1], unpruned[key][2]
        if state == "pruned":
            assert number >= 8  # the first group has no finished configuration to rank against
            epoch = len(curves["val_loss"])
            assert WARMUP <= epoch <= EPOCHS
            assert curves == {c: v[:epoch] for c, v in full_curves.items()}, key
        else:
            assert (metrics, curves) == (full_metrics, full_curves), key


def test_per_trial_pruning_differs_from_batched_only_as_their_histories_do(
    tmp_path: Path,
) -> None:
    """The pruner judges a trial against the configurations finished when it was claimed.
    One worker per trial claims trials one after the other, so the history grows trial by
    trial (from the sixth configuration of the first group on, trials can be pruned); a
    batched group is claimed at once, so all its members are judged against the same history
    (as trials run side by side by several workers would be). The two runs prune different
    trials, legitimately; each follows the median rule on its own history, and a trial both
    complete agrees to rounding (the two paths order floating-point operations differently)."""
    batched = run(tmp_path, "b", pruner="median", mode="batched")
    alone = run(tmp_path, "a", pruner="median", mode="per-trial")
    assert batched.keys() == alone.keys() and len(batched) == 32  # the same proposals

    finished: list[list[float]] = []
    for lr in by_proposal(alone):
        pruned_config = False
        for seed in (0, 1):
            state, metrics, curves, _ = alone[(lr, seed)]
            if pruned_config:
                # Its configuration was pruned while it was queued: it never ran.
                assert state == "pruned" and curves == {}, (lr, seed)
                continue
            epoch = median_stop(finished, curves["val_loss"])
            if epoch is None:
                assert state == "completed" and len(curves["val_loss"]) == EPOCHS, (lr, seed)
            else:
                assert state == "pruned" and len(curves["val_loss"]) == epoch, (lr, seed)
                pruned_config = True
        if not pruned_config:
            finished.append(mean_curve(alone, lr))
    states = Counter(t[0] for t in alone.values())
    assert states["pruned"] > 0 and states["completed"] > 0

    both = [k for k in batched if batched[k][0] == alone[k][0] == "completed"]
    assert len(both) >= 10
    for key in both:
        assert batched[key][1] == pytest.approx(alone[key][1], abs=1e-8, rel=0), key
        for name, curve in batched[key][2].items():
            assert curve == pytest.approx(alone[key][2][name], abs=1e-8, rel=0), (key, name)


# -- the group's loop: stopping members never changes the others ---------------------------------

X = torch.randn(60, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
Y = (X[:, 0] + X[:, 1] > 0).long() + (X[:, 2] > 0.8).long()
SPLITS = ((X[:36], Y[:36]), (X[36:48], Y[36:48]), (X[48:], Y[48:]))


def mlp(params: dict[str, Any]) -> nn.Module:
    return nn.Sequential(nn.Linear(8, params["width"]), nn.Tanh(), nn.Linear(params["width"], 3))


MLP = ModelSpec(mlp, SPLITS, "cross_entropy", {"accuracy": accuracy}, "float64")


def group(optimizer: str, sam_rho: float, schedule: str) -> list[tuple[dict[str, Any], int]]:
    """Five members: learning rates, weight decays, momenta and seeds all differ."""
    out = []
    for i in range(5):
        params = {
            "width": 6,
            "optimizer": optimizer,
            "lr": (0.02 if optimizer == "sgd" else 0.002) * (1 + i),
            "weight_decay": 1e-3 * (i % 2),
            "momentum": 0.1 * i if optimizer == "sgd" else 0.0,
            "sam_rho": sam_rho * (1 + i / 4),
            "epochs": 5,
            "batch_size": 8,
            "schedule": schedule,
        }
        out.append((params, 40 + i))
    return out


@pytest.mark.parametrize(
    ("optimizer", "sam_rho", "schedule"),
    [
        ("sgd", 0.0, "none"),
        ("sgd", 0.05, "cosine"),
        ("adam", 0.0, "cosine"),
        ("adamw", 0.05, "none"),
    ],
)
def test_stopped_members_leave_and_the_others_are_bit_for_bit_unchanged(
    optimizer: str, sam_rho: float, schedule: str
) -> None:
    members = group(optimizer, sam_rho, schedule)
    full = [r for r in train_batched(MLP, members) if isinstance(r, ModelResult)]
    assert len(full) == 5
    stop_at = {1: 2, 3: 2, 4: 4}  # member -> the epoch after which the judge stops it
    told: dict[int, list[int]] = {}

    def judge(epoch: int, values: Mapping[int, dict[str, float]]) -> list[int]:
        for i, point in values.items():
            told.setdefault(i, []).append(epoch)
            assert point["val_loss"] == full[i].curves["val_loss"][epoch - 1]
        return [i for i in values if stop_at.get(i) == epoch]

    ended = list(run_batched(MLP, members, judge=judge))
    # Yielded as they end: members 1 and 3 after epoch 2, 4 after epoch 4, then the others.
    assert [i for i, _ in ended] == [1, 3, 4, 0, 2]
    assert all(result is None for i, result in ended if i in stop_at)
    assert told == {i: list(range(1, stop_at.get(i, 5) + 1)) for i in range(5)}
    for i, result in ended:
        if i not in stop_at:
            assert result == full[i]  # dataclass ==: every metric and curve value equal


def task_of(tmp_path: Path) -> ModelTask:
    function = FunctionTask(
        MLP, name="model.py:spec", metric="val_loss", trials_dir=tmp_path, prune_curve="val_loss"
    )
    task = as_model_task(function)
    assert isinstance(task, ModelTask)
    return task


def test_a_pruned_member_takes_its_configurations_other_seeds_with_it(tmp_path: Path) -> None:
    # Members 0 and 1 are one configuration (two seeds); the pruner stops member 1 at epoch 3.
    members = group("sgd", 0.0, "none")[:4]
    members[1] = (members[0][0], 99)
    inputs = [TrialInput(10 + i, f"k{i}", p, s) for i, (p, s) in enumerate(members)]
    asked: list[tuple[int, int, float]] = []

    def should_prune(trial_id: int, epoch: int, value: float) -> bool:
        asked.append((trial_id, epoch, value))
        return trial_id == 11 and epoch == 3

    ctx = RunContext(data_dir=tmp_path, batched=True, should_prune=should_prune)
    outcomes = list(task_of(tmp_path).run(inputs, ctx))
    full = train_batched(MLP, members)
    assert [o.trial_id for o in outcomes] == [10, 11, 12, 13]
    for out, result in zip(outcomes, full, strict=True):
        assert isinstance(result, ModelResult)
        if out.trial_id in (10, 11):
            assert out.pruned and out.error is None
            assert out.curves == {c: v[:3] for c, v in result.curves.items()}
            assert out.metrics == {c: v[2] for c, v in result.curves.items()}
        else:
            assert not out.pruned and out.error is None
            assert out.metrics == result.metrics and out.curves == result.curves
    # The pruner was asked with each member's val_loss, epoch by epoch, as per trial.
    assert [(t, e) for t, e, _ in asked if t == 11] == [(11, 1), (11, 2), (11, 3)]
    assert [e for t, e, _ in asked if t == 12] == [1, 2, 3, 4, 5]


def test_a_pruned_model_study_batches_and_other_tasks_do_not(tmp_path: Path) -> None:
    pruned = study(tmp_path, "p", pruner="median")
    model_task = task_for(pruned)
    assert batching(pruned, model_task, "auto") and batching(pruned, model_task, "batched")
    assert not batching(pruned, model_task, "per-trial")
    toy = Study.from_dict(
        {
            "name": "t",
            "task": "toy",
            "kind": "random",
            "metric": "loss",
            "budget": 2,
            "pruner": "median",
            "space": {"x": {"low": 0.0, "high": 1.0}},
        }
    )
    assert not batching(toy, task_for(toy), "auto")
