"""One trial of a model task, trained alone: a plain torch loop.

The reference the batched path (`sweeper.tasks.model.batched`) must reproduce: the same initial
weights (`ModelSpec.model`), the same batch order (a generator seeded with
``derive_seed(seed, "batches", "model")`` drawing one permutation per epoch), the same
optimizer formulas (``torch.optim``), SAM's two passes as in `sweeper.optim.sam.SAM`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

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


def train_per_trial(
    spec: ModelSpec,
    params: Mapping[str, Any],
    seed: int,
    *,
    report: Report | None = None,
) -> ModelResult:
    """Train one trial with `params` and `seed`.

    Args:
        report: called as ``report(epoch, **curve_values)`` after each epoch (1-based), e.g.
            `sweeper.Trial.report`; it may raise `sweeper.TrialPruned` to stop the run.

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

    for epoch in range(1, hyper.epochs + 1):
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
