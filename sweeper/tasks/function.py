"""A task that calls a user's function: ``task = "train.py:train"`` or ``"mypkg.training:train"``.

The function is called as ``fn(params, seed, trial)`` once per trial and returns its final
metrics (a dict of name -> number). A file target is resolved relative to the study file's
directory and imported under a unique module name, with its directory on `sys.path` so that
sibling modules import; a module target is imported as usual. Workers on other hosts build the
task from the stored source text instead (`FunctionTask.from_source`).

Every failure of a trial becomes a failed outcome with a one-line reason; the next trial runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import linecache
import sys
import sysconfig
import traceback
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sweeper.errors import SweeperError
from sweeper.tasks.base import RunContext, TrialInput, TrialOutcome
from sweeper.trial import Trial, TrialPruned, check_metrics

if TYPE_CHECKING:
    from pydantic import BaseModel

#: a reason longer than this is cut (the full traceback is in the outcome's log).
MAX_REASON = 300
#: the traceback kept in a failed outcome's log is cut to its last this many characters.
MAX_LOG = 8192
_SWEEPER_DIR = Path(__file__).resolve().parents[1]


class TaskLoadError(SweeperError):
    """A user's task function (or its Params model) cannot be loaded; the message names it."""


def parse_target(target: str) -> tuple[str, str, bool]:
    """Split ``"train.py:train"`` / ``"mypkg.training:train"`` into (module part, name, is_file).

    A module part is a file when it ends with ``.py`` or contains a path separator.

    Raises:
        TaskLoadError: not of the form ``module:name``.
    """
    module, sep, name = target.rpartition(":")
    if not sep or not module or not name.isidentifier():
        raise TaskLoadError(
            f"task {target!r} must be 'file.py:function' or 'package.module:function'"
        )
    is_file = module.endswith(".py") or "/" in module or "\\" in module
    return module, name, is_file


