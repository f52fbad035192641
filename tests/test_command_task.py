"""A user's command as a task: placeholders, reports on stdout, failures, timeouts, pruning, and
no child process left behind."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sweeper.code import CodeIdentity, command_identity
from sweeper.tasks import command
from sweeper.tasks.base import RunContext, TrialInput, TrialOutcome
from sweeper.tasks.command import CommandTask
from sweeper.tasks.command_template import (
    CommandTemplateError,
    format_value,
    placeholders,
    render,
    template_problems,
)

REPO = Path(__file__).resolve().parents[1]


def script(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def task(
    tmp_path: Path,
    *args: str,
    timeout: float | None = 30.0,
    prune_curve: str | None = None,
    grace_s: float = 5.0,
) -> CommandTask:
    """A command running `sys.executable` with `args`, in `tmp_path`."""
    argv = [sys.executable, *args]
    return CommandTask(
        argv, tmp_path, "val_loss", timeout, prune_curve, grace_s, trials_dir=tmp_path / "trials"
    )


def trial(trial_id: int, **params: object) -> TrialInput:
    return TrialInput(trial_id, f"key{trial_id}", params, seed=trial_id + 100)


def run(t: CommandTask, trials: list[TrialInput], ctx: RunContext) -> list[TrialOutcome]:
    return list(t.run(trials, ctx))


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def ctx(tmp_path: Path) -> RunContext:
    return RunContext(data_dir=tmp_path / "data", device="cpu")


TRAIN = """\
import json, os, sys

args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
lr = float(args["--lr"])
print("starting", sys.argv[1:])
print("a warning on stderr", file=sys.stderr)
for step in range(1, 4):
    print(json.dumps({"step": step, "train_loss": lr / step}))
env = {k: v for k, v in os.environ.items() if k.startswith("SWEEPER_")}
with open(os.path.join(os.environ["SWEEPER_TRIAL_DIR"], "env.json"), "w") as f:
    json.dump(env, f)
