"""Command-line conventions: nothing cut in pipes, --version, -h, choices listed and checked
(exit 2), --precision, NO_COLOR, logging verbosity, global options after the command."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from sweeper.cli import choices, hoist_global_options

ROOT = Path(__file__).resolve().parents[1]


def sweeper(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "60", **(env or {})}
    full_env.pop("SWEEPER_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "sweeper", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A copy of the shipped results (tests never write results.db)."""
    path = tmp_path_factory.mktemp("conventions") / "results.db"
    shutil.copy(ROOT / "results.db", path)
    return str(path)


def test_piped_listings_are_never_cut(db: str) -> None:
    # A narrow terminal width (COLUMNS=60) must not matter when stdout is a pipe.
    studies = sweeper("studies", "--db", db)
    runs = sweeper("runs", "obesity", "--db", db)
    for result in (studies, runs):
        assert result.returncode == 0, result.stderr
        assert "…" not in result.stdout
        assert not any(ch in result.stdout for ch in "┏┃━│└"), "no box glyphs in a pipe"
        assert all(line == line.rstrip() for line in result.stdout.splitlines())
    lines = studies.stdout.splitlines()
    assert lines[0].split() == [
        "study", "task", "kind", "completed", "total", "failed", "running", "metric", "best",
        "updated",
    ]  # fmt: skip
    assert any(line.split()[:6] == ["obesity", "obesity", "grid", "576", "576", "0"]
               for line in lines)  # fmt: skip
    assert "obesity_sam200" in studies.stdout and "ecg_small" in studies.stdout
    header = runs.stdout.splitlines()[0].split()
    assert header[:4] == ["id", "state", "optimizer", "lr"]
    assert len(runs.stdout.splitlines()) == 576 + 1


def test_numbers_have_four_significant_digits_unless_precision(db: str) -> None:
    four = sweeper("best", "obesity", "--top", "1", "--format", "markdown", "--db", db)
    six = sweeper("best", "obesity", "--top", "1", "--format", "markdown", "--db", db,
                  "--precision", "6")  # fmt: skip
    assert four.returncode == 0 and six.returncode == 0, four.stderr + six.stderr
    best = "| adam      | 0.003 |         0.01 |       0 | 0.7637 | 0.004268 | 0.007392 |   3 |"
    assert best in four.stdout
    assert "| 0.76373 | 0.0042676 | 0.0073917 |" in six.stdout
    bad = sweeper("--precision", "0", "best", "obesity", "--db", db)
    assert bad.returncode == 2 and "--precision" in bad.stderr


def test_version_and_short_help() -> None:
    from sweeper import __version__

    version = sweeper("--version")
    assert (version.returncode, version.stdout) == (0, f"sweeper {__version__}\n")
    for args in (["-h"], ["table", "-h"], ["run", "-h"]):
        result = sweeper(*args)
        assert result.returncode == 0 and result.stdout.startswith("Usage: sweeper"), args


@pytest.mark.parametrize(
    ("args", "option", "choices"),
    [
        (["table", "obesity", "--format", "html"], "--format",
         "'rich', 'markdown', 'csv', 'latex', 'json'"),
        (["table", "obesity", "--layout", "rows"], "--layout", "'grid', 'domains'"),
        (["table", "obesity", "--agg", "median"], "--agg",
         "'mean', 'std', 'sem', 'min', 'max', 'count'"),
        (["run", "quick", "--mode", "fast"], "--mode", "'auto', 'batched', 'per-trial', 'trial'"),
        (["run", "quick", "--backend", "slurm"], "--backend", "'local', 'dask'"),
    ],
)  # fmt: skip
def test_a_bad_choice_exits_2_and_lists_the_choices(
    args: list[str], option: str, choices: str, db: str
) -> None:
    before = Path(db).read_bytes()
    result = sweeper(*args, "--db", db)
    assert result.returncode == 2, result.stderr
    assert f"Invalid value for '{option}'" in result.stderr
    assert f"is not one of {choices}." in result.stderr
    assert "Traceback" not in result.stderr
    assert Path(db).read_bytes() == before


