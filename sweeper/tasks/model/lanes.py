"""A model task's plain MLPs trained on the C kernel: one member per SIMD lane, epochs fused.

A group whose model is a plain MLP (`plain_mlp`: a ``torch.nn.Sequential`` of ``nn.Linear``
layers with bias, one ReLU, Tanh, Sigmoid or exact GELU between each two), whose loss is named
("mse" or "cross_entropy", not a callable) and whose optimizer the kernel implements (sgd, adam,
adamw) trains through `sweeper.kernel.lanes.LaneMLP` on the CPU: one call of the
kernel per epoch runs every step (forward, backward, SAM's second pass, the update) for every
member. `sweeper.tasks.model.batched.run_batched` chooses it on its own (`kernel_for`);
``SWEEPER_NATIVE=0`` turns it off, and the group runs through ``torch.func`` instead.

The semantics are `run_batched`'s, so a member is its per-trial run computed in another order
(equal to rounding error in float64): the same initial weights (`ModelSpec.model`), the same
batch order per member, the same per-epoch curves, cosine schedule, divergence and judge. A
stopped member leaves the lanes: the survivors are repacked into fewer blocks, and since no lane
ever reads another, they compute bit for bit what they would have computed with it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sweeper.kernel.arch import LANE_LOSSES, LaneArch
from sweeper.kernel.lanes import LANE_UPDATES
from sweeper.seeds import derive_seed
from sweeper.tasks.model.checkpoints import member_state, optimizer_rows
from sweeper.tasks.model.group import Judge, Member, Part, end_epoch
from sweeper.tasks.model.hyper import BATCH_SEED, TrainParams, train_params
from sweeper.tasks.model.losses import evaluate
from sweeper.tasks.model.result import ModelResult

if TYPE_CHECKING:
    import torch

    from sweeper.kernel import Kernel
    from sweeper.kernel.lanes import LaneMLP, LaneOptimizer
    from sweeper.tasks.model.data import Splits
    from sweeper.tasks.model.spec import ModelSpec


@functools.cache
def _activations() -> dict[type[torch.nn.Module], str]:
    """Module class -> the kernel's name of the activation (`LANE_ACTIVATIONS`)."""
    from torch import nn

    return {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.GELU: "gelu"}


def _activation(module: torch.nn.Module) -> str | None:
    name = _activations().get(type(module))
    if name == "gelu" and getattr(module, "approximate", "none") != "none":
        return None  # the tanh approximation is another function
    return name


def plain_mlp(model: torch.nn.Module) -> tuple[str, ...] | None:
    """The hidden activations of `model` if it is a plain MLP, else None.

    A plain MLP is exactly a ``torch.nn.Sequential`` (not a subclass: its forward could differ)
    of ``nn.Linear`` layers with bias, each two separated by exactly one ``nn.ReLU``,
    ``nn.Tanh``, ``nn.Sigmoid`` or ``nn.GELU(approximate="none")``, ending with a Linear.
    """
    from torch import nn

    if type(model) is not nn.Sequential:
        return None
    modules = list(model)
    if len(modules) % 2 == 0:
        return None
    names: list[str] = []
    for k, module in enumerate(modules):
        if k % 2 == 0:
            if type(module) is not nn.Linear or module.bias is None:
                return None
            continue
        name = _activation(module)
        if name is None:
            return None
        names.append(name)
    return tuple(names)


