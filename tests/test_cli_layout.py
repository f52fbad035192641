"""The CLI as a thin face of `sweeper.launch`: Typer's CliRunner sees what a shell user sees,
and options reach the workers (`sweeper worker --data-dir`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sweeper.cli import app

TOY = """
name = "toy"
task = "toy"
metric = "loss"
seeds = 2
[fixed]
epochs = 2
[space]
x = [0.0, 1.0]
"""


def test_cli_runner_sees_the_error_line_and_exit_code(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["status", "toy", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: no sweeper database at {tmp_path / 'none.db'}")


def test_cli_runner_runs_a_study_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy.toml").write_text(TOY)
    runner = CliRunner()
    run = runner.invoke(app, ["run", "toy.toml", "--workers", "1", "--no-progress", "--no-table"])
    assert run.exit_code == 0, run.output
    assert "toy: 4 completed, 0 failed, 0 left" in run.output
    best = runner.invoke(app, ["best", "toy", "--format", "csv"])
    assert best.exit_code == 0 and best.output.splitlines()[1].startswith("1.0,")


def test_worker_uses_its_data_dir(tmp_path: Path) -> None:
    """`sweeper worker --data-dir X` hands X to the tasks (it used to be dropped)."""
    (tmp_path / "toy.toml").write_text(TOY)
    log = tmp_path / "executions.log"
    env = {**os.environ, "SWEEPER_TOY_LOG": str(log), "SWEEPER_DATA_DIR": str(tmp_path / "env")}
    env.pop("SWEEPER_DEBUG", None)

    def sweeper(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sweeper", *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    from sweeper.launch.options import RunOptions
    from sweeper.launch.run import start
    from sweeper.study import Study

    start(Study.from_file(tmp_path / "toy.toml"), str(tmp_path / "r.db"), RunOptions())
    chosen = tmp_path / "chosen"
    work = sweeper(
        "worker", "--db", str(tmp_path / "r.db"), "--workers", "1", "--data-dir", str(chosen)
    )
    assert work.returncode == 0, work.stderr
    dirs = {line.split()[2] for line in log.read_text().splitlines()}
    assert dirs == {str(chosen)}
