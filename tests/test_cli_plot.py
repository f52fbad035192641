"""`sweeper plot`, `sweeper report` and `sweeper export --format optuna` through Typer's
CliRunner: files written, the numbers drawn equal to the tables printed, the exact error lines."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.cli.plot import KINDS
from tests.fixtures.searched import add_searched_study

ROOT = Path(__file__).resolve().parents[1]
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF-", "svg": b"<svg"}
EXTRA = "Error: plotting needs the plot extra: pip install 'sweeper[plot]'\n"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A copy of the shipped database plus a small searched study (toy_random)."""
    src = ROOT / "results.db"
    if not src.exists():
        pytest.skip("results.db is not shipped in this checkout")
    copy = tmp_path_factory.mktemp("db") / "results.db"
    shutil.copy(src, copy)
    add_searched_study(f"sqlite:///{copy}")
    return str(copy)


def sweeper(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize(
    ("name", "kind", "ext", "extra"),
    [
        ("obesity", "heatmap", "png", []),
        ("obesity_sam200", "heatmap", "svg", []),
        ("ecg_small", "heatmap", "pdf", []),
        ("obesity", "curves", "png", ["--where", "optimizer=adam", "--where", "sam_rho=0"]),
        ("ecg_small", "domains", "svg", []),
        ("toy_random", "history", "pdf", []),
        ("obesity", "parallel", "png", ["--top", "0.25"]),
        ("toy_random", "parallel", "svg", []),
        ("obesity", "importance", "pdf", []),
        ("toy_random", "importance", "png", []),
    ],
)
def test_each_kind_writes_a_valid_file(
    db: str, tmp_path: Path, name: str, kind: str, ext: str, extra: list[str]
) -> None:
    path = tmp_path / f"{name}_{kind}.{ext}"
    result = sweeper("plot", name, "--kind", kind, "-o", str(path), "--db", db, *extra)
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"wrote {path} (") and f"): {kind} of {name}" in result.stderr
    data = path.read_bytes()
    assert 5_000 < len(data) < 5_000_000, len(data)
    head = data[:3000] if ext == "svg" else data[: len(MAGIC[ext])]
    assert MAGIC[ext] in head
    if ext == "svg":
        assert data.rstrip().endswith(b"</svg>")
    if ext == "pdf":
        assert data.rstrip().endswith(b"%%EOF")


@pytest.mark.parametrize("name", ["obesity", "obesity_sam200", "toy_random"])
def test_heatmap_draws_the_numbers_sweeper_table_prints(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    from sweeper import plots
    from sweeper.plots import figure_data

    drawn: list[Any] = []
    draw = plots.plot_study
    monkeypatch.setattr(
        plots, "plot_study", lambda *a, **k: drawn.append(draw(*a, **k)) or drawn[-1]
    )
    result = sweeper("plot", name, "--kind", "heatmap", "-o", str(tmp_path / "h.png"), "--db", db)
    assert result.exit_code == 0, result.output
    table = sweeper("table", name, "--format", "json", "--db", db)
    assert table.exit_code == 0, table.output
    printed = json.loads(table.stdout)
    data = figure_data(drawn[0])
    assert len(data["values"]) == len(printed) >= 1
    for got, t in zip(data["values"], printed, strict=True):
        expected = np.array([[np.nan if v is None else v for v in row] for row in t["values"]])
        np.testing.assert_array_equal(got, expected)
    assert data["groups"] == [t["group"] for t in printed]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("obesity", "--kind", "heatmap", "-o", "x.jpg"),
            "Error: cannot write 'x.jpg': unknown extension '.jpg'; choose one of: png, svg, pdf\n",
        ),
        (
            ("obesity", "--kind", "heatmap", "-o", "x.png", "--top", "2", "--other", "b"),
            "Error: --top is for --kind curves or parallel, not heatmap\n"
            "Error: --top must be a fraction in (0, 1], e.g. 0.25 (got 2)\n"
            "Error: --other is for --kind history, not heatmap\n",
        ),
        (
            ("obesity", "--kind", "curves", "-o", "x.png", "--where", "optimizer"),
            "Error: --where 'optimizer': write KEY=VALUE, e.g. --where optimizer=adam\n",
        ),
        (
            ("obesity", "--kind", "history", "-o", "x.png"),
            "Error: study 'obesity' is a grid; the history is for searched studies (kind tpe or "
            "random)\n",
        ),
        (
            ("obesity", "--kind", "domains", "-o", "x.png"),
            "Error: study 'obesity' has no 'method' and 'target' axes for per-domain bars; its "
            "axes: optimizer, lr, weight_decay, sam_rho\n",
        ),
    ],
)
def test_bad_plot_arguments_are_one_error_line_each(
    db: str, args: tuple[str, ...], message: str
) -> None:
    result = sweeper("plot", *args, "--db", db)
    assert result.exit_code == 1
    assert result.stderr == message
    assert not Path("x.png").exists()


