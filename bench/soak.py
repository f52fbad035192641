"""Soak: `sweeper run` killed with SIGKILL at random moments, restarted until the study is done.

Each attempt starts ``python -m sweeper run STUDY`` in its own session (the run and its worker
processes), waits a random time drawn from ``--kill-every LOW HIGH`` seconds, and kills the whole
session with SIGKILL, as a preempted machine or a SLURM time limit would; then starts it again,
until an attempt finishes by itself. Checkpoints go to a private directory of this soak, every
``--checkpoint-every`` seconds. It prints the kills, the total time, the attempts (runs, and
trial attempts as the database counts them), and the epochs trained twice: every epoch trained
is counted through ``$SWEEPER_CHECKPOINT_TRACE`` (`sweeper.checkpoints`), and an epoch is
re-done when it was trained more often than the finished trials' curves have epochs.

With ``--reference`` it first runs the study once without kills (and without checkpoints) into
another database, and checks that every trial's metrics and curves are identical (bit for bit)
after the soak; the exit status is 1 when they are not, or when the study did not complete.

    python bench/soak.py --study studies/obesity.toml --kill-every 3 8
    python bench/soak.py --study studies/ecg_ckpt_smoke.toml --kill-every 3 8 \\
        --data-dir /tmp/ecgdata --workers 2
    python bench/soak.py --study studies/quick.toml --kill-every 1 2 --max-kills 2 --reference
"""

from __future__ import annotations

import argparse
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclass
class SoakResult:
    """What a soak measured.

    Attributes:
        kills: SIGKILLs sent (each to a run that was still going).
        runs: `sweeper run` processes started (kills + the one that finished).
        elapsed: seconds from the first start to the end of the last run.
        trial_attempts: the sum of the trials' ``attempts`` column at the end.
        epochs_trained: epochs trained over all attempts (a member of a batched group counts
            once per epoch), from the trace.
        epochs_needed: the epochs of the finished trials' curves.
        resumed: parts of a run (a trial or a group) that started from a checkpoint.
        states: trials by state at the end, e.g. ``{"completed": 576}``.
        reference_s: seconds of the uninterrupted run (None without one).
        mismatches: trials whose metrics or curves differ from the uninterrupted run's.
        timed_out: the soak stopped at its time limit, the study unfinished.
    """

    kills: int = 0
    runs: int = 0
    elapsed: float = 0.0
    trial_attempts: int = 0
    epochs_trained: int = 0
    epochs_needed: int = 0
    resumed: int = 0
    states: dict[str, int] = field(default_factory=dict)
    reference_s: float | None = None
    mismatches: list[str] = field(default_factory=list)
    timed_out: bool = False

    @property
    def epochs_redone(self) -> int:
        return self.epochs_trained - self.epochs_needed

    @property
    def complete(self) -> bool:
        return set(self.states) == {"completed"}


