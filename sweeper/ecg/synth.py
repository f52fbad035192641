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

from sweeper.ecg import DOMAINS
from sweeper.ecg.classes import SCORED, SYNTHETIC_CLASSES
from sweeper.ecg.loader import LEADS
from sweeper.ecg.sites import EXTRAS, RHYTHMS, STYLES, DomainStyle, prevalence
from sweeper.errors import DataError

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

# Approximate textbook amplitudes (mV) of the P, Q, R, S, T waves per lead, LEADS order.
_WAVES = ("P", "Q", "R", "S", "T")
_AMPLITUDE = np.array(
    [
        [0.08, -0.03, 0.60, -0.10, 0.20],  # I
        [0.12, -0.05, 1.00, -0.15, 0.30],  # II
        [0.05, -0.03, 0.50, -0.10, 0.10],  # III
        [-0.10, 0.00, -0.75, 0.10, -0.25],  # aVR
        [0.04, -0.02, 0.30, -0.20, 0.10],  # aVL
        [0.09, -0.04, 0.75, -0.12, 0.20],  # aVF
        [0.06, 0.00, 0.30, -1.00, 0.10],  # V1
        [0.08, 0.00, 0.50, -1.40, 0.50],  # V2
        [0.08, -0.02, 0.90, -0.90, 0.45],  # V3
        [0.08, -0.05, 1.40, -0.50, 0.40],  # V4
        [0.07, -0.07, 1.30, -0.25, 0.30],  # V5
        [0.06, -0.06, 1.00, -0.15, 0.25],  # V6
    ]
)
_LEAD = {name: k for k, name in enumerate(LEADS)}
#: widths (s) of P, Q, R, S, T.
_SIGMA = {"P": 0.020, "Q": 0.008, "R": 0.010, "S": 0.009, "T": 0.045}


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
    clean = _heart(rng, classes, age, n, fs, hr_factor)
    lead_gains = _lead_gains(seed, d, style, shift_strength)
    mixing = _lead_mixing(seed, d, style, shift_strength)
    signal = _device(rng, clean, style, lead_gains, mixing, shift_strength)
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


