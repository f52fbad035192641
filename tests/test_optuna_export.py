"""`export_optuna`: one COMPLETE Optuna trial per configuration, values the seed means."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sweeper.optuna_export import OptunaStudyExistsError, export_optuna
from sweeper.store import Store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def db(tmp_path: Path) -> str:
    src = ROOT / "results.db"
    if not src.exists():
        pytest.skip("results.db is not shipped in this checkout")
    shutil.copy(src, tmp_path / "results.db")
    return f"sqlite:///{tmp_path / 'results.db'}"


def test_obesity_export_matches_best_configs(db: str, tmp_path: Path) -> None:
    import optuna

    from sweeper.report import best_configs

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    with Store(db) as store:
        assert export_optuna(store, "obesity", url, intermediate=False) == 192
        info = store.study("obesity")
        frame = store.frame(info.id)
        ranked = best_configs(frame, axes=info.study.axes, metric="test_mse", direction="minimize")
        with pytest.raises(OptunaStudyExistsError, match="already holds a study named 'obesity'"):
            export_optuna(store, "obesity", url)
    study = optuna.load_study(study_name="obesity", storage=url)
    assert len(study.trials) == 192 and study.direction == optuna.study.StudyDirection.MINIMIZE
    expected = {tuple(r[a] for a in info.study.axes): r["mean"] for _, r in ranked.iterrows()}
    for t in study.trials:
        key = tuple(t.params[a] for a in info.study.axes)
        assert t.value == pytest.approx(expected[key], abs=1e-12)
        assert t.user_attrs["n"] == 3 and len(t.user_attrs["seed_values"]) == 3
        assert t.user_attrs["ci_low"] < t.value < t.user_attrs["ci_high"]
    assert isinstance(study.trials[0].distributions["lr"], optuna.distributions.FloatDistribution)
    optuna.visualization.plot_parallel_coordinate(study)


def test_intermediate_values_from_curves(db: str, tmp_path: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    with Store(db) as store:
        assert export_optuna(store, "ecg_small", url) == 18
    study = optuna.load_study(study_name="ecg_small", storage=url)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert all(len(t.intermediate_values) == 15 for t in study.trials)
