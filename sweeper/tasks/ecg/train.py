"""Training one ECG trial: Adam, cosine to t_max, then flat or SWA; scored on the target domain.

::

    EcgData -> split_records -> build_model (seeded SEResNet34) -> Adam + Schedule
      -> epochs (own batch generator; dropout from its own seed) -> (SWA: update_bn)
      -> predictions on the target and validation records -> metrics -> TrainResult
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from sweeper.seeds import derive_seed
from sweeper.tasks.common import check_finite
from sweeper.tasks.ecg.data import IntArray, split_records
from sweeper.tasks.ecg.params import EcgParams

if TYPE_CHECKING:
    import torch

    from sweeper.checkpoints import TrialCheckpoint
    from sweeper.tasks.ecg.loader import EcgData


@dataclass(frozen=True)
class TrainResult:
    """Metrics, per-epoch curves, and the model that was evaluated (the averaged one for SWA)."""

    metrics: dict[str, float]
    curves: dict[str, list[float]]
    model: torch.nn.Module


class Schedule:
    """The tutorial's learning-rate rule, shared by training and `lr_schedule`.

    ``CosineAnnealingLR(T_max=t_max, eta_min)`` is stepped after each epoch while
    ``epoch <= t_max``; after that the LR stays at eta_min, except with SWA, where `SWALR`
    (cosine anneal over `anneal_epochs` from the current LR up to `swa_lr`) is stepped after each
    later epoch, and that epoch's weights join the average. Both schedulers are built before
    training, as in the tutorial; SWALR's construction leaves the LR unchanged.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, params: EcgParams) -> None:
        from torch.optim.lr_scheduler import CosineAnnealingLR
        from torch.optim.swa_utils import SWALR

        self.t_max = params.t_max
        self.cosine = CosineAnnealingLR(optimizer, T_max=params.t_max, eta_min=params.eta_min)
        self.swa = (
            SWALR(
                optimizer,
                swa_lr=params.swa_lr,
                anneal_epochs=params.anneal_epochs,
                anneal_strategy="cos",
            )
            if params.method == "swa"
            else None
        )

    def end_epoch(self, epoch: int) -> bool:
        """Step the schedule after `epoch` (1-based); True when its weights join the average."""
        if epoch <= self.t_max:
            self.cosine.step()
            return False
        if self.swa is not None:
            self.swa.step()
            return True
        return False


def lr_schedule(params: EcgParams) -> list[float]:
    """The learning rate each epoch trains at under `params` (no training: a replay)."""
    import torch

    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([weight], lr=params.lr, weight_decay=params.weight_decay)
    schedule = Schedule(optimizer, params)
    lrs = []
    for epoch in range(1, params.epochs + 1):
        lrs.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step()  # keeps PyTorch's "scheduler before optimizer" check quiet
        schedule.end_epoch(epoch)
    return lrs


