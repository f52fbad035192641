"""Reading PhysioNet/CinC 2021 records into arrays: signals in mV, labels, ages, domains.

A record is ``<id>.hea`` (a WFDB header whose comments carry ``#Age``, ``#Sex`` and ``#Dx``) plus
``<id>.mat`` (MATLAB file, variable ``val``, int16, ``(leads, samples)``). Each domain is a
directory under the dataset root (the tutorial's names, or the Challenge download's, see
`DOMAIN_DIRS`), searched recursively, records in path order.

`read_record` decodes one record with ``wfdb`` (gain, baseline and byte offset handled there)
and falls back to `read_record_by_hand` (``scipy.io.loadmat`` plus the header rules of the
Challenge's ``helper_code.py``) when wfdb cannot read it. `load_dataset` turns a whole dataset
into arrays: every record resampled to the study's rate with ``scipy.signal.resample_poly``,
its first `length` samples kept (zero-padded at the end when shorter), labels mapped to the
study's classes with equivalent codes merged, ages parsed as floats (NaN when missing or
unparsable: never invented). The arrays are written once to an ``.npz`` in the cache directory,
keyed by a hash of every loading setting and of the files' names, sizes and mtimes, so the
trials of a study (and of later runs) read them back instead of decoding the records again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import numpy as np
import numpy.typing as npt

from sweeper.errors import DataError
from sweeper.tasks.ecg.classes import label_vector

#: the 12 leads in the canonical order every signal is returned in.
LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)  # fmt: skip

#: directory names a domain may have under the dataset root: the tutorial's name first, then
#: the Challenge 2021 download's (``training/<name>/g1/...``).
DOMAIN_DIRS: dict[str, tuple[str, ...]] = {
    "Chapman": ("Chapman", "chapman_shaoxing", "WFDB_ChapmanShaoxing"),
    "CPSC": ("CPSC", "cpsc_2018", "WFDB_CPSC2018"),
    "CPSC-Extra": ("CPSC-Extra", "cpsc_2018_extra", "WFDB_CPSC2018_2"),
    "G12EC": ("G12EC", "georgia", "WFDB_Ga"),
    "Ningbo": ("Ningbo", "ningbo", "WFDB_Ningbo"),
    "PTB-XL": ("PTB-XL", "ptb-xl", "WFDB_PTBXL"),
}

#: bumped whenever decoding changes, so that caches written by older code are not reused.
LOADER_VERSION = 1
#: the WFDB format-16 "invalid sample" value; read as a missing sample (0 mV).
_INVALID_16 = -32768

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Header:
    """What a record's ``.hea`` says, parsed by the rules of the Challenge's ``helper_code.py``.

    Attributes:
        name: the record name (first token of the first line).
        fs: sampling frequency in Hz.
        n_samples: samples per lead.
        leads: lead names in file order.
        gains: ADC gain per lead (digital units per mV).
        baselines: ADC baseline per lead (the value that is 0 mV).
        age: ``#Age`` as a float; NaN when absent or not a number (e.g. ``NaN``, ``Unknown``).
        sex: ``#Sex`` as written (``Male``, ``Female``, ...); empty when absent.
        codes: the ``#Dx`` SNOMED-CT codes, in file order.
    """

    name: str
    fs: float
    n_samples: int
    leads: tuple[str, ...]
    gains: tuple[float, ...]
    baselines: tuple[float, ...]
    age: float
    sex: str
    codes: tuple[str, ...]


@dataclass(frozen=True)
class Record:
    """One decoded record: ``signal`` is ``(12, n_samples)`` in mV, leads in `LEADS` order."""

    name: str
    signal: FloatArray
    fs: float
    age: float
    sex: str
    codes: tuple[str, ...]


@dataclass(frozen=True)
class EcgData:
    """A whole dataset as arrays (read-only; shared by every trial of a worker process).

    Attributes:
        x: signals, ``(records, 12, length)`` float32, in mV (as resampled and cropped).
        y: labels, ``(records, len(classes))`` uint8.
        age: ages in years, ``(records,)`` float32, NaN where unknown.
        domain: each record's index into `domains`, ``(records,)`` int64.
        ids: each record's path relative to the dataset root, without extension.
        domains: the domain names.
        classes: the class abbreviations of the columns of `y`.
    """

    x: npt.NDArray[np.float32]
    y: npt.NDArray[np.uint8]
    age: npt.NDArray[np.float32]
    domain: npt.NDArray[np.int64]
    ids: tuple[str, ...]
    domains: tuple[str, ...]
    classes: tuple[str, ...]


# -- one record ---------------------------------------------------------------------------------


def parse_header(text: str, source: str = "header") -> Header:
    """Parse the text of a ``.hea`` file.

    The first line is ``<name> <leads> <fs> <samples> ...``; each lead line is
    ``<file> <format> <gain>[(<baseline>)]/<units> <resolution> <adc zero> ...  <lead name>``,
    the baseline defaulting to the ADC zero (WFDB's rule, which ``helper_code.py`` applies by
    reading token 5). Comment lines ``#Age: 74``, ``#Sex: Male``, ``#Dx: 164889003,59118001``
    give age, sex and codes.

    Raises:
        DataError: the text is not a header of that shape (the message names `source`).
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    signal_lines = [line for line in lines if not line.startswith("#")]
    try:
        first = signal_lines[0].split()
        name, n_leads = first[0], int(first[1])
        fs = float(first[2].split("/")[0])
        n_samples = int(first[3])
        leads, gains, baselines = [], [], []
        for line in signal_lines[1 : 1 + n_leads]:
            entries = line.split()
            gain, baseline = _gain_and_baseline(entries[2], adc_zero=entries[4])
            gains.append(gain)
            baselines.append(baseline)
            leads.append(entries[-1])
    except (IndexError, ValueError) as exc:
        raise DataError(f"{source}: not a WFDB header ({exc})") from None
    if len(leads) != n_leads:
        raise DataError(f"{source}: the header announces {n_leads} leads but lists {len(leads)}")
    age, sex, codes = _parse_comments(line.lstrip("#") for line in lines if line.startswith("#"))
    return Header(
        name, fs, n_samples, tuple(leads), tuple(gains), tuple(baselines), age, sex, codes
    )


