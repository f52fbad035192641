"""sweeper.compare on crafted trials frames and on a copy of the shipped results.db."""

from __future__ import annotations

import itertools
import math
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from sweeper.compare import (
    UnknownValueError,
    compare_by,
    compare_configs,
    observed_sd,
    select,
)
from sweeper.errors import SweeperError, UnknownNameError
from sweeper.stats import holm

RESULTS_DB = Path(__file__).resolve().parents[1] / "results.db"
KEYS = [
    "axis",
    "baseline",
    "value",
    "metric",
    "n_pairs",
    "mean_diff",
    "ci_low",
    "ci_high",
    "p_value",
    "p_holm",
    "prob_improvement",
]


@pytest.fixture(autouse=True)
def _warnings_are_errors() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def grid_frame() -> pd.DataFrame:
    """opt x lr x rho x 6 seeds; loss = lr-effect + rho effect + seed noise shared by pairs."""
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    for opt, lr, rho, seed in itertools.product(
        ["sgd", "adam"], [0.1, 0.01], [0.0, 0.05, 0.1], range(6)
    ):
        noise = math.sin(seed * 7.0 + lr * 100)  # shared by the configs of a pair
        effect = {"sgd": 0.2, "adam": -0.1}[opt] * rho * 10
        rows.append(
            {
                "state": "completed",
                "seed": seed,
                "optimizer": opt,
                "lr": lr,
                # floats as computed elsewhere: 0.05 stored as 0.05000000001 in some trials
                "sam_rho": rho + (1e-11 if rho == 0.05 and seed % 2 else 0.0),
                "loss": 1.0 + lr + effect + noise + rng.normal(0, 0.05),
            }
        )
    return pd.DataFrame(rows)


PARAMS = ["optimizer", "lr", "sam_rho"]


def test_compare_by_pairs_and_holm_within_groups() -> None:
    frame = grid_frame()
    got = compare_by(
        frame,
        axis="sam_rho",
        baseline=0,  # an int matches the stored 0.0
        params=PARAMS,
        metric="loss",
        direction="minimize",
        within=["optimizer"],
    )
    assert [(c.within["optimizer"], c.value) for c in got] == [
        ("sgd", 0.05),
        ("sgd", 0.1),
        ("adam", 0.05),
        ("adam", 0.1),
    ]
    for c in got:
        assert (c.baseline, c.n_pairs, c.n_unpaired) == (0.0, 12, 0)
        part = frame[frame["optimizer"] == c.within["optimizer"]]
        base = part[np.isclose(part["sam_rho"], 0.0)].sort_values(["lr", "seed"])
        other = part[np.isclose(part["sam_rho"], c.value)].sort_values(["lr", "seed"])
        d = other["loss"].to_numpy() - base["loss"].to_numpy()
        assert c.mean_diff == pytest.approx(d.mean(), abs=1e-12)
        assert c.p_value == pytest.approx(st.wilcoxon(d).pvalue, abs=1e-9)
        assert c.prob_improvement == pytest.approx(np.mean(d < 0) + 0.5 * np.mean(d == 0))
        assert c.ci_method == "bootstrap" and c.ci_low < c.mean_diff < c.ci_high
    for opt in ("sgd", "adam"):
        rows = [c for c in got if c.within["optimizer"] == opt]
        assert [c.p_holm for c in rows] == pytest.approx(holm([c.p_value for c in rows]))
    # sgd's loss rises with rho, adam's falls.
    assert got[1].mean_diff > 0 > got[3].mean_diff
    assert got[1].prob_improvement < 0.5 < got[3].prob_improvement


def test_to_dict_keys() -> None:
    got = compare_by(
        grid_frame(), axis="sam_rho", baseline=0.0, params=PARAMS, metric="loss",
        direction="minimize",
    )  # fmt: skip
    assert list(got[0].to_dict()) == KEYS
    assert got[0].n_pairs == 24
    within = compare_by(
        grid_frame(), axis="sam_rho", baseline=0.0, params=PARAMS, metric="loss",
        direction="minimize", within=["lr"],
    )  # fmt: skip
    d = within[0].to_dict()
    assert sorted(d) == sorted([*KEYS, "within"]) and d["within"] == {"lr": 0.1}


