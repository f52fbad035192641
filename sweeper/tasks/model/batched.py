"""A group of model-task trials trained as one batched model with ``torch.func``.

The members' parameters are stacked into one buffer ``flat [M, P]`` (one row per member, each
parameter a view into it); ``vmap(functional_call)`` gives every member's loss on its own
minibatch, one backward pass of their sum every member's gradient in ``flat.grad`` (a member's
parameters reach only its own loss), and one element-wise update (`sweeper.tasks.model.
optimizers`) steps them all with per-member lr, weight decay, momentum and SAM rho. Every
member starts from the weights `ModelSpec.model` gives its seed and draws its batch order from
its own generator exactly as `sweeper.tasks.model.per_trial` does, so a member is its per-trial
run with the floating-point operations in another order: equal to rounding error in float64.

A member can stop before the others (its training loss diverged, or a `Judge`, the study's
pruner, stopped it): its row is dropped from `flat`, from the optimizer's state, the per-member
columns and the batch generators, and the group goes on without it. Rows never mix, so the
members that go on compute bit for bit what they would have computed with it (tested).

A group whose model is a plain MLP with a named loss goes to the C kernel instead, with the
same semantics (`sweeper.tasks.model.lanes`; ``SWEEPER_NATIVE=0`` keeps it here).

With a checkpoint policy and the members' trial keys, each member saves its own state (its
parameter row, optimizer rows, batch generator, curves, epoch) when the policy's cadence says,
one file per member (`sweeper.tasks.model.checkpoints`), and resumes from it: members saved
after the same epoch train together as one part, the most advanced part first, each member
bit for bit as in an uninterrupted run. A member's checkpoint is removed once its result has
been taken (the caller asks for the next one), or when the group fails; a kill keeps them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sweeper.seeds import derive_seed
from sweeper.tasks.model.batchable import NotBatchable, why_not_batched
from sweeper.tasks.model.checkpoints import member_checkpoints, member_state, optimizer_rows
from sweeper.tasks.model.group import Judge, Member, Part, end_epoch
from sweeper.tasks.model.hyper import BATCH_SEED, VARY, group_key, train_params
from sweeper.tasks.model.lanes import kernel_for, run_lanes
from sweeper.tasks.model.losses import evaluate
from sweeper.tasks.model.optimizers import batched_update
from sweeper.tasks.model.result import ModelResult

if TYPE_CHECKING:
    import torch

    from sweeper.checkpoints import CheckpointPolicy, TrialCheckpoint
    from sweeper.tasks.model.data import Splits
    from sweeper.tasks.model.spec import ModelSpec

#: ``resumed(index, curves)``: a member resumes from its checkpoint with these curves so far.
Resumed = Callable[[int, Mapping[str, list[float]]], None]

__all__ = ["Judge", "Member", "run_batched", "train_batched"]


def train_batched(
    spec: ModelSpec,
    members: Sequence[Member],
    *,
    heartbeat: Callable[[], None] = lambda: None,
) -> list[ModelResult | str]:
    """Train `members` (all with one `sweeper.tasks.model.hyper.group_key`) as one model.

    Returns:
        Per member in order, its `ModelResult` (equal to `train_per_trial`'s to rounding
        error), or why it failed (``"diverged: train loss became nan at epoch 3"``); a member
        that diverges does not disturb the others.

    Raises:
        As `run_batched`.
    """
    ended = dict(run_batched(spec, members, heartbeat=heartbeat))
    results: list[ModelResult | str] = []
    for i in range(len(members)):
        result = ended[i]
        assert result is not None  # only a judge stops a member without a result
        results.append(result)
    return results


def run_batched(
    spec: ModelSpec,
    members: Sequence[Member],
    *,
    heartbeat: Callable[[], None] = lambda: None,
    judge: Judge | None = None,
    checkpoints: CheckpointPolicy | None = None,
    keys: Sequence[str] = (),
    resumed: Resumed | None = None,
) -> Iterator[tuple[int, ModelResult | str | None]]:
    """Train `members` as one model; yield ``(index, result)`` for each as soon as it ends.

    With `checkpoints` and the members' trial `keys`, members save and resume as the module
    docstring says; `resumed` is told, before training, of each member that resumes (so a
    judge can be given the curves it was told before the kill).

    After each epoch, `judge` (if any) sees every member still training and names those that
    stop: they end with None after that epoch (the judge keeps what it needs of them, e.g. a
    `sweeper.Trial` with the curves it was told). A member whose training loss became NaN or
    infinite ends with the reason after that epoch; the others end with their `ModelResult`
    after the last epoch, in index order.

    Raises:
        NotBatchable: the model cannot run under vmap (the reason in one line), raised before
            anything is yielded: the caller may train the members one by one instead.
        ValueError: the members do not share a group key.
        StudyFileError, ModelDataError, ModelSpecError: as `train_per_trial`.
    """
    shared = {group_key(p) for p, _ in members}
    if len(shared) != 1:
        raise ValueError(f"members of one batched group must share a group key (got {len(shared)})")
    hypers = [train_params(p) for p, _ in members]
    splits = spec.splits(members[0][0])
    models = [spec.model(p, seed) for p, seed in members]
    reason = why_not_batched(models[0])
    if reason is not None:
        raise NotBatchable(reason)
    compiled = kernel_for(spec, models[0], hypers[0], splits)
    ckpts: list[TrialCheckpoint] = []
    if checkpoints is not None and keys:
        isa = compiled.isa if compiled is not None else None
        ckpts = member_checkpoints(checkpoints, keys, spec, isa)
    size = sum(p.numel() for p in models[0].parameters())
    states = [_load(c, size) for c in ckpts] if ckpts else [None] * len(members)
    by_epoch: dict[int, list[int]] = {}
    for i, state in enumerate(states):
        by_epoch.setdefault(int(state["epoch"]) if state else 0, []).append(i)
        if state is not None and resumed is not None:
            resumed(i, state["curves"])
    done: set[int] = set()
    try:
        for epoch in sorted(by_epoch, reverse=True):
            index = by_epoch[epoch]
            picked = [members[i] for i in index]
            models_of = [models[i] for i in index]
            part = Part(
                [states[i] for i in index],
                [ckpts[i] for i in index] if ckpts else [],
                keys[index[0]][:8] if keys else "",
            )
            local = _local_judge(judge, index)
            if compiled is not None:
                # A plain MLP: whole epochs in the C kernel, one member per lane, same semantics.
                results = run_lanes(
                    spec, picked, models_of, splits, compiled,
                    heartbeat=heartbeat, judge=local, part=part,
                )  # fmt: skip
            else:
                results = _train_part(
                    spec, picked, models_of, splits, heartbeat=heartbeat, judge=local, part=part
                )
            for j, result in results:
                done.add(index[j])
                yield index[j], result
                if ckpts:
                    ckpts[index[j]].remove()  # the caller has taken (recorded) the result
    except Exception:
        # A group that fails for good keeps no checkpoints; a kill (no exception) keeps them.
        for i, ckpt in enumerate(ckpts):
            if i not in done:
                ckpt.remove()
        raise


def _load(ckpt: TrialCheckpoint, size: int) -> dict[str, Any] | None:
    """A member's saved state, or None (then removed) when it does not fit the model."""
    state = ckpt.load()
    if state is not None and state["params"].numel() != size:
        ckpt.remove()
        return None
    return state