def read_record(path: Path) -> Record:
    """Decode one record with wfdb, falling back to `read_record_by_hand`.

    Args:
        path: the record's ``.hea`` file (or its path without extension).

    Returns:
        The record, signal in mV with leads in `LEADS` order; missing samples (WFDB's invalid
        value) read as 0 mV.

    Raises:
        DataError: neither wfdb nor the fallback can read it, or it lacks one of the 12 leads.
        MissingExtraError: wfdb is not installed (``pip install 'sweeper[ecg]'``).
    """
    wfdb = require_wfdb()

    base = path.with_suffix("") if path.suffix == ".hea" else path
    try:
        rec = wfdb.rdrecord(str(base))
        signal = np.asarray(rec.p_signal, dtype=np.float64).T
        names = tuple(rec.sig_name)
        fs = float(rec.fs)
        age, sex, codes = _parse_comments(rec.comments)
    except Exception:  # noqa: BLE001 - wfdb raises many types; the fallback decides
        return read_record_by_hand(base.with_suffix(".hea"))
    signal = _canonical_leads(np.nan_to_num(signal, nan=0.0), names, str(base))
    return Record(base.name, signal, fs, age, sex, codes)


def require_wfdb() -> ModuleType:
    """Import wfdb, which ``sweeper[ecg]`` installs.

    Raises:
        MissingExtraError: it is not installed; the message names ``sweeper[ecg]``.
    """
    from sweeper.extras import require

    return require("wfdb", extra="ecg", purpose="the ECG task")


def read_record_by_hand(path: Path) -> Record:
    """Decode one record with ``scipy.io.loadmat`` and `parse_header`: (val - baseline) / gain.

    Raises:
        DataError: a file is missing or unreadable, or the shapes disagree with the header.
    """
    from scipy.io import loadmat

    hea = path.with_suffix(".hea")
    mat = path.with_suffix(".mat")
    try:
        header = parse_header(hea.read_text(encoding="utf-8", errors="replace"), str(hea))
        val = np.asarray(loadmat(str(mat))["val"])
    except DataError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path.with_suffix('')}: cannot read the record ({exc})") from None
    if val.shape != (len(header.leads), header.n_samples):
        raise DataError(
            f"{mat}: val has shape {val.shape}, the header says "
            f"({len(header.leads)}, {header.n_samples})"
        )
    digital = val.astype(np.float64)
    digital[val == _INVALID_16] = np.nan
    gains = np.asarray(header.gains)[:, None]
    baselines = np.asarray(header.baselines)[:, None]
    signal = np.nan_to_num((digital - baselines) / gains, nan=0.0)
    signal = _canonical_leads(signal, header.leads, str(path.with_suffix("")))
    return Record(header.name, signal, header.fs, header.age, header.sex, header.codes)