class FunctionTask:
    """Calls a user's function once per trial (see the module docstring).

    Attributes:
        name: the target as the study wrote it, e.g. ``"train.py:train"``.
        fn: the user's function.
        params_model: a pydantic model of the parameters (``fn.Params`` or given explicitly),
            or None; the study validator checks the study's parameters with it.
        metrics: empty: the metrics are known only once a trial returns them, so the study's
            metric is checked at run time.
        validation_curve: the curve a pruner judges (`Trial.report`), or None.
    """

    supports_batching: ClassVar[bool] = False

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        metric: str,
        trials_dir: Path,
        source_dir: Path | None = None,
        source_file: str | None = None,
        prune_curve: str | None = None,
        params_model: type[BaseModel] | None = None,
    ) -> None:
        """Args:
        fn: the user's function; checked to accept (params, seed, trial).
        name: how to name it in messages.
        metric: the study's metric, which every completed trial must return.
        trials_dir: each trial's directory is ``trials_dir / <trial key>`` (`Trial.dir`).
        source_dir: the directory of the user's file: frames under it name the failing line,
            and it is on `sys.path` while a trial runs (so lazy sibling imports work).
        source_file: the user's file as frames name it, when there is no `source_dir`
            (`from_source`).
        prune_curve: the reported curve the study's pruner judges (None: no pruning).
        params_model: overrides ``fn.Params``.

        Raises:
            TaskLoadError: `fn` is not callable, or does not accept three positional arguments.
        """
        _check_signature(fn, name)
        self.name = name
        self.fn = fn
        self.metric = metric
        self.trials_dir = trials_dir
        self.source_dir = source_dir
        #: what each trial's checkpoints hold, and a hash of the code that writes them beyond
        #: the study's (a model task's training loop: `sweeper.tasks.model.checkpoints`).
        self.checkpoint_kind, self.checkpoint_code = "function", ""
        self.source_file = source_file
        self.validation_curve = prune_curve
        found = getattr(fn, "Params", None)
        self.params_model = params_model if params_model is not None else _as_model(found)
        self.metrics: tuple[str, ...] = ()

    @classmethod
    def load(
        cls,
        target: str,
        base_dir: Path,
        *,
        metric: str,
        trials_dir: Path,
        params: str | None = None,
        prune_curve: str | None = None,
    ) -> FunctionTask:
        """Import `target` (``"train.py:train"`` relative to `base_dir`, or ``"pkg.mod:fn"``).

        Args:
            params: where the Params model is, e.g. ``"train.py:Params"`` (same rules; the
                file is imported once when it is the task's file). None: ``fn.Params`` if any.
            metric, trials_dir, prune_curve: see `__init__`.

        Raises:
            TaskLoadError: one line naming the path: file or module missing, an error while
                importing it, no such function, not callable, wrong signature, bad Params.
        """
        modules: dict[str, tuple[types.ModuleType, Path | None]] = {}
        fn, source_dir = _resolve(target, base_dir, modules)
        model = None
        if params is not None:
            found, _ = _resolve(params, base_dir, modules)
            model = _as_model(found, params)
        return cls(
            fn,
            name=target,
            metric=metric,
            trials_dir=trials_dir,
            source_dir=source_dir,
            prune_curve=prune_curve,
            params_model=model,
        )

    @classmethod
    def from_source(
        cls,
        source: str,
        filename: str,
        fn_name: str,
        *,
        metric: str,
        trials_dir: Path,
        params_name: str | None = None,
        prune_curve: str | None = None,
        source_dir: Path | None = None,
    ) -> FunctionTask:
        """Build the task from a file's stored source text (on a host without the file).

        `source_dir`: the file's directory where it exists on this host: on `sys.path` while
        the source executes and trials run, so that sibling modules import.

        The source is executed as a module whose ``__file__`` is `filename`, so tracebacks and
        reasons name it as the study's host did. Sibling modules must be importable there.

        Raises:
            TaskLoadError: the source fails to execute, or `fn_name` / `params_name` is missing.
        """
        digest = hashlib.sha256(f"{filename}\0{source}".encode()).hexdigest()[:12]
        module = types.ModuleType(_module_name(Path(filename).stem, digest))
        module.__file__ = filename
        # Tracebacks (in the outcome's log) show the lines though no file is on this host.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        sys.modules[module.__name__] = module
        try:
            with _on_path(source_dir):
                exec(compile(source, filename, "exec"), module.__dict__)
        except Exception as exc:
            sys.modules.pop(module.__name__, None)
            reason = _one_line(exc, None, filename)
            raise TaskLoadError(f"error while importing {filename}: {reason}") from exc
        fn = _attribute(module, fn_name, filename)
        model = None
        if params_name is not None:
            model = _as_model(_attribute(module, params_name, filename), params_name)
        return cls(
            fn,
            name=f"{filename}:{fn_name}",
            metric=metric,
            trials_dir=trials_dir,
            source_dir=source_dir,
            source_file=filename,
            prune_curve=prune_curve,
            params_model=model,
        )

    def pruning_problem(self, fixed: Mapping[str, Any]) -> str | None:
        if self.validation_curve is None:
            return "no curve to prune on: name the curve the function reports (prune_curve)"
        return None

    def group_key(self, params: Mapping[str, Any]) -> str:
        return ""

    def member_bytes(self, params: Mapping[str, Any]) -> int:
        return 0

    def check_data(self, params: Mapping[str, Any], data_dir: Path) -> None:
        return None

    def run(self, trials: Sequence[TrialInput], ctx: RunContext) -> Iterator[TrialOutcome]:
        """Call the function once per trial; yield each outcome as soon as it is known.

        Completed: the returned metrics (checked by `check_metrics`). Failed: a one-line reason
        such as ``ValueError: boom (train.py:12 in train)``, the traceback in `log`. Pruned:
        `TrialPruned` was raised; metrics are the curves' last values. Curves are always kept.
        A `sys.exit` in the user's code fails its trial too; KeyboardInterrupt propagates
        (the worker re-queues the trial, and its checkpoint stays for the next attempt).
        Each trial's `Trial.checkpoint` goes to ``ctx.checkpoints`` (the study's code hash is
        in its header); it is deleted once the trial's outcome is recorded.
        """
        for item in trials:
            trial = Trial(
                item.trial_id,
                item.seed,
                item.params,
                data_dir=ctx.data_dir,
                dir=self.trials_dir / item.key,
                device=ctx.device,
                heartbeat=ctx.heartbeat,
                should_prune=ctx.should_prune,
                prune_curve=self.validation_curve,
                checkpoint=(
                    ctx.checkpoints.trial(item.key, self.checkpoint_kind, self.checkpoint_code)
                    if ctx.checkpoints is not None
                    else None
                ),
            )
            outcome = self._run_one(item, trial)
            if outcome.error is not None:
                trial.discard_checkpoint()  # a failed trial keeps no checkpoint
            yield outcome
            trial.discard_checkpoint()  # only now: the worker has recorded the outcome

    def _run_one(self, item: TrialInput, trial: Trial) -> TrialOutcome:
        try:
            with _on_path(self.source_dir):
                returned = self.fn(dict(item.params), item.seed, trial)
        except TrialPruned:
            return TrialOutcome(
                item.trial_id, metrics=trial.last_values(), curves=trial.curves, pruned=True
            )
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's errors fail the trial
            return TrialOutcome(
                item.trial_id,
                curves=trial.curves,
                error=_one_line(exc, self.source_dir, self.source_file),
                log="".join(traceback.format_exception(exc))[-MAX_LOG:],
            )
        if returned is None:
            return TrialOutcome(
                item.trial_id,
                curves=trial.curves,
                error=f"{self.name} returned None; return the metrics, e.g. "
                f"{{{self.metric!r}: 0.12}}",
            )
        try:
            metrics = check_metrics(returned, self.metric)
        except ValueError as exc:
            return TrialOutcome(item.trial_id, curves=trial.curves, error=str(exc))
        return TrialOutcome(item.trial_id, metrics=metrics, curves=trial.curves)