def kernel_for(
    spec: ModelSpec, model: torch.nn.Module, hyper: TrainParams, splits: Splits
) -> Kernel | None:
    """The compiled kernel to train a group of `model` with, or None when the group must take
    the ``torch.func`` path: the kernel is off (``SWEEPER_NATIVE=0``) or does not compile, the
    loss is a callable, the optimizer is not in `LANE_UPDATES`, the model is not a `plain_mlp`
    on the CPU, or the data is not the plain form the kernel reads (2-D float inputs; MSE
    targets of one number per output; cross-entropy targets that are class indices in range).
    """
    import torch

    from sweeper import kernel

    if not kernel.enabled() or callable(spec.loss) or spec.loss not in LANE_LOSSES:
        return None
    if hyper.optimizer not in LANE_UPDATES or plain_mlp(model) is None:
        return None
    if any(p.device.type != "cpu" for p in model.parameters()):
        return None
    linears = [m for m in model.children() if isinstance(m, torch.nn.Linear)]
    features, outputs = linears[0].in_features, linears[-1].out_features
    for _, (x, y) in splits.present():
        if x.dim() != 2 or x.shape[1] != features or x.dtype != spec.torch_dtype:
            return None
        if spec.loss == "mse" and (not y.is_floating_point() or y.numel() != len(y) * outputs):
            return None
        if spec.loss == "cross_entropy":
            if y.dim() != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
                return None
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= outputs):
                return None  # torch's error, from the torch.func path, says what is wrong
    return kernel.load("float" if spec.dtype == "float32" else "double")


def run_lanes(
    spec: ModelSpec,
    members: Sequence[Member],
    models: Sequence[torch.nn.Module],
    splits: Splits,
    compiled: Kernel,
    *,
    heartbeat: Callable[[], None] = lambda: None,
    judge: Judge | None = None,
    part: Part | None = None,
) -> Iterator[tuple[int, ModelResult | str | None]]:
    """`sweeper.tasks.model.batched.run_batched` for (a part of) a group `kernel_for`
    accepted: `models` are the members' initial models (``spec.model(params, seed)``),
    `splits` the group's data, `compiled` the kernel, and `part` the members' checkpoints
    (all resumed after one epoch, or all fresh; None: fresh, saving none).

    Yields:
        ``(index among members, result)`` per member as it ends, as `run_batched` does.
    """
    import torch

    from sweeper.kernel.lanes import LaneMLP

    part = part if part is not None else Part([None] * len(members))
    hypers = [train_params(p) for p, _ in members]
    hyper = hypers[0]
    start_epoch = part.start
    loss_fn, metrics = spec.loss_fn(), spec.metrics
    activations = plain_mlp(models[0])
    assert activations is not None  # kernel_for checked it
    arch = LaneArch(activations, head="identity", loss=str(spec.loss))
    linears = [[m for m in model.children() if isinstance(m, torch.nn.Linear)] for model in models]
    layers = [[(m.weight.detach(), m.bias.detach()) for m in member] for member in linears]
    net = LaneMLP(layers, 1.0, compiled, arch)
    x, y = splits.train
    n, dtype = len(x), net.flat.dtype
    # The kernel reads targets as numbers: [rows, outputs] for MSE, class indices for CE.
    targets = y.reshape(n, -1) if spec.loss == "mse" else y
    x, targets = x.to(dtype).contiguous(), targets.to(dtype).contiguous()
    # Row r of the net (and of every per-member list below) is member alive[r].
    alive = list(range(len(members)))
    opt = _optimizer(net, hyper.optimizer, [hypers[i] for i in alive])
    all_lr = [h.lr for h in hypers]
    scheduler = None
    if hyper.schedule == "cosine":
        # PyTorch's own scheduler, one group per member: bit for bit the per-trial rates.
        dummy = torch.optim.SGD([{"params": [torch.zeros(1)], "lr": h.lr} for h in hypers])
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(dummy, T_max=hyper.epochs)
    generators = [torch.Generator().manual_seed(derive_seed(s, *BATCH_SEED)) for _, s in members]
    curves: list[dict[str, list[float]]] = [{"train_loss": []} for _ in members]
    if start_epoch:
        live = part.resumed()
        net.flat.copy_(net.restack(torch.stack([s["params"].to(dtype) for s in live])))
        size = net.flat.shape[1]
        opt_rows, zero_d = optimizer_rows(live, size, dtype)
        opt.load_state({**{k: net.restack(v) for k, v in opt_rows.items()}, **zero_d})
        for j, s in enumerate(live):
            generators[j].set_state(s["rng"])
            curves[j] = {k: [float(v) for v in vs] for k, vs in s["curves"].items()}
        for _ in range(start_epoch):
            all_lr = _schedule(scheduler, all_lr)  # replayed, bit for bit as it ran
    cadence = part.cadence()

    def score(pair: tuple[torch.Tensor, torch.Tensor], split: str) -> list[dict[str, float]]:
        """Per row of the net, loss and metrics on a whole split."""
        preds = net.predict(pair[0].to(dtype))
        return [evaluate(loss_fn, metrics, preds[r], pair[1], split) for r in range(len(alive))]

    for epoch in range(start_epoch + 1, hyper.epochs + 1):
        opt.lr = net.column([all_lr[i] for i in alive])
        perms = torch.stack([torch.randperm(n, generator=g) for g in generators])
        net.shuffle(x, targets, perms)
        total = net.train_epoch(opt, hyper.batch_size).to(torch.float64)
        all_lr = _schedule(scheduler, all_lr)
        val = score(splits.val, "val") if splits.val is not None else None
        ended = end_epoch(epoch, alive, (total / n).tolist(), val, curves, judge)
        heartbeat()
        for i in sorted(ended):
            yield i, ended[i]
        if ended:
            rows = [r for r, i in enumerate(alive) if i not in ended]
            alive = [alive[r] for r in rows]
            if not alive:
                return
            # Repack the survivors into the fewest blocks: stopped members cost nothing more.
            net, opt = _keep(net, opt, rows, hyper.optimizer, [hypers[i] for i in alive])
            generators = [generators[r] for r in rows]
        if cadence is not None and cadence.epoch_done(epoch):
            _save(part, net, opt, generators, alive, curves, epoch)
            cadence.saved()

    finals: dict[int, dict[str, float]] = {i: {} for i in alive}
    for split, pair in splits.present():
        for i, scores in zip(alive, score(pair, split), strict=True):
            finals[i].update(scores)
    for i in alive:
        yield i, ModelResult(finals[i], curves[i])