def resample(signal: FloatArray, fs: float, target_fs: int) -> FloatArray:
    """Resample ``(leads, samples)`` from `fs` to `target_fs` with a polyphase filter.

    Returns the input unchanged when the rates are equal. Non-integer rates (257 Hz) are
    handled through the exact ratio of the two rates.
    """
    if math.isclose(fs, target_fs):
        return signal
    from scipy.signal import resample_poly

    ratio = Fraction(target_fs) / Fraction(str(fs)).limit_denominator(1000)
    resampled: FloatArray = resample_poly(signal, ratio.numerator, ratio.denominator, axis=1)
    return resampled


def crop_or_pad(signal: FloatArray, length: int) -> FloatArray:
    """Keep the first `length` samples; zero-pad at the end when the record is shorter."""
    if signal.shape[1] >= length:
        return signal[:, :length]
    out = np.zeros((signal.shape[0], length), dtype=signal.dtype)
    out[:, : signal.shape[1]] = signal
    return out


# -- a whole dataset ----------------------------------------------------------------------------


def domain_dir(root: Path, domain: str) -> Path | None:
    """The directory of `domain` under `root` (first existing name of `DOMAIN_DIRS`), or None."""
    for name in DOMAIN_DIRS[domain]:
        candidate = root / name
        if candidate.is_dir():
            return candidate
    return None


def list_records(root: Path, domain: str, limit: int = 0) -> list[Path]:
    """The ``.hea`` files of `domain`, in path order; the first `limit` of them when > 0.

    Raises:
        DataError: the domain has no directory, holds no record, or fewer than `limit`.
    """
    directory = domain_dir(root, domain)
    if directory is None:
        names = ", ".join(DOMAIN_DIRS[domain])
        raise DataError(f"{root}: no directory for the domain {domain} (looked for: {names})")
    files = sorted(directory.rglob("*.hea"), key=lambda p: p.relative_to(directory).as_posix())
    if not files:
        raise DataError(f"{directory}: no records (<id>.hea with <id>.mat) for {domain}")
    if limit and len(files) < limit:
        raise DataError(
            f"{directory}: {len(files)} records, but the study uses the first {limit} of "
            f"each domain (records_per_domain)"
        )
    return files[:limit] if limit else files


