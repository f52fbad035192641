"""Where a study's results came from: the versions that produced them and the code's commit."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

from sweeper import __version__

#: Seconds `git rev-parse` may take before the commit is recorded as unknown.
GIT_TIMEOUT_S = 2.0


def provenance(study_file: Path | None) -> dict[str, str | None]:
    """The sweeper, Python and torch versions here, and the git commit of the study file.

    Keys are those of `Store.set_provenance` (``sweeper_version``, ``python_version``,
    ``torch_version``, ``git_commit``). torch's version comes from its installed metadata, so
    torch is never imported; None where it is not installed. The commit is ``git rev-parse HEAD``
    run in the study file's directory (the current one without a file); None where that is not
    in a git repository, git is missing, or it takes longer than `GIT_TIMEOUT_S`.
    """
    return {
        "sweeper_version": __version__,
        "python_version": platform.python_version(),
        "torch_version": _torch_version(),
        "git_commit": git_commit(study_file.resolve().parent if study_file else Path.cwd()),
    }


def git_commit(directory: Path) -> str | None:
    """HEAD's commit hash for the repository holding `directory`, or None."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def _torch_version() -> str | None:
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None
