"""A worker: claim trials from the database, train them with their task, record each result.

`run_worker` is a module-level function taking only picklable values (a database URL, a study
name, options), so the local supervisor and Dask can ship it to any process or host. Each result is
written the moment the task yields it: a crash loses at most the trials in flight, and those are
re-queued when their lease expires (or at once, by the supervisor of local workers or the next
local run, when their process is gone). On Ctrl-C or SIGTERM (a KeyboardInterrupt, see
`sweeper.launch.signals`) a worker puts every trial it holds back in the queue, without charging
an attempt, and lets the interrupt pass.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sweeper.canonical import canonical_json
from sweeper.checkpoints import CheckpointPolicy
from sweeper.data import resolve_data_dir
from sweeper.launch.modes import batching
from sweeper.launch.options import Job, WorkerOptions
from sweeper.store import Store, StudyInfo, WorkerId
from sweeper.study import Study
from sweeper.tasks.base import RunContext, Task, TrialInput, TrialOutcome
from sweeper.tasks.resolve import code_identity, task_for, verify_source

#: the first wait of a worker that found nothing queued while others still run trials; each
#: next wait doubles, up to `WorkerOptions.poll_s`.
FIRST_IDLE_S = 0.05


@dataclass(frozen=True)
class WorkerReport:
    worker: str
    completed: int
    failed: int
    lost: int  # results not written because the trial was no longer ours (lease lost)
    pruned: int = 0


def run_worker(
    db_url: str, study_name: str, options: WorkerOptions, *, me: WorkerId | None = None
) -> WorkerReport:
    """Claim and run trials of `study_name` until none is queued; return what was done.

    Args:
        me: who claims (default: a new `WorkerId` of this process); a supervisor that names its
            workers can clean up after one that dies.

    Raises:
        KeyboardInterrupt: after every trial this worker held went back to the queue.
    """
    me = me or WorkerId.here()
    with Store(db_url) as store:
        info = store.study(study_name)
        try:
            return _work(store, info, options, me)
        except KeyboardInterrupt:
            release_running(store, info.id, [me])
            raise


def run_jobs(db_url: str, jobs: Sequence[Job], *, me: WorkerId | None = None) -> list[WorkerReport]:
    """`run_worker` on each study of `jobs` in turn (one process start for several studies);
    one report per study."""
    return [run_worker(db_url, name, options, me=me) for name, options in jobs]


def held(
    store: Store, study_id: int, workers: Sequence[WorkerId]
) -> dict[str, list[tuple[int, int]]]:
    """The (id, attempts) of the trials of `study_id` that each worker's process is running.

    Returns:
        worker token -> its running trials (an empty list for a worker running none). One read
        of the study, whatever the number of workers.
    """
    frame = store.frame(study_id, metrics=False)
    running = frame[frame["state"] == "running"]
    found: dict[str, list[tuple[int, int]]] = {}
    for w in workers:
        mine = running[(running["pid"] == w.pid) & (running["host"] == w.host)]
        found[w.token] = [
            (int(i), int(a)) for i, a in zip(mine["id"], mine["attempts"], strict=True)
        ]
    return found


def release_running(store: Store, study_id: int, workers: Sequence[WorkerId]) -> int:
    """Put every trial these workers are running back in the queue, not as an attempt.

    The trials are found in the database, not in a worker's memory: a signal can land between
    a claim's commit and the moment the worker holds its result. Only trials still running
    under a worker's token move (compare-and-set), so calling this twice is harmless.

    Returns:
        How many trials went back to the queue.
    """
    trials = held(store, study_id, workers)
    return sum(store.release(w, [t for t, _ in trials[w.token]]) for w in workers)


def _work(store: Store, info: StudyInfo, options: WorkerOptions, me: WorkerId) -> WorkerReport:
    """`run_worker`'s loop: claim, train, record, until the study has nothing left to run."""
    completed = failed = lost = pruned = 0
    task = _task(info)
    torch_version = _limit_threads(options.threads, commands=bool(info.study.command))
    # Asked-for batching still yields to the study (a pruned study is trained per trial unless
    # its task prunes inside groups), whoever built these options: the same rule as `sweeper run`'s.
    batched = options.batched and batching(info.study, task, "auto")
    data_dir = resolve_data_dir(Path(options.data_dir) if options.data_dir else None)
    search = (
        _Search(store, info.id, info.study, task, options.group_size if batched else 1)
        if info.study.searched
        else None
    )
    ctx = RunContext(
        data_dir=data_dir,
        device=options.device,
        batched=batched,
        should_prune=search.should_prune if search else RunContext.should_prune,
        heartbeat=_Beat(store, me, options).touch,
        checkpoints=CheckpointPolicy.for_study(
            info.study.name, every_s=options.checkpoint_every_s, code=info.code_hash
        ),
    )
    stop = threading.Event()
    beat = threading.Thread(
        target=_heartbeat,
        args=(store, me, options, stop),
        name="sweeper-heartbeat",
        daemon=True,
    )
    beat.start()
    claims = 0
    idle = min(FIRST_IDLE_S, options.poll_s)
    try:
        while options.max_claims is None or claims < options.max_claims:
            _exit_if_orphaned(options)
            trials = store.claim(
                info.id,
                me,
                limit=options.group_size if batched else 1,
                share=options.share,
                lease_s=options.lease_s,
                cost=getattr(task, "group_cost", None) if batched else None,
            )
            if not trials and search is not None and search.ask():
                continue  # the sampler proposed more configurations
            if not trials:
                # Nothing queued. Stay while other workers still run trials: if one of
                # them dies, its trials come back to the queue when their lease expires,
                # and this worker finishes them. Leave once nothing is running.
                if not options.linger or store.counts(info.id)["running"] == 0:
                    break
                # Short waits first: the last group usually ends soon after this worker ran
                # out of work, and the run ends only when every worker has left.
                time.sleep(idle)
                idle = min(2 * idle, options.poll_s)
                continue
            idle = min(FIRST_IDLE_S, options.poll_s)
            claims += 1
            if search is not None:
                search.watch(trials)
            for out in _outcomes(task, trials, ctx, store, me):
                written = store.record(
                    me, [out], info.study.metric, torch_version, code_hash=info.code_hash
                )
                if written == 0:
                    lost += 1
                elif out.error is not None:
                    failed += 1
                elif out.pruned:
                    pruned += 1
                    if search is not None:
                        search.pruned(out.trial_id)
                else:
                    completed += 1
    finally:
        stop.set()
        beat.join()
    return WorkerReport(me.token, completed, failed, lost, pruned)


