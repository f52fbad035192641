"""Typed errors raised by the library; only `sweeper.cli` turns them into text and exit codes."""

from __future__ import annotations


class SweeperError(Exception):
    """Base of every error a user can cause and fix; its message says what to do next."""


class StudyFileError(SweeperError):
    """A study file could not be read or failed validation.

    Attributes:
        problems: every problem found, each already prefixed with the file and field path.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class UnknownNameError(SweeperError):
    """A name that should come from a registry (task, executor, optimizer) is not known."""


class StoreError(SweeperError):
    """The results database cannot be opened or used."""


class SchemaVersionError(StoreError):
    """The database was written by a sweeper with another schema version."""


class UnknownStudyError(SweeperError):
    """No study of that name exists in the database."""


class StudyConflictError(SweeperError):
    """A study file changes the meaning of trials already stored under the same study name."""


class DataError(SweeperError):
    """A dataset is missing, cannot be downloaded, or fails its checksum."""


class TrialDiverged(Exception):
    """A training run produced NaN or inf; the trial is recorded as failed with this reason."""


class MissingExtraError(SweeperError):
    """An optional dependency is not installed; the message names the extra that provides it."""