def _heart(
    rng: np.random.Generator,
    classes: tuple[str, ...],
    age: float,
    n: int,
    fs: int,
    hr_factor: float = 1.0,
) -> FloatArray:
    """The clean 12-lead signal (mV) of a heart with these classes and this age.

    `hr_factor` scales the heart-rate range of the rhythm (a site's labelling convention).
    """
    rhythm = next(r for r in RHYTHMS if r in classes)
    hr = (
        {
            "NSR": rng.uniform(60, 95),
            "SB": rng.uniform(40, 58),
            "STach": rng.uniform(102, 150),
            "AF": rng.uniform(70, 130),
        }[rhythm]
        * (1.0 - 0.002 * (age - 60.0))
        * hr_factor
    )
    rr0 = 60.0 / hr
    hrv = max(0.005, 0.05 * (1.6 - age / 70.0))
    duration = n / fs
    # R peaks from slightly before the start to slightly after the end.
    n_beats = int(duration / rr0 * 1.6) + 4
    if rhythm == "AF":
        rr = np.abs(rng.normal(rr0, 0.2 * rr0, n_beats))
    else:
        rr = rr0 * (1.0 + hrv * rng.standard_normal(n_beats))
    rr = np.maximum(rr, 0.25)
    r_times = -rng.uniform(0, rr0) + np.cumsum(rr)
    r_times = r_times[r_times < duration + 0.5]
    rr_beat = rr[: len(r_times)]

    amp = _AMPLITUDE.copy()
    qrs = [1, 2, 3]
    amp[:, qrs] *= float(np.clip(1.3 - 0.008 * (age - 20.0), 0.6, 1.5))
    amp[:, 4] *= float(np.clip(1.2 - 0.006 * age, 0.5, 1.2))
    pr = rng.uniform(0.24, 0.34) if "IAVB" in classes else 0.14 + 0.0006 * (age - 20.0)
    qt = (0.38 + 0.0005 * (age - 20.0)) * np.sqrt(rr_beat)
    # Each wave: (lead amplitudes, centre offset from R per beat, width).
    waves: list[tuple[FloatArray, FloatArray, float]] = []
    beats = len(r_times)
    offsets = {
        "P": np.full(beats, 0.04 - pr),
        "Q": np.full(beats, -0.025),
        "R": np.zeros(beats),
        "S": np.full(beats, 0.025),
        "T": qt - 0.12,
    }
    extra_qrs: list[tuple[FloatArray, float, float]] = []
    if "CRBBB|RBBB" in classes:
        # Terminal R' in V1/V2, a slurred broad S in I, aVL, V5, V6.
        extra_qrs.append((_leads({"V1": 0.6, "V2": 0.4}), 0.070, 0.014))
        extra_qrs.append((_leads({"I": -0.25, "aVL": -0.15, "V5": -0.3, "V6": -0.3}), 0.060, 0.022))
    if "CLBBB|LBBB" in classes:
        # Broad deep S in V1-V3, broad R in I, aVL, V5, V6 (no septal Q), discordant T.
        right, left = ["V1", "V2", "V3"], ["I", "aVL", "V5", "V6"]
        amp[[_LEAD[x] for x in right], 2] *= 0.3
        amp[[_LEAD[x] for x in left], 1] = 0.0
        amp[[_LEAD[x] for x in left], 4] *= -0.8
        extra_qrs.append((_leads({"V1": -1.0, "V2": -1.3, "V3": -1.0}), 0.040, 0.030))
        extra_qrs.append((_leads({"I": 0.6, "aVL": 0.5, "V5": 1.0, "V6": 0.9}), 0.030, 0.030))
    if "TAb" in classes:
        leads = [_LEAD[x] for x in ("I", "aVL", "V3", "V4", "V5", "V6")]
        amp[leads, 4] *= rng.uniform(-0.8, 0.1)
    qrs_factor = 0.4 if "LQRSV" in classes else 1.0
    amp[:, qrs] *= qrs_factor
    for k, wave in enumerate(_WAVES):
        if wave == "P" and rhythm == "AF":
            continue
        waves.append((amp[:, k], offsets[wave], _SIGMA[wave]))
    age_qrs = float(np.clip(1.3 - 0.008 * (age - 20.0), 0.6, 1.5))
    for lead_amp, delay, width in extra_qrs:
        waves.append((lead_amp * age_qrs * qrs_factor, np.full(beats, delay), width))

    t = np.arange(n) / fs
    jitter = 1.0 + 0.03 * rng.standard_normal(len(r_times))
    signal = np.zeros((len(LEADS), n))
    for lead_amp, offset, sigma in waves:
        train = _pulse_train(r_times + offset, sigma, jitter, n, fs)
        signal += np.outer(lead_amp, train)
    if rhythm == "AF":
        # Fibrillatory waves: two 5-8 Hz components, strongest in II, III, aVF and V1.
        f_leads = np.full(len(LEADS), 0.3)
        f_leads[[_LEAD[x] for x in ("II", "III", "aVF", "V1")]] = (0.6, 0.5, 0.5, 1.0)
        f = np.zeros(n)
        for _ in range(2):
            phase = rng.uniform(0, 2 * np.pi)
            f += 0.05 * rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * rng.uniform(5, 8) * t + phase)
        signal += np.outer(f_leads, f)
    return signal


def _device(
    rng: np.random.Generator,
    clean: FloatArray,
    style: DomainStyle,
    lead_gains: FloatArray,
    mixing: FloatArray,
    strength: float,
) -> FloatArray:
    """What the domain's site and device record of `clean`.

    Electrode placement, the device's lead mixing, calibration and per-lead gain, baseline
    wander, mains, white noise, muscle bursts, then the device's low-pass filter.
    """
    from scipy.signal import butter, filtfilt

    n_leads, n = clean.shape
    t = np.arange(n) / style.fs
    calibration = (1.0 + strength * (style.calibration - 1.0)) * rng.uniform(0.9, 1.1)
    signal = mixing @ _place_chest_leads(clean, strength * style.placement)
    signal = signal * calibration * lead_gains[:, None]
    wander_f = rng.uniform(0.05, 0.5, (n_leads, 1))
    wander_a = strength * style.wander_mv * rng.uniform(0.3, 1.0, (n_leads, 1))
    signal += wander_a * np.sin(2 * np.pi * wander_f * t + rng.uniform(0, 2 * np.pi, (n_leads, 1)))
    mains_a = strength * style.mains_mv * rng.uniform(0.5, 1.0, (n_leads, 1))
    signal += mains_a * np.sin(2 * np.pi * style.mains_hz * t + rng.uniform(0, 2 * np.pi))
    signal += strength * style.noise_mv * rng.standard_normal((n_leads, n))
    signal += strength * style.emg_mv * _muscle_bursts(rng, n_leads, n, style.fs)
    if style.lowpass_hz < 0.45 * style.fs:
        b, a = butter(2, style.lowpass_hz / (style.fs / 2))
        signal = filtfilt(b, a, signal, axis=1)
    return np.asarray(signal)


