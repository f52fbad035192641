"""The PhysioNet/CinC 2021 loader: wfdb against a hand decoding, awkward headers and records,
resampling, crop/pad, and the on-disk cache of decoded arrays."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.io import loadmat, savemat

from sweeper.errors import DataError
from sweeper.tasks.ecg import loader
from sweeper.tasks.ecg.classes import class_set
from sweeper.tasks.ecg.loader import LEADS, load_dataset, parse_header, read_record
from sweeper.tasks.ecg.params import DOMAINS
from sweeper.tasks.ecg.synth import write_dataset

CLASSES = class_set("synthetic9")


@pytest.fixture(autouse=True)
def _cache_in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SWEEPER_CACHE_DIR", str(tmp_path / "cache"))
    loader._load_cached.cache_clear()


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ecg") / "ecg_synth"
    write_dataset(out, records_per_domain=3, seed=5)
    return out


def write_record(
    directory: Path,
    name: str,
    val: np.ndarray,
    *,
    fs: float = 500,
    gain: str = "1000/mV",
    zero: int = 0,
    leads: tuple[str, ...] = LEADS,
    comments: tuple[str, ...] = ("#Age: 61", "#Sex: Male", "#Dx: 426783006"),
) -> Path:
    """A Challenge-style record written the way the Challenge files are (MATLAB v4 + header)."""
    directory.mkdir(parents=True, exist_ok=True)
    savemat(str(directory / f"{name}.mat"), {"val": val.astype(np.int16)}, format="4")
    lines = [f"{name} {len(leads)} {fs:g} {val.shape[1]} 05-Feb-2020 11:39:16"]
    lines += [
        f"{name}.mat 16+24 {gain} 16 {zero} {int(val[k, 0])} 0 0 {lead}"
        for k, lead in enumerate(leads)
    ]
    (directory / f"{name}.hea").write_text("\n".join([*lines, *comments]) + "\n")
    return directory / f"{name}.hea"


def decode_by_hand(hea: Path) -> tuple[np.ndarray, float, dict[str, str]]:
    """Independent of the loader: the Challenge's helper_code.py rules, written out here."""
    lines = hea.read_text().splitlines()
    first = lines[0].split()
    n_leads, fs = int(first[1]), float(first[2])
    gains, baselines, names = [], [], []
    for line in lines[1 : 1 + n_leads]:
        entries = line.split()
        gains.append(float(entries[2].split("/")[0]))
        baselines.append(float(entries[4]))
        names.append(entries[-1])
    val = loadmat(str(hea.with_suffix(".mat")))["val"].astype(np.float64)
    mv = (val - np.array(baselines)[:, None]) / np.array(gains)[:, None]
    mv = mv[[names.index(lead) for lead in LEADS]]
    comments = dict(line[1:].split(": ", 1) for line in lines if line.startswith("#"))
    return mv, fs, comments


def test_a_synthetic_record_reads_identically_to_its_hand_decoding(synth: Path) -> None:
    # One record per domain: Ningbo is stored at 500/mV, G12EC with ADC zero 24, PTB-XL at 1000 Hz.
    for domain in DOMAINS:
        hea = sorted((synth / domain).glob("*.hea"))[1]
        record = read_record(hea)
        mv, fs, comments = decode_by_hand(hea)
        assert record.fs == fs
        np.testing.assert_array_equal(record.signal, mv)
        expected_age = float(comments["Age"]) if comments["Age"][0].isdigit() else math.nan
        assert record.age == expected_age or (math.isnan(record.age) and math.isnan(expected_age))
        assert record.sex == comments["Sex"]
        assert record.codes == tuple(comments["Dx"].split(","))
    header = parse_header((synth / "G12EC" / "D00001.hea").read_text())
    assert header.baselines == (24.0,) * 12 and header.gains == (1000.0,) * 12
    assert parse_header((synth / "Ningbo" / "E00001.hea").read_text()).gains == (500.0,) * 12
    assert parse_header((synth / "PTB-XL" / "F00001.hea").read_text()).fs == 1000.0


def test_awkward_headers_and_records_all_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    val = rng.integers(-2000, 2000, (12, 5000))
    cases = {
        "age_text": write_record(
            tmp_path, "A1", val, comments=("#Age: Unknown", "#Sex: Female", "#Dx: 164889003")
        ),
        "age_nan": write_record(tmp_path, "A2", val, comments=("#Age: NaN", "#Dx: 426783006")),
        "unscored": write_record(
            tmp_path, "A3", val, comments=("#Age: 70", "#Dx: 164889003,251120003,999")
        ),
        "khz": write_record(tmp_path, "A4", rng.integers(-900, 900, (12, 10000)), fs=1000),
        "short": write_record(tmp_path, "A5", val[:, :1500]),
        "reordered": write_record(tmp_path, "A6", val, leads=tuple(reversed(LEADS))),
        "gain_baseline": write_record(tmp_path, "A7", val, gain="200(-12)/mV", zero=5),
    }
    records = {k: read_record(v) for k, v in cases.items()}
    assert math.isnan(records["age_text"].age) and math.isnan(records["age_nan"].age)
    assert records["age_text"].sex == "Female" and records["age_nan"].sex == ""
    assert records["unscored"].age == 70.0
    from sweeper.tasks.ecg.classes import label_vector

    assert label_vector(records["unscored"].codes, CLASSES).tolist() == [1] + [0] * 8
    assert records["khz"].fs == 1000 and records["khz"].signal.shape == (12, 10000)
    assert records["short"].signal.shape == (12, 1500)
    np.testing.assert_array_equal(records["reordered"].signal, val[::-1] / 1000)
    # An explicit baseline in parentheses wins over the ADC zero (WFDB's rule).
    np.testing.assert_allclose(records["gain_baseline"].signal, (val + 12) / 200)