def test_help_lists_the_choices() -> None:
    result = sweeper("table", "--help", env={"COLUMNS": "200"})
    assert "--format <rich|markdown|csv|latex|json>" in result.stdout
    assert "--layout <grid|domains>" in result.stdout
    assert "--select <oracle|source>" in result.stdout


def test_choices_mirror_their_registries() -> None:
    from sweeper.cli.plot import KINDS
    from sweeper.launch.backends import BACKENDS
    from sweeper.launch.options import CODE_CHANGED, MODE_ALIASES, MODES
    from sweeper.plots import PLOTS
    from sweeper.render.domains import SELECTION_TEXT
    from sweeper.render.text import FORMATS
    from sweeper.report.cells import AGGREGATES

    assert set(get_args(choices.Format)) == set(FORMATS)
    assert set(get_args(choices.Mode)) == set(MODES) | set(MODE_ALIASES)
    assert set(get_args(choices.Backend)) == set(BACKENDS)
    assert set(get_args(choices.CodeChanged)) == set(CODE_CHANGED)
    assert set(get_args(choices.Aggregate)) == set(AGGREGATES)
    assert set(get_args(choices.Selection)) == set(SELECTION_TEXT)
    assert set(get_args(choices.PlotKind)) == set(KINDS) == set(PLOTS)


def test_no_color_is_honoured(db: str) -> None:
    # FORCE_COLOR makes Rich treat the pipe as a terminal; NO_COLOR must still win for colours.
    # The best cell of a grid table is bold green in a terminal.
    colored = sweeper("table", "obesity", "--db", db, env={"FORCE_COLOR": "1"})
    plain = sweeper("table", "obesity", "--db", db, env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert colored.returncode == 0 and plain.returncode == 0
    assert "\x1b[32m" in colored.stdout or "\x1b[1;32m" in colored.stdout
    assert "\x1b[32m" not in plain.stdout and "\x1b[1;32m" not in plain.stdout


def test_global_options_after_the_command_are_hoisted() -> None:
    assert hoist_global_options(["runs", "obesity", "--precision", "6", "-q"]) == [
        "--precision", "6", "-q", "runs", "obesity",
    ]  # fmt: skip
    assert hoist_global_options(["table", "x", "--precision=3", "-vv"]) == [
        "--precision=3", "-vv", "table", "x",
    ]  # fmt: skip
    assert hoist_global_options(["run", "s.toml", "--", "-q"]) == ["run", "s.toml", "--", "-q"]


def test_verbosity_sets_sweepers_log_level() -> None:
    from rich.console import Console

    from sweeper.cli.console import setup_logging

    logger = logging.getLogger("sweeper")
    try:
        for verbosity, level in ((-1, logging.ERROR), (0, logging.WARNING), (2, logging.DEBUG)):
            setup_logging(verbosity, Console(stderr=True))
            assert logger.level == level
            assert sum(h.get_name() == "sweeper-cli" for h in logger.handlers) == 1
    finally:
        setup_logging(0, Console(stderr=True))


def test_logs_go_to_stderr_and_quiet_silences_warnings(tmp_path: Path) -> None:
    code = (
        "import logging, sys\n"
        "from sweeper.cli.console import setup_logging\n"
        "from rich.console import Console\n"
        "setup_logging(int(sys.argv[1]), Console(stderr=True))\n"
        "logging.getLogger('sweeper.x').warning('careful')\n"
        "logging.getLogger('sweeper.x').info('detail')\n"
    )
    cases = (
        ("0", "WARNING sweeper.x: careful\n"),
        ("-1", ""),
        ("1", "WARNING sweeper.x: careful\nINFO sweeper.x: detail\n"),
    )
    for verbosity, want in cases:
        result = subprocess.run([sys.executable, "-c", code, verbosity], capture_output=True,
                                text=True, timeout=60)  # fmt: skip
        assert (result.stdout, result.stderr) == ("", want)
