"""The obesity task's batched trainer: a group of trials trained as one stacked model.

Every member starts from exactly the weights `build_model` gives its seed and sees exactly the
batch order its per-trial run would (its own generator, seeded the same way), so a member is the
per-trial run of its trial computed in another order of floating-point operations: equal to
rounding error in float64, statistically equal in float32 (see the tests and the README).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.kernel.lanes import LANE_UPDATES, LaneMLP, LaneOptimizer, Layers
from sweeper.optim.batched import BatchedOptimizer
from sweeper.seeds import derive_seed
from sweeper.tasks.common import diverged
from sweeper.tasks.obesity.data import Split
from sweeper.tasks.obesity.model import OUTPUT_SCALE, build_model
from sweeper.tasks.obesity.params import ObesityParams
from sweeper.tasks.obesity.stacked import StackedMLP
from sweeper.tasks.obesity.train import TrainResult

if TYPE_CHECKING:
    import torch

    from sweeper.checkpoints import CheckpointPolicy, TrialCheckpoint


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
    results: dict[int, TrainResult | str] = dict(
        train_group_iter(members, data, device=device, heartbeat=heartbeat)
    )
    return [results[i] for i in range(len(members))]


def train_group_iter(
    members: Sequence[tuple[ObesityParams, int]],
    data: Split,
    *,
    device: str = "cpu",
    heartbeat: Callable[[], None] = lambda: None,
    checkpoints: CheckpointPolicy | None = None,
    keys: Sequence[str] = (),
) -> Iterator[tuple[int, TrainResult | str]]:
    """`train_group`, yielding ``(member index, result)`` as each member finishes.

    A member that diverges is yielded at that epoch; the others when the group ends.

    With `checkpoints` (and the members' trial `keys`), each member's state is saved as the
    policy says and read back on the next call: a member resumes from its checkpoint, so that
    its result is bit for bit the one of an uninterrupted run. Members saved at different
    epochs (a group split otherwise after a restart) train as one stacked model per epoch,
    the most advanced first. A member's checkpoint is removed when the next result is asked
    for after its own (the caller has recorded it), or when training raises.
    """
    ckpts = (
        [
            _member_checkpoint(checkpoints, key, p, device)
            for (p, _), key in zip(members, keys, strict=True)
        ]
        if checkpoints is not None
        else []
    )
    states = [c.load() for c in ckpts] if ckpts else [None] * len(members)
    by_epoch: dict[int, list[int]] = {}
    for i, state in enumerate(states):
        by_epoch.setdefault(int(state["epoch"]) if state else 0, []).append(i)
    done: set[int] = set()
    try:
        for epoch in sorted(by_epoch, reverse=True):
            index = by_epoch[epoch]
            part = _train_part(
                [members[i] for i in index],
                [states[i] for i in index],
                [ckpts[i] for i in index] if ckpts else None,
                data,
                device=device,
                heartbeat=heartbeat,
                label=keys[index[0]][:8] if keys else "",
            )
            for j, result in part:
                done.add(index[j])
                yield index[j], result
                if ckpts:
                    ckpts[index[j]].remove()
    except Exception:
        # A trial that fails for good keeps no checkpoint; a kill (no exception) keeps them.
        for i, ckpt in enumerate(ckpts):
            if i not in done:
                ckpt.remove()
        raise


def _member_checkpoint(
    policy: CheckpointPolicy, key: str, params: ObesityParams, device: str
) -> TrialCheckpoint:
    """The checkpoint of one member: its kind names the precision and the implementation
    (the C kernel's builds and PyTorch's products round differently)."""
    from sweeper import kernel
    from sweeper.checkpoints import source_hash

    real = "float" if params.dtype == "float32" else "double"
    compiled = kernel.load(real) if device == "cpu" and kernel.enabled() else None
    # The portable build (no fused multiply-add) rounds unlike AVX2 and AVX-512.
    kind = f"obesity-batched/{params.dtype}/{f'kernel-{compiled.isa}' if compiled else 'torch'}"
    here = Path(__file__).resolve().parent
    return policy.trial(
        key, kind, source_hash(here, here.parents[1] / "optim", here.parents[1] / "kernel")
    )


def _train_part(
    members: Sequence[tuple[ObesityParams, int]],
    states: Sequence[dict[str, Any] | None],
    ckpts: Sequence[TrialCheckpoint] | None,
    data: Split,
    *,
    device: str,
    heartbeat: Callable[[], None],
    label: str,
) -> Iterator[tuple[int, TrainResult | str]]:
    """Train members that all start at the same epoch (fresh, or from their `states`)."""
    import torch

    from sweeper.optim.sam import sam_ascent

    first = members[0][0]
    dtype = getattr(torch, first.dtype)
    m = len(members)
    start_epoch = int(states[0]["epoch"]) if states[0] else 0

    def tensor(a: object) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype, device=device)

    x_train, y_train = tensor(data.x_train), tensor(data.y_train)
    x_val, y_val = tensor(data.x_val), tensor(data.y_val)
    x_test, y_test = tensor(data.x_test), tensor(data.y_test)
    n_train, has_val = len(x_train), len(data.x_val) > 0

    layers = []
    for (params, seed), state in zip(members, states, strict=True):
        model = build_model(seed, params.dtype)
        linears = [mod for mod in model.modules() if isinstance(mod, torch.nn.Linear)]
        initial = [(lin.weight.detach(), lin.bias.detach()) for lin in linears]
        layers.append(_unflatten(state["params"].to(dtype), initial) if state else initial)
    net = _stacked(layers, first.dtype, device)

    base_lr = [p.lr for p, _ in members]
    lr = net.column(base_lr)
    weight_decay = net.column([p.weight_decay for p, _ in members])
    momentum = net.column([p.momentum for p, _ in members])
    rho = net.column([p.sam_rho for p, _ in members])
    use_sam = first.sam_rho > 0
    opt: BatchedOptimizer | LaneOptimizer
    if isinstance(net, LaneMLP) and first.optimizer in LANE_UPDATES:
        # Whole epochs in the kernel: SAM's second pass and the update fused into each step.
        opt = LaneOptimizer(net, first.optimizer, lr, weight_decay, momentum, rho)
    else:
        opt = BatchedOptimizer(first.optimizer, net.flat, lr, weight_decay, momentum)
    # Learning rates per epoch from PyTorch's own scheduler (one parameter group per member),
    # so each member gets bit for bit the schedule its per-trial run would.
    scheduler = None
    if first.schedule == "cosine":
        dummy = torch.optim.SGD([{"params": [torch.zeros(1)], "lr": lr} for lr in base_lr])
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(dummy, T_max=first.cosine_t_max)

    def step_schedule() -> None:
        if scheduler is not None:
            scheduler.optimizer.step()  # a no-op (no gradients); keeps PyTorch's order check quiet
            scheduler.step()
            opt.lr = net.column([g["lr"] for g in scheduler.optimizer.param_groups])

    generators = [
        torch.Generator().manual_seed(derive_seed(seed, "batches")) for _, seed in members
    ]
    train_curve = torch.empty(first.n_epochs, m, dtype=torch.float64)
    val_curve = torch.empty(first.n_epochs, m, dtype=torch.float64) if has_val else None
    if start_epoch:
        _restore(net, opt, generators, train_curve, val_curve, states)
        for _ in range(start_epoch):
            step_schedule()  # replayed: the chained cosine formula, bit for bit as it ran
    failed: dict[int, str] = {}
    cadence = ckpts[0].policy.cadence(m, label) if ckpts else None
    saved_at = start_epoch
    batch = first.batch_size
    saved = torch.empty_like(net.flat) if use_sam else None
    for epoch in range(start_epoch, first.n_epochs):
        perms = torch.stack([torch.randperm(n_train, generator=g) for g in generators])
        net.shuffle(x_train, y_train, perms.to(device))
        if isinstance(opt, LaneOptimizer):
            assert isinstance(net, LaneMLP)
            loss_sum = net.train_epoch(opt, batch)
        else:
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
                yield i, failed[i]  # recorded now; it trains on unseen (its lanes are its own)
        step_schedule()
        if cadence is not None and ckpts is not None and cadence.epoch_done(epoch + 1):
            _save(net, opt, generators, train_curve, val_curve, epoch + 1, ckpts, failed)
            cadence.saved()
            saved_at = epoch + 1
        heartbeat()

    if cadence is not None and ckpts is not None and cadence.saves and saved_at < first.n_epochs:
        # A group that took long enough to checkpoint saves its end state too: a kill while
        # its results are being recorded then costs no epoch.
        _save(net, opt, generators, train_curve, val_curve, first.n_epochs, ckpts, failed)
    finals = {"train_mse": net.mse(x_train, y_train), "test_mse": net.mse(x_test, y_test)}
    if has_val:
        finals["val_mse"] = net.mse(x_val, y_val)
    for i in range(m):
        if i in failed:
            continue
        metrics = {name: float(values[i]) for name, values in finals.items()}
        bad = [name for name, v in metrics.items() if not torch.isfinite(torch.tensor(v))]
        if bad:
            yield i, diverged(bad[0], metrics[bad[0]], "after training")
            continue
        curves = {"train_loss": train_curve[:, i].tolist()}
        if val_curve is not None:
            curves["val_mse"] = val_curve[:, i].tolist()
        yield i, TrainResult(metrics=metrics, curves=curves)


def _unflatten(
    row: torch.Tensor, like: Sequence[tuple[torch.Tensor, torch.Tensor]]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One member's ``(weight [out, in], bias [out])`` per layer (shaped as in `like`) from
    its row of `flat`: per layer the weight transposed to ``[in, out]``, flattened, then the
    bias (`sweeper.kernel.lanes`'s layout)."""
    out, offset = [], 0
    for w, _ in like:
        o, i = w.shape
        weight = row[offset : offset + o * i].view(i, o).t()
        offset += o * i
        out.append((weight, row[offset : offset + o]))
        offset += o
    return out


def _restack(net: StackedMLP | LaneMLP, rows: torch.Tensor) -> torch.Tensor:
    """The inverse of ``net.unstack``: ``[M, P]`` rows laid out like `net.flat`."""
    if isinstance(net, LaneMLP):
        blocks, size, lanes = net.flat.shape
        padded = rows.new_zeros(blocks * lanes, size)
        padded[: len(rows)] = rows
        return padded.view(blocks, lanes, size).transpose(1, 2).contiguous()
    return rows.clone()


def _save(
    net: StackedMLP | LaneMLP,
    opt: BatchedOptimizer | LaneOptimizer,
    generators: Sequence[torch.Generator],
    train_curve: torch.Tensor,
    val_curve: torch.Tensor | None,
    epoch: int,
    ckpts: Sequence[TrialCheckpoint],
    failed: Mapping[int, str],
) -> None:
    """Save each live member's state after `epoch`, one file per member (its trial key)."""
    params = net.unstack(net.flat)
    layout = net.flat.shape
    opt_state = opt.state()
    rows = {k: net.unstack(v) for k, v in opt_state.items() if v.shape == layout}
    shared = {k: v.clone() for k, v in opt_state.items() if v.shape != layout}
    for i, ckpt in enumerate(ckpts):
        if i in failed:
            continue
        state: dict[str, Any] = {
            "epoch": epoch,
            "params": params[i].clone(),
            "optimizer": {k: v[i].clone() for k, v in rows.items()},
            "shared": shared,
            "rng": generators[i].get_state(),
            "train_loss": train_curve[:epoch, i].clone(),
        }
        if val_curve is not None:
            state["val_mse"] = val_curve[:epoch, i].clone()
        ckpt.save(state)


def _restore(
    net: StackedMLP | LaneMLP,
    opt: BatchedOptimizer | LaneOptimizer,
    generators: Sequence[torch.Generator],
    train_curve: torch.Tensor,
    val_curve: torch.Tensor | None,
    states: Sequence[dict[str, Any] | None],
) -> None:
    """Load the members' optimizer state, batch-order generators and curves (the parameters
    went into the net when it was built)."""
    import torch

    live = [s for s in states if s is not None]
    if len(live) != len(states):
        raise ValueError("a part resumed from checkpoints needs every member's state")
    epoch = int(live[0]["epoch"])
    dtype = net.flat.dtype
    names = sorted({name for s in live for name in s["optimizer"]})
    size = net.unstack(net.flat).shape[1]
    state: dict[str, torch.Tensor] = {}
    for name in names:
        # A member saved without this buffer (SGD without momentum) continues from zeros,
        # which its zero momentum multiplies away.
        rows = torch.stack(
            [s["optimizer"].get(name, torch.zeros(size, dtype=dtype)).to(dtype) for s in live]
        )
        state[name] = _restack(net, rows)
    state.update({k: v.to(dtype) for k, v in live[0]["shared"].items()})
    opt.load_state(state)
    for i, s in enumerate(live):
        generators[i].set_state(s["rng"])
        train_curve[:epoch, i] = s["train_loss"]
        if val_curve is not None:
            val_curve[:epoch, i] = s["val_mse"]


def _stacked(layers: Layers, dtype: str, device: str) -> StackedMLP | LaneMLP:
    """The group as one net: the C kernel's `LaneMLP` on CPU where it compiles, else PyTorch's."""
    from sweeper import kernel

    compiled = None
    if device == "cpu" and kernel.enabled():
        compiled = kernel.load("float" if dtype == "float32" else "double")
    if compiled is not None:
        return LaneMLP(layers, OUTPUT_SCALE, compiled)
    return StackedMLP(layers, OUTPUT_SCALE, device=device)