def _resolve(
    target: str, base_dir: Path, modules: dict[str, tuple[types.ModuleType, Path | None]]
) -> tuple[Any, Path | None]:
    """The object `target` names, and the directory of its source (for error locations)."""
    module_part, name, is_file = parse_target(target)
    if module_part not in modules:
        modules[module_part] = (
            _import_file(base_dir / module_part, module_part)
            if is_file
            else _import_module(module_part)
        )
    module, source_dir = modules[module_part]
    return _attribute(module, name, module_part), source_dir


def _import_file(path: Path, shown: str) -> tuple[types.ModuleType, Path]:
    path = path.resolve()
    if not path.is_file():
        raise TaskLoadError(f"task file not found: {path}")
    # One name per file path: two studies' train.py never collide, and the module is in
    # sys.modules (dataclasses and pydantic look their module up there to resolve annotations).
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    name = _module_name(path.stem, digest)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TaskLoadError(f"cannot import {path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    _forget_shadowed(path.parent)
    try:
        with _on_path(path.parent):
            spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise TaskLoadError(
            f"error while importing {shown}: {_one_line(exc, path.parent, None)}"
        ) from exc
    return module, path.parent


def _forget_shadowed(directory: Path) -> None:
    """Drop imported modules that a sibling of the task file would shadow (as with
    ``python train.py``), unless they are installed ones.

    Without this, a process that loads two studies' ``train.py`` (tests, a notebook) would give
    the second one the first one's ``helper.py``.
    """
    installed = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    siblings = {p.stem for p in directory.glob("*.py")}
    siblings |= {p.parent.name for p in directory.glob("*/__init__.py")}
    for name in [n for n in sys.modules if n.partition(".")[0] in siblings]:
        file = getattr(sys.modules[name], "__file__", None)
        if not file:
            continue
        where = Path(file).resolve()
        if where.is_relative_to(directory) or any(where.is_relative_to(p) for p in installed):
            continue
        if "site-packages" in where.parts or "dist-packages" in where.parts:
            continue
        del sys.modules[name]


def _import_module(name: str) -> tuple[types.ModuleType, Path | None]:
    try:
        module = importlib.import_module(name)
    except Exception as exc:
        raise TaskLoadError(f"cannot import module {name!r}: {_one_line(exc, None, None)}") from exc
    file = getattr(module, "__file__", None)
    return module, Path(file).resolve().parent if file else None


def _attribute(module: types.ModuleType, name: str, shown: str) -> Any:
    if not hasattr(module, name):
        functions = sorted(
            k
            for k, v in vars(module).items()
            if inspect.isfunction(v) and v.__module__ == module.__name__ and not k.startswith("_")
        )
        hint = f"; its functions: {', '.join(functions)}" if functions else ""
        raise TaskLoadError(f"{shown} has no {name!r}{hint}")
    return getattr(module, name)


def _check_signature(fn: object, name: str) -> None:
    if not callable(fn):
        raise TaskLoadError(f"{name} is not callable (it is a {type(fn).__name__})")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin without a signature: let the call tell
    try:
        signature.bind(None, None, None)
    except TypeError:
        raise TaskLoadError(
            f"{name} must accept 3 positional arguments (params, seed, trial); "
            f"its signature is {signature}"
        ) from None


def _as_model(found: object, where: str | None = None) -> type[BaseModel] | None:
    """`found` when it is a pydantic model class; None when absent; an error otherwise."""
    from pydantic import BaseModel

    if found is None and where is None:
        return None
    if isinstance(found, type) and issubclass(found, BaseModel):
        return found
    raise TaskLoadError(f"{where or 'Params'} is not a pydantic model (it is {found!r:.60})")


def _module_name(stem: str, digest: str) -> str:
    safe = "".join(c if c.isalnum() else "_" for c in stem)
    return f"_sweeper_task_{safe}_{digest}"


@contextlib.contextmanager
def _on_path(directory: Path | None) -> Iterator[None]:
    """`directory` first on `sys.path` for the duration (no-op for None)."""
    if directory is None:
        yield
        return
    entry = str(directory)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _one_line(exc: BaseException, source_dir: Path | None, source_file: str | None) -> str:
    """``ValueError: boom (train.py:12 in train)``: the type, the message's first line, and
    the innermost frame in the user's code (a file under `source_dir`, or `source_file`), else
    the innermost frame outside the standard library."""
    lines = str(exc).strip().splitlines()
    message = lines[0] if lines else ""
    if len(lines) > 1:
        message += " ..."
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if len(text) > MAX_REASON:
        text = text[: MAX_REASON - 3] + "..."
    where = _user_frame(exc, source_dir, source_file)
    return f"{text} ({where})" if where else text


def _user_frame(exc: BaseException, source_dir: Path | None, source_file: str | None) -> str | None:
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{_shown(exc.filename, source_dir)}:{exc.lineno}"
    # Frames of the standard library (importlib's, frozen or not) and of sweeper itself (a
    # rejected `trial.report`) mean nothing to a user: the line that called them does.
    hidden = (Path(sysconfig.get_paths()["stdlib"]), _SWEEPER_DIR)
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith("<")
        and not any(Path(f.filename).is_relative_to(h) for h in hidden)
    ]
    mine = [
        f
        for f in frames
        if f.filename == source_file
        or (source_dir is not None and _is_user_file(f.filename, source_dir))
    ]
    frames = mine or frames[-1:]
    if not frames:
        return None
    frame = frames[-1]
    return f"{_shown(frame.filename, source_dir)}:{frame.lineno} in {frame.name}"


def _is_user_file(filename: str, source_dir: Path) -> bool:
    path = Path(filename)
    if "site-packages" in path.parts or "dist-packages" in path.parts:
        return False  # a virtual environment inside the project is not the user's code
    return path.is_absolute() and path.is_relative_to(source_dir)


def _shown(filename: str, source_dir: Path | None) -> str:
    path = Path(filename)
    if source_dir is not None and path.is_absolute() and path.is_relative_to(source_dir):
        return str(path.relative_to(source_dir))
    return path.name if path.is_absolute() else filename
