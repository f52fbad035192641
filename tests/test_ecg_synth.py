"""The synthetic six-domain ECG set: determinism, the on-disk layout, per-domain label
prevalence, age effects, the device shift, and `sweeper data synth-ecg`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sweeper.errors import DataError
from sweeper.tasks.ecg.loader import LEADS, parse_header, read_record
from sweeper.tasks.ecg.params import DOMAINS
from sweeper.tasks.ecg.synth import (
    MANIFEST,
    STYLES,
    _draw_classes,
    generate_record,
    prevalence,
    write_dataset,
)


def digest(directory: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            sha.update(path.relative_to(directory).as_posix().encode())
            sha.update(path.read_bytes())
    return sha.hexdigest()


def test_deterministic_and_prefix_stable(tmp_path: Path) -> None:
    a = write_dataset(tmp_path / "a", records_per_domain=2, seed=3)
    write_dataset(tmp_path / "b", records_per_domain=2, seed=3)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    write_dataset(tmp_path / "c", records_per_domain=3, seed=3)
    for domain in DOMAINS:
        for name in ("00001", "00002"):
            prefix = STYLES[domain].prefix
            for ext in (".hea", ".mat"):
                file = f"{domain}/{prefix}{name}{ext}"
                assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "c" / file).read_bytes()
    write_dataset(tmp_path / "d", records_per_domain=2, seed=4)
    assert digest(tmp_path / "a") != digest(tmp_path / "d")
    assert a.records == dict.fromkeys(DOMAINS, 2)
    manifest = json.loads((tmp_path / "a" / MANIFEST).read_text())
    assert manifest["synthetic"] is True and manifest["seed"] == 3
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted([*DOMAINS, MANIFEST])


def test_per_domain_label_prevalence_follows_the_challenge_counts() -> None:
    cpsc, ptbxl, ningbo = (
        prevalence("CPSC", 0.0),
        prevalence("PTB-XL", 0.0),
        prevalence("Ningbo", 0.0),
    )
    assert cpsc["CRBBB|RBBB"] == pytest.approx(1857 / 6877)  # CRBBB 0 + RBBB 1857, merged
    # Ningbo has no AF; the floor gives it some (rhythms are then renormalised to sum to 1).
    assert ningbo["AF"] == 0.0 and 0.05 < prevalence("Ningbo", 0.1)["AF"] < 0.15
    assert ptbxl["NSR"] > 0.8 and ningbo["SB"] > 0.5 > cpsc["SB"]
    for domain in DOMAINS:
        rhythms = prevalence(domain, 0.1)
        assert sum(rhythms[r] for r in ("NSR", "AF", "SB", "STach")) == pytest.approx(1.0)
    # Drawn labels: exactly one rhythm each; PTB-XL is mostly NSR, Ningbo mostly SB.
    drawn = {d: [generate_record(d, i).classes for i in range(40)] for d in ("PTB-XL", "Ningbo")}
    for labels in drawn.values():
        assert all(sum(c in ("NSR", "AF", "SB", "STach") for c in cs) == 1 for cs in labels)
    assert sum("NSR" in c for c in drawn["PTB-XL"]) > 25
    assert sum("SB" in c for c in drawn["Ningbo"]) > sum("SB" in c for c in drawn["PTB-XL"])


def test_age_shapes_the_labels_and_the_signal() -> None:
    base = prevalence("Chapman", 0.1)
    rng = np.random.default_rng(0)
    old = [_draw_classes(rng, base, 85.0) for _ in range(3000)]
    young = [_draw_classes(rng, base, 30.0) for _ in range(3000)]
    for cls in ("AF", "CRBBB|RBBB", "TAb"):
        assert sum(cls in c for c in old) > 1.5 * sum(cls in c for c in young)
    assert sum("STach" in c for c in young) > sum("STach" in c for c in old)
    # QRS amplitude falls with age: lead V4's peak-to-peak against age over 60 records.
    records = [generate_record("PTB-XL", i, shift_strength=0.0) for i in range(60)]
    kept = [r for r in records if not {"LQRSV", "CLBBB|LBBB"} & set(r.classes) and r.age == r.age]
    ages = np.array([r.age for r in kept])
    v4 = np.array([np.ptp(r.signal[LEADS.index("V4")]) for r in kept])
    assert np.corrcoef(ages, v4)[0, 1] < -0.4


def test_missing_ages_are_written_as_text() -> None:
    texts = {generate_record("G12EC", i).age_text for i in range(200)}
    assert {"NaN", "Unknown"} <= texts


def test_device_shift_mains_frequency_rate_gain_and_length(tmp_path: Path) -> None:
    write_dataset(tmp_path / "s", records_per_domain=2, seed=0)

    def mains_peak(domain: str) -> float:
        record = read_record(next((tmp_path / "s" / domain).glob("*.hea")))
        spectrum = np.abs(np.fft.rfft(record.signal - record.signal.mean(axis=1, keepdims=True)))
        freqs = np.fft.rfftfreq(record.signal.shape[1], 1 / record.fs)
        band = (freqs > 45) & (freqs < 65)
        return float(freqs[band][np.argmax(spectrum[:, band].sum(axis=0))])

    assert mains_peak("G12EC") == pytest.approx(60, abs=0.5)
    assert mains_peak("Chapman") == pytest.approx(50, abs=0.5)
    headers = {
        d: parse_header(next((tmp_path / "s" / d).glob("*.hea")).read_text()) for d in DOMAINS
    }
    assert headers["PTB-XL"].fs == 1000 and {h.fs for d, h in headers.items() if d != "PTB-XL"} == {
        500
    }
    assert headers["Ningbo"].gains[0] == 500 and headers["G12EC"].baselines[0] == 24
    lengths = {r.signal.shape[1] / r.fs for r in (generate_record("CPSC", i) for i in range(10))}
    assert min(lengths) >= 6 and max(lengths) <= 24 and len(lengths) > 5
    # Calibration: Ningbo's device reads the same hearts smaller than CPSC's.
    amp = {
        d: np.mean([np.ptp(generate_record(d, i).signal[1]) for i in range(20)])
        for d in ("CPSC", "Ningbo")
    }
    assert amp["CPSC"] > 1.5 * amp["Ningbo"]


def test_every_domain_blends_its_leads_its_own_way() -> None:
    from sweeper.tasks.ecg.synth_signal import lead_mixing as _lead_mixing

    mixes = [_lead_mixing(0, d, STYLES[name], 1.0) for d, name in enumerate(DOMAINS)]
    # Far from the identity, and far from each other: no device is a copy of another.
    for m in mixes:
        assert np.linalg.norm(m - np.eye(len(LEADS))) > 0.5
    for i in range(len(mixes)):
        for j in range(i):
            assert np.linalg.norm(mixes[i] - mixes[j]) > 0.5
    # Fixed per domain (a property of its device), and off at shift strength 0.
    assert np.array_equal(mixes[2], _lead_mixing(0, 2, STYLES[DOMAINS[2]], 1.0))
    assert np.array_equal(_lead_mixing(0, 2, STYLES[DOMAINS[2]], 0.0), np.eye(len(LEADS)))


def test_refuses_to_overwrite_other_data_and_replaces_a_synthetic_set(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a synthetic ECG set"):
        write_dataset(other, records_per_domain=1)
    assert (other / "notes.txt").read_text() == "keep me"
    out = tmp_path / "set"
    write_dataset(out, records_per_domain=2)
    write_dataset(out, records_per_domain=1)
    assert len(list((out / "CPSC").glob("*.hea"))) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_cli_synth_ecg(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "120"}
    out = tmp_path / "ecg_synth"
    run = subprocess.run(
        [sys.executable, "-m", "sweeper", "data", "synth-ecg", str(out), "--records-per-domain",
         "2", "--seed", "1"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "wrote 12 SYNTHETIC records (6 domains x 2, seed 1)" in run.stdout
    assert "PTB-XL" in run.stdout and len(list(out.rglob("*.mat"))) == 12
    bad = subprocess.run(
        [sys.executable, "-m", "sweeper", "data", "synth-ecg", str(out), "--records-per-domain",
         "0"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "records-per-domain" in bad.stderr
