"""The ECG task: the SEResNet34, the tutorial's LR schedule, AgeReg's masked loss, SWA's
update_bn before evaluation, determinism, splits, and the data checks' messages."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sweeper.errors import DataError, StudyFileError
from sweeper.tasks import get_task
from sweeper.tasks.ecg import EcgTask, loader
from sweeper.tasks.ecg.data import load_data, split_records
from sweeper.tasks.ecg.model import STAGE_BLOCKS, SEResBlock, SEResNet34, count_parameters
from sweeper.tasks.ecg.params import DOMAINS, EcgParams
from sweeper.tasks.ecg.synth import write_dataset
from sweeper.tasks.ecg.train import _age_l1, lr_schedule, train_one

TINY = {
    "dataset": "synthetic",
    "classes": "synthetic9",
    "records_per_domain": 6,
    "fs": 50,
    "length": 128,
    "base_channels": 4,
    "epochs": 3,
    "t_max": 1,
    "anneal_epochs": 1,
    "batch_size": 8,
    "val_fraction": 0.34,
    "target": "CPSC",
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _cache_in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SWEEPER_CACHE_DIR", str(tmp_path / "cache"))
    loader._load_cached.cache_clear()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_dataset(root / "ecg_synth", records_per_domain=6, seed=0)
    return root


def test_seresnet34_shape_and_size() -> None:
    model = SEResNet34(26, base_channels=64)
    # The protocol's reconstruction with both heads and 26 classes: 16.78 M parameters.
    assert count_parameters(model) == 16_784_519
    blocks = [m for m in model.modules() if isinstance(m, SEResBlock)]
    assert len(blocks) == sum(STAGE_BLOCKS) == 16
    assert model.feature_dim == 512
    small = SEResNet34(9, base_channels=8).eval()
    logits, age = small(torch.randn(3, 12, 400))
    assert logits.shape == (3, 9) and age.shape == (3,)


def test_tutorial_lr_schedule_is_replayed() -> None:
    lrs = lr_schedule(EcgParams(method="swa"))  # the tutorial's 80 / 50 / SWALR(1e-2, 10)
    assert len(lrs) == 80 and lrs[0] == pytest.approx(1e-3)
    assert lrs[50] == pytest.approx(1e-4)  # epoch 51: the end of the cosine
    # Epochs 52, 53, 55, 58, 60 as measured in the protocol, then 1e-2 to the end.
    for epoch, lr in [(52, 3.4e-4), (53, 1.05e-3), (55, 3.5e-3), (58, 8.0e-3), (60, 9.8e-3)]:
        assert lrs[epoch - 1] == pytest.approx(lr, rel=0.03)
    assert lrs[60:] == pytest.approx([1e-2] * 20)
    baseline = lr_schedule(EcgParams(method="baseline"))
    assert baseline[:51] == pytest.approx(lrs[:51]) and baseline[50:] == pytest.approx([1e-4] * 30)


def test_agereg_l1_is_masked_where_age_is_missing() -> None:
    predicted = torch.tensor([50.0, 10.0, 70.0, 0.0], requires_grad=True)
    age = torch.tensor([60.0, float("nan"), 65.0, -1.0])
    loss = _age_l1(predicted, age)
    assert loss.item() == pytest.approx((10 + 5) / 2)
    loss.backward()  # type: ignore[no-untyped-call]
    assert predicted.grad is not None
    assert predicted.grad.tolist() == [-0.5, 0.0, 0.5, 0.0]
    none = _age_l1(predicted, torch.full((4,), float("nan")))
    assert none.item() == 0.0 and none.requires_grad


def test_swa_model_is_evaluated_after_update_bn(data_dir: Path) -> None:
    params = EcgParams(**{**TINY, "method": "swa"})
    data = load_data(params, data_dir)
    result = train_one(params, 0, data)
    from torch.optim.swa_utils import AveragedModel, update_bn

    evaluated = result.model
    assert isinstance(evaluated, AveragedModel)
    assert int(evaluated.n_averaged) == params.epochs - params.t_max
    stem_bn = evaluated.module.stem[1]
    # AveragedModel copied the model before training: without update_bn its BN statistics would
    # still be the initial ones (mean 0, variance 1).
    assert not torch.allclose(stem_bn.running_mean, torch.zeros_like(stem_bn.running_mean))
    assert not torch.allclose(stem_bn.running_var, torch.ones_like(stem_bn.running_var))
    # They are exactly what update_bn computes on the training data for the averaged weights
    # (the stem's BN sees no dropout, so the pass is deterministic).
    split = split_records(data, params.target, val_fraction=params.val_fraction, split_seed=0)
    x = torch.from_numpy(data.x[split.train].astype(np.float32))
    fresh = AveragedModel(evaluated.module)
    fresh.module.load_state_dict(evaluated.module.state_dict())
    batches = [x[s : s + params.batch_size] for s in range(0, len(x), params.batch_size)]
    update_bn(batches, fresh)
    torch.testing.assert_close(fresh.module.stem[1].running_mean, stem_bn.running_mean)
    torch.testing.assert_close(fresh.module.stem[1].running_var, stem_bn.running_var)


def test_trials_are_deterministic_and_report_every_metric(data_dir: Path) -> None:
    params = EcgParams(**{**TINY, "method": "agereg"})
    data = load_data(params, data_dir)
    first = train_one(params, 7, data)
    again = train_one(params, 7, data)
    other = train_one(params, 8, data)
    assert first.metrics == again.metrics and first.curves == again.curves
    assert first.curves["train_loss"] != other.curves["train_loss"]
    assert {"macro_f1", "macro_f1_present", "challenge_score", "source_f1", "age_mae"} <= set(
        first.metrics
    )
    assert all(math.isfinite(v) for v in first.metrics.values())
    assert 0.0 <= first.metrics["macro_f1"] <= 1.0
    assert len(first.curves["lr"]) == params.epochs
    baseline = train_one(EcgParams(**{**TINY, "method": "baseline"}), 7, data)
    assert "age_mae" not in baseline.metrics


def test_split_holds_out_the_target_and_a_fixed_share_of_each_source(data_dir: Path) -> None:
    data = load_data(EcgParams(**TINY), data_dir)
    split = split_records(data, "CPSC", val_fraction=0.34, split_seed=0)
    cpsc = DOMAINS.index("CPSC")
    assert set(data.domain[split.target]) == {cpsc} and len(split.target) == 6
    assert cpsc not in set(data.domain[split.train]) | set(data.domain[split.val])
    assert len(split.val) == 5 * 2 and len(split.train) == 5 * 4
    # A source domain's validation records are the same whichever domain is held out.
    other = split_records(data, "PTB-XL", val_fraction=0.34, split_seed=0)
    chapman = DOMAINS.index("Chapman")
    assert np.array_equal(
        split.val[data.domain[split.val] == chapman], other.val[data.domain[other.val] == chapman]
    )


def test_data_checks_say_what_to_run(tmp_path: Path, data_dir: Path) -> None:
    task = get_task("ecg")
    assert isinstance(task, EcgTask) and not task.supports_batching
    with pytest.raises(DataError, match=r"sweeper data synth-ecg .*ecg_synth"):
        task.check_data(TINY, tmp_path)
    with pytest.raises(DataError, match="holds 6 synthetic records per domain; this study uses"):
        task.check_data({**TINY, "records_per_domain": 50}, data_dir)
    with pytest.raises(DataError, match="no PhysioNet/CinC 2021 training data at"):
        task.check_data({**TINY, "dataset": "challenge2021"}, tmp_path)
    task.check_data(TINY, data_dir)  # present: decoded into the cache
    assert len(list((tmp_path / "cache").glob("ecg-*.npz"))) == 1


def test_a_set_from_an_older_generator_must_be_made_again(tmp_path: Path, data_dir: Path) -> None:
    import json
    import shutil

    from sweeper.tasks.ecg.synth import GENERATOR_VERSION, MANIFEST

    old = tmp_path / "old"
    shutil.copytree(data_dir / "ecg_synth", old / "ecg_synth")
    manifest = json.loads((old / "ecg_synth" / MANIFEST).read_text())
    (old / "ecg_synth" / MANIFEST).write_text(json.dumps({**manifest, "version": 1}))
    message = (
        rf"older synthetic ECG generator \(version 1, this sweeper writes {GENERATOR_VERSION}\)"
    )
    with pytest.raises(DataError, match=message + r".*sweeper data synth-ecg .*ecg_synth"):
        get_task("ecg").check_data(TINY, old)


def test_swa_needs_epochs_after_the_cosine() -> None:
    with pytest.raises(StudyFileError, match="make t_max < epochs"):
        get_task("ecg").group_key({**TINY, "method": "swa", "t_max": 3, "epochs": 3})