def _schedule(scheduler: Any, lr: list[float]) -> list[float]:
    """Step the cosine `scheduler` (if any) one epoch; every member's learning rate next."""
    if scheduler is None:
        return lr
    scheduler.optimizer.step()  # no gradients: a no-op that keeps torch's check quiet
    scheduler.step()
    return [g["lr"] for g in scheduler.optimizer.param_groups]


def _save(
    part: Part,
    net: LaneMLP,
    opt: LaneOptimizer,
    generators: Sequence[torch.Generator],
    alive: Sequence[int],
    curves: Sequence[dict[str, list[float]]],
    epoch: int,
) -> None:
    """Save each member still training after `epoch` (row r of `net` is member alive[r])."""
    params = net.unstack(net.flat)
    state = opt.state()
    rows = {k: net.unstack(v) for k, v in state.items() if v.shape == net.flat.shape}
    zero_d = {k: v for k, v in state.items() if v.shape != net.flat.shape}
    for r, i in enumerate(alive):
        mine = {k: v[r] for k, v in rows.items()}
        rng = generators[r].get_state()
        part.save(i, member_state(epoch, params[r], mine, zero_d, rng, curves[i]))


def _optimizer(net: LaneMLP, name: str, hypers: Sequence[TrainParams]) -> LaneOptimizer:
    """The kernel's `name` update for the members of `net`, with their `hypers` (in order)."""
    from sweeper.kernel.lanes import LaneOptimizer

    def column(field: str) -> torch.Tensor:
        return net.column([float(getattr(h, field)) for h in hypers])

    lr, wd, momentum, rho = (column(f) for f in ("lr", "weight_decay", "momentum", "sam_rho"))
    return LaneOptimizer(net, name, lr, wd, momentum, rho)


def _keep(
    net: LaneMLP, opt: LaneOptimizer, rows: Sequence[int], name: str, hypers: Sequence[TrainParams]
) -> tuple[LaneMLP, LaneOptimizer]:
    """The members at `rows` of `net` (with `hypers`), and `opt`'s state for them alone."""
    kept = net.select(rows)
    state = {
        k: kept.restack(net.unstack(v)[list(rows)]) if v.dim() > 0 else v
        for k, v in opt.state().items()
    }
    new = _optimizer(kept, name, hypers)
    new.load_state(state)
    new.steps = opt.steps  # SGD starts its momentum buffer at step 0 only
    return kept, new
