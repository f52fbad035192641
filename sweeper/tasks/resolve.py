"""From a study to the task that trains its trials.

A study names a built-in task (`sweeper.tasks.REGISTRY`), a task an installed package
registers under the ``sweeper.tasks`` entry-point group, a user's function
(``task = "train.py:train"`` or ``"mypkg.training:train"``), or a command (``command = [...]``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from sweeper.errors import SweeperError
from sweeper.tasks import get_task
from sweeper.tasks.base import Task

if TYPE_CHECKING:
    from sweeper.code import CodeIdentity
    from sweeper.study import Study

#: the task name a command study stores (its command is part of the study).
COMMAND = "command"


class CodeChangedError(SweeperError):
    """The user's code differs from the code a study's trials ran."""


def task_for(study: Study, *, code: str | None = None) -> Task:
    """The task that trains `study`'s trials.

    Args:
        code: a function file's source as stored with the study: when given, the task is
            built from it (so a worker anywhere runs exactly the code the study hashed), with
            the study file's directory on `sys.path` where that directory exists.

    Raises:
        UnknownNameError: a named task that is neither built in nor installed.
        TaskLoadError: a user's function that cannot be loaded (one line naming the file).
    """
    metric = study.metric
    prune_curve = (study.prune_on or metric) if study.pruner else None
    if study.command:
        from sweeper.tasks.command import CommandTask

        return CommandTask(
            list(study.command),
            Path(study.base_dir or "."),
            metric,
            study.timeout,
            prune_curve,
            trials_dir=trials_dir(study),
        )
    if ":" not in study.task:
        return get_task(study.task)
    from sweeper.tasks.function import FunctionTask, parse_target
    from sweeper.tasks.model.task import as_model_task  # a ModelSpec target batches

    module, fn_name, is_file = parse_target(study.task)
    base = Path(study.base_dir or ".")
    if code is not None and is_file:
        params_name = None
        if study.params_model is not None:
            params_file, params_name, _ = parse_target(study.params_model)
            if params_file != module:
                raise SweeperError(
                    f"params {study.params_model!r}: a stored function file's Params must be "
                    f"in the same file ({module})"
                )
        directory = (base / module).parent
        function = FunctionTask.from_source(
            code,
            module,
            fn_name,
            metric=metric,
            trials_dir=trials_dir(study),
            params_name=params_name,
            prune_curve=prune_curve,
            source_dir=directory if directory.is_dir() else None,
        )
        return as_model_task(function)
    function = FunctionTask.load(
        study.task,
        base,
        metric=metric,
        trials_dir=trials_dir(study),
        params=study.params_model,
        prune_curve=prune_curve,
    )
    return as_model_task(function)


def code_identity(study: Study) -> CodeIdentity | None:
    """The hash (and, for a function file, the source) of the user's code; None for a
    built-in task or a command whose program is not a file.

    Raises:
        TaskLoadError: the code cannot be read.
    """
    from sweeper.code import command_identity, function_identity

    if study.command:
        return command_identity(list(study.command), Path(study.base_dir or "."))
    if ":" not in study.task:
        return None
    return function_identity(study.task, Path(study.base_dir or "."))


def verify_source(study: Study, source: str, sha256: str) -> None:
    """Check that a stored function file's source is the code the study hashed.

    Raises:
        CodeChangedError: it is not.
    """
    if hashlib.sha256(source.encode("utf-8")).hexdigest() != sha256:
        raise CodeChangedError(
            f"the stored source of {study.task.rpartition(':')[0]} does not match its hash "
            f"{sha256[:12]}: start the study again"
        )


def trials_dir(study: Study) -> Path:
    """Where a study's trial directories (`sweeper.Trial.dir`) go: ``$SWEEPER_TRIALS_DIR``
    if set, else ``sweeper-trials`` beside the study file, else the user data directory
    (`sweeper.data.user_data_dir`); then ``<study name>/``."""
    root = os.environ.get("SWEEPER_TRIALS_DIR")
    if root:
        return Path(root) / study.name
    if study.base_dir and Path(study.base_dir).is_dir():
        return Path(study.base_dir) / "sweeper-trials" / study.name
    from sweeper.data import user_data_dir

    return user_data_dir() / "trials" / study.name