print(json.dumps({"val_loss": 9.0}))
print(json.dumps({"val_loss": lr * 2, "val_acc": 0.5}))
print("done")
"""


def test_completed_trial_reads_curves_metrics_and_keeps_the_log(
    tmp_path: Path, ctx: RunContext
) -> None:
    script(tmp_path, "train.py", TRAIN)
    beats: list[int] = []
    ctx = RunContext(data_dir=ctx.data_dir, device="cuda:0", heartbeat=lambda: beats.append(1))
    t = task(tmp_path, "train.py", "--lr", "{lr}", "--seed", "{seed}", "--name", "{name}")
    [out] = run(t, [trial(7, lr=0.1, name="a b", flag=True)], ctx)
    assert out.error is None and not out.pruned
    assert out.metrics == {"val_loss": 0.2, "val_acc": 0.5}  # the last final object wins
    assert out.curves == {"train_loss": [0.1, 0.05, 0.1 / 3]}
    assert len(beats) == 3
    # stdout and stderr are read by two threads: their lines interleave in arrival order
    assert out.log is not None
    assert sorted(out.log.splitlines()) == [
        "a warning on stderr",
        "done",
        "starting ['--lr', '0.1', '--seed', '107', '--name', 'a b']",
    ]
    trial_dir = tmp_path / "trials" / "key7"
    env = json.loads((trial_dir / "env.json").read_text())
    assert {k: v for k, v in env.items() if k != "SWEEPER_CACHE_DIR"} == {
        "SWEEPER_TRIAL_ID": "7",
        "SWEEPER_SEED": "107",
        "SWEEPER_TRIAL_DIR": str(trial_dir),
        "SWEEPER_PARAMS": '{"flag": true, "lr": 0.1, "name": "a b"}',
        "SWEEPER_DATA_DIR": str(ctx.data_dir),
        "SWEEPER_DEVICE": "cuda:0",
    }


def test_failures_have_one_line_reasons_and_the_next_trial_runs(
    tmp_path: Path, ctx: RunContext
) -> None:
    script(
        tmp_path,
        "t.py",
        """
        import json, math, sys
        case = sys.argv[1]
        print("working on", case)
        if case == "exit3":
            print("Traceback (most recent call last):", file=sys.stderr)
            print("RuntimeError: out of memory", file=sys.stderr)
            sys.exit(3)
        if case == "nan":
            print(json.dumps({"val_loss": math.nan}))
        if case == "missing":
            print(json.dumps({"loss": 0.1, "acc": 0.9}))
        if case == "badstep":
            print(json.dumps({"step": 1, "loss": "high"}))
        if case == "ok":
            print(json.dumps({"val_loss": 0.5}))
        """,
    )
    t = task(tmp_path, "t.py", "{case}")
    cases = ["exit3", "nometrics", "nan", "missing", "badstep", "ok"]
    outs = run(t, [trial(i, case=c) for i, c in enumerate(cases)], ctx)
    assert [o.error for o in outs] == [
        "command exited with code 3: RuntimeError: out of memory",
        'command printed no final metrics (a JSON object without "step" on stdout)',
        "metric 'val_loss' is nan",
        "returned metrics have no 'val_loss' (returned keys: acc, loss)",
        "bad report on stdout: value of 'loss' must be a real number (got str 'high')",
        None,
    ]
    assert outs[-1].metrics == {"val_loss": 0.5}
    assert outs[0].log is not None and "working on exit3" in outs[0].log
    assert "RuntimeError: out of memory" in outs[0].log


def test_a_missing_program_fails_its_trial(tmp_path: Path, ctx: RunContext) -> None:
    t = CommandTask(
        ["no-such-program-xyz", "{x}"], tmp_path, "val_loss", None, None, trials_dir=tmp_path
    )
    [out] = run(t, [trial(1, x=1)], ctx)
    assert out.error == f"program not found: 'no-such-program-xyz' (cwd {tmp_path})"


HANG = """\
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL ends it
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open("pids", "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
print("sleeping", flush=True)
time.sleep(60)
"""


def test_a_silent_hanging_command_times_out_and_leaves_no_process(
    tmp_path: Path, ctx: RunContext
) -> None:
    script(tmp_path, "hang.py", HANG)
    t = task(tmp_path, "hang.py", timeout=1.0, grace_s=0.5)
    start = time.monotonic()
    [out] = run(t, [trial(1)], ctx)
    elapsed = time.monotonic() - start
    assert out.error == "timed out after 1 s"
    assert out.log == "sleeping"
    assert 1.0 <= elapsed < 5.0
    for pid in map(int, (tmp_path / "pids").read_text().split()):
        assert wait_gone(pid, 1.0), f"process {pid} survived the trial"


def test_pruning_terminates_the_command(tmp_path: Path, ctx: RunContext) -> None:
    script(
        tmp_path,
        "p.py",
        """
        import json, os, time
        with open("pid", "w") as f:
            f.write(str(os.getpid()))
        for step in range(1, 1000):
            print(json.dumps({"step": step * 10, "val_loss": 1.0 / step}))
            time.sleep(0.02)
        """,
    )
    asked: list[tuple[int, int, float]] = []

    def should_prune(trial_id: int, epoch: int, value: float) -> bool:
        asked.append((trial_id, epoch, value))
        return epoch == 3

    ctx = RunContext(data_dir=ctx.data_dir, should_prune=should_prune)
    [out] = run(task(tmp_path, "p.py", prune_curve="val_loss"), [trial(4)], ctx)
    assert out.pruned and out.error is None
    assert out.curves == {"val_loss": [1.0, 0.5, 1 / 3], "val_loss@step": [10.0, 20.0, 30.0]}
    assert asked == [(4, 1, 1.0), (4, 2, 0.5), (4, 3, 1 / 3)]
    assert not alive(int((tmp_path / "pid").read_text()))


def test_an_overlong_line_is_cut_into_the_log_not_parsed(
    tmp_path: Path, ctx: RunContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(command, "MAX_LINE", 100)
    monkeypatch.setattr(command, "LOG_CHARS", 300)
    script(
        tmp_path,
        "long.py",
        """
        import json
        print(json.dumps({"val_loss": 1.0, "pad": "x" * 500}))
        for i in range(60):
            print("line", i)
        print(json.dumps({"val_loss": 2.0}))
        """,
    )
    [out] = run(task(tmp_path, "long.py"), [trial(1)], ctx)
    assert out.metrics == {"val_loss": 2.0}  # the long object was never a report
    assert out.log is not None and len(out.log) <= 300
    assert out.log.endswith("line 59") and "line 10\n" not in out.log


def test_placeholders_are_found_checked_and_rendered() -> None:
    template = ["python", "train.py", "--lr={lr}", "{seed}", "--json={{a}}", "{trial_id}"]
    assert placeholders(template) == {"lr", "seed", "trial_id"}
    assert template_problems(template, ["lr"]) == []
    assert template_problems(["prog", "{lrr}", "{lr:.2f}", "{x"], ["lr"]) == [
        "command[1]: unknown placeholder {lrr}; known: lr, seed, trial_id",
        "command[2]: '{lr:.2f}': only plain {name} placeholders are allowed "
        "(write {{ and }} for literal braces)",
        "command[3]: '{x': expected '}' before end of string",
    ]
    assert template_problems([], []) == ["command: must name a program (an empty list)"]
    assert render(template, {"lr": 1e-05, "seed": 3, "trial_id": 9}) == [
        "python",
        "train.py",
        "--lr=1e-05",
        "3",
        "--json={a}",
        "9",
    ]
    assert [format_value(v) for v in (0.1, 1 / 3, True, None, 7, "s", [1, 2])] == [
        "0.1",
        "0.3333333333333333",
        "true",
        "null",
        "7",
        "s",
        "[1,2]",
    ]
    with pytest.raises(CommandTemplateError, match=r"^command\[1\]: '\{a!r\}'"):
        CommandTask(["prog", "{a!r}"], Path("."), "m", None, None, trials_dir=Path("."))


def test_the_program_file_is_the_code_identity(tmp_path: Path) -> None:
    script(tmp_path, "train.py", "print(1)\n")
    script(tmp_path, "run.sh", "echo 1\n")
    digest = hashlib.sha256(b"print(1)\n").hexdigest()
    assert command_identity(["python", "-u", "train.py", "--lr", "{lr}"], tmp_path) == (
        CodeIdentity(digest, "train.py")
    )
    ident = command_identity(["./run.sh", "train.py"], tmp_path)
    assert ident is not None and ident.path == "./run.sh" and len(ident.short) == 12


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_command_dies_with_a_killed_worker(tmp_path: Path) -> None:
    script(
        tmp_path,
        "child.py",
        """
        import os, time
        with open("child.pid", "w") as f:
            f.write(str(os.getpid()))
        time.sleep(60)
        """,
    )
    script(
        tmp_path,
        "worker.py",
        """
        import sys
        from pathlib import Path
        from sweeper.tasks.base import RunContext, TrialInput
        from sweeper.tasks.command import CommandTask

        here = Path.cwd()
        task = CommandTask([sys.executable, "child.py"], here, "m", None, None, trials_dir=here)
        list(task.run([TrialInput(1, "k", {}, 0)], RunContext(data_dir=here)))
        """,
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    worker = subprocess.Popen([sys.executable, "worker.py"], cwd=tmp_path, env=env)
    try:
        pid_file = tmp_path / "child.pid"
        deadline = time.monotonic() + 20
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and worker.poll() is None, "child never started"
            time.sleep(0.05)
        child = int(pid_file.read_text())
        assert alive(child)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        assert wait_gone(child), "the command outlived its killed worker"
    finally:
        worker.kill()
        worker.wait()
