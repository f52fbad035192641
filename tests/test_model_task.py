"""Model tasks: a user's model trained by sweeper's loop, per trial and as batched groups.

The contract: a member of a batched group is its per-trial run, to rounding error in float64,
for every optimizer with and without weight decay and SAM, for an MLP and a 1-D CNN.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from sweeper.errors import StudyFileError
from sweeper.tasks.base import RunContext, TrialInput
from sweeper.tasks.function import FunctionTask
from sweeper.tasks.model import ModelResult, ModelSpec, ModelSpecError, accuracy
from sweeper.tasks.model.batchable import NotBatchable
from sweeper.tasks.model.batched import train_batched
from sweeper.tasks.model.hyper import group_key
from sweeper.tasks.model.per_trial import train_per_trial
from sweeper.tasks.model.task import ModelTask, as_model_task

TOL = 1e-8


def classes(n: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Signals ``[n, length]`` and 3 classes that depend on them (float64)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, length, generator=g, dtype=torch.float64)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 0.8).long()
    return x, y


X, Y = classes(60, 8, 0)
SPLITS = ((X[:36], Y[:36]), (X[36:48], Y[36:48]), (X[48:], Y[48:]))


def mlp(params: dict[str, Any]) -> nn.Module:
    return nn.Sequential(nn.Linear(8, params["width"]), nn.Tanh(), nn.Linear(params["width"], 3))


def cnn(params: dict[str, Any]) -> nn.Module:
    channels = params["channels"]
    return nn.Sequential(
        nn.Unflatten(1, (1, 8)),
        nn.Conv1d(1, channels, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Flatten(),
        nn.Linear(channels * 4, 3),
    )


SPECS = {
    "mlp": (ModelSpec(mlp, SPLITS, "cross_entropy", {"accuracy": accuracy}, "float64"), "width"),
    "cnn": (ModelSpec(cnn, SPLITS, "cross_entropy", {"accuracy": accuracy}, "float64"), "channels"),
}


def members(arch: str, optimizer: str, sam_rho: float) -> list[tuple[dict[str, Any], int]]:
    """Four members of one group: two learning rates x weight decay {0, 1e-3}, own seeds."""
    key = SPECS[arch][1]
    out = []
    for i, (lr, wd) in enumerate([(0.05, 0.0), (0.05, 1e-3), (0.2, 0.0), (0.2, 1e-3)]):
        params = {
            key: 4,
            "optimizer": optimizer,
            "lr": lr if optimizer == "sgd" else lr / 10,
            "weight_decay": wd,
            "momentum": 0.9 if optimizer == "sgd" else 0.0,
            "sam_rho": sam_rho * (1 + i / 4),
            "epochs": 2,
            "batch_size": 16,
            "schedule": "cosine",
        }
        out.append((params, 100 + i))
    return out


def assert_equal(batched: ModelResult | str, alone: ModelResult) -> None:
    assert isinstance(batched, ModelResult), batched
    assert batched.metrics.keys() == alone.metrics.keys()
    for name, value in alone.metrics.items():
        assert batched.metrics[name] == pytest.approx(value, abs=TOL, rel=0), name
    assert batched.curves.keys() == alone.curves.keys()
    for name, curve in alone.curves.items():
        assert batched.curves[name] == pytest.approx(curve, abs=TOL, rel=0), name


@pytest.mark.parametrize("sam_rho", [0.0, 0.05])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_a_batched_member_equals_its_per_trial_run(
    arch: str, optimizer: str, sam_rho: float
) -> None:
    spec = SPECS[arch][0]
    group = members(arch, optimizer, sam_rho)
    batched = train_batched(spec, group)
    for (params, seed), result in zip(group, batched, strict=True):
        assert_equal(result, train_per_trial(spec, params, seed))
    metrics = [r.metrics for r in batched if isinstance(r, ModelResult)]
    assert {"train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy"} <= set(
        metrics[0]
    )
    # the members really differ (weight decay, lr and seed all reach the numbers)
    assert len({m["train_loss"] for m in metrics}) == len(metrics)


def test_the_same_seed_gives_the_same_numbers_and_another_seed_others() -> None:
    spec = SPECS["mlp"][0]
    params, _ = members("mlp", "adam", 0.0)[0]
    once, twice = train_per_trial(spec, params, 7), train_per_trial(spec, params, 7)
    assert once == twice
    assert train_per_trial(spec, params, 8).metrics != once.metrics


def test_the_group_key_leaves_out_what_members_may_vary() -> None:
    base = {"width": 4, "optimizer": "sgd", "lr": 0.1, "epochs": 2}
    key = group_key(base)
    assert group_key({**base, "lr": 0.3, "weight_decay": 1e-3, "momentum": 0.9}) == key
    assert group_key({**base, "sam_rho": 0.05}) != key  # SAM on costs a second gradient
    assert group_key({**base, "sam_rho": 0.05}) == group_key({**base, "sam_rho": 0.1})
    for change in ({"width": 8}, {"epochs": 3}, {"batch_size": 8}, {"optimizer": "adam"}):
        assert group_key({**base, **change}) != key
    assert group_key({**base, "epochs": 10}) == group_key(
        {k: v for k, v in base.items() if k != "epochs"}
    )


def test_bad_hyperparameters_are_reported_all_at_once() -> None:
    with pytest.raises(StudyFileError) as info:
        group_key({"optimizer": "adam", "momentum": 0.9, "lr": -1.0})
    text = str(info.value)
    assert "lr" in text and "greater than 0" in text
    with pytest.raises(
        StudyFileError, match="unknown optimizer 'rmsprop'; choose one of: adam, adamw, sgd"
    ):
        group_key({"optimizer": "rmsprop"})


def test_a_malformed_spec_names_every_problem() -> None:
    with pytest.raises(ModelSpecError) as info:
        ModelSpec(mlp, SPLITS, loss="hinge", dtype="float16")  # type: ignore[arg-type]
    assert str(info.value) == (
        "ModelSpec: unknown loss 'hinge'; choose one of: cross_entropy, mse; "
        "dtype must be 'float32' or 'float64' (got 'float16')"
    )


def bn(params: dict[str, Any]) -> nn.Module:
    return nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3))


def task_of(spec: ModelSpec, tmp_path: Path, metric: str = "val_loss") -> ModelTask:
    function = FunctionTask(spec, name="model.py:spec", metric=metric, trials_dir=tmp_path)
    task = as_model_task(function)
    assert isinstance(task, ModelTask)
    return task


def trial_inputs(group: list[tuple[dict[str, Any], int]]) -> list[TrialInput]:
    return [TrialInput(i + 1, f"k{i}", params, seed) for i, (params, seed) in enumerate(group)]


def test_a_model_with_running_statistics_trains_per_trial_after_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = ModelSpec(bn, SPLITS, "cross_entropy", {"accuracy": accuracy}, "float64")
    group = members("mlp", "sgd", 0.0)[:2]
    with pytest.raises(NotBatchable, match=r"module 1 \(BatchNorm1d\) updates running statistics"):
        train_batched(spec, group)
    task = task_of(spec, tmp_path)
    with caplog.at_level(logging.WARNING, logger="sweeper.tasks.model.task"):
        outcomes = list(task.run(trial_inputs(group), RunContext(data_dir=tmp_path, batched=True)))
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "model.py:spec: training 2 trials one by one: "
        "module 1 (BatchNorm1d) updates running statistics in training"
    ]
    for outcome, (params, seed) in zip(outcomes, group, strict=True):
        assert outcome.error is None
        assert outcome.metrics == train_per_trial(spec, params, seed).metrics


class Branchy(nn.Module):
    """Data-dependent control flow: vmap cannot batch it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x)
        return out if x.sum() > 0 else -out


