"""How much a run may ask for: numeric options within their bounds, local workers within a
multiple of the cores, a study's trials within `RunOptions.max_trials`, a search space its
sampler can draw from. `sweeper.launch.run` asks all of it before anything is written.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from sweeper.errors import SweeperError
from sweeper.launch.options import BOUNDS, MAX_WORKERS_PER_CORE, OPTION_NAMES, RunOptions
from sweeper.study import Study


def check_bounds(options: RunOptions) -> None:
    """Refuse a numeric option outside `BOUNDS`, or more local workers (times threads) than
    `MAX_WORKERS_PER_CORE` per core unless `options.force_workers`. A Dask run's workers are
    the cluster's, not this host's: only their bounds apply.

    Raises:
        SweeperError: naming the option, its value and what is allowed.
    """
    for name, (low, high) in BOUNDS.items():
        value = getattr(options, name)
        if value is not None and not (math.isfinite(value) and low <= value <= high):
            raise SweeperError(
                f"{OPTION_NAMES[name]} {_number(value)}: must be between {_number(low)} and "
                f"{_number(high)}"
            )
    if options.backend == "local" and not options.force_workers:
        cores = os.cpu_count() or 1
        limit = MAX_WORKERS_PER_CORE * cores
        workers = options.workers or cores
        if workers * options.threads > limit:
            raise SweeperError(
                f"--workers {workers} x --threads {options.threads} would start "
                f"{workers * options.threads} worker threads on {cores} cores (at most {limit}: "
                f"{MAX_WORKERS_PER_CORE} per core): run fewer, or add --force-workers to start "
                "them anyway"
            )


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def planned_trials(study: Study) -> tuple[int, str]:
    """How many trials `study` plans at most, and how, in words (``"8 x 5 configurations x 3
    seeds"``), counted without building them: a searched study's budget, or the product of its
    grid's axes, times its seeds."""
    seeds = len(study.seeds)
    times = f"x {seeds:,} seed{'' if seeds == 1 else 's'}"
    if study.searched:
        budget = study.budget or 0
        return budget * seeds, f"a budget of {budget:,} configurations {times}"
    sizes = [len(values) for values in study.axes.values()]
    shape = " x ".join(f"{n:,}" for n in sizes) or "1"
    return math.prod(sizes) * seeds, f"{shape} configurations {times}"


def check_size(study: Study, max_trials: int) -> None:
    """Refuse a study that plans more than `max_trials` trials.

    Raises:
        SweeperError: the message names the count and the option that raises the limit.
    """
    total, how = planned_trials(study)
    if total > max_trials:
        where = f"{study.source}: " if study.source else ""
        raise SweeperError(
            f"{where}study {study.name!r} plans {total:,} trials ({how}), more than the limit "
            f"of {max_trials:,}: shrink its space or seeds, or raise the limit with "
            f"--max-trials {total}"
        )


def check_sampling(study: Study, group_key: Callable[[Any], str]) -> None:
    """Ask the study's sampler for one configuration in memory (nothing is stored): every
    search space the validator passed must be one the sampler can draw from.

    Raises:
        SweeperError: the sampler refused the space; the message gives its reason.
    """
    from sweeper.search import propose

    try:
        propose(study, [], 1, group_key)
    except (ValueError, OverflowError, TypeError) as exc:
        where = f"{study.source}: " if study.source else ""
        raise SweeperError(
            f"{where}space: the {study.kind} sampler cannot draw from it: {exc}"
        ) from None


def check_device(study: Study, task: Any, options: RunOptions) -> None:
    """Refuse a ``--device`` the study's task cannot train on, or (local workers) one this
    machine's torch cannot reach: better one line now than every trial failing with torch's
    error. A command's program brings its own framework, so only its name is checked; torch is
    imported only for a device other than the CPU.

    Raises:
        SweeperError: naming the device and what to do.
    """
    device = options.device
    if device == "cpu":
        return
    kind = device.split(":", 1)[0]
    devices: tuple[str, ...] | None = getattr(task, "devices", None)
    if devices is not None and kind not in devices:
        raise SweeperError(
            f"--device {device}: {study.task!r} trains on {' or '.join(devices)} only; "
            "use --device cpu"
        )
    if study.command:
        return
    import torch

    try:
        torch.device(device)
    except RuntimeError:
        raise SweeperError(
            f"--device {device}: not a torch device; use cpu, cuda or cuda:N"
        ) from None
    if options.backend != "local" or kind != "cuda":
        return  # remote workers resolve their own devices; other kinds fail in the trial
    if not torch.cuda.is_available():
        built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU build"
        raise SweeperError(
            f"--device {device}: torch {torch.__version__} here ({built}) sees no CUDA "
            "device; use --device cpu"
        )
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise SweeperError(
            f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s); "
            f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}"
        )
