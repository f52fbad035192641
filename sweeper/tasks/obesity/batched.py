"""The obesity task's batched trainer: a group of trials trained as one stacked model.

Every member starts from exactly the weights `build_model` gives its seed and sees exactly the
batch order its per-trial run would (its own generator, seeded the same way), so a member is the
per-trial run of its trial computed in another order of floating-point operations: equal to
rounding error in float64, statistically equal in float32 (see the tests and the README).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from sweeper.optim.batched import BatchedOptimizer
from sweeper.seeds import derive_seed
from sweeper.tasks.common import diverged
from sweeper.tasks.obesity.data import Split
from sweeper.tasks.obesity.model import OUTPUT_SCALE, build_model
from sweeper.tasks.obesity.params import ObesityParams
from sweeper.tasks.obesity.stacked import LaneMLP, Layers, StackedMLP
from sweeper.tasks.obesity.train import TrainResult

if TYPE_CHECKING:
    import torch


def member_bytes(params: ObesityParams, n_train: int) -> int:
    """A generous estimate of the memory one member of a group needs while training."""
    itemsize = 8 if params.dtype == "float64" else 4
    features = 16
    # The epoch's gathered inputs and targets dominate; activations and optimizer state are small.
    return itemsize * (n_train * (features + 1) + 8 * params.batch_size * 18 + 6 * 1009) * 2


def train_group(
    members: Sequence[tuple[ObesityParams, int]],
    data: Split,
    *,
    device: str = "cpu",
    heartbeat: Callable[[], None] = lambda: None,
) -> list[TrainResult | str]:
    """Train every ``(params, seed)`` member as one stacked model.

    All members must share the group key of the obesity task (optimizer, epochs, batch size,
    schedule, data options, dtype); they may differ in lr, weight decay, momentum, SAM rho and
    seed. Returns, per member in order, its `TrainResult` or the reason it failed
    (``"diverged: train loss became nan at epoch 17"``); a diverged member does not disturb
    the others.
    """
    import torch

    from sweeper.optim.sam import sam_ascent

    first = members[0][0]
    dtype = getattr(torch, first.dtype)
    m = len(members)

    def tensor(a: object) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype, device=device)

    x_train, y_train = tensor(data.x_train), tensor(data.y_train)
    x_val, y_val = tensor(data.x_val), tensor(data.y_val)
    x_test, y_test = tensor(data.x_test), tensor(data.y_test)
    n_train, has_val = len(x_train), len(data.x_val) > 0

    layers = []
    for params, seed in members:
        model = build_model(seed, params.dtype)
        linears = [mod for mod in model.modules() if isinstance(mod, torch.nn.Linear)]
        layers.append([(lin.weight.detach(), lin.bias.detach()) for lin in linears])
    net = _stacked(layers, first.dtype, device)

    base_lr = [p.lr for p, _ in members]
    opt = BatchedOptimizer(
        first.optimizer,
        net.flat,
        lr=net.column(base_lr),
        weight_decay=net.column([p.weight_decay for p, _ in members]),
        momentum=net.column([p.momentum for p, _ in members]),
    )
    rho = net.column([p.sam_rho for p, _ in members])
    use_sam = first.sam_rho > 0
    # Learning rates per epoch from PyTorch's own scheduler (one parameter group per member),
    # so each member gets bit for bit the schedule its per-trial run would.
    scheduler = None
    if first.schedule == "cosine":
        dummy = torch.optim.SGD([{"params": [torch.zeros(1)], "lr": lr} for lr in base_lr])
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(dummy, T_max=first.cosine_t_max)

    generators = [
        torch.Generator().manual_seed(derive_seed(seed, "batches")) for _, seed in members
    ]
    train_curve = torch.empty(first.n_epochs, m, dtype=torch.float64)
    val_curve = torch.empty(first.n_epochs, m, dtype=torch.float64) if has_val else None
    failed: dict[int, str] = {}
    batch = first.batch_size
    saved = torch.empty_like(net.flat) if use_sam else None
    for epoch in range(first.n_epochs):
        perms = torch.stack([torch.randperm(n_train, generator=g) for g in generators])
        net.shuffle(x_train, y_train, perms.to(device))
        loss_sum = torch.zeros(m, dtype=dtype, device=device)
        for start in range(0, n_train, batch):
            stop = min(start + batch, n_train)
            loss = net.batch_loss_and_grad(start, stop)
            if saved is not None:
                # SAM: ascend to w + e(w), take the gradient there, restore w, step from w.
                saved.copy_(net.flat)
                net.flat.add_(sam_ascent(net.grad, rho))
                net.batch_loss_and_grad(start, stop)
                net.flat.copy_(saved)
            opt.step(net.grad)
            loss_sum += loss * (stop - start)
        train_curve[epoch] = loss_sum.to(torch.float64).cpu() / n_train
        if val_curve is not None:
            val_curve[epoch] = net.mse(x_val, y_val)
        for i in torch.nonzero(~torch.isfinite(train_curve[epoch])).flatten().tolist():
            if i not in failed:
                value = float(train_curve[epoch, i])
                failed[i] = diverged("train loss", value, f"at epoch {epoch + 1}")
        if scheduler is not None:
            scheduler.optimizer.step()  # a no-op (no gradients); keeps PyTorch's order check quiet
            scheduler.step()
            opt.lr = net.column([g["lr"] for g in scheduler.optimizer.param_groups])
        heartbeat()

    finals = {"train_mse": net.mse(x_train, y_train), "test_mse": net.mse(x_test, y_test)}
    if has_val:
        finals["val_mse"] = net.mse(x_val, y_val)
    results: list[TrainResult | str] = []
    for i in range(m):
        if i in failed:
            results.append(failed[i])
            continue
        metrics = {name: float(values[i]) for name, values in finals.items()}
        bad = [name for name, v in metrics.items() if not torch.isfinite(torch.tensor(v))]
        if bad:
            results.append(diverged(bad[0], metrics[bad[0]], "after training"))
            continue
        curves = {"train_loss": train_curve[:, i].tolist()}
        if val_curve is not None:
            curves["val_mse"] = val_curve[:, i].tolist()
        results.append(TrainResult(metrics=metrics, curves=curves))
    return results


def _stacked(layers: Layers, dtype: str, device: str) -> StackedMLP | LaneMLP:
    """The group as one net: the C kernel's `LaneMLP` on CPU where it compiles, else PyTorch's."""
    from sweeper.tasks.obesity import kernel

    compiled = None
    if device == "cpu" and kernel.enabled():
        compiled = kernel.load("float" if dtype == "float32" else "double")
    if compiled is not None:
        return LaneMLP(layers, OUTPUT_SCALE, compiled)
    return StackedMLP(layers, OUTPUT_SCALE, device=device)