def _limit_threads(threads: int, *, commands: bool) -> str | None:
    """Give training code in this process `threads` intra-op threads; torch's version.

    A command's program is another process: it gets ``OMP_NUM_THREADS`` (unless set) and this
    worker never imports torch, which keeps a command trial's overhead small.
    """
    if commands:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        from importlib import metadata

        try:
            return metadata.version("torch")
        except metadata.PackageNotFoundError:
            return None
    import torch

    torch.set_num_threads(threads)
    return str(torch.__version__)


class _Beat:
    """`RunContext.heartbeat`: a task's sign of life renews this worker's leases at once when
    the heartbeat thread last did so more than `heartbeat_s` ago (a busy interpreter can starve
    that thread); otherwise it costs a clock read."""

    def __init__(self, store: Store, me: WorkerId, options: WorkerOptions) -> None:
        self.store, self.me, self.options = store, me, options
        self.last = time.monotonic()

    def touch(self) -> None:
        now = time.monotonic()
        if now - self.last >= self.options.heartbeat_s:
            self.last = now
            # A missed beat is retried by the heartbeat thread; the lease has slack for it.
            with contextlib.suppress(Exception):
                self.store.heartbeat(self.me, self.options.lease_s)


def _task(info: StudyInfo) -> Task:
    """The study's task, running exactly the code the study was started with.

    A function file runs from the source stored with the study (so a worker in any directory or
    on any host can run it), verified against its hash; a module or a command program must hash
    as the study recorded.

    Raises:
        CodeChangedError: the code here is not the code the study's trials ran.
    """
    study = info.study
    if info.code is not None and info.code_hash is not None:
        verify_source(study, info.code, info.code_hash)
        return task_for(study, code=info.code)
    if info.code_hash is not None:
        here = code_identity(study)
        if here is not None and here.sha256 != info.code_hash:
            from sweeper.tasks.resolve import CodeChangedError

            raise CodeChangedError(
                f"{here.path} on this host is not the code study {study.name!r} runs (code "
                f"{info.code_hash[:12]}, here {here.sha256[:12]}): update it, or run the study "
                "again with --code-changed new-trials"
            )
    return task_for(study)