def test_unpaired_failed_and_nan_trials_dropped_and_counted() -> None:
    frame = grid_frame()
    sgd = frame["optimizer"] == "sgd"
    # seed 5 missing for rho 0.1 (lr 0.1); a failed baseline trial; a NaN metric.
    drop = sgd & (frame["sam_rho"] == 0.1) & (frame["lr"] == 0.1) & (frame["seed"] == 5)
    frame = frame[~drop].copy()
    sgd = frame["optimizer"] == "sgd"
    failed = sgd & (frame["sam_rho"] == 0.0) & (frame["lr"] == 0.01) & (frame["seed"] == 0)
    frame.loc[failed, "state"] = "failed"
    nan = sgd & np.isclose(frame["sam_rho"], 0.05) & (frame["seed"] == 3) & (frame["lr"] == 0.1)
    frame.loc[nan, "loss"] = math.nan
    got = compare_by(
        frame, axis="sam_rho", baseline=0.0, params=PARAMS, metric="loss",
        direction="minimize", within=["optimizer"],
    )  # fmt: skip
    by = {(c.within["optimizer"], c.value): c for c in got}
    # rho 0.05: baseline lost (lr .01, seed 0), own NaN (lr .1, seed 3): 10 pairs, 2 unpaired
    assert (by["sgd", 0.05].n_pairs, by["sgd", 0.05].n_unpaired) == (10, 2)
    # rho 0.1: baseline lost (lr .01, seed 0), own missing (lr .1, seed 5)
    assert (by["sgd", 0.1].n_pairs, by["sgd", 0.1].n_unpaired) == (10, 2)
    assert (by["adam", 0.1].n_pairs, by["adam", 0.1].n_unpaired) == (12, 0)


def test_axis_left_out_of_params_is_averaged() -> None:
    frame = grid_frame()
    got = compare_by(
        frame, axis="sam_rho", baseline=0.0, params=["optimizer", "sam_rho"], metric="loss",
        direction="minimize", within=["optimizer"],
    )  # fmt: skip
    c = got[0]
    part = frame[frame["optimizer"] == "sgd"]
    means = part.groupby([np.isclose(part["sam_rho"], 0.05), "seed"])["loss"].mean()
    base = part[part["sam_rho"] == 0.0].groupby("seed")["loss"].mean()
    d = means[True].to_numpy() - base.to_numpy()
    assert c.n_pairs == 6 and c.mean_diff == pytest.approx(d.mean())


def test_unknown_baseline_lists_values() -> None:
    with pytest.raises(UnknownValueError) as info:
        compare_by(
            grid_frame(), axis="sam_rho", baseline=0.2, params=PARAMS, metric="loss",
            direction="minimize",
        )  # fmt: skip
    assert isinstance(info.value, SweeperError)
    assert str(info.value) == (
        "sam_rho = 0.2 is not a value of the trials; choose one of: 0.0, 0.05, 0.1"
    )
    assert info.value.values == [0.0, 0.05, 0.1]


def test_unknown_column_and_direction() -> None:
    with pytest.raises(UnknownNameError, match="unknown column 'acc'"):
        compare_by(
            grid_frame(), axis="sam_rho", baseline=0.0, params=PARAMS, metric="acc",
            direction="minimize",
        )  # fmt: skip
    with pytest.raises(UnknownNameError, match="unknown direction"):
        compare_by(
            grid_frame(), axis="sam_rho", baseline=0.0, params=PARAMS, metric="loss",
            direction="min",
        )  # fmt: skip


def test_compare_configs_pairs_on_seed() -> None:
    a = pd.DataFrame({"state": "completed", "seed": [0, 1, 2, 3], "loss": [1.0, 2.0, 3.0, 4.0]})
    b = pd.DataFrame({"state": "completed", "seed": [1, 2, 3, 4], "loss": [1.5, 2.5, 5.0, 9.0]})
    got = compare_configs(a, b, metric="loss", direction="minimize")
    assert (got.n_pairs, got.n_unpaired) == (3, 2)
    assert got.mean_diff == pytest.approx((-0.5 - 0.5 + 1.0) / 3)
    assert got.prob_improvement == pytest.approx(2 / 3)  # two of three pairs lower
    assert got.p_value == pytest.approx(st.wilcoxon([-0.5, -0.5, 1.0]).pvalue, abs=1e-9)
    assert got.to_dict()["pair_on"] == ["seed"]


def domain_frame() -> pd.DataFrame:
    """method x target x lr x 3 seeds: source_f1 prefers lr 0.1, the test metric lr 0.01."""
    rows: list[dict[str, Any]] = []
    for method, target, lr, seed in itertools.product(
        ["base", "swa"], ["A", "B"], [0.1, 0.01], range(3)
    ):
        rows.append(
            {
                "state": "completed",
                "seed": seed,
                "method": method,
                "target": target,
                "lr": lr,
                "macro_f1": 0.5 + (0.1 if lr == 0.01 else 0.0) + 0.01 * seed,
                "source_f1": 0.8 + (0.1 if lr == 0.1 else 0.0) + 0.01 * seed,
                "loss": 1.0 - (0.1 if lr == 0.1 else 0.0),
            }
        )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("by", "lr"), [("oracle", 0.01), ("source", 0.1)])