def test_help_lists_the_kinds_of_the_registry() -> None:
    from sweeper.plots import PLOTS

    assert list(KINDS) == list(PLOTS)
    result = sweeper("plot", "--help")
    assert result.exit_code == 0
    assert "--kind <heatmap|curves|domains|history|parallel|importance>" in " ".join(
        result.stdout.split()
    )


def test_an_unknown_kind_is_a_usage_error_listing_the_kinds(db: str) -> None:
    result = sweeper("plot", "obesity", "--kind", "pie", "-o", "x.png", "--db", db)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: Invalid value for '--kind' / '-k': Value error, 'pie' is not one of 'heatmap', "
        "'curves', 'domains', 'history', 'parallel', 'importance'."
    )
    assert not Path("x.png").exists()


def test_without_the_plot_extra_one_line_names_it(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    result = sweeper("plot", "obesity", "--kind", "heatmap", "-o", str(tmp_path / "h.png"))
    assert (result.exit_code, result.stderr) == (1, EXTRA)
    monkeypatch.setitem(sys.modules, "plotly", None)
    result = sweeper("report", "obesity", "-o", str(tmp_path / "r.html"), "--db", db)
    assert result.exit_code == 1
    assert (
        result.stderr
        == "Error: the HTML report needs the plot extra: pip install 'sweeper[plot]'\n"
    )
    assert not (tmp_path / "h.png").exists() and not (tmp_path / "r.html").exists()


def test_report_writes_the_page_and_says_where(db: str, tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    result = sweeper("report", "obesity", "obesity_sam200", "-o", str(path), "--db", db)
    assert result.exit_code == 0, result.output
    size = path.stat().st_size
    assert result.stderr == (
        f"wrote {path} ({size / 1e6:.1f} MB): obesity, obesity_sam200; open it in any browser\n"
    )
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count('class="figure heatmap"') == 9
    bad = sweeper("report", "obesity", "-o", str(tmp_path / "r.pdf"), "--db", db)
    assert bad.exit_code == 1
    assert bad.stderr == (
        f"Error: cannot write '{tmp_path / 'r.pdf'}': the report is HTML; give a file ending "
        "in .html\n"
    )


def test_export_optuna_equals_sweeper_best(db: str, tmp_path: Path) -> None:
    import optuna

    path = tmp_path / "optuna.db"
    result = sweeper("export", "obesity", "--format", "optuna", "-o", str(path), "--db", db)
    assert result.exit_code == 0, result.output
    url = f"sqlite:///{path}"
    assert result.stderr == (
        f"wrote 192 configurations of obesity to {url}: one Optuna trial each\n"
        "per-epoch intermediate values left out: add --curves for them (slower)\n"
        f"open it with: pip install optuna-dashboard; optuna-dashboard {url}\n"
    )
    best = sweeper("best", "obesity", "--top", "1000", "--format", "json", "--db", db)
    ranked = json.loads(best.stdout)
    axes = ["optimizer", "lr", "weight_decay", "sam_rho"]
    expected = {tuple(r[a] for a in axes): r["mean"] for r in ranked}
    study = optuna.load_study(study_name="obesity", storage=url)
    assert len(study.trials) == len(expected) == 192
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert abs(t.value - expected[tuple(t.params[a] for a in axes)]) <= 1e-12
    assert study.best_value == pytest.approx(ranked[0]["mean"], abs=1e-12)
    fig = optuna.visualization.plot_parallel_coordinate(study)
    assert list(fig.layout.xaxis.ticktext) == [
        "Objective Value",
        *sorted(axes),
    ]

    again = sweeper("export", "obesity", "--format", "optuna", "-o", str(path), "--db", db)
    assert again.exit_code == 1 and "already holds a study named 'obesity'" in again.stderr
    into_results = sweeper("export", "obesity", "--format", "optuna", "-o", db, "--db", db)
    assert into_results.stderr == (
        f"Error: {db} exists and is not an Optuna storage; give a new file, e.g. -o optuna.db\n"
    )


def test_export_optuna_to_a_url_with_intermediate_values(db: str, tmp_path: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'dash.db'}"
    result = sweeper("export", "toy_random", "--to", url, "--curves", "--db", db)  # optuna implied
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="toy_random", storage=url)
    assert len(study.trials) == 12  # the failed trial's configuration has its other seed
    assert all(len(t.intermediate_values) == 5 for t in study.trials)
    assert isinstance(study.trials[0].distributions["lr"], optuna.distributions.FloatDistribution)
    assert study.trials[0].distributions["lr"].log


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--format", "optuna"),
            "Error: --format optuna writes an Optuna storage: give a SQLite file with --output "
            "optuna.db, or a SQLAlchemy URL with --to (one of them)\n",
        ),
        (
            ("--format", "csv", "--to", "sqlite:///x.db"),
            "Error: --to is for --format optuna; give a file with --output FILE\n",
        ),
    ],
)
def test_bad_export_arguments(db: str, args: tuple[str, ...], message: str) -> None:
    result = sweeper("export", "obesity", *args, "--db", db)
    assert (result.exit_code, result.stderr) == (1, message)