def test_data_dependent_control_flow_is_not_batchable_and_says_why() -> None:
    spec = ModelSpec(lambda p: Branchy(), SPLITS, "cross_entropy", dtype="float64")
    with pytest.raises(NotBatchable, match=r"^vmap cannot run the model \(RuntimeError: "):
        train_batched(spec, members("mlp", "sgd", 0.0)[:2])


def test_the_task_yields_batched_outcomes_equal_to_per_trial_ones(tmp_path: Path) -> None:
    spec = SPECS["mlp"][0]
    task = task_of(spec, tmp_path, metric="val_accuracy")
    assert task.supports_batching
    inputs = trial_inputs(members("mlp", "adamw", 0.05))
    batched = list(task.run(inputs, RunContext(data_dir=tmp_path, batched=True)))
    alone = list(task.run(inputs, RunContext(data_dir=tmp_path, batched=False)))
    for b, a in zip(batched, alone, strict=True):
        assert b.error is None and a.error is None
        assert b.metrics == pytest.approx(a.metrics, abs=TOL, rel=0)
        assert b.curves.keys() == a.curves.keys() == {"train_loss", "val_loss", "val_accuracy"}
        assert b.curves["val_loss"] == pytest.approx(a.curves["val_loss"], abs=TOL, rel=0)


def test_a_diverging_member_fails_alone() -> None:
    spec = ModelSpec(mlp, SPLITS, "cross_entropy", dtype="float64")
    group = members("mlp", "sgd", 0.0)[:2]
    group[1][0]["lr"] = 1e200
    first, second = train_batched(spec, group)
    assert isinstance(second, str) and second.startswith("diverged: train loss became ")
    assert_equal(first, train_per_trial(spec, *group[0]))
