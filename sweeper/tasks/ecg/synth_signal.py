"""The synthetic ECG's signal: a heart's waves per lead, and each domain's device (gains, lead
mixing, noise) applied to it. See `sweeper.tasks.ecg.synth` for the records and the set."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from sweeper.tasks.ecg.loader import LEADS
from sweeper.tasks.ecg.sites import RHYTHMS, DomainStyle

FloatArray = npt.NDArray[np.float64]

#: the manifest file that marks a directory as a complete synthetic set.

# Approximate textbook amplitudes (mV) of the P, Q, R, S, T waves per lead, LEADS order.
WAVES = ("P", "Q", "R", "S", "T")


AMPLITUDE = np.array(
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


LEAD = {name: k for k, name in enumerate(LEADS)}


#: widths (s) of P, Q, R, S, T.
SIGMA = {"P": 0.020, "Q": 0.008, "R": 0.010, "S": 0.009, "T": 0.045}


def heart(
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

    amp = AMPLITUDE.copy()
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
        extra_qrs.append((lead_vector({"V1": 0.6, "V2": 0.4}), 0.070, 0.014))
        extra_qrs.append(
            (lead_vector({"I": -0.25, "aVL": -0.15, "V5": -0.3, "V6": -0.3}), 0.060, 0.022)
        )
    if "CLBBB|LBBB" in classes:
        # Broad deep S in V1-V3, broad R in I, aVL, V5, V6 (no septal Q), discordant T.
        right, left = ["V1", "V2", "V3"], ["I", "aVL", "V5", "V6"]
        amp[[LEAD[x] for x in right], 2] *= 0.3
        amp[[LEAD[x] for x in left], 1] = 0.0
        amp[[LEAD[x] for x in left], 4] *= -0.8
        extra_qrs.append((lead_vector({"V1": -1.0, "V2": -1.3, "V3": -1.0}), 0.040, 0.030))
        extra_qrs.append((lead_vector({"I": 0.6, "aVL": 0.5, "V5": 1.0, "V6": 0.9}), 0.030, 0.030))
    if "TAb" in classes:
        leads = [LEAD[x] for x in ("I", "aVL", "V3", "V4", "V5", "V6")]
        amp[leads, 4] *= rng.uniform(-0.8, 0.1)
    qrs_factor = 0.4 if "LQRSV" in classes else 1.0
    amp[:, qrs] *= qrs_factor
    for k, wave in enumerate(WAVES):
        if wave == "P" and rhythm == "AF":
            continue
        waves.append((amp[:, k], offsets[wave], SIGMA[wave]))
    age_qrs = float(np.clip(1.3 - 0.008 * (age - 20.0), 0.6, 1.5))
    for lead_amp, delay, width in extra_qrs:
        waves.append((lead_amp * age_qrs * qrs_factor, np.full(beats, delay), width))

    t = np.arange(n) / fs
    jitter = 1.0 + 0.03 * rng.standard_normal(len(r_times))
    signal = np.zeros((len(LEADS), n))
    for lead_amp, offset, sigma in waves:
        train = pulse_train(r_times + offset, sigma, jitter, n, fs)
        signal += np.outer(lead_amp, train)
    if rhythm == "AF":
        # Fibrillatory waves: two 5-8 Hz components, strongest in II, III, aVF and V1.
        f_leads = np.full(len(LEADS), 0.3)
        f_leads[[LEAD[x] for x in ("II", "III", "aVF", "V1")]] = (0.6, 0.5, 0.5, 1.0)
        f = np.zeros(n)
        for _ in range(2):
            phase = rng.uniform(0, 2 * np.pi)
            f += 0.05 * rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * rng.uniform(5, 8) * t + phase)
        signal += np.outer(f_leads, f)
    return signal


def device(
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
    signal = mixing @ place_chest_leads(clean, strength * style.placement)
    signal = signal * calibration * lead_gains[:, None]
    wander_f = rng.uniform(0.05, 0.5, (n_leads, 1))
    wander_a = strength * style.wander_mv * rng.uniform(0.3, 1.0, (n_leads, 1))
    signal += wander_a * np.sin(2 * np.pi * wander_f * t + rng.uniform(0, 2 * np.pi, (n_leads, 1)))
    mains_a = strength * style.mains_mv * rng.uniform(0.5, 1.0, (n_leads, 1))
    signal += mains_a * np.sin(2 * np.pi * style.mains_hz * t + rng.uniform(0, 2 * np.pi))
    signal += strength * style.noise_mv * rng.standard_normal((n_leads, n))
    signal += strength * style.emg_mv * muscle_bursts(rng, n_leads, n, style.fs)
    if style.lowpass_hz < 0.45 * style.fs:
        b, a = butter(2, style.lowpass_hz / (style.fs / 2))
        signal = filtfilt(b, a, signal, axis=1)
    return np.asarray(signal)


def place_chest_leads(signal: FloatArray, shift: float) -> FloatArray:
    """V1..V6 as recorded by electrodes `shift` spacings away from their standard positions.

    Each chest lead becomes the linear interpolation of the standard leads at its shifted
    position (clamped to V1..V6); the limb leads are unchanged.
    """
    if shift == 0:
        return signal
    out = signal.copy()
    chest = [LEAD[f"V{k}"] for k in range(1, 7)]
    position = np.clip(np.arange(6) + shift, 0, 5)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, 5)
    frac = (position - low)[:, None]
    standard = signal[chest]
    out[chest] = (1 - frac) * standard[low] + frac * standard[high]
    return out


def muscle_bursts(rng: np.random.Generator, n_leads: int, n: int, fs: int) -> FloatArray:
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


def device_gains(seed: int, domain: int, style: DomainStyle, strength: float) -> FloatArray:
    """The domain's per-lead gain errors: fixed for the whole domain (a property of its device)."""
    rng = np.random.default_rng([seed, domain, 1_000_003])
    spread = strength * style.gain_error
    return 1.0 + rng.uniform(-spread, spread, len(LEADS))


def lead_mixing(seed: int, domain: int, style: DomainStyle, strength: float) -> FloatArray:
    """The domain's lead-space distortion ``I + strength * mixing * G``, fixed for the domain.

    G has independent N(0, 1/12) entries drawn once per domain: every device blends the leads
    in its own direction (cross-talk, electrode and cable differences), so no held-out device is
    an interpolation of the five a model was trained on.
    """
    rng = np.random.default_rng([seed, domain, 2_000_003])
    n = len(LEADS)
    return np.eye(n) + strength * style.mixing * rng.standard_normal((n, n)) / math.sqrt(n)


def lead_vector(values: dict[str, float]) -> FloatArray:
    """A 12-vector of lead amplitudes from ``{lead: mV}``, zero elsewhere."""
    out = np.zeros(len(LEADS))
    for lead, value in values.items():
        out[LEAD[lead]] = value
    return out


def pulse_train(
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
