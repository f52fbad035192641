"""Checkpoints: a running trial's training state, saved now and then, so a re-queued trial resumes.

Where they live: ``<root>/<study>/<trial key>/state.pt``, the root being
``$SWEEPER_CHECKPOINT_DIR``, else ``$SWEEPER_CACHE_DIR/checkpoints``, else the user cache
(``$XDG_CACHE_HOME/sweeper/checkpoints``, ``~/.cache/sweeper/checkpoints``). Every directory is
created private (mode 700). A trial key hashes the task, the parameters and the seed, so one
trial's checkpoint is never another trial's; the trial resumes on any worker that sees the root.

Each file is ``torch.save({"header": ..., "state": ...})``, written to a temporary file in the
same directory and renamed over the old one, so a kill at any moment leaves the previous
checkpoint or the new one, never half of one (no fsync: this is against preemption, not power
loss; a torn file fails to load and the trial starts over). It is read back with
``torch.load(weights_only=True)``, which rebuilds tensors, numbers, strings and containers and
never runs code from the file, and only when the file and its directory belong to this user and
no one else can write them. The header names the format, the trial key, the kind of state
(which task, which implementation), a hash of the code that wrote it and torch's version; a
checkpoint whose header differs from what the loader expects (another version of the code,
another precision, another trial) is deleted, never loaded.

When to save is a `Cadence`: every `CheckpointPolicy.every_s` seconds (`sweeper run
--checkpoint-every`, default 60) and/or every `every_epochs` epochs, asked once per epoch.
Tasks remove a trial's checkpoint once its outcome is recorded, or as soon as it fails.

For benchmarks, ``$SWEEPER_CHECKPOINT_TRACE`` names a file to which every `Cadence` appends
one line per trained epoch (``pid epoch members label``): `bench/soak.py` counts the epochs a
run trained twice from it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: environment variable: the checkpoint root (overrides the cache default).
ROOT_ENV = "SWEEPER_CHECKPOINT_DIR"
#: environment variable: a file to append one line per trained epoch to (benchmarks).
TRACE_ENV = "SWEEPER_CHECKPOINT_TRACE"
#: seconds between two checkpoints of a trial by default (`sweeper run --checkpoint-every`).
DEFAULT_EVERY_S = 60.0
#: version of the file layout; part of every header.
FORMAT = 1
STATE_FILE = "state.pt"


def checkpoint_root() -> Path:
    """The directory under which every study's checkpoints live (see the module docstring)."""
    explicit = os.environ.get(ROOT_ENV)
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("SWEEPER_CACHE_DIR")
    if cache:
        return Path(cache).expanduser() / "checkpoints"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "sweeper" / "checkpoints"


