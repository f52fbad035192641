"""The one decision on how a study's trials are trained: batched groups or one model a trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sweeper.errors import SweeperError
from sweeper.launch.options import RunOptions, WorkerOptions
from sweeper.study import Study
from sweeper.tasks import Task


def batching(study: Study, task: Task, mode: str) -> bool:
    """Whether trials of `study` are trained as batched groups under `mode`.

    A pruned study is trained per trial in every mode unless its task can stop one member of
    a batched group epoch by epoch (``prunes_in_groups``: model tasks).

    Raises:
        SweeperError: `mode` is ``batched`` but the task cannot batch, or the study prunes and
            the task cannot prune inside a group.
    """
    if mode == "batched" and not task.supports_batching:
        raise SweeperError(
            f"task {study.task!r} cannot train trials as one batched model; "
            "use --mode per-trial (or auto)"
        )
    pruned_apart = bool(study.pruner) and not getattr(task, "prunes_in_groups", False)
    if mode == "batched" and pruned_apart:
        raise SweeperError(
            f"study {study.name!r} prunes trials epoch by epoch, which a batched group cannot; "
            "use --mode per-trial (or auto)"
        )
    return mode != "per-trial" and task.supports_batching and not pruned_apart


def worker_options(
    study: Study, task: Task, options: RunOptions, data_dir: Path | None
) -> tuple[WorkerOptions, str]:
    """Worker options for `study`, and a few words saying how its trials will be trained.

    Args:
        data_dir: the data directory workers use; None lets each worker resolve its own
            ($SWEEPER_DATA_DIR, else its user cache), as remote workers must.
    """
    batched = batching(study, task, options.mode)
    group_size = 1
    if batched:
        # Bounded by --group-size and by the memory budget of one worker.
        per_member = max(1, task.member_bytes(example_params(study, task)))
        group_size = max(1, min(options.group_size, options.max_memory_mb * 2**20 // per_member))
    worker = WorkerOptions(
        data_dir=str(data_dir) if data_dir is not None else None,
        threads=options.threads,
        device=options.device,
        batched=batched,
        group_size=group_size,
        lease_s=options.lease_s,
        heartbeat_s=max(1.0, options.lease_s / 6),
        max_retries=options.max_retries,
        checkpoint_every_s=options.checkpoint_every_s,
    )
    mode = f"batched, groups of up to {group_size}" if batched else "one trial at a time"
    return worker, mode


def example_params(study: Study, task: Task) -> dict[str, Any]:
    """One configuration of the study, for checks made before any trial exists."""
    from sweeper.plan import grid
    from sweeper.search import example_params as searched_example

    return searched_example(study) if study.searched else grid(study, task.group_key)[0].params