def test_resampling_and_crop_pad() -> None:
    t_khz = np.arange(10_000) / 1000
    sine = np.tile(np.sin(2 * np.pi * 3 * t_khz), (12, 1))
    down = loader.resample(sine, 1000, 100)
    t_100 = np.arange(1000) / 100
    # Away from the edges, the polyphase filter reproduces the 100 Hz sampling of the sine.
    expected = np.sin(2 * np.pi * 3 * t_100)[50:-50]
    assert down.shape == (12, 1000)
    for row in down:
        np.testing.assert_allclose(row[50:-50], expected, atol=1e-3)
    assert loader.resample(sine, 257, 100).shape[1] == math.ceil(10_000 * 100 / 257)
    padded = loader.crop_or_pad(np.ones((12, 300)), 500)
    assert padded.shape == (12, 500) and padded[:, :300].all() and not padded[:, 300:].any()
    cropped = loader.crop_or_pad(np.arange(24.0).reshape(12, 2), 1)
    assert np.array_equal(cropped[:, 0], np.arange(0, 24, 2))


def test_a_missing_lead_or_file_is_an_error(tmp_path: Path) -> None:
    val = np.zeros((11, 100))
    hea = write_record(tmp_path, "B1", val, leads=LEADS[:11])
    with pytest.raises(DataError, match="lacks lead"):
        read_record(hea)
    (tmp_path / "B1.mat").unlink()
    with pytest.raises(DataError, match="B1"):
        read_record(hea)


def test_wfdb_failure_falls_back_to_the_hand_decoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wfdb

    val = np.arange(12 * 50).reshape(12, 50)
    hea = write_record(tmp_path, "C1", val)
    expected = read_record(hea).signal

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("unreadable")

    monkeypatch.setattr(wfdb, "rdrecord", broken)
    np.testing.assert_array_equal(read_record(hea).signal, expected)


def test_dataset_is_decoded_once_then_read_from_the_cache(
    synth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {"domains": DOMAINS, "classes": CLASSES, "fs": 100, "length": 300}
    data = load_dataset(synth, **settings, records_per_domain=2)
    assert data.x.shape == (12, 12, 300) and data.y.shape == (12, 9)
    assert data.domain.tolist() == [d for d in range(6) for _ in range(2)]
    assert data.ids[:2] == ("Chapman/A00001", "Chapman/A00002")
    assert data.x.dtype == np.float32 and not data.x.flags.writeable
    cached = list((tmp_path / "cache").glob("ecg-*.npz"))
    assert len(cached) == 1

    # A new process (cleared memory cache) reads the .npz and decodes no record.
    loader._load_cached.cache_clear()

    def no_decoding(path: Path) -> None:
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(loader, "read_record", no_decoding)
    again = load_dataset(synth, **settings, records_per_domain=2)
    np.testing.assert_array_equal(again.x, data.x)
    np.testing.assert_array_equal(again.age, data.age)
    # Other settings, or a changed file, make another cache entry.
    monkeypatch.undo()
    monkeypatch.setenv("SWEEPER_CACHE_DIR", str(tmp_path / "cache"))
    load_dataset(synth, **{**settings, "length": 200}, records_per_domain=2)
    stat = (synth / "CPSC" / "B00001.mat").stat()
    os.utime(synth / "CPSC" / "B00001.mat", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load_dataset(synth, **settings, records_per_domain=2)
    assert len(list((tmp_path / "cache").glob("ecg-*.npz"))) == 3


def test_missing_domains_and_too_few_records_are_errors(synth: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no directory for the domain CPSC"):
        load_dataset(tmp_path, domains=["CPSC"], classes=CLASSES, fs=100, length=100)
    with pytest.raises(DataError, match="3 records, but the study uses the first 5"):
        load_dataset(
            synth, domains=["CPSC"], classes=CLASSES, fs=100, length=100, records_per_domain=5
        )


def test_challenge_download_directory_names_are_found(tmp_path: Path) -> None:
    write_record(tmp_path / "training" / "cpsc_2018" / "g1", "A0001", np.zeros((12, 500)))
    root = tmp_path / "training"
    data = load_dataset(root, domains=["CPSC"], classes=CLASSES, fs=250, length=250)
    assert data.ids == ("cpsc_2018/g1/A0001",) and data.x.shape == (1, 12, 250)
    assert data.y[0].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0] and data.age[0] == 61.0
