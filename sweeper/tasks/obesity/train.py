"""Training one obesity trial: the protocol's loop, plain or with SAM, constant or cosine LR.

::

    Split -> build_model (seeded) -> make_optimizer (registry; SAM when sam_rho > 0)
      -> epochs of shuffled mini-batches (own generator) -> evaluate -> TrainResult
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sweeper.seeds import derive_seed
from sweeper.tasks.common import check_finite
from sweeper.tasks.obesity.data import FloatArray, Split
from sweeper.tasks.obesity.model import build_model
from sweeper.tasks.obesity.params import ObesityParams

if TYPE_CHECKING:
    import torch

    from sweeper.checkpoints import TrialCheckpoint


@dataclass(frozen=True)
class TrainResult:
    """Metrics after the last epoch and per-epoch curves of one trained trial."""

    metrics: dict[str, float]
    curves: dict[str, list[float]]
    #: the epoch after which a pruner stopped training (None: trained to the end).
    pruned_at: int | None = None


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean squared error of `model` on ``(x, y)``, in eval mode and without gradients."""
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        mse = torch.nn.functional.mse_loss(model(x), y).item()
    model.train(was_training)
    return mse


def train_one(
    params: ObesityParams,
    seed: int,
    data: Split,
    *,
    device: str = "cpu",
    heartbeat: Callable[[], None] = lambda: None,
    should_prune: Callable[[int, float], bool] | None = None,
    checkpoint: TrialCheckpoint | None = None,
) -> TrainResult:
    """Train one model on `data` and return its metrics and curves.

    Metrics: ``train_mse`` (on the rows trained on), ``test_mse``, and ``val_mse`` when there is
    a validation set. Curves, one value per epoch: ``train_loss`` (mean batch loss weighted by
    batch size, at the weights each batch saw) and ``val_mse``.

    The seed only varies the initial weights and the batch order (each from its own derived
    seed); the global torch RNG is not touched.

    Args:
        params: validated parameters.
        seed: the replicate seed.
        data: the split to train and evaluate on.
        device: torch device string.
        heartbeat: called once per epoch.
        should_prune: called after each epoch with (epoch, validation MSE) when there is a
            validation set; True stops training there: the result has `pruned_at` set and
            metrics ``train_mse``, ``val_mse`` and ``epoch`` (no test metric: a pruned trial is
            never judged on the test set).
        checkpoint: where to save the training state (model, optimizer, scheduler, batch
            order, curves) when its policy says, and to resume from when a state is there:
            the result is then bit for bit that of an uninterrupted run.

    Raises:
        TrialDiverged: the epoch's training loss, or a final metric, is NaN or infinite.
    """
    import torch
    from torch.nn.functional import mse_loss

    from sweeper.optim.per_trial import make_optimizer
    from sweeper.optim.sam import SAM

    dtype = getattr(torch, params.dtype)

    def tensor(a: FloatArray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype, device=device)

    # Labels as (n, 1) to match the model's output; (n,) would broadcast to (n, n) in the loss.
    x_train, y_train = tensor(data.x_train), tensor(data.y_train).unsqueeze(1)
    x_val, y_val = tensor(data.x_val), tensor(data.y_val).unsqueeze(1)
    x_test, y_test = tensor(data.x_test), tensor(data.y_test).unsqueeze(1)
    n_train = len(x_train)
    has_val = len(x_val) > 0

    model = build_model(seed, params.dtype).to(device)
    model.train()
    optimizer = make_optimizer(
        params.optimizer,
        model.parameters(),
        lr=params.lr,
        weight_decay=params.weight_decay,
        momentum=params.momentum,
        sam_rho=params.sam_rho,
    )
    sam = optimizer if isinstance(optimizer, SAM) else None
    # The original code called scheduler.step() once, after training, so its learning rate was
    # constant: that is why the faithful protocol is "constant". "cosine" steps once per epoch.
    # With SAM the scheduler wraps the base optimizer, whose step is the one that runs.
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(
            sam.base_optimizer if sam else optimizer, T_max=params.cosine_t_max
        )
        if params.schedule == "cosine"
        else None
    )
    # Batch order from its own generator on the CPU: the same order on every device.
    batch_rng = torch.Generator().manual_seed(derive_seed(seed, "batches"))

    curves: dict[str, list[float]] = {"train_loss": []}
    if has_val:
        curves["val_mse"] = []
    base = sam.base_optimizer if sam else optimizer
    state = checkpoint.load() if checkpoint is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        base.load_state_dict(state["optimizer"])
        if sam is not None:
            sam.param_groups = base.param_groups  # loading made new group dicts; share them
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        batch_rng.set_state(state["rng"])
        curves = {name: list(values) for name, values in state["curves"].items()}
    start = int(state["epoch"]) if state is not None else 0
    cadence = checkpoint.policy.cadence(1, checkpoint.key[:8]) if checkpoint else None
    for epoch in range(start + 1, params.n_epochs + 1):
        perm = torch.randperm(n_train, generator=batch_rng).to(device)
        # Gather once per epoch, then slice contiguous batches: a third faster than a DataLoader.
        x_epoch, y_epoch = x_train[perm], y_train[perm]
        # Accumulated as a tensor, so the loss is read back once per epoch, not once per batch.
        loss_sum = torch.zeros((), dtype=dtype, device=device)
        for start in range(0, n_train, params.batch_size):
            xb = x_epoch[start : start + params.batch_size]
            yb = y_epoch[start : start + params.batch_size]
            if sam is None:
                optimizer.zero_grad(set_to_none=True)
                loss = mse_loss(model(xb), yb)
                loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
                optimizer.step()
            else:
                # SAM pass 1: gradient at w, then move to w + e (grads zeroed for pass 2).
                sam.zero_grad(set_to_none=True)
                loss = mse_loss(model(xb), yb)
                loss.backward()  # type: ignore[no-untyped-call]
                sam.first_step(zero_grad=True)
                # SAM pass 2: gradient at w + e; restore w and take the base step with it.
                mse_loss(model(xb), yb).backward()  # type: ignore[no-untyped-call]
                sam.second_step(zero_grad=True)
            loss_sum += loss.detach() * len(xb)
        train_loss = loss_sum.item() / n_train
        # NaN and inf survive the sum, so one check per epoch sees any diverged batch.
        check_finite("train loss", train_loss, f"at epoch {epoch}")
        curves["train_loss"].append(train_loss)
        if has_val:
            curves["val_mse"].append(evaluate(model, x_val, y_val))
            if should_prune is not None and should_prune(epoch, curves["val_mse"][-1]):
                metrics = {
                    "train_mse": evaluate(model, x_train, y_train),
                    "val_mse": curves["val_mse"][-1],
                    "epoch": float(epoch),
                }
                return TrainResult(metrics=metrics, curves=curves, pruned_at=epoch)
        if scheduler is not None:
            scheduler.step()
        if checkpoint is not None and cadence is not None and cadence.epoch_done(epoch):
            saved = {
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": base.state_dict(),
                "rng": batch_rng.get_state(),
                "curves": curves,
            }
            if scheduler is not None:
                saved["scheduler"] = scheduler.state_dict()
            checkpoint.save(saved)
            cadence.saved()
        heartbeat()

    metrics = {
        "train_mse": evaluate(model, x_train, y_train),
        "test_mse": evaluate(model, x_test, y_test),
    }
    if has_val:
        metrics["val_mse"] = evaluate(model, x_val, y_val)
    for name, value in metrics.items():
        check_finite(name, value, "after training")
    return TrainResult(metrics=metrics, curves=curves)
