"""How a study is run: where its workers run (the backend) and how they train (the mode).

`RunOptions` is what `sweeper run`, `sweeper resume`, `sweeper worker` and `sweeper.run` share;
`sweeper.launch.run.check` validates it before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: most trials one worker trains together by default: with the C kernel a member's cost hardly
#: depends on its group's size, so this only needs to be large enough that workers split a
#: study's groups evenly (obesity: 216-trial groups -> 108 per worker of 2).
DEFAULT_GROUP_SIZE = 256
#: seconds a running trial stays claimed without a heartbeat (the store's default too).
DEFAULT_LEASE_S = 30.0
#: most trials one study may plan (a grid's every configuration times its seeds, a search's
#: budget times its seeds) unless a run raises it: enqueueing a million trials holds SQLite's
#: write lock for minutes, and such a study is almost always a typo.
DEFAULT_MAX_TRIALS = 100_000
#: local worker processes times threads, per core, that a run starts without --force-workers.
MAX_WORKERS_PER_CORE = 4
#: (lowest, highest) value of each numeric option, by `RunOptions` field; `check` enforces them
#: for the CLI and the Python API alike.
BOUNDS: dict[str, tuple[float, float]] = {
    "workers": (1, 1_000_000),
    "threads": (1, 4096),
    "max_retries": (0, 1000),
    "group_size": (1, 1_000_000),
    "max_memory_mb": (16, 1024 * 1024),
    "lease_s": (2.0, 86_400.0),
    "max_trials": (1, 100_000_000),
    "checkpoint_every_s": (0.0, 31_536_000.0),
}
#: the command-line spelling of each bounded field, for messages.
OPTION_NAMES: dict[str, str] = {
    "workers": "--workers",
    "threads": "--threads",
    "max_retries": "--max-retries",
    "group_size": "--group-size",
    "max_memory_mb": "--max-memory",
    "lease_s": "--lease",
    "max_trials": "--max-trials",
    "checkpoint_every_s": "--checkpoint-every",
}

#: mode -> what it asks for. ``auto`` batches where the task supports it and the study does not
#: prune (or the task prunes inside groups, `sweeper.launch.modes.batching`); ``batched``
#: insists (an error where it cannot); ``per-trial`` trains one model a trial.
MODES: dict[str, str] = {
    "auto": "batched where the task supports it, else one model per trial",
    "batched": "a group of compatible trials as one stacked model",
    "per-trial": "one model per trial",
}
#: what a run does when a user's task code changed since the study's trials ran.
CODE_CHANGED: dict[str, str] = {
    "refuse": "stop with an error naming the file (nothing is written)",
    "new-trials": "keep the old results, run what is missing with the new code",
}
#: the names `--executor` (the older spelling of `--mode`) accepted.
MODE_ALIASES = {"trial": "per-trial"}


@dataclass(frozen=True)
class RunOptions:
    """The options of a run.

    Attributes:
        workers: worker processes (None: one per core; dask: one per worker thread).
        threads: torch threads per worker.
        max_retries: a failed trial is re-queued up to this many times by the next run.
        data_dir: dataset directory (None: $SWEEPER_DATA_DIR, else the user cache).
        device: torch device for training.
        backend: where workers run, a key of `sweeper.launch.backends.BACKENDS`.
        scheduler: the Dask scheduler address (backend ``dask`` only).
        mode: how workers train, a key of `MODES` (or an alias in `MODE_ALIASES`).
        group_size: most trials one worker trains together (batched).
        max_memory_mb: memory budget per worker for a batched group.
        lease_s: seconds a running trial stays claimed without a heartbeat.
        code_changed: a key of `CODE_CHANGED`.
        max_trials: most trials the study may plan (see `DEFAULT_MAX_TRIALS`).
        force_workers: start more local workers than `MAX_WORKERS_PER_CORE` allows.
        checkpoint_every_s: seconds between two checkpoints of a running trial (tasks that
            can resume; `sweeper.checkpoints`); 0: none.
    """

    workers: int | None = None
    threads: int = 1
    max_retries: int = 1
    data_dir: Path | None = None
    device: str = "cpu"
    backend: str = "local"
    scheduler: str | None = None
    mode: str = "auto"
    group_size: int = DEFAULT_GROUP_SIZE
    max_memory_mb: int = 1024
    lease_s: float = DEFAULT_LEASE_S
    code_changed: str = "refuse"
    max_trials: int = DEFAULT_MAX_TRIALS
    force_workers: bool = False
    checkpoint_every_s: float = 60.0


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs trials.

    Attributes:
        data_dir: resolved data directory passed to tasks.
        threads: torch intra-op threads in this worker (1: processes, not threads, give
            parallelism for small models).
        batched: train each claimed group as one batched model (if the task supports it).
        group_size: most trials claimed at once (1 for per-trial execution).
        share: how many workers share the study, so that a group is split between them.
        parent_pid: exit as soon as this process is gone (local workers of a killed run).
        max_claims: stop after this many claims (None: until the study is finished).
        poll_s: how often to look again while other workers still run the last trials.
        linger: with nothing queued, stay while other workers still run trials (to finish
            those a dying worker gives back); False moves on at once (to a run's next study:
            the supervisor re-queues a dead worker's trials and its replacement starts there).
        max_retries: a trial whose worker process dies goes back to the queue while its
            attempts are at most this many, and fails after (local workers' supervisor).
        checkpoint_every_s: seconds between two checkpoints of a running trial; 0: none.
    """

    data_dir: str | None  # None: resolved on the worker's host ($SWEEPER_DATA_DIR, cache)
    threads: int = 1
    device: str = "cpu"
    batched: bool = False
    group_size: int = 1
    share: int = 1
    lease_s: float = DEFAULT_LEASE_S
    heartbeat_s: float = 5.0
    parent_pid: int | None = None
    max_claims: int | None = None
    poll_s: float = 1.0
    linger: bool = True
    max_retries: int = 1
    checkpoint_every_s: float = 60.0


#: a study to work on, by name, and how its workers run it. The workers of a run with several
#: studies take them in order: each one's queue until it is empty, then the next's.
Job = tuple[str, WorkerOptions]