def _local_judge(judge: Judge | None, index: Sequence[int]) -> Judge | None:
    """`judge` as a part of the group (members ``index[0], index[1], ...``) sees it."""
    if judge is None:
        return None
    position = {i: j for j, i in enumerate(index)}

    def local(epoch: int, values: Mapping[int, dict[str, float]]) -> list[int]:
        stopped = judge(epoch, {index[j]: v for j, v in values.items()})
        return [position[i] for i in stopped if i in position]

    return local


def _train_part(
    spec: ModelSpec,
    members: Sequence[Member],
    models: Sequence[torch.nn.Module],
    splits: Splits,
    *,
    heartbeat: Callable[[], None],
    judge: Judge | None,
    part: Part,
) -> Iterator[tuple[int, ModelResult | str | None]]:
    """Train `members` (their initial `models`; all fresh, or all resumed from `part`'s
    states after one epoch) with ``torch.func``; yield ``(index among them, result)`` as
    `run_batched` does."""
    import torch
    from torch.func import functional_call, stack_module_state, vmap

    from sweeper.optim.sam import sam_ascent

    hypers = [train_params(p) for p, _ in members]
    hyper = hypers[0]
    m = len(members)
    loss_fn, metrics = spec.loss_fn(), spec.metrics
    start_epoch = part.start
    base = models[0]
    stacked, buffers = stack_module_state(models)
    names = list(stacked)
    shapes = [stacked[k].shape[1:] for k in names]
    sizes = [stacked[k][0].numel() for k in names]
    # A leaf: autograd puts every member's gradient into flat.grad [M, P], laid out like it.
    flat = torch.cat([stacked[k].detach().reshape(m, -1) for k in names], dim=1)
    if start_epoch:
        flat.copy_(torch.stack([s["params"] for s in part.resumed()]).to(flat.dtype))
    flat.requires_grad_(True)
    buffers = {k: v.detach() for k, v in buffers.items()}
    del stacked
    # Row r of `flat` (and of every per-member tensor below) is member alive[r].
    alive = list(range(m))

    def views() -> dict[str, torch.Tensor]:
        """Each parameter as a view into `flat`, made afresh after every in-place update."""
        out, offset = {}, 0
        for k, shape, size in zip(names, shapes, sizes, strict=True):
            out[k] = flat[:, offset : offset + size].view(m, *shape)
            offset += size
        return out

    def member_loss(
        p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor
    ) -> torch.Tensor:
        loss: torch.Tensor = loss_fn(functional_call(base, (p, b), (xb,)), yb)
        return loss

    def member_pred(
        p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor
    ) -> torch.Tensor:
        out: torch.Tensor = functional_call(base, (p, b), (x,))
        return out

    losses = vmap(member_loss)
    predict = vmap(member_pred, in_dims=(0, 0, None))

    def score(pair: tuple[torch.Tensor, torch.Tensor], split: str) -> list[dict[str, float]]:
        """Per row, loss and metrics on a whole split (eval mode, as per trial)."""
        base.eval()
        with torch.no_grad():
            preds = predict(views(), buffers, pair[0])
        base.train()
        return [evaluate(loss_fn, metrics, preds[r], pair[1], split) for r in range(m)]

    def gradient(xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's loss on its batch, and its gradient ``[M, P]``."""
        flat.grad = None
        with torch.enable_grad():
            loss = losses(views(), buffers, xb, yb)
            # Member m's parameters reach only loss[m], so the gradient of the sum is, row by
            # row, each member's own gradient: one backward pass instead of torch.func.grad's
            # transform (which cost 3x as much per step on small models, measured).
            loss.sum().backward()  # type: ignore[no-untyped-call]
        assert flat.grad is not None
        return flat.grad, loss.detach()

    def column(field: str) -> torch.Tensor:
        values = [float(getattr(h, field)) for h in hypers]
        return torch.tensor(values, dtype=flat.dtype).unsqueeze(1)

    cols = {field: column(field) for field in VARY}
    update = batched_update(hyper.optimizer, flat, cols["weight_decay"], cols["momentum"])
    all_lr = cols["lr"]  # every member's, stopped ones included: rows are picked each epoch
    scheduler = None
    if hyper.schedule == "cosine":
        # PyTorch's own scheduler over one group per member: each member gets bit for bit the
        # learning rates its per-trial run's scheduler gives.
        dummy = torch.optim.SGD([{"params": [torch.zeros(1)], "lr": h.lr} for h in hypers])
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(dummy, T_max=hyper.epochs)
    use_sam = hyper.sam_rho > 0
    saved = torch.empty_like(flat) if use_sam else None
    generators = [torch.Generator().manual_seed(derive_seed(s, *BATCH_SEED)) for _, s in members]
    x, y = splits.train
    n = len(x)
    curves: list[dict[str, list[float]]] = [{"train_loss": []} for _ in members]
    if start_epoch:
        live = part.resumed()
        opt_rows, zero_d = optimizer_rows(live, flat.shape[1], flat.dtype)
        update.load_state({**opt_rows, **zero_d})
        for j, s in enumerate(live):
            generators[j].set_state(s["rng"])
            curves[j] = {k: [float(v) for v in vs] for k, vs in s["curves"].items()}
        for _ in range(start_epoch):
            all_lr = _schedule(scheduler, flat.dtype, all_lr)  # replayed, bit for bit as it ran
    cadence = part.cadence()

    for epoch in range(start_epoch + 1, hyper.epochs + 1):
        if not alive:
            return
        lr = all_lr[torch.tensor(alive)]
        # In-place updates of the leaf `flat`; `gradient` turns autograd on for its own pass.
        # (No yield inside: a generator suspended in no_grad would leak it to the caller.)
        with torch.no_grad():
            base.train()
            perms = torch.stack([torch.randperm(n, generator=g) for g in generators])
            total = torch.zeros(m, dtype=torch.float64)
            for start in range(0, n, hyper.batch_size):
                idx = perms[:, start : start + hyper.batch_size]
                xb, yb = x[idx], y[idx]
                if epoch == start_epoch + 1 and start == 0:
                    try:
                        grad, loss = gradient(xb, yb)
                    except Exception as exc:  # noqa: BLE001 - any failure under vmap: train per trial
                        raise NotBatchable(_first_line(exc)) from exc
                else:
                    grad, loss = gradient(xb, yb)
                if saved is not None:
                    # SAM: to w + e(w), the gradient there, back to w (bit for bit), step from w.
                    saved.copy_(flat)
                    flat.add_(sam_ascent(grad, cols["sam_rho"]))
                    grad, _ = gradient(xb, yb)
                    flat.copy_(saved)
                update.step(grad, lr)
                total += loss.double() * idx.shape[1]
            all_lr = _schedule(scheduler, flat.dtype, all_lr)
            val = score(splits.val, "val") if splits.val is not None else None
        ended = end_epoch(epoch, alive, (total / n).tolist(), val, curves, judge)
        heartbeat()
        for i in sorted(ended):
            yield i, ended[i]
        if ended and len(ended) < m:
            # Drop the stopped members' rows: the others go on with exactly their own numbers.
            rows = [r for r, i in enumerate(alive) if i not in ended]
            pick = torch.tensor(rows)
            state = {k: v[pick] if v.dim() > 0 else v for k, v in update.state().items()}
            flat = flat.detach()[pick].requires_grad_(True)
            buffers = {k: v[pick] for k, v in buffers.items()}
            cols = {k: v[pick] for k, v in cols.items()}
            update = batched_update(hyper.optimizer, flat, cols["weight_decay"], cols["momentum"])
            update.load_state(state)
            saved = torch.empty_like(flat) if use_sam else None
            generators = [generators[r] for r in rows]
        alive = [i for i in alive if i not in ended]
        m = len(alive)
        if cadence is not None and alive and cadence.epoch_done(epoch):
            state = update.state()
            per_row = {k: v for k, v in state.items() if v.shape == flat.shape}
            zero_d = {k: v for k, v in state.items() if v.shape != flat.shape}
            for r, i in enumerate(alive):
                rows_of = {k: v[r] for k, v in per_row.items()}
                rng = generators[r].get_state()
                part.save(i, member_state(epoch, flat[r].detach(), rows_of, zero_d, rng, curves[i]))
            cadence.saved()

    if not alive:
        return
    finals: dict[int, dict[str, float]] = {i: {} for i in alive}
    with torch.no_grad():
        for split, pair in splits.present():
            for i, scores in zip(alive, score(pair, split), strict=True):
                finals[i].update(scores)
    for i in alive:
        yield i, ModelResult(finals[i], curves[i])


def _schedule(scheduler: Any, dtype: torch.dtype, lr: torch.Tensor) -> torch.Tensor:
    """Step the cosine `scheduler` (if any) one epoch; every member's learning rate next."""
    import torch

    if scheduler is None:
        return lr
    scheduler.optimizer.step()  # no gradients: a no-op that keeps torch's check quiet
    scheduler.step()
    lrs = [g["lr"] for g in scheduler.optimizer.param_groups]
    return torch.tensor(lrs, dtype=dtype).unsqueeze(1)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return f"vmap cannot run the model ({text})"
