"""A model task's checkpoints: which kind of state, written by which code, and where.

A model task owns its training loop, so it checkpoints on its own (`sweeper.checkpoints`): a
per-trial run through its `sweeper.Trial` (the function task's checkpoint kind and code, set by
`sweeper.tasks.model.task.ModelTask`), a batched group one file per member, keyed by the
member's trial key (`member_checkpoints`). The kind names the path and
the precision (``model/per-trial/float64``, ``model/batched/float32/torch``,
``model/batched/float64/kernel-avx2``: each rounds differently), and the code hash covers
sweeper's training code (this package, the optimizers, for the kernel path the kernel) and the
user's (`spec_code`: the source of the modules defining the spec's build, data, loss and
metrics), on top of the study's code hash the worker's policy already carries. A checkpoint
whose kind or code differs is deleted, never loaded.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.checkpoints import CheckpointPolicy, TrialCheckpoint, source_hash

if TYPE_CHECKING:
    import torch

    from sweeper.tasks.model.spec import ModelSpec

_HERE = Path(__file__).resolve().parent
_SWEEPER = _HERE.parents[1]


def spec_code(spec: ModelSpec) -> str:
    """16 hex digits of sha256 over the source of the user's modules behind `spec` (its
    build, data, loss and metrics; sweeper's own modules and ones without source skipped)."""
    objects: list[Any] = [spec.build, spec.data, spec.loss, *spec.metrics.values()]
    sources: dict[str, str] = {}
    for obj in objects:
        module = inspect.getmodule(obj) if callable(obj) else None
        if module is None or module.__name__.partition(".")[0] == "sweeper":
            continue
        try:
            sources[module.__name__] = inspect.getsource(module)
        except (OSError, TypeError):
            continue  # a module without source (built in, or its file gone): nothing to hash
    digest = hashlib.sha256()
    # Sources only, not module names: those name the file's path, which may differ by host.
    for source in sorted(set(sources.values())):
        digest.update(f"{source}\0".encode())
    return digest.hexdigest()[:16]


def model_code(spec: ModelSpec, *, kernel: bool = False) -> str:
    """The code hash of a model task's checkpoints: sweeper's training sources (with the
    kernel's when `kernel`) and the user's (`spec_code`)."""
    paths = [_HERE, _SWEEPER / "optim"] + ([_SWEEPER / "kernel"] if kernel else [])
    return f"{source_hash(*paths)}+{spec_code(spec)}"


def member_checkpoints(
    policy: CheckpointPolicy, keys: Sequence[str], spec: ModelSpec, isa: str | None
) -> list[TrialCheckpoint]:
    """One checkpoint per member of a batched group, keyed by its trial key; `isa` names the
    kernel build training it (None: the ``torch.func`` path)."""
    path = f"kernel-{isa}" if isa else "torch"
    kind = f"model/batched/{spec.dtype}/{path}"
    code = model_code(spec, kernel=isa is not None)
    return [policy.trial(key, kind, code) for key in keys]


def member_state(
    epoch: int,
    params: torch.Tensor,
    optimizer: Mapping[str, torch.Tensor],
    shared: Mapping[str, torch.Tensor],
    rng: torch.Tensor,
    curves: Mapping[str, list[float]],
) -> dict[str, Any]:
    """What one member of a batched group saves after `epoch`: its parameter row, its rows of
    the optimizer's state (the 0-d entries, such as Adam's step count, in `shared`), its batch
    generator's state and its curves (clones: never views of the group's buffers)."""
    return {
        "epoch": epoch,
        "params": params.clone(),
        "optimizer": {k: v.clone() for k, v in optimizer.items()},
        "shared": {k: v.clone() for k, v in shared.items()},
        "rng": rng,
        "curves": {name: list(values) for name, values in curves.items()},
    }


def optimizer_rows(
    states: Sequence[Mapping[str, Any]], size: int, dtype: torch.dtype
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The optimizer state of members resumed from `states` (all after one epoch): each
    per-member entry as ``[M, size]`` rows, and the 0-d ones (the first member's)."""
    import torch

    names = sorted({name for s in states for name in s["optimizer"]})
    # A member saved without a buffer the others have (SGD without momentum) continues from
    # zeros, which its zero momentum multiplies away.
    rows = {
        name: torch.stack(
            [s["optimizer"].get(name, torch.zeros(size, dtype=dtype)).to(dtype) for s in states]
        )
        for name in names
    }
    shared = {k: v.to(dtype) for k, v in states[0]["shared"].items()}
    return rows, shared
