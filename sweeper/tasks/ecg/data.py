"""The ECG dataset as a trial sees it: which directory, checked and loaded, split by domain.

::

    data dir -> check_dataset (real or synthetic; says what to run when missing)
      -> load_data (`loader.load_dataset`: decoded once, cached as .npz) -> EcgData
      -> split_records (target domain held out; sources split into training and validation)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from sweeper.errors import DataError
from sweeper.seeds import derive_seed
from sweeper.tasks.ecg.params import DOMAINS, EcgParams

if TYPE_CHECKING:
    from sweeper.tasks.ecg.loader import EcgData

IntArray = npt.NDArray[np.int64]

#: dataset -> directory under the data directory.
DATASET_DIRS = {"challenge2021": "challenge2021", "synthetic": "ecg_synth"}


@dataclass(frozen=True)
class Split:
    """Record indices into the dataset arrays: training and validation (sources), target."""

    train: IntArray
    val: IntArray
    target: IntArray


def dataset_root(params: EcgParams, data_dir: Path) -> Path:
    """The dataset directory for `params` under `data_dir`."""
    return data_dir / DATASET_DIRS[params.dataset]


def check_dataset(params: EcgParams, data_dir: Path) -> Path:
    """Return the dataset root after checking that the dataset is there.

    Raises:
        DataError: the directory is missing, or (synthetic) holds no complete synthetic set or
            fewer records per domain than the study uses; the message says what to run.
    """
    from sweeper.tasks.ecg.synth import GENERATOR_VERSION, is_synthetic, read_manifest

    root = dataset_root(params, data_dir)
    if params.dataset == "synthetic":
        if not is_synthetic(root):
            raise DataError(
                f"no synthetic ECG data at {root}; generate it with `sweeper data synth-ecg "
                f"{root}`, or point --data-dir (or SWEEPER_DATA_DIR) at a directory holding "
                f"ecg_synth/"
            )
        manifest = read_manifest(root)
        if manifest.get("version") != GENERATOR_VERSION:
            raise DataError(
                f"{root} was made by an older synthetic ECG generator (version "
                f"{manifest.get('version')}, this sweeper writes {GENERATOR_VERSION}); make it "
                f"again with `sweeper data synth-ecg {root}`"
            )
        have = manifest.get("records_per_domain")
        want = params.records_per_domain
        if isinstance(have, int) and want > have:
            raise DataError(
                f"{root} holds {have} synthetic records per domain; this study uses {want}: "
                f"run `sweeper data synth-ecg {root} --records-per-domain {want}`"
            )
    elif not root.is_dir():
        from sweeper.tasks.ecg.loader import DOMAIN_DIRS

        names = "; ".join(f"{d}: {' or '.join(n)}" for d, n in DOMAIN_DIRS.items())
        raise DataError(
            f"no PhysioNet/CinC 2021 training data at {root}: put the six training sets there, "
            f"one directory per domain ({names}), each holding <id>.hea and <id>.mat records; "
            f'or run on synthetic data (`sweeper data synth-ecg`, dataset = "synthetic")'
        )
    return root


def load_data(params: EcgParams, data_dir: Path) -> EcgData:
    """Load (or read back from the cache) the arrays `params` train and test on.

    Raises:
        DataError: see `check_dataset` and `sweeper.tasks.ecg.loader.load_dataset`.
    """
    from sweeper.tasks.ecg.classes import class_set
    from sweeper.tasks.ecg.loader import load_dataset

    root = check_dataset(params, data_dir)
    return load_dataset(
        root,
        domains=DOMAINS,
        classes=class_set(params.classes),
        fs=params.fs,
        length=params.length,
        records_per_domain=params.records_per_domain,
    )


def split_records(data: EcgData, target: str, *, val_fraction: float, split_seed: int) -> Split:
    """Hold out the target domain; split each source domain into training and validation.

    Each source domain's validation records are ``round(val_fraction * n)`` of its records,
    drawn with a generator seeded by `split_seed` and the domain's name, so a domain's
    validation records are the same in every round where it is a source.

    Raises:
        DataError: a source domain would keep no training record.
    """
    t = data.domains.index(target)
    train: list[IntArray] = []
    val: list[IntArray] = []
    for d, name in enumerate(data.domains):
        if d == t:
            continue
        rows = np.flatnonzero(data.domain == d)
        rng = np.random.default_rng(derive_seed(split_seed, f"split:{name}", "ecg"))
        rows = rng.permutation(rows)
        n_val = round(val_fraction * len(rows))
        if n_val >= len(rows):
            raise DataError(f"val_fraction={val_fraction} leaves no training record of {name}")
        val.append(np.sort(rows[:n_val]))
        train.append(np.sort(rows[n_val:]))
    return Split(
        train=np.concatenate(train),
        val=np.concatenate(val),
        target=np.flatnonzero(data.domain == t),
    )
