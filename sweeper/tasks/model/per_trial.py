"""One trial of a model task, trained alone: a plain torch loop.

The reference the batched path (`sweeper.tasks.model.batched`) must reproduce: the same initial
weights (`ModelSpec.model`), the same batch order (a generator seeded with
``derive_seed(seed, "batches", "model")`` drawing one permutation per epoch), the same
optimizer formulas (``torch.optim``), SAM's two passes as in `sweeper.optim.sam.SAM`.

With a `Resumable` (the trial's `sweeper.Trial`) the run saves its whole training state after
an epoch when the checkpoint policy says so, and resumes from the last one saved: the model's
and the optimizer's state dicts, the scheduler's, the batch-order generator's, the epoch and
the curves, so that a resumed run ends bit for bit as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from sweeper.errors import TrialDiverged
from sweeper.seeds import derive_seed
from sweeper.tasks.common import diverged
from sweeper.tasks.model.hyper import BATCH_SEED, train_params
from sweeper.tasks.model.losses import evaluate
from sweeper.tasks.model.optimizers import make_optimizer
from sweeper.tasks.model.result import ModelResult

if TYPE_CHECKING:
    import torch

    from sweeper.tasks.model.spec import ModelSpec

Report = Callable[..., None]


class Resumable(Protocol):
    """Where a run keeps its state (`sweeper.Trial` is one): `restore` once at the start,
    `checkpoint` after every epoch (it saves when the policy's cadence says so)."""

    def restore(self) -> dict[str, Any] | None: ...

    def checkpoint(self, state: Mapping[str, Any], *, force: bool = False) -> bool: ...


def train_per_trial(
    spec: ModelSpec,
    params: Mapping[str, Any],
    seed: int,
    *,
    report: Report | None = None,
    checkpoint: Resumable | None = None,
) -> ModelResult:
    """Train one trial with `params` and `seed`.

    Args:
        report: called as ``report(epoch, **curve_values)`` after each epoch (1-based), e.g.
            `sweeper.Trial.report`; it may raise `sweeper.TrialPruned` to stop the run.
        checkpoint: where to resume from and save to (see the module docstring); saved
            after `report` has taken the epoch, so the trial's curves include it.

    Returns:
        The final metrics and the curves (see `ModelResult`).

    Raises:
        StudyFileError: bad training hyperparameters.
        TrialDiverged: the training loss became NaN or infinite.
        ModelDataError, ModelSpecError: the user's data or model are unusable.
    """
    import torch

    from sweeper.optim.sam import SAM

    hyper = train_params(params)
    splits = spec.splits(params)
    loss_fn, metrics = spec.loss_fn(), spec.metrics
    model = spec.model(params, seed)
    opt = make_optimizer(
        hyper.optimizer,
        model.parameters(),
        hyper.lr,
        hyper.weight_decay,
        hyper.momentum,
        hyper.sam_rho,
    )
    base = opt.base_optimizer if isinstance(opt, SAM) else opt
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(base, T_max=hyper.epochs)
        if hyper.schedule == "cosine"
        else None
    )
    generator = torch.Generator().manual_seed(derive_seed(seed, *BATCH_SEED))
    x, y = splits.train
    n = len(x)
    curves: dict[str, list[float]] = {"train_loss": []}
    state = checkpoint.restore() if checkpoint is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        base.load_state_dict(state["optimizer"])
        if isinstance(opt, SAM):
            opt.param_groups = base.param_groups  # loading made new group dicts; share them
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["rng"])
        curves = {name: [float(v) for v in values] for name, values in state["curves"].items()}
    first = int(state["epoch"]) + 1 if state is not None else 1

    for epoch in range(first, hyper.epochs + 1):
        model.train()
        order = torch.randperm(n, generator=generator)
        total = torch.zeros((), dtype=torch.float64)
        for start in range(0, n, hyper.batch_size):
            idx = order[start : start + hyper.batch_size]
            xb, yb = x[idx], y[idx]
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
            if isinstance(opt, SAM):
                # SAM: to w + e(w), the gradient there, back to w, the base step from w.
                opt.first_step(zero_grad=True)
                loss_fn(model(xb), yb).backward()  # type: ignore[no-untyped-call]
                opt.second_step()
            else:
                opt.step()
            total += loss.detach().double() * len(idx)
        train_loss = float(total / n)
        if not math.isfinite(train_loss):
            raise TrialDiverged(diverged("train loss", train_loss, f"at epoch {epoch}"))
        curves["train_loss"].append(train_loss)
        if scheduler is not None:
            scheduler.step()  # once per epoch, after its last optimizer step
        values = {"train_loss": train_loss}
        if splits.val is not None:
            values.update(_scores(model, loss_fn, metrics, splits.val, "val"))
            for name, value in values.items():
                if name != "train_loss":
                    curves.setdefault(name, []).append(value)
        if report is not None:
            report(epoch, **values)
        if checkpoint is not None:
            saved: dict[str, Any] = {
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": base.state_dict(),
                "rng": generator.get_state(),
                "curves": curves,
            }
            if scheduler is not None:
                saved["scheduler"] = scheduler.state_dict()
            checkpoint.checkpoint(saved)

    final: dict[str, float] = {}
    for name, pair in splits.present():
        final.update(_scores(model, loss_fn, metrics, pair, name))
    return ModelResult(metrics=final, curves=curves)


def _scores(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    metrics: Mapping[str, Callable[[torch.Tensor, torch.Tensor], Any]],
    pair: tuple[torch.Tensor, torch.Tensor],
    split: str,
) -> dict[str, float]:
    import torch

    model.eval()
    with torch.no_grad():
        pred = model(pair[0])
    model.train()
    return evaluate(loss_fn, metrics, pred, pair[1], split)
