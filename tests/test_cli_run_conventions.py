"""How `sweeper run` ends and what it prints where: exit 3 with the failures summed up on stderr
when trials failed, progress on stderr (plain lines outside a terminal), tables on stdout."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.cli.progress import Snapshot, progress_line
from sweeper.cli.run import EXIT_TRIALS_FAILED, failure_summary
from sweeper.launch.run import RunSummary

TRAIN = """
import time

def train(params, seed, trial):
    time.sleep(params.get("sleep", 0.0))
    if params["lr"] >= 1.0:
        raise ValueError("lr too large")
    if params["lr"] == 0.5 and seed == 1:
        raise RuntimeError("nan loss\\nsecond line")
    return {"loss": params["lr"] + seed}
"""


def study(tmp_path: Path, name: str, space: str, *, seeds: int = 2, fixed: str = "") -> str:
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / f"{name}.toml").write_text(
        f'name = "{name}"\ntask = "train.py:train"\nmetric = "loss"\nseeds = {seeds}\n'
        f"[fixed]\n{fixed}\n[space]\n{space}\n"
    )
    return f"{name}.toml"


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_failed_trials_exit_3_and_stderr_counts_each_reason(tmp_path: Path) -> None:
    file = study(tmp_path, "f", "lr = [0.1, 0.5, 1.0, 2.0]")
    code, out, err = invoke("run", file, "--workers", "1", "--no-progress")
    assert code == EXIT_TRIALS_FAILED == 3
    # Trials 1-2: lr 0.1; 3-4: lr 0.5 (seed 1 fails); 5-8: lr 1 and 2 (all fail).
    assert err == (
        "5 trials failed: ValueError: lr too large (train.py:7 in train) (4), RuntimeError: "
        "nan loss ... (train.py:9 in train) (1); see `sweeper show f 4` (the first) or `sweeper "
        "runs f --state failed`\n"
    )
    assert "f: 3 completed, 5 failed, 0 left; this run took " in out
    # "best" is the best seed mean, as in the table below it (lr 0.5 kept one seed of two)
    assert "best: loss 0.5 (mean of 1 seed) at lr=0.5" in out
    assert "failed" not in out.split("this run took")[1]  # the reasons are on stderr only
    # `show` prints the failed trial's error whole (both lines), after its parameters.
    code, shown, _ = invoke("show", "f", "4")
    assert code == 0
    assert shown.splitlines()[:2] == ["f trial 4: failed", "  parameters: lr=0.5; seed 1"]
    assert "  error: " in shown and "RuntimeError: nan loss" in shown and "second line" in shown
    # Resuming it retries nothing (--max-retries 0) and still says the study failed.
    again = invoke("resume", "f", "--max-retries", "0", "--no-progress", "--no-table")
    assert again[0] == 3 and again[2] == err


def test_a_study_that_completes_exits_0_with_a_last_progress_line(tmp_path: Path) -> None:
    file = study(tmp_path, "ok", "lr = [0.1, 0.5]", seeds=1)
    code, out, err = invoke("run", file, "--workers", "1")
    assert code == 0, err
    # Outside a terminal (the runner's stderr), no bar: a plain line, at least the last one.
    assert re.fullmatch(
        r"ok: 2/2 done, 0 failed, 0 running, \d+\.\ds elapsed, eta 0\.0s, best loss 0\.1\n", err
    ), err
    assert "ok: 2 completed, 0 failed, 0 left" in out
    assert "━" not in out + err


def test_a_study_without_axes_prints_no_table(tmp_path: Path) -> None:
    file = study(tmp_path, "one", "", fixed="lr = 0.25")
    code, out, err = invoke("run", file, "--workers", "1", "--no-progress")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == (
        "one: 2 trials (new study); 2 to run on 1 local workers (one trial at a time)"
    )
    assert lines[1].startswith("one: 2 completed, 0 failed, 0 left; this run took ")
    assert lines[2:] == ["best: loss 0.75 (mean of 2 seeds)"]


EXIT_CODES = (
    "Exit codes: 0 every trial completed; 1 an error (nothing run, or the run stopped); 2 a "
    "usage error; 3 the run finished but trials of the study failed (their errors, grouped, on "
    "stderr); 130 interrupted by Ctrl-C, 143 by SIGTERM (the trials in flight back in the queue)."
)


@pytest.mark.parametrize("command", ["run", "resume"])
def test_the_help_lists_the_exit_codes(command: str) -> None:
    code, out, _ = invoke(command, "--help", env={"COLUMNS": "200"})
    assert code == 0
    assert " ".join(out.split()).count(EXIT_CODES) == 1
    assert "--progress-every" in out and "SWEEPER_PROGRESS_EVERY" in out


def test_progress_every_is_checked_and_read_from_the_environment(tmp_path: Path) -> None:
    file = study(tmp_path, "ok", "lr = [0.1]", seeds=1)
    for args, env in ((["--progress-every", "0.1"], {}), ([], {"SWEEPER_PROGRESS_EVERY": "0.1"})):
        code, _, err = invoke("run", file, *args, env=env)
        assert code == 2 and "--progress-every" in err and "0.5" in err, err
    assert not (tmp_path / "results.db").exists()


def test_the_failure_summary_names_the_most_frequent_reasons() -> None:
    def summary(errors: tuple[tuple[str, int], ...]) -> RunSummary:
        failed = sum(n for _, n in errors)
        return RunSummary("s", "loss", 0, failed, 0, 0, 1.0, None, errors[0][0], errors, 9)

    assert failure_summary(summary((("boom", 1),))) == (
        "1 trial failed: boom (1); see `sweeper show s 9` (the first) or "
        "`sweeper runs s --state failed`"
    )
    many = tuple((f"E{i}", 8 - i) for i in range(8))
    assert failure_summary(summary(many)).startswith(
        "36 trials failed: E0 (8), E1 (7), E2 (6), E3 (5), E4 (4), 3 other errors (6); see "
    )
    assert failure_summary(summary(many[:6])).startswith(
        "33 trials failed: E0 (8), E1 (7), E2 (6), E3 (5), E4 (4), other error (3); see "
    )


def test_a_progress_line() -> None:
    now = Snapshot(done=12, total=32, failed=1, pruned=0, running=2, best=0.81234)
    assert progress_line("quick", now, 6.1, 0, "test_mse") == (
        "quick: 12/32 done, 1 failed, 2 running, 6.1s elapsed, eta 10.2s, best test_mse 0.8123"
    )
    # A resumed run: its pace counts only its own trials; none finished yet, no ETA.
    start = Snapshot(done=20, total=32, failed=0, pruned=3, running=1, best=None)
    assert progress_line("quick", start, 75.0, 20, "test_mse") == (
        "quick: 20/32 done, 0 failed, 3 pruned, 1 running, 1m 15s elapsed, eta -, best -"
    )


LINE = re.compile(
    r"q: (\d+)/12 done, (\d+) failed, (\d+) running, \d+\.\ds elapsed, eta (\S+), best (\S.*)"
)


def test_outside_a_terminal_progress_is_plain_lines_on_stderr(tmp_path: Path) -> None:
    file = study(tmp_path, "q", "lr = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]", fixed="sleep = 0.3")
    env = {**os.environ, "COLUMNS": "200"}
    for name in ("SWEEPER_DEBUG", "SWEEPER_PROGRESS_EVERY", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    run = subprocess.run(
        [sys.executable, "-m", "sweeper", "run", file, "--workers", "1", "--progress-every",
         "0.5", "--max-retries", "0"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    # lr 0.5 seed 1 fails: exit 3, and the reason is the last line on stderr.
    assert run.returncode == 3, run.stdout + run.stderr
    *progress, last = run.stderr.splitlines()
    assert last == (
        "1 trial failed: RuntimeError: nan loss ... (train.py:9 in train) (1); see "
        "`sweeper show q 10` (the first) or `sweeper runs q --state failed`"
    )
    matches = [LINE.fullmatch(line) for line in progress]
    assert all(matches) and len(matches) >= 3, run.stderr
    done = [int(m[1]) for m in matches if m]
    assert done == sorted(done) and done[-1] == 12 and done[0] < 12
    assert matches[-1] and matches[-1].group(2, 3, 4) == ("1", "0", "0.0s")
    assert matches[-1][5].startswith("loss ")
    assert "\x1b[" not in run.stderr  # no bar, no colour
    # stdout: the run's header, summary and table, never a progress line.
    assert not any(LINE.search(line) for line in run.stdout.splitlines())
    lines = run.stdout.splitlines()
    assert lines[0].startswith("q: 12 trials (new study); 12 to run on 1 local workers")
    assert lines[1].startswith("q: 11 completed, 1 failed, 0 left; this run took ")
    assert lines[2] == "best: loss 0.5 (mean of 1 seed) at lr=0.5"
    rows = [line.split()[0] for line in lines[3:] if line.split()]
    assert {"0.1", "0.2", "0.3", "0.4", "0.5", "0.6"} <= set(rows), run.stdout


def test_a_worker_in_a_job_log_prints_progress_lines(tmp_path: Path) -> None:
    """Journey 2: `sweeper worker` on a cluster node writes to a job log, not a terminal; its
    progress must show there as plain lines, not stay silent until the end."""
    from sweeper.launch.options import RunOptions
    from sweeper.launch.run import start
    from sweeper.study import Study

    file = study(tmp_path, "w", "lr = [0.1, 0.2, 0.3, 0.4, 0.6]", fixed="sleep = 0.3")
    db = str(tmp_path / "r.db")
    start(Study.from_file(tmp_path / file), db, RunOptions())  # enqueued, nothing run yet
    env = {**os.environ}
    env.pop("SWEEPER_DEBUG", None)
    result = subprocess.run(
        [sys.executable, "-m", "sweeper", "worker", "--db", db, "--workers", "1",
         "--progress-every", "0.5"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("w: ")]
    assert len(lines) >= 3, result.stderr
    assert re.fullmatch(r"w: 10/10 done, 0 failed, 0 running, .*, best loss 0\.6", lines[-1])
    assert "worker: joining w (" in result.stdout and "w: " not in result.stdout


def test_a_worker_whose_studies_have_failed_trials_exits_3(tmp_path: Path) -> None:
    """A job scheduler sees a worker's failed trials as a failed job, as `run`'s caller does."""
    from sweeper.launch.options import RunOptions
    from sweeper.launch.run import start
    from sweeper.study import Study

    file = study(tmp_path, "wf", "lr = [0.1, 1.0]", seeds=1)
    db = str(tmp_path / "r.db")
    start(Study.from_file(tmp_path / file), db, RunOptions())
    code, out, err = invoke("worker", "--db", db, "--workers", "1", "--no-progress")
    assert code == EXIT_TRIALS_FAILED, err
    assert "worker: nothing left to do (worked on 1 studies)" in out
    assert err.startswith("1 trial failed: ValueError: lr too large") and "sweeper runs wf" in err
    code, _, _ = invoke("worker", "--db", db, "--workers", "1", "--no-progress")
    assert code == 0  # nothing left to do: it worked on no study this time
    help_code, shown, _ = invoke("worker", "--help", env={"COLUMNS": "200"})
    assert help_code == 0 and "3 it finished but a study it worked on has failed trials" in (
        " ".join(shown.split())
    )