@functools.cache
def source_hash(*paths: Path) -> str:
    """16 hex digits of sha256 over the Python and C sources under `paths` (files or folders).

    A built-in task puts it in its checkpoints' headers: a checkpoint written by other
    training code is never loaded.
    """
    digest = hashlib.sha256()
    for root in paths:
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for file in files:
            if file.suffix in (".py", ".c", ".h") and file.is_file():
                digest.update(str(file.relative_to(root.parent)).encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class CheckpointPolicy:
    """Where one study's trials keep their checkpoints, and how often they save.

    Attributes:
        directory: the study's directory, ``<root>/<study name>``.
        every_s: seconds between saves (0: no time-based saves).
        every_epochs: epochs between saves (0: no epoch-based saves).
        code: the identity of the study's own code (a user function's hash), or "".
    """

    directory: Path
    every_s: float = DEFAULT_EVERY_S
    every_epochs: int = 0
    code: str = ""

    @classmethod
    def for_study(
        cls,
        study: str,
        *,
        every_s: float = DEFAULT_EVERY_S,
        every_epochs: int = 0,
        code: str | None = None,
        root: Path | None = None,
    ) -> CheckpointPolicy | None:
        """The policy of study `study` under `root` (default `checkpoint_root`); None when
        neither a time nor an epoch interval is set (checkpoints off)."""
        if not every_s > 0 and every_epochs <= 0:
            return None
        safe = study if _is_safe_name(study) else hashlib.sha256(study.encode()).hexdigest()[:16]
        return cls(
            (root or checkpoint_root()) / safe,
            every_s=every_s if every_s > 0 else 0.0,
            every_epochs=max(0, every_epochs),
            code=code or "",
        )

    def trial(self, key: str, kind: str, code: str = "") -> TrialCheckpoint:
        """The checkpoint of the trial `key` holding state of `kind` written by `code`."""
        return TrialCheckpoint(self, key, kind, code)

    def cadence(self, members: int = 1, label: str = "") -> Cadence:
        """A fresh clock deciding when a trial (or a group of `members`) saves next."""
        return Cadence(self, members, label)


class Cadence:
    """When to save next: call `epoch_done` after every epoch, `saved` after saving."""

    def __init__(self, policy: CheckpointPolicy, members: int = 1, label: str = "") -> None:
        self.policy, self.members, self.label = policy, members, label
        self.last = time.monotonic()
        self.saves = 0
        self._trace = os.environ.get(TRACE_ENV)

    def epoch_done(self, epoch: int) -> bool:
        """Whether a checkpoint is due after `epoch` (1-based) was trained."""
        if self._trace:
            with contextlib.suppress(OSError), open(self._trace, "a") as f:
                f.write(f"{os.getpid()} {epoch} {self.members} {self.label}\n")
        every = self.policy.every_epochs
        if every and epoch % every == 0:
            return True
        return bool(self.policy.every_s) and time.monotonic() - self.last >= self.policy.every_s

    def saved(self) -> None:
        """Start the next interval now."""
        self.last = time.monotonic()
        self.saves += 1


class TrialCheckpoint:
    """The checkpoint file of one trial: `load`, `save` (atomic) and `remove`.

    Never raises for a bad, foreign or unwritable checkpoint: a checkpoint only saves time, so
    such a file is logged and ignored, and the trial trains from the start.
    """

    def __init__(self, policy: CheckpointPolicy, key: str, kind: str, code: str = "") -> None:
        self.policy = policy
        self.key = key
        self.dir = policy.directory / (key if _is_safe_name(key) else _digest(key))
        self.path = self.dir / STATE_FILE
        self.header = {
            "format": FORMAT,
            "key": key,
            "kind": kind,
            "code": f"{policy.code}/{code}",
            "torch": _torch_version(),
        }

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none or it must not be used (then deleted)."""
        import torch

        if not self.path.is_file():
            return None
        if not (_private(self.dir) and _private(self.path)):
            log.warning(
                "ignoring checkpoint %s: not owned by this user or writable by others", self.path
            )
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a torn or foreign file: train from the start
            log.warning("ignoring unreadable checkpoint %s (%s)", self.path, exc)
            self.remove()
            return None
        if not isinstance(saved, dict) or saved.get("header") != self.header:
            got = saved.get("header") if isinstance(saved, dict) else None
            log.warning(
                "ignoring checkpoint %s: written for %s, not %s", self.path, got, self.header
            )
            self.remove()
            return None
        state = saved.get("state")
        return state if isinstance(state, dict) else None

    def save(self, state: Mapping[str, Any]) -> bool:
        """Write `state` atomically (temporary file, then rename); whether it was written.

        Tensors must not be views of larger ones (torch.save would write the whole storage):
        pass clones. A failure to write (disk full, read-only root) is logged, not raised.
        """
        import torch

        try:
            _make_private_dirs(self.dir)
            fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=self.dir)
        except OSError as exc:
            log.warning("cannot write checkpoint %s (%s)", self.path, exc)
            return False
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save({"header": self.header, "state": dict(state)}, f)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot write checkpoint %s (%s)", self.path, exc)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return False
        return True

    def remove(self) -> None:
        """Delete the trial's checkpoint directory (nothing happens when there is none)."""
        shutil.rmtree(self.dir, ignore_errors=True)


def _make_private_dirs(path: Path) -> None:
    """Create `path` and its missing parents, each with mode 700 (existing ones are left)."""
    missing = []
    for p in [path, *path.parents]:
        if p.exists():
            break
        missing.append(p)
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):
            p.mkdir(mode=0o700)


def _private(path: Path) -> bool:
    """Whether `path` belongs to this user and neither its group nor others may write it."""
    try:
        info = path.stat()
    except OSError:
        return False
    owner_ok = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    return owner_ok and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _is_safe_name(name: str) -> bool:
    return (
        0 < len(name) <= 100
        and name[0].isalnum()
        and all(c.isalnum() or c in "_.-" for c in name)
        and name.isascii()
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@functools.cache
def _torch_version() -> str:
    import torch

    return str(torch.__version__)
