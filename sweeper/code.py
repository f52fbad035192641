"""Which code a study's trials ran: a sha256 of the user's task file, module or program.

A study that runs a user's code stores this identity with its trials, so a later run can tell
that ``train.py`` changed since, and workers on other hosts can run a function file's stored
source (`CodeIdentity.source`, for `FunctionTask.from_source`).
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sweeper.tasks.function import TaskLoadError, parse_target

#: hex digits of a hash shown to users (48 bits: a collision among a study's versions is moot).
SHORT = 12


@dataclass(frozen=True)
class CodeIdentity:
    """The hash of one code file.

    Attributes:
        sha256: hex digest of the file's bytes.
        path: the file as shown to users (as the study wrote it, or the module's file).
        source: the file's text, for function files (shipped to workers); None otherwise.
    """

    sha256: str
    path: str
    source: str | None = None

    @property
    def short(self) -> str:
        """The first `SHORT` hex digits, for display."""
        return short_hash(self.sha256)


def short_hash(sha256: str) -> str:
    """The first `SHORT` hex digits of a hash, for display."""
    return sha256[:SHORT]


def file_identity(path: Path, shown: str, *, keep_source: bool = False) -> CodeIdentity:
    """The sha256 of `path`'s bytes, shown as `shown`.

    Args:
        keep_source: also return the text (decoded as Python decodes source: UTF-8 unless a
            coding cookie says otherwise).

    Raises:
        TaskLoadError: the file cannot be read.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TaskLoadError(f"cannot read {path}: {exc.strerror or exc}") from exc
    source = importlib.util.decode_source(data) if keep_source else None
    return CodeIdentity(hashlib.sha256(data).hexdigest(), shown, source)


def function_identity(target: str, base_dir: Path) -> CodeIdentity:
    """The code of ``task = "train.py:train"`` (with its source) or ``"mypkg.training:train"``.

    A file is resolved relative to `base_dir` (the study file's directory). A module is found
    without running it (its parent packages are imported); its source is not kept, since
    workers import it themselves.

    Raises:
        TaskLoadError: a malformed target, a missing file or module, or a module without a file.
    """
    module, _, is_file = parse_target(target)
    if is_file:
        path = (base_dir / module).resolve()
        if not path.is_file():
            raise TaskLoadError(f"task file not found: {path}")
        return file_identity(path, module, keep_source=True)
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise TaskLoadError(f"cannot find module {module!r}: {exc}") from exc
    if spec is None:
        raise TaskLoadError(f"cannot find module {module!r}: no module of that name")
    if spec.origin is None or not Path(spec.origin).is_file():
        raise TaskLoadError(f"module {module!r} has no source file to hash")
    return file_identity(Path(spec.origin), spec.origin)


def command_identity(argv: Sequence[str], cwd: Path) -> CodeIdentity | None:
    """The code of a command: its program file, or None when none can be found.

    The program is `argv[0]` when it is a relative path to a file under `cwd` (``./train.sh``),
    else the first later argument that names an existing file (``python train.py`` ->
    ``train.py``; relative to `cwd`, or absolute). Options (``-u``) and items with placeholders
    are skipped. ``python -m package`` has no file: None.
    """
    candidates = [argv[0]] if argv and not Path(argv[0]).is_absolute() else []
    candidates += list(argv[1:])
    for item in candidates:
        if not item or item.startswith("-") or "{" in item:
            continue
        path = cwd / item
        if path.is_file():
            return file_identity(path, item)
    return None
