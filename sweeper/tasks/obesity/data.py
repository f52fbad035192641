"""The obesity dataset: the UCI file, its encoding (16 features, label 0..6), the split.

Follows `shared/protocols/obesity.md`::

    fetch CSV (dataset_path) -> load_encoded (cached per process) -> split_data -> Split

`load_encoded` and `split_data` serve the per-trial and the batched trainer alike, so both see
exactly the same rows.
"""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sweeper.data import RemoteFile, fetch
from sweeper.errors import DataError
from sweeper.tasks.obesity.params import ObesityParams

FloatArray = npt.NDArray[np.float64]

#: the dataset file; ``SWEEPER_OBESITY_URL`` overrides its URL (see `dataset_path`).
OBESITY_CSV = RemoteFile(
    name="ObesityDataSet_raw_and_data_sinthetic.csv",
    subdir="obesity",
    sha256="28b6991062855d3d15642e38b1aa9d1b32fb7abbb5abf5b096f1868cd706154b",
    url=(
        "https://archive.ics.uci.edu/static/public/544/"
        "estimation+of+obesity+levels+based+on+eating+habits+and+physical+condition.zip"
    ),
    zip_member="ObesityDataSet_raw_and_data_sinthetic.csv",
)
URL_ENV = "SWEEPER_OBESITY_URL"

_NO_YES = {"no": 0, "yes": 1}
_FREQUENCY = {"no": 0, "Sometimes": 1, "Frequently": 2, "Always": 3}

#: input columns in CSV order -> category codes, or None for a numeric column kept raw.
#: Codes as the original code had them: binary columns alphabetical, CAEC/CALC by frequency,
#: MTRANS ordinal (not one-hot).
FEATURES: dict[str, dict[str, int] | None] = {
    "Gender": {"Female": 0, "Male": 1},
    "Age": None,
    "Height": None,
    "Weight": None,
    "family_history_with_overweight": _NO_YES,
    "FAVC": _NO_YES,
    "FCVC": None,
    "NCP": None,
    "CAEC": _FREQUENCY,
    "SMOKE": _NO_YES,
    "CH2O": None,
    "SCC": _NO_YES,
    "FAF": None,
    "TUE": None,
    "CALC": _FREQUENCY,
    "MTRANS": {
        "Bike": 0,
        "Walking": 1,
        "Public_Transportation": 2,
        "Motorbike": 3,
        "Automobile": 4,
    },
}
#: kept as a column of zeros: the label is banded BMI, so weight and height would give it away.
ZEROED = "Weight"
LABEL = "NObeyesdad"
#: label values in ordinal order, coded 0..6.
CLASSES: tuple[str, ...] = (
    "Insufficient_Weight",
    "Normal_Weight",
    "Overweight_Level_I",
    "Overweight_Level_II",
    "Obesity_Type_I",
    "Obesity_Type_II",
    "Obesity_Type_III",
)


@dataclass(frozen=True)
class Split:
    """Encoded features (n, 16) and labels (n,) of each part of one split, as float64 arrays.

    `x_val` and `y_val` have zero rows when there is no validation set.
    """

    x_train: FloatArray
    y_train: FloatArray
    x_val: FloatArray
    y_val: FloatArray
    x_test: FloatArray
    y_test: FloatArray


def dataset_path(data_dir: Path) -> Path:
    """Return the verified CSV path, downloading it first if needed.

    The download URL is ``SWEEPER_OBESITY_URL`` when set (tests point it at a local server),
    else UCI's zip.

    Raises:
        DataError: see `sweeper.data.fetch`.
    """
    return fetch(OBESITY_CSV, data_dir, url=os.environ.get(URL_ENV) or None)