def train_one(
    params: EcgParams,
    seed: int,
    data: EcgData,
    *,
    device: str = "cpu",
    heartbeat: Callable[[], None] = lambda: None,
    checkpoint: TrialCheckpoint | None = None,
) -> TrainResult:
    """Train one model on the sources of `data` and score it on the target domain.

    The seed drives the initial weights, the batch order and dropout, each from its own
    derived seed; the global torch RNG is restored afterwards.

    With a `checkpoint`, the training state (model, optimizer, both schedulers, the SWA
    average, the batch-order and dropout RNGs, the epoch and the curves) is saved when its
    policy says so, and a saved state is resumed from: the result is bit for bit that of an
    uninterrupted run.

    Raises:
        TrialDiverged: an epoch's training loss is NaN or infinite.
        DataError: the split leaves a source domain without training records.
    """
    import torch
    import torch.nn.functional as F
    from torch.optim.swa_utils import AveragedModel, update_bn

    from sweeper.tasks.ecg.classes import NORMAL
    from sweeper.tasks.ecg.model import build_model

    split = split_records(
        data, params.target, val_fraction=params.val_fraction, split_seed=params.split_seed
    )
    x_train = _inputs(data, split.train, params.normalize).to(device)
    y_train = torch.as_tensor(data.y[split.train], dtype=torch.float32, device=device)
    age_train = torch.as_tensor(data.age[split.train], dtype=torch.float32, device=device)
    n_train = len(split.train)

    model = build_model(len(data.classes), params.base_channels, seed).to(device)
    known_age = age_train[torch.isfinite(age_train) & (age_train >= 0)]
    if params.method == "agereg" and len(known_age):
        # Start the age head at the mean training age. From PyTorch's init (about 0 years) the
        # L1 gradient only pulls every output up, carrying no age information, until the head
        # reaches the mean: the tutorial's ~11,000 Adam steps get there, a CPU schedule of a
        # few hundred does not.
        model.set_age_offset(float(known_age.mean()))
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    schedule = Schedule(optimizer, params)
    swa_model = AveragedModel(model) if params.method == "swa" else None
    batch_rng = torch.Generator().manual_seed(derive_seed(seed, "batches", "ecg"))
    curves: dict[str, list[float]] = {"train_loss": [], "lr": []}
    state = checkpoint.load() if checkpoint is not None else None
    cadence = checkpoint.policy.cadence(1, checkpoint.key[:8]) if checkpoint else None

    with torch.random.fork_rng(devices=[]):
        # Dropout draws from the global RNG: seed it here, restore it on the way out.
        torch.manual_seed(derive_seed(seed, "dropout", "ecg"))
        if state is not None:
            _resume(state, model, optimizer, schedule, swa_model, batch_rng)
            curves = {name: list(values) for name, values in state["curves"].items()}
        start = int(state["epoch"]) if state is not None else 0
        for epoch in range(start + 1, params.epochs + 1):
            model.train()
            curves["lr"].append(float(optimizer.param_groups[0]["lr"]))
            order = torch.randperm(n_train, generator=batch_rng).to(device)
            loss_sum = torch.zeros((), device=device)
            for start in range(0, n_train, params.batch_size):
                rows = order[start : start + params.batch_size]
                logits, age_pred = model(x_train[rows])
                loss = F.binary_cross_entropy_with_logits(logits, y_train[rows])
                if params.method == "agereg":
                    loss = loss + params.auxiliary_lambda * _age_l1(age_pred, age_train[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
                optimizer.step()
                loss_sum += loss.detach() * len(rows)
            train_loss = loss_sum.item() / n_train
            check_finite("train loss", train_loss, f"at epoch {epoch}")
            curves["train_loss"].append(train_loss)
            if schedule.end_epoch(epoch) and swa_model is not None:
                swa_model.update_parameters(model)
            if checkpoint is not None and cadence is not None and cadence.epoch_done(epoch):
                checkpoint.save(
                    {
                        "epoch": epoch,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "cosine": schedule.cosine.state_dict(),
                        "swa": schedule.swa.state_dict() if schedule.swa else {},
                        "average": swa_model.state_dict() if swa_model is not None else {},
                        "batch_rng": batch_rng.get_state(),
                        "dropout_rng": torch.get_rng_state(),
                        "curves": curves,
                    }
                )
                cadence.saved()
            heartbeat()

        evaluated: torch.nn.Module = model
        if swa_model is not None:
            # AveragedModel averages parameters only: its BN statistics are still those of the
            # initial weights. Recompute them on the training data (update_bn feeds the model
            # the first element of each batch; here each batch is the ECG tensor itself).
            batches = [
                x_train[s : s + params.batch_size] for s in range(0, n_train, params.batch_size)
            ]
            update_bn(batches, swa_model, device=torch.device(device))
            evaluated = swa_model

    target_scores, target_age = _predict(
        evaluated, _inputs(data, split.target, params.normalize), device
    )
    y_target = data.y[split.target]
    metrics = _scores(y_target, target_scores, params.threshold)
    if NORMAL in data.classes:
        from sweeper.tasks.ecg.metrics import challenge_score

        metrics["challenge_score"] = challenge_score(
            y_target, target_scores >= params.threshold, data.classes
        )
    if params.method == "agereg":
        from sweeper.tasks.ecg.metrics import age_mae

        metrics["age_mae"] = age_mae(data.age[split.target], target_age)
    if len(split.val):
        from sweeper.tasks.ecg.metrics import macro_f1

        val_scores, _ = _predict(evaluated, _inputs(data, split.val, params.normalize), device)
        metrics["source_f1"] = macro_f1(data.y[split.val], val_scores >= params.threshold)
    metrics["train_loss"] = curves["train_loss"][-1]
    finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
    return TrainResult(metrics=finite, curves=curves, model=evaluated)


def _resume(
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    swa_model: torch.optim.swa_utils.AveragedModel | None,
    batch_rng: torch.Generator,
) -> None:
    """Load a checkpoint's state into the freshly built training objects (and the global
    RNG, which dropout draws from: call it inside the training's `fork_rng`)."""
    import torch

    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.cosine.load_state_dict(state["cosine"])
    if schedule.swa is not None:
        schedule.swa.load_state_dict(state["swa"])
    if swa_model is not None:
        swa_model.load_state_dict(state["average"])
    batch_rng.set_state(state["batch_rng"])
    torch.set_rng_state(state["dropout_rng"])


def _inputs(data: EcgData, rows: IntArray, normalize: bool) -> torch.Tensor:
    """The float32 signals of `rows` (a copy), z-scored per record and lead when asked."""
    import torch

    x = data.x[rows].astype(np.float32)
    if normalize:
        mean = x.mean(axis=2, keepdims=True)
        std = x.std(axis=2, keepdims=True)
        x = (x - mean) / np.where(std > 1e-6, std, 1.0)
    return torch.from_numpy(x)


def _age_l1(predicted: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
    """L1 between predicted and true age (years) over the records whose age is known (>= 0).

    A batch without any known age contributes 0 (and no gradient).
    """
    import torch
    import torch.nn.functional as F

    known = torch.isfinite(age) & (age >= 0)
    if not bool(known.any()):
        return predicted.sum() * 0.0
    return F.l1_loss(predicted[known], age[known])


def _predict(
    model: torch.nn.Module, x: torch.Tensor, device: str, batch: int = 256
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Sigmoid class probabilities and age predictions, in eval mode and without gradients."""
    import torch

    model.eval()
    probs, ages = [], []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            logits, age = model(x[start : start + batch].to(device))
            probs.append(torch.sigmoid(logits).double().cpu().numpy())
            ages.append(age.double().cpu().numpy())
    return np.concatenate(probs), np.concatenate(ages)


def _scores(
    labels: npt.NDArray[np.uint8], scores: npt.NDArray[np.float64], threshold: float
) -> dict[str, float]:
    """The threshold-based and ranking scores of one evaluation set."""
    from sweeper.tasks.ecg.metrics import macro_auroc, macro_f1

    outputs = scores >= threshold
    return {
        "macro_f1": macro_f1(labels, outputs),
        "macro_f1_present": macro_f1(labels, outputs, present_only=True),
        "macro_auroc": macro_auroc(labels, scores),
    }