class _Search:
    """A worker's side of a searched study: asking for configurations, and pruning.

    Every ask and every claimed trial's pruning history is read from the database at that
    moment (`sweeper.search`); nothing here outlives the worker.
    """

    def __init__(
        self, store: Store, study_id: int, study: Study, task: Task, group_size: int = 1
    ) -> None:
        from sweeper.search import ask_size

        self.store, self.study_id, self.study, self.task = store, study_id, study, task
        self.size = ask_size(study, group_size)  # configurations per ask
        # The validation curve is read only when a pruner needs it (curves are large).
        self.curve: str | None = getattr(task, "validation_curve", None) if study.pruner else None
        self.checks: dict[int, Callable[[int, float], bool]] = {}
        self.params: dict[int, str] = {}

    def ask(self) -> int:
        """Propose up to `size` configurations (never past the budget); how many were."""
        from sweeper import search

        study = self.study

        def propose(
            proposals: list[search.Proposal], trials: list[search.TrialResult]
        ) -> list[search.NewProposal]:
            history = search.summarize(study, proposals, trials)
            return search.propose(study, history, self.size, self.task.group_key)

        return self.store.extend_search(
            self.study_id, study.budget or 0, self.size, propose, self.curve
        )

    def watch(self, trials: list[TrialInput]) -> None:
        """Set up a pruning check for each claimed trial, against the history as it is now."""
        self.checks.clear()
        self.params = {t.trial_id: canonical_json(dict(t.params)) for t in trials}
        if self.study.pruner is None:
            return
        from sweeper import search

        proposals = self.store.proposals(self.study_id)
        history = search.summarize(
            self.study, proposals, self.store.search_trials(self.study_id, self.curve)
        )
        raw_of = {canonical_json(p.params): p.raw for p in proposals}
        done = [c for c in history if c.state != search.RUNNING]
        for t in trials:
            raw = raw_of.get(self.params[t.trial_id])
            if raw is not None:
                self.checks[t.trial_id] = search.PruneCheck(self.study, done, raw)

    def should_prune(self, trial_id: int, epoch: int, value: float) -> bool:
        check = self.checks.get(trial_id)
        return check is not None and check(epoch, value)

    def pruned(self, trial_id: int) -> None:
        """A seed was pruned: its configuration is, so its queued seeds need not run."""
        params = self.params.get(trial_id)
        if params is not None:
            self.store.prune_queued(self.study_id, params)


def _outcomes(
    task: Task, trials: list[TrialInput], ctx: RunContext, store: Store, me: WorkerId
) -> Iterator[TrialOutcome]:
    """The task's outcomes, one per trial; a crash fails the unfinished trials, not the worker.

    On Ctrl-C (KeyboardInterrupt) the unfinished trials go back to the queue instead.
    """
    pending = {t.trial_id for t in trials}
    try:
        for out in task.run(trials, ctx):
            if out.trial_id in pending:
                pending.discard(out.trial_id)
                yield out
    except (KeyboardInterrupt, SystemExit):
        store.release(me, sorted(pending))
        raise
    except Exception as exc:  # noqa: BLE001 - any task error fails its trials
        text = _error_text(exc)
        for trial_id in sorted(pending):
            yield TrialOutcome(trial_id, error=text)
        return
    for trial_id in sorted(pending):
        yield TrialOutcome(trial_id, error="the task returned no result for this trial")


def _error_text(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    frames = traceback.format_tb(exc.__traceback__)[-3:]
    return "".join(lines).strip() + "\n" + "".join(frames)


def _exit_if_orphaned(options: WorkerOptions) -> None:
    """End this process at once if the `sweeper run` that started it is gone (kill -9).

    Rather than train on unseen, or claim trials no one will wait for; its running trials are
    re-queued by the next run (this pid will be gone).
    """
    if options.parent_pid is not None and os.getppid() != options.parent_pid:
        os._exit(3)


def _heartbeat(store: Store, me: WorkerId, options: WorkerOptions, stop: threading.Event) -> None:
    """Renew this worker's leases; end the process if the run that started it is gone."""
    ticks = 0
    while not stop.wait(1.0):
        _exit_if_orphaned(options)
        ticks += 1
        if ticks >= options.heartbeat_s:
            ticks = 0
            # A missed beat is retried at the next tick; the lease has slack for it.
            with contextlib.suppress(Exception):
                store.heartbeat(me, options.lease_s)
