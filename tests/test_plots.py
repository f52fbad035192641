"""`sweeper.plots`: each kind writes png, svg and pdf and draws the tables' numbers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from sweeper.errors import SweeperError, UnknownNameError
from sweeper.plots import PLOTS, PlotFormatError, figure_data, history, plot_study, save
from sweeper.plots.configs import configurations
from sweeper.plots.parallel import parallel
from sweeper.store import Store

ROOT = Path(__file__).resolve().parents[1]
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF"}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    src = ROOT / "results.db"
    if not src.exists():
        pytest.skip("results.db is not shipped in this checkout")
    copy = tmp_path_factory.mktemp("db") / "results.db"
    shutil.copy(src, copy)
    return f"sqlite:///{copy}"


def _check_files(fig: object, tmp_path: Path, stem: str) -> None:
    for ext in ("png", "svg", "pdf"):
        path = save(fig, tmp_path / f"{stem}.{ext}")  # type: ignore[arg-type]
        data = path.read_bytes()
        assert 5_000 < len(data) < 5_000_000, (stem, ext, len(data))
        if ext == "svg":
            assert b"<svg" in data[:2000]
        else:
            assert data.startswith(MAGIC[ext])


CASES = [
    ("obesity", "heatmap"),
    ("obesity", "curves"),
    ("obesity", "parallel"),
    ("obesity", "importance"),
    ("obesity_sam200", "heatmap"),
    ("ecg_small", "domains"),
    ("ecg_small", "curves"),
]


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_kind_writes_png_svg_pdf(db: str, tmp_path: Path, name: str, kind: str) -> None:
    with Store(db) as store:
        fig = plot_study(store, name, kind, top=0.25 if kind == "parallel" else None)
    _check_files(fig, tmp_path, f"{name}_{kind}")


def test_heatmap_arrays_equal_grid_tables(db: str) -> None:
    from sweeper.plots.grid import table_array
    from sweeper.plots.study import metric_frame
    from sweeper.report import study_grid_tables

    with Store(db) as store:
        fig = plot_study(store, "obesity", "heatmap")
        info = store.study("obesity")
        tables = study_grid_tables(metric_frame(store, info), info.study)
    drawn = figure_data(fig)["values"]
    assert len(drawn) == len(tables) == 8
    for got, table in zip(drawn, tables, strict=True):
        expected = np.array([[np.nan if v is None else v for v in row] for row in table.values])
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(got, table_array(table))
    images = [ax.images[0].get_array().filled(np.nan) for ax in fig.axes if ax.images]
    for got, table in zip(images, tables, strict=True):
        np.testing.assert_allclose(got, table_array(table), equal_nan=True)


def test_domain_bars_equal_domain_table_means(db: str) -> None:
    from sweeper.plots.study import metric_frame
    from sweeper.report import study_domain_tables

    with Store(db) as store:
        fig = plot_study(store, "ecg_small", "domains")
        info = store.study("ecg_small")
        tables = study_domain_tables(metric_frame(store, info), info.study)
    (heights,) = figure_data(fig)["heights"]
    expected = np.array(
        [[*row, avg] for row, avg in zip(tables[0].means, tables[0].avg, strict=True)], dtype=float
    )
    np.testing.assert_allclose(heights, expected, equal_nan=True)
    bars = [p.get_height() for p in fig.axes[0].patches]
    np.testing.assert_allclose(sorted(bars), sorted(expected.ravel()))


def test_curves_where_filters(db: str) -> None:
    with Store(db) as store:
        fig = plot_study(store, "obesity", "curves", where={"optimizer": "sgd", "sam_rho": "0"})
        with pytest.raises(UnknownNameError, match="choose one of"):
            plot_study(store, "obesity", "curves", where={"nope": 1})
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels and all("optimizer" not in t for t in labels)


def test_unknown_kind_and_extension(db: str, tmp_path: Path) -> None:
    with Store(db) as store:
        with pytest.raises(
            UnknownNameError, match="unknown plot kind 'pie'; choose one of: curves, domains"
        ):
            plot_study(store, "obesity", "pie")
        with pytest.raises(SweeperError, match="grid"):
            plot_study(store, "obesity", "history")
        fig = plot_study(store, "obesity_sam200", "heatmap")
    with pytest.raises(PlotFormatError, match="choose one of: png, svg, pdf"):
        save(fig, tmp_path / "x.jpg")
    assert issubclass(PlotFormatError, SweeperError)
    assert set(PLOTS) == {"heatmap", "curves", "domains", "history", "parallel", "importance"}


def _searched_frame() -> object:
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for k in range(30):
        lr = float(10 ** rng.uniform(-5, -1.5))
        opt = ["sgd", "adam"][k % 2]
        for seed in range(3):
            rows.append(
                {
                    "id": 3 * k + seed,
                    "state": "completed",
                    "seed": seed,
                    "optimizer": opt,
                    "lr": lr,
                    "test_mse": abs(np.log10(lr) + 3) + 0.1 * seed + (opt == "sgd"),
                }
            )
    return pd.DataFrame(rows)


def test_searched_history_parallel_importance_from_values(tmp_path: Path) -> None:
    from sweeper.plots import fanova_importances, importance

    frame = _searched_frame()
    configs = configurations(frame, ["optimizer", "lr"], "test_mse", "minimize")  # type: ignore[arg-type]
    assert len(configs) == 30 and configs[0].mean <= configs[-1].mean
    means = [c.mean for c in sorted(configs, key=lambda c: min(c.ids))]
    fig = history({"tpe": means, "random": means[::-1]}, direction="minimize", metric="test_mse")
    assert figure_data(fig)["best"]["tpe"][-1] == min(means)
    _check_files(fig, tmp_path, "history")
    fig = parallel(configs, metric="test_mse", direction="minimize", scales={"lr": "log"}, top=0.5)
    assert figure_data(fig)["positions"].shape == (15, 3)
    _check_files(fig, tmp_path, "parallel")
    values = fanova_importances(configs, direction="minimize")
    assert set(values) == {"optimizer", "lr"} and abs(sum(values.values()) - 1) < 1e-9
    _check_files(importance(values), tmp_path, "importance")


@pytest.mark.parametrize("n", [1, 2, 3, 5, 9, 10, 12])
def test_interval_equals_the_statistics_module(n: int) -> None:
    """The plots' fast t interval gives sweeper.stats' numbers exactly (the bootstrap from 10)."""
    from sweeper.plots._interval import interval
    from sweeper.stats import interval as stats_interval

    values = [0.5 + 0.37 * k**1.3 for k in range(n)] + [float("nan")]
    got, expected = interval(values), stats_interval(values)
    for field in ("mean", "sd", "sem", "low", "high", "n", "method"):
        a, b = getattr(got, field), getattr(expected, field)
        assert a == b or (a != a and b != b), (field, a, b)  # equal to the bit, or both NaN
    assert interval([2.0, 2.0, 2.0]).low == 2.0 == stats_interval([2.0, 2.0, 2.0]).high


def test_configs_are_ranked_as_sweeper_best(db: str) -> None:
    from sweeper.plots.study import metric_frame, params_of, study_configs
    from sweeper.report import study_best

    for name in ("obesity", "ecg_small"):
        with Store(db) as store:
            info = store.study(name)
            frame = metric_frame(store, info)
            configs = study_configs(store, info, frame)
        ranked = study_best(frame, info.study)
        params = params_of(info.study)
        assert len(configs) == len(ranked)
        for config, (_, row) in zip(configs, ranked.iterrows(), strict=True):
            assert [float(config.params[p]) if not isinstance(row[p], str) else config.params[p]
                    for p in params] == [row[p] for p in params]  # fmt: skip
            assert config.mean == pytest.approx(row["mean"], abs=1e-12)
            assert len(config.values) == row["n"]