def soak(
    study: Path,
    workdir: Path,
    *,
    kill_every: tuple[float, float] = (3.0, 8.0),
    checkpoint_every: float = 1.0,
    workers: int = 2,
    max_kills: int | None = None,
    after_checkpoint: bool = False,
    reference: bool = False,
    seed: int = 0,
    extra: Sequence[str] = (),
    timeout_s: float = 3600.0,
    progress: bool = False,
) -> SoakResult:
    """Run the soak of `study` in `workdir` (its databases, checkpoints, trace, logs).

    Args:
        kill_every: each run is killed this many seconds (uniform in the range) after it
            starts, or after it writes its first checkpoint with `after_checkpoint`.
        checkpoint_every: ``--checkpoint-every`` of every run.
        max_kills: after this many kills, the next run is left to finish.
        reference: run the study once without kills first, then compare every trial.
        extra: more arguments for `sweeper run` (e.g. ``--data-dir``).
        timeout_s: stop (killing the run in progress) after this many seconds; the result
            then says `timed_out` and holds the figures so far.
        progress: print a line on stderr after each kill.

    Raises:
        RuntimeError: a run exited with an error.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    result = SoakResult()
    common = ["--workers", str(workers), "--no-progress", "--no-table", *extra]
    env = dict(os.environ)
    env.pop("SWEEPER_DB", None)
    env["SWEEPER_CHECKPOINT_DIR"] = str(workdir / "checkpoints")
    trace = workdir / "trace.txt"
    trace.unlink(missing_ok=True)
    db = workdir / "soak.db"
    db.unlink(missing_ok=True)
    if reference:
        ref_db = workdir / "reference.db"
        ref_db.unlink(missing_ok=True)
        began = time.monotonic()
        args = ["--db", str(ref_db), "--checkpoint-every", "0", *common]
        code = _start(study, args, env, workdir / "reference.log").wait()
        if code != 0:
            raise RuntimeError(f"the reference run failed (exit {code}): {_tail(workdir)}")
        result.reference_s = time.monotonic() - began
    env["SWEEPER_CHECKPOINT_TRACE"] = str(trace)
    args = ["--db", str(db), "--checkpoint-every", str(checkpoint_every), *common]
    began = time.monotonic()
    while True:
        if time.monotonic() - began > timeout_s:
            result.timed_out = True
            break
        result.runs += 1
        started = time.time()
        proc = _start(study, args, env, workdir / f"run{result.runs}.log")
        left = max(1.0, timeout_s - (time.monotonic() - began))
        try:
            if max_kills is not None and result.kills >= max_kills:
                code = proc.wait(timeout=left)
            else:
                delay = min(rng.uniform(*kill_every), left)
                code = _wait_or_kill(proc, delay, after_checkpoint, workdir, started)
        except subprocess.TimeoutExpired:
            _kill(proc)
            result.timed_out = True
            break
        except BaseException:
            _kill(proc)  # the soak itself is stopped (Ctrl-C): leave nothing running
            raise
        if code is None:
            result.kills += 1
            if progress:
                done = _completed(db)
                print(f"run {result.runs}: killed after {time.time() - started:.1f} s; "
                      f"{done} trials completed", file=sys.stderr, flush=True)  # fmt: skip
            continue
        if code != 0:
            raise RuntimeError(f"run {result.runs} failed (exit {code}): {_tail(workdir)}")
        break
    result.elapsed = time.monotonic() - began
    from sweeper.study import load_study

    name = load_study(study).name
    _count(result, name, db, trace)
    if reference and not result.timed_out:
        result.mismatches = _compare(name, workdir / "reference.db", db)
    return result


def _start(
    study: Path, args: Sequence[str], env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sweeper", "run", str(study), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            start_new_session=True,  # its own process group: the kill takes its workers too
        )


def _wait_or_kill(
    proc: subprocess.Popen[bytes],
    delay: float,
    after_checkpoint: bool,
    workdir: Path,
    started: float,
) -> int | None:
    """The run's exit status if it ends first; None when it was killed."""
    if after_checkpoint:
        while proc.poll() is None and not _checkpoint_since(workdir / "checkpoints", started):
            time.sleep(0.05)
    try:
        return proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        pass
    _kill(proc)
    return None


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the run's whole process group, and wait until every process of it is gone, so
    that the next run finds its workers dead and re-queues their trials at once."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    proc.wait()
    for _ in range(200):
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)