@functools.lru_cache(maxsize=4)
def load_encoded(path: Path) -> tuple[FloatArray, FloatArray]:
    """Read the CSV at `path` and encode it as the protocol says; cached per process.

    Read with the standard library's csv module and ``float()`` (correctly rounded, equal bit
    for bit to pandas' reader on this file, tested), so that a worker does not import pandas
    (0.5 s of every worker's start).

    Args:
        path: a verified copy of the dataset file (see `dataset_path`).

    Returns:
        ``(x, y)``: features (2111, 16) in CSV column order with Weight all zero, and the label
        as ordinal codes 0..6; both float64 and read-only (they are shared by every caller).

    Raises:
        DataError: a column is missing, a number does not parse, or a category value is not in
            the coding tables.
    """
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader, [])
        rows = list(reader)
    missing = [c for c in [*FEATURES, LABEL] if c not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    at = {name: i for i, name in enumerate(header)}

    def column_values(column: str) -> list[str]:
        i = at[column]
        short = next((n for n, row in enumerate(rows, start=2) if len(row) <= i), None)
        if short is not None:
            raise DataError(f"{path}: line {short} has no value in column {column}")
        return [row[i] for row in rows]

    columns: list[FloatArray] = []
    for column, codes in FEATURES.items():
        if column == ZEROED:
            columns.append(np.zeros(len(rows)))
        elif codes is None:
            columns.append(_numbers(column_values(column), column, path))
        else:
            columns.append(_codes(column_values(column), codes, column, path))
    x = np.stack(columns, axis=1) if rows else np.zeros((0, len(FEATURES)))
    y = _codes(column_values(LABEL), {name: i for i, name in enumerate(CLASSES)}, LABEL, path)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _numbers(values: Sequence[str], column: str, path: Path) -> FloatArray:
    """Parse a numeric column, rejecting what is not a number."""
    try:
        return np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        bad = next(v for v in values if not _is_number(v))
        raise DataError(f"{path}: column {column} has the non-number {bad!r}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _codes(values: Sequence[str], codes: Mapping[str, int], column: str, path: Path) -> FloatArray:
    """Map category strings to float codes, rejecting unknown values."""
    unknown = next((v for v in values if v not in codes), None)
    if unknown is not None:
        raise DataError(
            f"{path}: column {column} has the unknown value {unknown!r} (known: {', '.join(codes)})"
        )
    return np.array([codes[v] for v in values], dtype=np.float64)


def split_data(
    x: FloatArray,
    y: FloatArray,
    *,
    split_seed: int,
    train_fraction: float,
    val_fraction: float = 0.0,
    standardize: bool = False,
) -> Split:
    """Shuffle once with `split_seed` and cut into train, validation and test rows.

    The first ``int(train_fraction * n)`` shuffled rows are for training (1688 of 2111 at 0.8),
    the rest are the test set. With `val_fraction` > 0 the last
    ``round(val_fraction * n_train)`` of the training rows become the validation set. With
    `standardize`, every part is scaled by the mean and std of the rows left for training
    (a column with zero std, like Weight, keeps std 1).

    Returns:
        The split; new arrays, `x` and `y` are not modified.

    Raises:
        ValueError: the fractions leave no rows to train on or none to test on.
    """
    n = len(x)
    order = np.random.default_rng(split_seed).permutation(n)
    n_train = int(train_fraction * n)
    n_val = round(val_fraction * n_train)
    if n_train - n_val < 1 or n_train == n:
        raise ValueError(
            f"train_fraction={train_fraction} and val_fraction={val_fraction} leave "
            f"{n_train - n_val} training and {n - n_train} test rows of {n}; both must be >= 1"
        )
    train, test = order[: n_train - n_val], order[n_train:]
    val = order[n_train - n_val : n_train]
    x_train, x_val, x_test = x[train], x[val], x[test]
    if standardize:
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std[std == 0] = 1.0
        x_train, x_val, x_test = ((a - mean) / std for a in (x_train, x_val, x_test))
    return Split(x_train, y[train], x_val, y[val], x_test, y[test])


def load_split(params: ObesityParams, data_dir: Path) -> Split:
    """Fetch, encode and split the dataset as `params` say.

    Raises:
        DataError: the dataset is missing and cannot be fetched, or cannot be encoded.
    """
    x, y = load_encoded(dataset_path(data_dir))
    return split_data(
        x,
        y,
        split_seed=params.split_seed,
        train_fraction=params.train_fraction,
        val_fraction=params.val_fraction,
        standardize=params.standardize,
    )
