"""The six domains of the synthetic ECG set: each site's population, labels and device.

`sweeper.tasks.ecg.synth` draws records from these. Label prevalences come from the Challenge's
per-source counts; ages from PMEA Table 4; the devices are invented to make the domains differ
the way real sites do (calibration, electrode placement, interference, filters, the site's
heart-rate convention), strongly enough that a held-out domain is harder than the sources.
"""

from __future__ import annotations

from dataclasses import dataclass

from sweeper.tasks.ecg.params import DOMAINS

#: every record has exactly one of these rhythms...
RHYTHMS = ("NSR", "AF", "SB", "STach")
#: ...and any of these, drawn independently.
EXTRAS = ("IAVB", "CRBBB|RBBB", "CLBBB|LBBB", "TAb", "LQRSV")

# Records of each source in the Challenge training set, and its per-class counts from
# dx_mapping_scored.csv (equivalent codes merged; the revision with Chapman's and Ningbo's
# corrected sinus-tachycardia counts), in DOMAINS order.
RECORDS = {
    "Chapman": 10247,
    "CPSC": 6877,
    "CPSC-Extra": 3453,
    "G12EC": 10344,
    "Ningbo": 34905,
    "PTB-XL": 21837,
}
COUNTS: dict[str, tuple[int, ...]] = {
    #              Chapman  CPSC  Extra  G12EC  Ningbo  PTB-XL
    "NSR": (1826, 918, 4, 1752, 6299, 18092),
    "AF": (1780, 1221, 153, 570, 0, 1514),
    "SB": (3889, 0, 45, 1677, 12670, 637),
    "STach": (1568, 0, 303, 1261, 5687, 826),
    "IAVB": (247, 722, 106, 769, 893, 797),
    "CRBBB|RBBB": (454, 1857, 114, 570, 1291, 542),
    "CLBBB|LBBB": (205, 236, 38, 231, 248, 536),
    "TAb": (1876, 0, 22, 2306, 5167, 2345),
    "LQRSV": (249, 0, 0, 374, 794, 182),
}


@dataclass(frozen=True)
class DomainStyle:
    """One domain's population and "device".

    Attributes:
        name: the domain (one of `DOMAINS`); prefix: the letter its record ids start with.
        fs: sampling rate written to disk (Hz); seconds: record length range (uniform).
        mean_age, female: the population (PMEA Table 4).
        calibration: amplitude factor of the device; gain_error: spread of per-lead gains.
        wander_mv, mains_hz, mains_mv, noise_mv: interference; lowpass_hz: the device filter.
        placement: where the site puts the chest electrodes, in electrode spacings (+0.5: half
            way towards the next position), so V1..V6 record a blend of neighbouring positions.
        emg_mv: amplitude of muscle-noise bursts (20-45 Hz, 0.3-1.5 s long).
        mixing: strength of the device's own blend of the 12 leads (a fixed random matrix per
            domain, see `sweeper.tasks.ecg.synth`).
        hr_factor: the site's annotation convention: every rhythm's heart-rate range is scaled
            by it (0.9: what this site calls sinus rhythm runs 54-86 bpm, not 60-95), so the
            rate boundaries between SB, NSR and STach differ from site to site.
        adc_gain, adc_zero: how mV become int16 on disk.
        missing_age: fraction of records whose age is written as NaN / Unknown.
    """

    name: str
    prefix: str
    fs: int
    seconds: tuple[float, float]
    mean_age: float
    female: float
    calibration: float
    gain_error: float
    wander_mv: float
    mains_hz: int
    mains_mv: float
    noise_mv: float
    lowpass_hz: float
    placement: float = 0.0
    emg_mv: float = 0.0
    hr_factor: float = 1.0
    adc_gain: float = 1000.0
    adc_zero: int = 0
    missing_age: float = 0.0
    mixing: float = 1.0


STYLES: dict[str, DomainStyle] = {
    "Chapman": DomainStyle(
        name="Chapman",
        prefix="A",
        fs=500,
        seconds=(10, 10),
        mean_age=60.1,
        female=0.44,
        calibration=1.0,
        gain_error=0.2,
        wander_mv=0.1,
        mains_hz=50,
        mains_mv=0.01,
        noise_mv=0.015,
        lowpass_hz=45.0,
        placement=0.0,
        emg_mv=0.02,
        hr_factor=1.0,
    ),
    "CPSC": DomainStyle(
        name="CPSC",
        prefix="B",
        fs=500,
        seconds=(6, 24),
        mean_age=60.2,
        female=0.46,
        calibration=1.4,
        gain_error=0.25,
        wander_mv=0.3,
        mains_hz=50,
        mains_mv=0.02,
        noise_mv=0.03,
        lowpass_hz=25.0,
        placement=0.5,
        emg_mv=0.05,
        hr_factor=1.08,
    ),
    "CPSC-Extra": DomainStyle(
        name="CPSC-Extra",
        prefix="C",
        fs=500,
        seconds=(6, 24),
        mean_age=63.7,
        female=0.47,
        calibration=0.8,
        gain_error=0.25,
        wander_mv=0.4,
        mains_hz=50,
        mains_mv=0.03,
        noise_mv=0.06,
        lowpass_hz=15.0,
        placement=-0.5,
        emg_mv=0.15,
        hr_factor=0.96,
        missing_age=0.03,
    ),
    "G12EC": DomainStyle(
        name="G12EC",
        prefix="D",
        fs=500,
        seconds=(5, 10),
        mean_age=60.5,
        female=0.46,
        calibration=1.2,
        gain_error=0.2,
        wander_mv=0.15,
        mains_hz=60,
        mains_mv=0.04,
        noise_mv=0.04,
        lowpass_hz=150.0,
        placement=0.3,
        emg_mv=0.1,
        hr_factor=1.04,
        adc_zero=24,
        missing_age=0.05,
    ),
    "Ningbo": DomainStyle(
        name="Ningbo",
        prefix="E",
        fs=500,
        seconds=(10, 10),
        mean_age=57.7,
        female=0.43,
        calibration=0.6,
        gain_error=0.3,
        wander_mv=0.05,
        mains_hz=50,
        mains_mv=0.0,
        noise_mv=0.01,
        lowpass_hz=12.0,
        placement=-0.3,
        emg_mv=0.02,
        hr_factor=0.92,
        adc_gain=500.0,
    ),
    "PTB-XL": DomainStyle(
        name="PTB-XL",
        prefix="F",
        fs=1000,
        seconds=(10, 10),
        mean_age=59.8,
        female=0.48,
        calibration=0.9,
        gain_error=0.2,
        wander_mv=0.1,
        mains_hz=50,
        mains_mv=0.01,
        noise_mv=0.02,
        lowpass_hz=100.0,
        placement=0.2,
        emg_mv=0.04,
        hr_factor=0.98,
        missing_age=0.02,
    ),
}


def prevalence(domain: str, floor: float) -> dict[str, float]:
    """Base probability of each synthetic class in `domain` (at age 60), floored at `floor`.

    Rhythms are normalised to sum to 1 (every record has exactly one); extras are independent.
    """
    k = DOMAINS.index(domain)
    n = RECORDS[domain]
    base = {c: max(COUNTS[c][k] / n, floor) for c in COUNTS}
    total = sum(base[r] for r in RHYTHMS)
    return {c: (p / total if c in RHYTHMS else p) for c, p in base.items()}
