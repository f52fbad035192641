"""``--device``: a device the task cannot train on, or that this machine's torch cannot reach,
is one line before anything is written (not every trial failing with torch's error)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sweeper.cli import app

MODEL = """
import torch
from torch import nn
from sweeper.tasks.model import ModelSpec

x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
spec = ModelSpec(lambda p: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)),
                 ((x[:30], x[:30, 0]), None, (x[30:], x[30:, 0])), "mse")
"""


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stderr


def model_study(tmp_path: Path) -> str:
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "m.toml").write_text(
        'name = "m"\ntask = "model.py:spec"\nmetric = "test_loss"\n[fixed]\nepochs = 1\n'
        "[space]\nlr = [0.01, 0.1]\n"
    )
    return str(tmp_path / "m.toml")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_cuda_device_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    code, err = invoke("run", "quick", "--db", str(db), "--device", "cuda")
    assert code == 1
    assert (
        err.startswith("Error: --device cuda: torch ")
        and "sees no CUDA device; use --device cpu" in err
    )
    assert "Traceback" not in err and not db.exists()


def test_a_device_torch_does_not_know_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    code, err = invoke("run", "quick", "--db", str(db), "--device", "gpu")
    assert code == 1 and "--device gpu: not a torch device; use cpu, cuda or cuda:N" in err
    assert not db.exists()


def test_a_model_task_trains_on_the_cpu_only(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    code, err = invoke("run", model_study(tmp_path), "--db", str(db), "--device", "cuda")
    assert (
        code == 1 and "--device cuda: 'model.py:spec' trains on cpu only; use --device cpu" in err
    )
    assert not db.exists()
    code, err = invoke("run", model_study(tmp_path), "--db", str(db), "--device", "cpu",
                       "--no-progress", "--no-table")  # fmt: skip
    assert code == 0, err