def _completed(db: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute("SELECT count(*) FROM trials WHERE state = 'completed'").fetchone()
    except sqlite3.Error:
        return -1
    return int(row[0])


def _checkpoint_since(root: Path, started: float) -> bool:
    try:
        return any(p.stat().st_mtime >= started for p in root.rglob("state.pt"))
    except OSError:
        return False


def _tail(workdir: Path) -> str:
    logs = sorted(workdir.glob("*.log"), key=lambda p: p.stat().st_mtime)
    return logs[-1].read_text(errors="replace")[-2000:] if logs else ""


def _count(result: SoakResult, name: str, db: Path, trace: Path) -> None:
    """Fill in the database's and the trace's figures."""
    from sweeper.store import Store

    with Store(f"sqlite:///{db}") as store:
        frame = store.frame(store.study(name).id)
        curves = store.curves(frame["id"].tolist())
    result.states = {str(k): int(v) for k, v in frame["state"].value_counts().items()}
    result.trial_attempts = int(frame["attempts"].sum())
    # Every built-in task reports one value per epoch in each of its curves.
    result.epochs_needed = sum(len(next(iter(c.values()))) for c in curves.values() if c)
    first: dict[tuple[str, str], int] = {}
    if trace.exists():
        for line in trace.read_text().splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue  # a line cut by the kill
            pid, epoch, members = parts[0], int(parts[1]), int(parts[2])
            result.epochs_trained += members
            part = (pid, parts[3] if len(parts) > 3 else "")
            first[part] = min(first.get(part, epoch), epoch)
    result.resumed = sum(1 for epoch in first.values() if epoch > 1)


def _compare(name: str, ref_db: Path, db: Path) -> list[str]:
    """Trials (by key) whose metrics or curves differ between the two databases."""
    from sweeper.store import Store

    def load(path: Path) -> dict[str, tuple[dict[str, float], dict[str, list[float]]]]:
        with Store(f"sqlite:///{path}") as store:
            frame = store.frame(store.study(name).id)
            curves = store.curves(frame["id"].tolist())
        metrics = list(frame.attrs.get("metrics", []))
        out = {}
        for row in frame.to_dict("records"):
            values = {m: row[m] for m in metrics if not _missing(row[m])}
            out[str(row["key"])] = (values, curves.get(int(row["id"])) or {})
        return out

    want, got = load(ref_db), load(db)
    bad = [key for key in want if key not in got or got[key] != want[key]]
    bad += [key for key in got if key not in want]
    return bad


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, required=True, help="the study file")
    parser.add_argument(
        "--kill-every", nargs=2, type=float, default=(3.0, 8.0), metavar=("LOW", "HIGH"),
        help="kill each run after a uniform random LOW..HIGH seconds (default 3 8)",
    )  # fmt: skip
    parser.add_argument("--checkpoint-every", type=float, default=1.0, metavar="SECONDS")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-kills", type=int, default=None, help="then let a run finish")
    parser.add_argument(
        "--after-checkpoint", action="store_true",
        help="count each run's delay from its first checkpoint (every run makes progress)",
    )  # fmt: skip
    parser.add_argument(
        "--reference", action="store_true",
        help="run once without kills first and check that every result is identical",
    )  # fmt: skip
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0, help="of the kill times")
    parser.add_argument(
        "--timeout", type=float, default=3600.0, metavar="SECONDS",
        help="give up after this long (the figures so far are printed; exit status 1)",
    )  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary one")
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sweeper-soak-"))
    extra = ["--data-dir", str(args.data_dir)] if args.data_dir else []
    low, high = args.kill_every
    result = soak(
        args.study.resolve(),
        workdir,
        kill_every=(low, high),
        checkpoint_every=args.checkpoint_every,
        workers=args.workers,
        max_kills=args.max_kills,
        after_checkpoint=args.after_checkpoint,
        reference=args.reference,
        seed=args.seed,
        extra=extra,
        timeout_s=args.timeout,
        progress=True,
    )
    trials = sum(result.states.values())
    redone = result.epochs_redone
    share = redone / result.epochs_needed if result.epochs_needed else 0.0
    reference = f" (uninterrupted: {result.reference_s:.1f} s)" if result.reference_s else ""
    states = ", ".join(f"{n} {s}" for s, n in sorted(result.states.items()))
    lines = [
        f"soak of {args.study}: SIGKILL every {low:g}-{high:g} s, checkpoints every "
        f"{args.checkpoint_every:g} s, {args.workers} workers (work dir {workdir})",
        f"  kills            {result.kills}",
        f"  total time       {result.elapsed:.1f} s{reference}",
        f"  attempts         {result.runs} runs; {result.trial_attempts} trial attempts for "
        f"{trials} trials",
        f"  epochs           {result.epochs_trained} trained, {result.epochs_needed} needed: "
        f"{redone} re-done ({share:.1%}); {result.resumed} trials or groups resumed from "
        "a checkpoint",
        f"  trials           {states}",
    ]
    if result.timed_out:
        lines.append(f"  GAVE UP after {args.timeout:g} s: the study did not finish")
    ok = result.complete and not result.timed_out
    if args.reference and not result.timed_out:
        same = not result.mismatches
        lines.append(
            f"  vs uninterrupted {'identical' if same else 'DIFFERENT'}: "
            f"{trials - len(result.mismatches)} of {trials} trials bit for bit"
        )
        ok = ok and same
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