def _place_chest_leads(signal: FloatArray, shift: float) -> FloatArray:
    """V1..V6 as recorded by electrodes `shift` spacings away from their standard positions.

    Each chest lead becomes the linear interpolation of the standard leads at its shifted
    position (clamped to V1..V6); the limb leads are unchanged.
    """
    if shift == 0:
        return signal
    out = signal.copy()
    chest = [_LEAD[f"V{k}"] for k in range(1, 7)]
    position = np.clip(np.arange(6) + shift, 0, 5)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, 5)
    frac = (position - low)[:, None]
    standard = signal[chest]
    out[chest] = (1 - frac) * standard[low] + frac * standard[high]
    return out


def _muscle_bursts(rng: np.random.Generator, n_leads: int, n: int, fs: int) -> FloatArray:
    """Unit-amplitude 20-45 Hz noise bursts (0.3-1.5 s, about one per 4 s), per lead."""
    from scipy.signal import butter, sosfiltfilt

    out = np.zeros((n_leads, n))
    n_bursts = rng.poisson(n / fs / 4.0)
    if n_bursts == 0:
        return out
    high = min(45.0, 0.45 * fs)
    sos = butter(2, [20.0 / (fs / 2), high / (fs / 2)], btype="band", output="sos")
    for _ in range(n_bursts):
        width = int(rng.uniform(0.3, 1.5) * fs)
        start = int(rng.integers(0, max(1, n - width)))
        stop = min(n, start + width)
        burst = sosfiltfilt(sos, rng.standard_normal((n_leads, stop - start + 2 * fs)), axis=1)
        burst = burst[:, fs : fs + stop - start]
        burst /= burst.std() + 1e-12
        out[:, start:stop] += burst * np.hanning(stop - start)
    return out


def _lead_gains(seed: int, domain: int, style: DomainStyle, strength: float) -> FloatArray:
    """The domain's per-lead gain errors: fixed for the whole domain (a property of its device)."""
    rng = np.random.default_rng([seed, domain, 1_000_003])
    spread = strength * style.gain_error
    return 1.0 + rng.uniform(-spread, spread, len(LEADS))


def _lead_mixing(seed: int, domain: int, style: DomainStyle, strength: float) -> FloatArray:
    """The domain's lead-space distortion ``I + strength * mixing * G``, fixed for the domain.

    G has independent N(0, 1/12) entries drawn once per domain: every device blends the leads
    in its own direction (cross-talk, electrode and cable differences), so no held-out device is
    an interpolation of the five a model was trained on.
    """
    rng = np.random.default_rng([seed, domain, 2_000_003])
    n = len(LEADS)
    return np.eye(n) + strength * style.mixing * rng.standard_normal((n, n)) / math.sqrt(n)


def _leads(values: dict[str, float]) -> FloatArray:
    """A 12-vector of lead amplitudes from ``{lead: mV}``, zero elsewhere."""
    out = np.zeros(len(LEADS))
    for lead, value in values.items():
        out[_LEAD[lead]] = value
    return out


def _pulse_train(
    centres: FloatArray, sigma: float, heights: FloatArray, n: int, fs: int
) -> FloatArray:
    """Sum of Gaussians (width `sigma` s, peak `heights`) at `centres` (s), sampled at `fs`.

    Each Gaussian is evaluated only within 4 sigma of its centre.
    """
    half = int(math.ceil(4 * sigma * fs))
    window = np.arange(-half, half + 1)
    index = np.rint(centres * fs).astype(np.int64)[:, None] + window[None, :]
    values = heights[:, None] * np.exp(-((index / fs - centres[:, None]) ** 2) / (2 * sigma**2))
    keep = (index >= 0) & (index < n)
    out = np.zeros(n)
    np.add.at(out, index[keep], values[keep])
    return out