def load_dataset(
    root: Path,
    *,
    domains: Sequence[str],
    classes: Sequence[str],
    fs: int,
    length: int,
    records_per_domain: int = 0,
    cache: Path | None = None,
) -> EcgData:
    """Decode every record of `domains` under `root` into arrays, through the on-disk cache.

    Args:
        root: the dataset root, one directory per domain.
        domains: the domains to load, in order (their indices label the records).
        classes: class abbreviations (see `sweeper.tasks.ecg.classes`), the columns of the labels.
        fs: the sampling rate to resample to, in Hz.
        length: samples kept per record.
        records_per_domain: use only the first this many records of each domain (0: all).
        cache: where to keep decoded arrays; default `cache_dir()`. The file is written
            atomically, so concurrent loaders of one dataset are safe.

    Returns:
        The arrays, read-only; repeated calls in one process return the same object.

    Raises:
        DataError: a domain directory is missing or empty, or a record cannot be read.
    """
    files = {d: list_records(root, d, records_per_domain) for d in domains}
    settings = {
        "loader": LOADER_VERSION,
        "root": str(root.resolve()),
        "domains": list(domains),
        "classes": list(classes),
        "fs": fs,
        "length": length,
        "records_per_domain": records_per_domain,
        "files": {d: [_fingerprint(p) for p in paths] for d, paths in files.items()},
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    path = (cache or cache_dir()) / f"ecg-{digest[:20]}.npz"
    if not path.exists():
        data = _decode(root, files, classes=tuple(classes), fs=fs, length=length)
        _save(path, data)
    return _load_cached(path)


def cache_dir() -> Path:
    """Where decoded datasets are kept: `sweeper.data.cache_dir` (``$SWEEPER_CACHE_DIR``, else
    the user cache), never the data directory, which may be shared and read-only."""
    from sweeper.data import cache_dir as sweeper_cache_dir

    return sweeper_cache_dir()


def _decode(
    root: Path, files: dict[str, list[Path]], *, classes: tuple[str, ...], fs: int, length: int
) -> EcgData:
    domains = tuple(files)
    n = sum(len(paths) for paths in files.values())
    x = np.zeros((n, len(LEADS), length), dtype=np.float32)
    y = np.zeros((n, len(classes)), dtype=np.uint8)
    age = np.full(n, np.nan, dtype=np.float32)
    domain = np.zeros(n, dtype=np.int64)
    ids: list[str] = []
    i = 0
    for d, paths in enumerate(files.values()):
        for hea in paths:
            record = read_record(hea)
            x[i] = crop_or_pad(resample(record.signal, record.fs, fs), length)
            y[i] = label_vector(record.codes, classes)
            age[i] = record.age
            domain[i] = d
            ids.append(hea.relative_to(root).with_suffix("").as_posix())
            i += 1
    return EcgData(x, y, age, domain, tuple(ids), domains, classes)


def _save(path: Path, data: EcgData) -> None:
    """Write `data` as an .npz through a temporary file and a rename (atomic for readers)."""
    from sweeper.data import make_private_roots

    make_private_roots(path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(
                handle,
                x=data.x,
                y=data.y,
                age=data.age,
                domain=data.domain,
                ids=np.array(data.ids, dtype=str),
                domains=np.array(data.domains, dtype=str),
                classes=np.array(data.classes, dtype=str),
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@functools.lru_cache(maxsize=4)
def _load_cached(path: Path) -> EcgData:
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: unreadable ECG cache ({exc}); delete it to rebuild") from None
    for value in arrays.values():
        value.flags.writeable = False
    return EcgData(
        x=arrays["x"],
        y=arrays["y"],
        age=arrays["age"],
        domain=arrays["domain"],
        ids=tuple(str(s) for s in arrays["ids"]),
        domains=tuple(str(s) for s in arrays["domains"]),
        classes=tuple(str(s) for s in arrays["classes"]),
    )


def _fingerprint(hea: Path) -> list[object]:
    """Name, size and mtime of a record's two files: a changed file changes the cache key."""
    out: list[object] = [hea.name]
    for path in (hea, hea.with_suffix(".mat")):
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise DataError(f"{path}: missing (every .hea needs its .mat)") from None
        out += [stat.st_size, stat.st_mtime_ns]
    return out


def _gain_and_baseline(field: str, *, adc_zero: str) -> tuple[float, float]:
    """``1000/mV`` -> (1000, adc_zero); ``200(-12)/mV`` -> (200, -12). A gain of 0 means 200."""
    match = re.fullmatch(r"([-+0-9.eE]+)(?:\(([-+0-9]+)\))?(?:/\S*)?", field)
    if match is None:
        raise ValueError(f"bad gain field {field!r}")
    gain = float(match.group(1)) or 200.0  # WFDB: an unspecified (0) gain is 200 units/mV
    baseline = float(match.group(2)) if match.group(2) is not None else float(adc_zero)
    return gain, baseline


def _parse_comments(lines: Iterable[str]) -> tuple[float, str, tuple[str, ...]]:
    """Age, sex and Dx codes from comment lines (with or without their leading ``#``)."""
    age, sex = math.nan, ""
    codes: tuple[str, ...] = ()
    for raw in lines:
        key, sep, value = str(raw).lstrip("#").partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "age":
            try:
                age = float(value)
            except ValueError:
                age = math.nan  # "NaN", "Unknown", "90+": missing, never invented
        elif key == "sex":
            sex = value
        elif key == "dx":
            codes = tuple(c.strip() for c in value.split(",") if c.strip())
    return age, sex, codes


def _canonical_leads(signal: FloatArray, names: Sequence[str], record: str) -> FloatArray:
    """Reorder rows to `LEADS` by lead name (case-insensitive).

    Raises:
        DataError: a lead is missing.
    """
    position = {str(n).lower(): k for k, n in enumerate(names)}
    missing = [lead for lead in LEADS if lead.lower() not in position]
    if missing:
        raise DataError(f"{record}: lacks lead(s) {', '.join(missing)} (has {', '.join(names)})")
    order = [position[lead.lower()] for lead in LEADS]
    return signal[order]
