"""A study whose task is a `ModelSpec` runs end to end, batched and per trial alike."""

from __future__ import annotations

from pathlib import Path

import pytest

SPEC = """
import os
import torch
from torch import nn
from sweeper.tasks.model import ModelSpec, accuracy
from sweeper.tasks.model.losses import cross_entropy

def loss(pred, target):
    # Notes, once per process, whether the loss runs under torch.func (a batched group) or not.
    path = os.environ["MODEL_TASK_LOG"]
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(str(torch._C._functorch.is_functorch_wrapped_tensor(pred)))
    return cross_entropy(pred, target)

def data(params):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 6, generator=g, dtype=torch.float64)
    y = (x[:, 0] > 0).long()
    return (x[:32], y[:32]), (x[32:], y[32:])

def build(params):
    return nn.Sequential(nn.Linear(6, params["width"]), nn.ReLU(), nn.Linear(params["width"], 2))

spec = ModelSpec(build, data, loss, {"accuracy": accuracy}, "float64")
"""


def test_a_model_study_gives_the_same_numbers_batched_and_per_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sweeper as api

    (tmp_path / "model.py").write_text(SPEC)
    raw = {
        "name": "model",
        "task": "model.py:spec",
        "metric": "val_loss",
        "seeds": 2,
        "fixed": {"width": 5, "optimizer": "sgd", "momentum": 0.9, "epochs": 2, "batch_size": 8},
        "space": {"lr": [0.01, 0.1], "weight_decay": [0.0, 0.001]},
    }
    values = {}
    for mode in ("batched", "per-trial"):
        db = str(tmp_path / f"{mode}.db")
        log = tmp_path / f"{mode}.log"
        monkeypatch.setenv("MODEL_TASK_LOG", str(log))
        summary = api.run(api.Study.from_dict(raw, base_dir=tmp_path), db=db, workers=1, mode=mode)
        assert (summary.completed, summary.failed) == (8, 0)
        trials = api.load_trials("model", db=db).sort_values(["lr", "weight_decay", "seed"])
        values[mode] = trials["val_loss"].tolist()
        assert log.read_text() == str(mode == "batched")  # the loss ran under vmap, or not
    assert values["batched"] == pytest.approx(values["per-trial"], abs=1e-8, rel=0)
    assert len(set(values["batched"])) == 8
