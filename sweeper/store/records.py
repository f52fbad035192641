"""The frozen values the store hands out: callers never see ORM rows."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from sweeper.study import Study

#: The per-study provenance columns, in the order `StudyInfo` has them.
PROVENANCE_FIELDS = (
    "sweeper_version",
    "python_version",
    "torch_version",
    "git_commit",
    "code_hash",
    "code",
)


@dataclass(frozen=True)
class WorkerId:
    """Who holds a claim: a unique token plus the host and process, for people and for checks."""

    token: str
    host: str
    pid: int

    @classmethod
    def here(cls) -> WorkerId:
        host, pid = socket.gethostname(), os.getpid()
        return cls(f"{host}:{pid}:{os.urandom(4).hex()}", host, pid)


@dataclass(frozen=True)
class StudyInfo:
    """A stored study, with the provenance of its last run (None where not recorded)."""

    id: int
    study: Study
    created_at: float
    updated_at: float
    sweeper_version: str | None = None
    python_version: str | None = None
    torch_version: str | None = None
    git_commit: str | None = None
    code_hash: str | None = None
    code: str | None = None

    @property
    def name(self) -> str:
        return self.study.name


@dataclass(frozen=True)
class BestConfig:
    """The study's best configuration: the best mean of its metric over the configuration's
    completed seeds, as `sweeper best` ranks first (never the best single trial).

    Attributes:
        params: the configuration's full task parameters (fixed ones included).
        mean: the mean of the metric over its completed trials.
        n: how many completed trials (seeds) the mean is over.
    """

    params: dict[str, Any]
    mean: float
    n: int


@dataclass(frozen=True)
class StudySummary:
    """A study in `sweeper studies`; `best` is `BestConfig.mean` (None before any result)."""

    name: str
    task: str
    kind: str
    metric: str
    direction: str
    counts: dict[str, int]
    best: float | None
    updated_at: float


@dataclass(frozen=True)
class StudyStats:
    """What `sweeper status` shows, computed by the database (no per-trial JSON parsing)."""

    counts: dict[str, int]
    best: BestConfig | None
    mean_duration: float | None
    first_start: float | None
    last_finish: float | None
    running: list[tuple[int, str | None, int | None]]  # id, host, pid (the first ten)
    failed: list[tuple[int, int, str | None]]  # id, attempts, error (the first five)


@dataclass(frozen=True)
class EnqueueReport:
    study_id: int
    added: int
    total: int
    created: bool


@dataclass(frozen=True)
class DeleteReport:
    """The rows `Store.delete_study` removed, by table (the study row itself besides)."""

    trials: int
    curves: int
    proposals: int
