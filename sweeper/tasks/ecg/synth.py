"""A synthetic six-domain 12-lead ECG dataset, written in the PhysioNet/CinC 2021 format.

No real ECG data is reachable from this project's machines, so the tests, CI and CPU users run
the ECG study on this. It is **synthetic**: a hand-written, vectorised ECGSYN-style model
(`shared/protocols/ecg.md` section 8), not physiology. What it is built to have:

- **the six real domain names**, each a directory of ``<id>.hea`` + ``<id>.mat`` records
  (ids ``A00001``... for the first domain up to ``F...`` for the sixth) that the real loader
  reads unchanged;
- **nine of the 26 scored classes** (`SYNTHETIC_CLASSES`): exactly one rhythm of NSR, AF, SB,
  STach, plus independent IAVB, RBBB, LBBB, TAb, LQRSV, with **per-domain prevalence** taken
  from the Challenge's per-source counts (``dx_mapping_scored.csv``, equivalent codes merged),
  floored at `prevalence_floor` (default 0.1, so that a CPU-sized training budget sees enough
  of every class; 0 keeps the real absent classes);
- **age that shapes the signal** (QRS and T amplitude, PR, QT, heart rate and its variability
  all drift with age) **and the labels** (AF, LBBB, IAVB, RBBB, TAb, LQRSV grow more likely
  with age, STach less), so AgeReg's auxiliary target is both learnable and label-relevant; a
  few records per domain have ``#Age: NaN`` or ``Unknown``;
- **a per-domain site and "device"** (`STYLES`): amplitude calibration (0.6 to 1.4) and a
  per-lead gain error, chest-electrode placement, the device's own blend of the 12 leads (a
  fixed random matrix per domain: no held-out device is a mix of the others), baseline wander,
  mains interference (50 Hz, or 60 Hz for the American G12EC), white noise, muscle-noise bursts,
  a 2nd-order Butterworth low-pass (12 to 150 Hz), the site's heart-rate convention for the
  rhythm labels, record length (6-24 s for the CPSC sets, 5-10 s for G12EC, 10 s elsewhere),
  PTB-XL sampled at 1000 Hz, Ningbo stored with ADC gain 500/mV and G12EC with a non-zero ADC
  baseline. `shift_strength` scales calibration, gain error, placement, lead blend, wander,
  mains, noise, bursts and the heart-rate convention (0 turns them off; the filters, rates and
  lengths stay). Strong enough
  that a model trained on five domains scores visibly lower on the sixth than on held-out
  records of its own sources (see the README's ECG section for the measured gap).

Every record is drawn from its own generator seeded by ``(seed, domain, index)``: the output
is deterministic, and the first N records of a larger set are exactly the set of size N.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sweeper.errors import DataError
from sweeper.tasks.ecg.classes import SCORED, SYNTHETIC_CLASSES
from sweeper.tasks.ecg.loader import LEADS
from sweeper.tasks.ecg.params import DOMAINS
from sweeper.tasks.ecg.sites import EXTRAS, RHYTHMS, STYLES, DomainStyle, prevalence
from sweeper.tasks.ecg.synth_signal import device, device_gains, heart, lead_mixing

FloatArray = npt.NDArray[np.float64]

#: the manifest file that marks a directory as a complete synthetic set.

MANIFEST = "manifest.json"
GENERATOR_VERSION = 2  # 2: per-domain lead mixing (every domain's device its own)

#: the code written into ``#Dx`` for each synthetic class (RBBB and LBBB as their short codes).
DX_CODE: dict[str, str] = {
    **{c.abbreviation: c.codes[-1] for c in SCORED if c.abbreviation in SYNTHETIC_CLASSES},
}
#: log-odds slope per year of age above 60, per class (the spec's beta).
AGE_SLOPE = {
    "AF": 0.04,
    "CLBBB|LBBB": 0.04,
    "IAVB": 0.03,
    "CRBBB|RBBB": 0.03,
    "TAb": 0.02,
    "LQRSV": 0.02,
    "STach": -0.02,
}


@dataclass(frozen=True)
class SynthRecord:
    """One generated record before it is written: signal ``(12, n)`` in mV, age NaN if unknown."""

    name: str
    signal: FloatArray
    fs: int
    age: float
    age_text: str
    sex: str
    classes: tuple[str, ...]


@dataclass(frozen=True)
class SynthReport:
    """What `write_dataset` wrote: records and class counts per domain, total bytes."""

    path: Path
    records: dict[str, int]
    class_counts: dict[str, dict[str, int]]
    bytes: int
    settings: dict[str, object] = field(default_factory=dict)


def generate_record(
    domain: str,
    index: int,
    *,
    seed: int = 0,
    shift_strength: float = 1.0,
    prevalence_floor: float = 0.1,
) -> SynthRecord:
    """Generate record number `index` (0-based) of `domain`; deterministic in its arguments."""
    style = STYLES[domain]
    d = DOMAINS.index(domain)
    rng = np.random.default_rng([seed, d, index])
    age = float(np.clip(round(rng.normal(style.mean_age, 16.0)), 18, 95))
    sex = "Female" if rng.random() < style.female else "Male"
    classes = _draw_classes(rng, prevalence(domain, prevalence_floor), age)
    fs = style.fs
    low, high = style.seconds
    n = int(round(rng.uniform(low, high) * fs)) if high > low else int(round(low * fs))
    hr_factor = 1.0 + shift_strength * (style.hr_factor - 1.0)
    clean = heart(rng, classes, age, n, fs, hr_factor)
    lead_gains = device_gains(seed, d, style, shift_strength)
    mixing = lead_mixing(seed, d, style, shift_strength)
    signal = device(rng, clean, style, lead_gains, mixing, shift_strength)
    # Real Challenge headers carry "NaN" (and other non-numbers) for unknown ages.
    missing = rng.random() < style.missing_age
    age_text = ("NaN" if index % 2 == 0 else "Unknown") if missing else str(int(age))
    return SynthRecord(
        name=f"{style.prefix}{index + 1:05d}",
        signal=signal,
        fs=fs,
        age=math.nan if missing else age,
        age_text=age_text,
        sex=sex,
        classes=classes,
    )


def write_record(record: SynthRecord, directory: Path, style: DomainStyle) -> int:
    """Write `record` as ``<name>.hea`` + ``<name>.mat`` (MATLAB v4, int16 ``val``).

    Returns:
        The number of bytes written.
    """
    from scipy.io import savemat

    digital = np.rint(record.signal * style.adc_gain) + style.adc_zero
    # -32768 is WFDB's "invalid sample" for format 16: keep clear of it.
    val = np.clip(digital, -32767, 32767).astype(np.int16)
    mat = directory / f"{record.name}.mat"
    savemat(str(mat), {"val": val}, format="4")
    gain = f"{style.adc_gain:g}"
    lines = [f"{record.name} {len(LEADS)} {record.fs} {val.shape[1]}"]
    lines += [
        f"{record.name}.mat 16+24 {gain}/mV 16 {style.adc_zero} {int(val[k, 0])} 0 0 {lead}"
        for k, lead in enumerate(LEADS)
    ]
    lines += [
        f"#Age: {record.age_text}",
        f"#Sex: {record.sex}",
        f"#Dx: {','.join(DX_CODE[c] for c in record.classes)}",
        "#Rx: Unknown",
        "#Hx: Unknown",
        "#Sx: Unknown",
    ]
    hea = directory / f"{record.name}.hea"
    hea.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return mat.stat().st_size + hea.stat().st_size


def write_dataset(
    out: Path,
    *,
    records_per_domain: int = 100,
    seed: int = 0,
    shift_strength: float = 1.0,
    prevalence_floor: float = 0.1,
    progress: Callable[[str, int], None] = lambda domain, done: None,
) -> SynthReport:
    """Generate the six domains into `out` (``<out>/<Domain>/<id>.{hea,mat}`` + a manifest).

    The set is written into a temporary sibling directory and moved into place at the end, so
    `out` never holds a half-written set. An existing synthetic set at `out` (one with a
    manifest) is replaced.

    Args:
        out: the dataset directory to create.
        records_per_domain: records per domain (>= 1).
        seed: the dataset seed.
        shift_strength: scales the device shift (0: none; 1: the default).
        prevalence_floor: least probability of every class in every domain.
        progress: called after each record with the domain and its records done so far.

    Raises:
        DataError: `out` exists and is not empty but holds no synthetic set (nothing is
            touched), or an argument is out of range.
    """
    if records_per_domain < 1:
        raise DataError(f"records per domain must be >= 1 (got {records_per_domain})")
    if shift_strength < 0 or not 0 <= prevalence_floor < 0.5:
        raise DataError("shift strength must be >= 0 and prevalence floor in [0, 0.5)")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not is_synthetic(out))):
        raise DataError(
            f"{out} exists and is not a synthetic ECG set (no {MANIFEST}); "
            "choose a new or empty directory"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        counts: dict[str, dict[str, int]] = {}
        total = 0
        for domain in DOMAINS:
            style = STYLES[domain]
            directory = tmp / domain
            directory.mkdir()
            counts[domain] = dict.fromkeys(SYNTHETIC_CLASSES, 0)
            for i in range(records_per_domain):
                record = generate_record(
                    domain,
                    i,
                    seed=seed,
                    shift_strength=shift_strength,
                    prevalence_floor=prevalence_floor,
                )
                total += write_record(record, directory, style)
                for c in record.classes:
                    counts[domain][c] += 1
                progress(domain, i + 1)
        settings: dict[str, object] = {
            "generator": "sweeper data synth-ecg",
            "version": GENERATOR_VERSION,
            "synthetic": True,
            "seed": seed,
            "records_per_domain": records_per_domain,
            "shift_strength": shift_strength,
            "prevalence_floor": prevalence_floor,
            "domains": {d: {"records": records_per_domain, "fs": STYLES[d].fs} for d in DOMAINS},
            "class_counts": counts,
        }
        (tmp / MANIFEST).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a dataset is for everyone to read
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SynthReport(out, dict.fromkeys(DOMAINS, records_per_domain), counts, total, settings)


def is_synthetic(path: Path) -> bool:
    """Whether `path` holds a complete synthetic set (its manifest is there)."""
    return (path / MANIFEST).is_file()


def read_manifest(path: Path) -> dict[str, object]:
    """The manifest of the synthetic set at `path`.

    Raises:
        DataError: there is none, or it is not JSON.
    """
    try:
        manifest: dict[str, object] = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no {MANIFEST}; not a synthetic ECG set") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path / MANIFEST}: unreadable ({exc})") from None
    return manifest


# -- the model ----------------------------------------------------------------------------------


def _draw_classes(rng: np.random.Generator, base: dict[str, float], age: float) -> tuple[str, ...]:
    """One rhythm plus independent extras, odds shifted by age; in `SYNTHETIC_CLASSES` order."""
    shift = {c: math.exp(AGE_SLOPE.get(c, 0.0) * (age - 60.0)) for c in base}
    rhythm_p = np.array([base[r] * shift[r] for r in RHYTHMS])
    rhythm = RHYTHMS[int(rng.choice(len(RHYTHMS), p=rhythm_p / rhythm_p.sum()))]
    chosen = {rhythm}
    draws = rng.random(len(EXTRAS))
    for c, u in zip(EXTRAS, draws, strict=True):
        if u < min(0.9, base[c] * shift[c]):
            chosen.add(c)
    if rhythm == "AF":
        chosen.discard("IAVB")  # no PR interval without P waves
    if "CRBBB|RBBB" in chosen:
        chosen.discard("CLBBB|LBBB")
    return tuple(c for c in SYNTHETIC_CLASSES if c in chosen)
