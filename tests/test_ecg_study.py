"""End to end: `sweeper data synth-ecg`, then `studies/ecg_smoke.toml` through the real CLI and
executors, then the per-domain table in every format (the CI run of the ECG study)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def sweeper(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweeper", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.slow
def test_ecg_smoke_study_end_to_end(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "COLUMNS": "120",
        "SWEEPER_DATA_DIR": str(tmp_path / "data"),
        "SWEEPER_CACHE_DIR": str(tmp_path / "cache"),
    }
    env.pop("SWEEPER_DEBUG", None)
    db = str(tmp_path / "ecg.db")
    study = str(REPO / "studies" / "ecg_smoke.toml")

    missing = sweeper("run", study, "--db", db, env=env)
    assert missing.returncode == 1
    assert f"sweeper data synth-ecg {tmp_path / 'data' / 'ecg_synth'}" in missing.stderr
    assert not (tmp_path / "ecg.db").exists()

    made = sweeper("data", "synth-ecg", str(tmp_path / "data" / "ecg_synth"),
                   "--records-per-domain", "20", env=env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    run = sweeper("run", study, "--db", db, "--workers", "2", "--no-progress", env=env)
    assert run.returncode == 0, run.stderr
    assert "ecg_smoke: 6 completed, 0 failed, 0 left" in run.stdout
    assert "one trial at a time" in run.stdout
    assert len(list((tmp_path / "cache").glob("ecg-*.npz"))) == 1  # decoded once

    table = sweeper("table", "ecg_smoke", "--db", db, "--layout", "domains", "-f", "markdown",
                    env=env)  # fmt: skip
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("ecg_smoke: macro_f1 (maximize) on the held-out target")
    assert "SYNTHETIC data" in lines[0]
    assert lines[2].replace(" ", "") == "|method\\target|CPSC|PTB-XL|Avg|"
    assert [line.split("|")[1].strip() for line in lines[4:]] == ["baseline", "agereg", "swa"]

    rows = list(csv.DictReader(io.StringIO(
        sweeper("table", "ecg_smoke", "--db", db, "--layout", "domains", "-f", "csv",
                env=env).stdout
    )))  # fmt: skip
    assert len(rows) == 3 * 3 and {r["n"] for r in rows if r["target"] != "Avg"} == {"1"}
    for method in ("baseline", "agereg", "swa"):
        mine = {r["target"]: float(r["mean"]) for r in rows if r["method"] == method}
        assert 0.0 <= mine["CPSC"] <= 1.0
        assert mine["Avg"] == pytest.approx((mine["CPSC"] + mine["PTB-XL"]) / 2)

    runs = json.loads(sweeper("runs", "ecg_smoke", "--db", db, "-f", "json", env=env).stdout)
    assert {r["method"] for r in runs} == {"baseline", "agereg", "swa"}
    assert all("source_f1" in r and "challenge_score" in r for r in runs)
    assert all(("age_mae" in r and r["age_mae"] is not None) == (r["method"] == "agereg")
               for r in runs)  # fmt: skip

    std = sweeper("table", "ecg_smoke", "--db", db, "--layout", "domains", "--agg", "std", env=env)
    assert std.returncode == 1 and "--agg is for --layout grid" in std.stderr
    grid = sweeper("table", "ecg_smoke", "--db", db, env=env)
    assert grid.returncode == 0 and "SYNTHETIC data" in grid.stdout
    bad = sweeper("table", "ecg_smoke", "--db", db, "--layout", "domains", "--cols", "seed",
                  env=env)  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr.strip() == (
        "Error: --layout domains: study 'ecg_smoke' has no axis 'seed' for --cols; "
        "its axes: method, target"
    )


def test_table_layout_errors_are_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "120"}
    env.pop("SWEEPER_DEBUG", None)
    bad = sweeper("table", "x", "--db", str(tmp_path / "none.db"), "--layout", "grids", env=env)
    assert bad.returncode == 2  # a usage error: Typer lists the choices
    assert bad.stderr.strip().splitlines()[-1] == (
        "Error: Invalid value for '--layout': Value error, 'grids' is not one of 'grid', "
        "'domains'."
    )
