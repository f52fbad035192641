"""The database schema (SQLAlchemy 2.0 declarative). Only `sweeper.store` imports these classes.

Every change to these tables bumps `SCHEMA_VERSION` and adds a step to
`sweeper.store.migrations`, which upgrades a database the previous release wrote.
Times are Unix seconds (float) so that SQLite and PostgreSQL store them alike.
"""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 2

#: "pruned": stopped early by a searched study's pruner (its curves end at that epoch).
STATES = ("queued", "running", "completed", "failed", "pruned")


class Base(DeclarativeBase):
    pass


class MetaRow(Base):
    """Key/value facts about the database itself, e.g. ``schema_version``."""

    __tablename__ = "sweeper_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class StudyRow(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    task: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(32))
    metric: Mapped[str] = mapped_column(String(100))
    direction: Mapped[str] = mapped_column(String(16))
    # The validated study (canonical JSON of `sweeper.spec.Study`), as last run.
    config: Mapped[str] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    # Provenance of the last run (version 2); NULL for studies an older release wrote.
    sweeper_version: Mapped[str | None] = mapped_column(String(64))
    python_version: Mapped[str | None] = mapped_column(String(64))
    torch_version: Mapped[str | None] = mapped_column(String(64))
    git_commit: Mapped[str | None] = mapped_column(String(64))
    # A user's task file: its hash, and its source so that workers elsewhere can run it.
    code_hash: Mapped[str | None] = mapped_column(Text)
    code: Mapped[str | None] = mapped_column(Text)


class TrialRow(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("study_id", "key", name="uq_trials_study_key"),
        Index("ix_trials_study_state", "study_id", "state", "id"),
        Index("ix_trials_worker", "worker"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    # Trials with equal group keys may be trained together as one batched model.
    group_key: Mapped[str] = mapped_column(Text)
    params: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The claim: who runs it, and until when its lease holds without a heartbeat.
    worker: Mapped[str | None] = mapped_column(String(200))
    host: Mapped[str | None] = mapped_column(String(200))
    pid: Mapped[int | None] = mapped_column(Integer)
    lease_until: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    duration: Mapped[float | None] = mapped_column(Float)
    # The study's metric, copied out of `metrics` so ranking needs no JSON parsing.
    value: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    torch_version: Mapped[str | None] = mapped_column(String(64))
    # Version 2. Last, as ALTER TABLE ADD COLUMN puts them: on SQLite a query reading the
    # columns before a long `log` never reads the log's overflow pages.
    code_hash: Mapped[str | None] = mapped_column(Text)
    log: Mapped[str | None] = mapped_column(Text)


class TrialCurveRow(Base):
    """A trial's per-epoch curves: one JSON text per trial (name -> one value per epoch).

    Their own table, so that a scan of `trials` never reads curve data; one row per trial, not
    per point, so that recording a trial stays one small insert.
    """

    __tablename__ = "trial_curves"

    trial_id: Mapped[int] = mapped_column(
        ForeignKey("trials.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    curves: Mapped[str] = mapped_column(Text)


class ProposalRow(Base):
    """A configuration a searched study's sampler proposed; its trials run it once per seed.

    The trials of a proposal are the study's trials whose ``params`` text equals the proposal's
    (the trial key hashes the same parameters with each seed). Its state and value are never
    stored here: they are derived from those trials, the single source of truth.
    """

    __tablename__ = "proposals"
    __table_args__ = (UniqueConstraint("study_id", "number", name="uq_proposals_study_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    #: 0, 1, 2, ... in the order proposed.
    number: Mapped[int] = mapped_column(Integer)
    #: canonical JSON of the full task parameters (as the trials store them).
    params: Mapped[str] = mapped_column(Text)
    #: the sampler's own values, before mapping (a value below a floor is stored, not 0).
    raw: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
