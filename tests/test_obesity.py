"""The obesity task: determinism, SAM and cosine runs, divergence, group keys, parameters."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

import sweeper.tasks.obesity.train as obesity
from sweeper.errors import StudyFileError, TrialDiverged
from sweeper.seeds import derive_seed
from sweeper.tasks import RunContext, TrialInput, TrialOutcome, get_task
from sweeper.tasks.common import check_finite
from sweeper.tasks.obesity import ObesityTask
from sweeper.tasks.obesity.model import build_model
from sweeper.tasks.obesity.params import ObesityParams


def _run(data_dir: Path, seed: int = 0, **params: Any) -> TrialOutcome:
    ctx = RunContext(data_dir=data_dir)
    trial = TrialInput(trial_id=7, key="k", params={"epochs": 2, **params}, seed=seed)
    (outcome,) = ObesityTask().run([trial], ctx)
    return outcome


def test_registered_under_its_name() -> None:
    task = get_task("obesity")
    assert isinstance(task, ObesityTask)
    assert task.Params is ObesityParams
    assert "test_mse" in task.metrics


def test_same_seed_same_numbers_bit_for_bit(data_dir: Path) -> None:
    rng_before = torch.get_rng_state()
    a = _run(data_dir, seed=0)
    b = _run(data_dir, seed=0)
    assert a.error is None and a.trial_id == 7
    assert a.metrics == b.metrics
    assert a.curves == b.curves
    # Init and batch order use their own seeded streams; the global RNG is left alone.
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_other_seed_other_numbers(data_dir: Path) -> None:
    a = _run(data_dir, seed=0)
    b = _run(data_dir, seed=1)
    assert a.metrics["test_mse"] != b.metrics["test_mse"]


def test_metrics_and_curves(data_dir: Path) -> None:
    out = _run(data_dir, epochs=3)
    assert set(out.metrics) == {"train_mse", "test_mse"}
    assert set(out.curves) == {"train_loss"}
    assert len(out.curves["train_loss"]) == 3
    # Learning something in 3 epochs: below the 3.84 of predicting the training mean.
    assert 0 < out.metrics["test_mse"] < 3.84


def test_sam_trains_sam_epochs(data_dir: Path) -> None:
    out = _run(data_dir, epochs=5, sam_rho=0.05, sam_epochs=2)
    assert out.error is None
    assert len(out.curves["train_loss"]) == 2
    assert all(math.isfinite(v) for v in [*out.metrics.values(), *out.curves["train_loss"]])
    plain = _run(data_dir, epochs=2)
    assert out.metrics["test_mse"] != plain.metrics["test_mse"]


def test_cosine_with_validation_and_standardized_inputs(data_dir: Path) -> None:
    params: dict[str, Any] = {
        "epochs": 3,
        "schedule": "cosine",
        "cosine_t_max": 2,
        "val_fraction": 0.15,
    }
    out = _run(data_dir, optimizer="sgd", lr=0.01, standardize=True, **params)
    assert out.error is None
    assert set(out.metrics) == {"train_mse", "test_mse", "val_mse"}
    assert len(out.curves["train_loss"]) == len(out.curves["val_mse"]) == 3
    assert out.curves["val_mse"][-1] == out.metrics["val_mse"]
    assert all(math.isfinite(v) for v in out.metrics.values())
    params["schedule"] = "constant"
    constant = _run(data_dir, optimizer="sgd", lr=0.01, standardize=True, **params)
    assert out.metrics["test_mse"] != constant.metrics["test_mse"]


def test_float64_and_momentum(data_dir: Path) -> None:
    out = _run(data_dir, optimizer="sgd", lr=0.01, momentum=0.9, dtype="float64")
    assert out.error is None and math.isfinite(out.metrics["test_mse"])


def test_heartbeat_once_per_epoch(data_dir: Path) -> None:
    beats: list[int] = []
    ctx = RunContext(data_dir=data_dir, heartbeat=lambda: beats.append(1))
    trial = TrialInput(trial_id=1, key="k", params={"epochs": 3}, seed=0)
    list(ObesityTask().run([trial], ctx))
    assert len(beats) == 3


def test_run_yields_one_outcome_per_trial(data_dir: Path) -> None:
    trials = [
        TrialInput(trial_id=i, key=str(i), params={"epochs": 1, "lr": lr}, seed=0)
        for i, lr in enumerate([1e-3, 1e-2])
    ]
    outcomes = list(ObesityTask().run(trials, RunContext(data_dir=data_dir)))
    assert [o.trial_id for o in outcomes] == [0, 1]
    assert outcomes[0].metrics != outcomes[1].metrics


# --- model and seeds ----------------------------------------------------------------------------


def test_model_init_is_seeded_and_has_the_protocol_shape() -> None:
    a, b, c = build_model(0), build_model(0), build_model(1)
    assert sum(p.numel() for p in a.parameters()) == 1009
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))
    out = a(torch.randn(64, 16) * 100)
    assert out.shape == (64, 1) and bool(((out >= 0) & (out <= 7)).all())
    assert next(build_model(0, "float64").parameters()).dtype == torch.float64


def test_seeds_are_derived_not_offset() -> None:
    # Golden values: changing the derivation changes every stored trial's numbers.
    assert derive_seed(0, "init") == 3672123365
    assert derive_seed(0, "batches") == 282030614
    assert derive_seed(1, "init") == 2481007543


# --- divergence ---------------------------------------------------------------------------------


def test_check_finite_message() -> None:
    check_finite("train loss", 1.5, "at epoch 3")
    with pytest.raises(TrialDiverged) as info:
        check_finite("train loss", math.nan, "at epoch 17")
    assert str(info.value) == "diverged: train loss became nan at epoch 17"
    with pytest.raises(TrialDiverged, match="diverged: test_mse became inf after training"):
        check_finite("test_mse", math.inf, "after training")


def test_diverged_trial_yields_an_error_outcome(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = obesity.build_model

    def poisoned(seed: int, dtype: str = "float32") -> torch.nn.Module:
        model = real(seed, dtype)
        with torch.no_grad():
            next(model.parameters())[0, 0] = math.nan
        return model

    monkeypatch.setattr(obesity, "build_model", poisoned)
    out = _run(data_dir, epochs=3)
    assert out.error == "diverged: train loss became nan at epoch 1"
    assert out.metrics == {}


# --- group keys and parameters ------------------------------------------------------------------


def test_group_key_ignores_what_a_batched_group_may_vary() -> None:
    key = ObesityTask().group_key
    base = key({"optimizer": "sgd", "lr": 1e-3, "sam_rho": 0.05})
    assert key({"optimizer": "sgd", "lr": 3e-2, "weight_decay": 1e-2, "sam_rho": 0.1}) == base
    assert key({"optimizer": "sgd", "momentum": 0.9, "sam_rho": 0.02}) == base
    # Defaults are filled in: spelling one out changes nothing.
    assert key({"optimizer": "sgd", "sam_rho": 0.05, "epochs": 200}) == base


def test_group_key_separates_what_must_be_shared() -> None:
    key = ObesityTask().group_key
    assert key({"optimizer": "sgd"}) != key({"optimizer": "adam"})
    assert key({"sam_rho": 0.0}) != key({"sam_rho": 0.05})
    assert key({"epochs": 200}) != key({"epochs": 100})
    assert key({"split_seed": 0}) != key({"split_seed": 1})


def test_group_key_reports_cross_field_problems() -> None:
    with pytest.raises(StudyFileError) as info:
        ObesityTask().group_key({"optimizer": "adam", "momentum": 0.9})
    assert info.value.problems == [
        'parameters {"momentum":0.9,"optimizer":"adam"}: momentum applies to sgd only '
        "(got 0.9 with adam); leave it at 0 for adam"
    ]


def test_params_defaults_are_the_faithful_protocol() -> None:
    p = ObesityParams()
    assert (p.optimizer, p.lr, p.weight_decay, p.sam_rho, p.momentum) == ("adam", 1e-3, 0, 0, 0)
    assert (p.epochs, p.sam_epochs, p.batch_size, p.schedule) == (200, 100, 32, "constant")
    assert (p.split_seed, p.train_fraction, p.val_fraction, p.standardize) == (0, 0.8, 0, False)
    assert p.n_epochs == 200 and ObesityParams(sam_rho=0.05).n_epochs == 100
    with pytest.raises(ValidationError):
        ObesityParams.model_validate({"learning_rate": 0.1})
    with pytest.raises(ValidationError):
        ObesityParams(lr=0)