def test_select_oracle_and_source(by: str, lr: float) -> None:
    frame = domain_frame()
    got = select(
        frame, method_axis="method", target_axis="target", hparams=["lr"], metric="macro_f1",
        direction="maximize", by=by,
    )  # fmt: skip
    assert len(got) == 2 * 2 * 3
    assert set(got["lr"]) == {lr}
    assert list(got.columns) == list(frame.columns)
    assert sorted(got.groupby(["method", "target"]).size().tolist()) == [3, 3, 3, 3]


def test_select_source_direction_and_missing_values() -> None:
    frame = domain_frame()
    got = select(
        frame, method_axis="method", target_axis="target", hparams=["lr"], metric="macro_f1",
        direction="maximize", by="source", source_metric="loss", source_direction="minimize",
    )  # fmt: skip
    assert set(got["lr"]) == {0.1}
    # swa on B has no finite selection value anywhere: it drops out.
    frame.loc[(frame["method"] == "swa") & (frame["target"] == "B"), "source_f1"] = math.nan
    frame.loc[0, "state"] = "failed"
    got = select(
        frame, method_axis="method", target_axis="target", hparams=["lr"], metric="macro_f1",
        direction="maximize", by="source",
    )  # fmt: skip
    assert len(got) == 3 * 3 - 1
    with pytest.raises(UnknownNameError, match="unknown selection 'test'"):
        select(
            frame, method_axis="method", target_axis="target", hparams=["lr"],
            metric="macro_f1", direction="maximize", by="test",
        )  # fmt: skip


def test_observed_sd_pools_configurations() -> None:
    frame = pd.DataFrame(
        {
            "state": ["completed"] * 6 + ["failed"],
            "lr": [0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.01],
            "loss": [1.0, 2.0, 3.0, 5.0, 7.0, 9.0, 100.0],
        }
    )
    # (2 * 1.0 + 1 * 2.0) / 3; the single-seed config and the failed trial do not count.
    assert observed_sd(frame, ["lr"], "loss") == pytest.approx(math.sqrt(4 / 3))
    assert math.isnan(observed_sd(frame.iloc[[0, 3, 5]], ["lr"], "loss"))


@pytest.fixture
def shipped(tmp_path: Path) -> Iterator[Any]:
    if not RESULTS_DB.exists():
        pytest.skip("results.db not shipped")
    from sweeper.store import Store

    copy = tmp_path / "copy.db"
    shutil.copy(RESULTS_DB, copy)
    yield Store(f"sqlite:///{copy}")


def test_shipped_obesity_sam_rho(shipped: Any) -> None:
    frame = shipped.frame(shipped.study("obesity").id)
    got = compare_by(
        frame, axis="sam_rho", baseline=0, within=["optimizer"], metric="test_mse",
        params=["lr", "weight_decay", "optimizer", "sam_rho"], direction="minimize", n_boot=2000,
    )  # fmt: skip
    done = frame[frame["state"] == "completed"]
    assert len(got) == 2 * 3
    for c in got:
        part = done[(done["optimizer"] == c.within["optimizer"]) & (done["sam_rho"] == c.value)]
        combos = len(part.groupby(["lr", "weight_decay", "seed"]))
        assert c.n_pairs == combos == 6 * 4 * 3
        assert c.n_unpaired == 0
        assert 0 <= c.p_value <= c.p_holm <= 1


def test_shipped_ecg_small(shipped: Any) -> None:
    frame = shipped.frame(shipped.study("ecg_small").id)
    got = compare_by(
        frame, axis="method", baseline="baseline", params=["method", "target"],
        metric="macro_f1", direction="maximize", n_boot=2000,
    )  # fmt: skip
    assert [(c.value, c.n_pairs) for c in got] == [("agereg", 18), ("swa", 18)]
    chosen = select(
        frame, method_axis="method", target_axis="target", hparams=[], metric="macro_f1",
        direction="maximize", by="source",
    )  # fmt: skip
    assert len(chosen) == 3 * 6 * 3


def test_shipped_two_studies(shipped: Any) -> None:
    a = shipped.frame(shipped.study("obesity").id)
    b = shipped.frame(shipped.study("obesity_sam200").id)
    a = a[(a["optimizer"] == "adam") & (a["sam_rho"] == 0.02)]
    a = a[(a["lr"] == 0.001) & (a["weight_decay"] == 0.0)]
    b = b[(b["lr"] == 0.001) & (b["weight_decay"] == 0.0)]
    got = compare_configs(a, b, metric="test_mse", direction="minimize")
    assert (got.n_pairs, got.n_unpaired, got.ci_method) == (3, 0, "t")
    # Three pairs: the smallest two-sided Wilcoxon p-value is 2 / 2**3.
    assert got.p_value >= 0.25
