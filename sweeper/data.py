"""Datasets on disk: where they live, and fetching them once with a verified checksum.

A dataset file lives at ``data_dir/<subdir>/<name>``. `fetch` returns that path when the file is
there and its sha256 matches; otherwise it downloads it (from a plain URL or out of a zip),
verifies the bytes *before* writing anything, and moves the file into place atomically, so a
crash or a bad download never leaves a half-written or unverified file behind.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sweeper.errors import DataError

#: seconds to wait on the server before a download counts as failed.
DOWNLOAD_TIMEOUT_S = 30.0

# (path, mtime_ns, size) -> sha256 hex digest. Many trials in one worker process call `fetch` for
# the same file; hashing it once per process is enough, and a changed mtime or size re-hashes.
_SHA256_CACHE: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class RemoteFile:
    """A dataset file that sweeper knows how to download and verify.

    Attributes:
        name: file name on disk, e.g. ``ObesityDataSet_raw_and_data_sinthetic.csv``.
        subdir: directory under the data directory, e.g. ``obesity``.
        sha256: expected hex digest of the file's bytes.
        url: where to download it from.
        zip_member: when `url` serves a zip, the member to extract (matched by full member path,
            or else by its last path component, since archives sometimes nest a folder).
    """

    name: str
    subdir: str
    sha256: str
    url: str
    zip_member: str | None = None


def resolve_data_dir(flag: Path | None) -> Path:
    """Return the data directory: the ``--data-dir`` flag, else ``SWEEPER_DATA_DIR``, else a cache.

    The cache is ``$XDG_CACHE_HOME/sweeper/data``, or ``~/.cache/sweeper/data`` when
    ``XDG_CACHE_HOME`` is unset or empty. Nothing is created here.

    Args:
        flag: the value of ``--data-dir``, or None when it was not given.

    Returns:
        The directory (``~`` expanded; it may not exist yet).
    """
    if flag is not None:
        return flag.expanduser()
    from_env = os.environ.get("SWEEPER_DATA_DIR")
    if from_env:
        return Path(from_env).expanduser()
    xdg_cache = os.environ.get("XDG_CACHE_HOME")
    cache_root = Path(xdg_cache) if xdg_cache else Path.home() / ".cache"
    return cache_root / "sweeper" / "data"


def fetch(remote: RemoteFile, data_dir: Path, *, url: str | None = None) -> Path:
    """Return the verified local path of `remote`, downloading it first if it is absent.

    Tasks pass `url` to honour their own override variable (e.g. ``SWEEPER_OBESITY_URL``);
    this function reads no environment itself. Concurrent callers are safe: each writes its own
    temporary file and `os.replace` makes the last identical, verified copy win.

    Args:
        remote: the file to provide.
        data_dir: the resolved data directory (see `resolve_data_dir`).
        url: download from here instead of ``remote.url``.

    Returns:
        ``data_dir / remote.subdir / remote.name``, whose sha256 equals ``remote.sha256``.

    Raises:
        DataError: the file is present with another checksum; or the download failed, was not
            a readable zip holding the member, or had the wrong checksum (nothing is written
            then). Every message says where to put the file by hand.
    """
    path = data_dir / remote.subdir / remote.name
    source = url or remote.url
    if path.exists():
        actual = file_sha256(path)
        if actual != remote.sha256:
            raise DataError(
                f"{path}: sha256 is {actual}, expected {remote.sha256}; the file is damaged or "
                f"another version. Delete it so that sweeper downloads it again, or replace it "
                f"with the original from {source}"
            )
        return path

    try:
        with urllib.request.urlopen(source, timeout=DOWNLOAD_TIMEOUT_S) as response:
            payload: bytes = response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # URLError covers HTTP errors and refused connections; OSError timeouts and resets;
        # ValueError a malformed URL (e.g. a typo in an override variable).
        reason = getattr(exc, "reason", None) or exc
        raise DataError(
            f"download of {source} failed ({reason}). {_by_hand(remote, path, source)}"
        ) from exc

    content = _extract(remote, payload, source, path)
    actual = hashlib.sha256(content).hexdigest()
    if actual != remote.sha256:
        raise DataError(
            f"the {remote.name} downloaded from {source} has sha256 {actual}, expected "
            f"{remote.sha256}; nothing was written. {_by_hand(remote, path, source)}"
        )
    _write_atomically(path, content)
    return path


def file_sha256(path: Path) -> str:
    """Return the sha256 hex digest of the file at `path`, cached per (path, mtime, size).

    Raises:
        OSError: the file cannot be read.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    digest = _SHA256_CACHE.get(key)
    if digest is None:
        digest = _hash_file(path)
        _SHA256_CACHE[key] = digest
    return digest


def _hash_file(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _extract(remote: RemoteFile, payload: bytes, source: str, path: Path) -> bytes:
    """Return the file's bytes from a download: the payload itself, or its zip member."""
    if remote.zip_member is None:
        return payload
    member = remote.zip_member
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            names = archive.namelist()
            if member not in names:
                nested = [n for n in names if PurePosixPath(n).name == member]
                if not nested:
                    raise DataError(
                        f"the zip downloaded from {source} holds no {member}; nothing was "
                        f"written. {_by_hand(remote, path, source)}"
                    )
                member = nested[0]
            return archive.read(member)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise DataError(
            f"the download from {source} is not a readable zip ({exc}); nothing was written. "
            f"{_by_hand(remote, path, source)}"
        ) from exc


def _by_hand(remote: RemoteFile, path: Path, source: str) -> str:
    """The part of every download error that says how to provide the file by hand."""
    where = f"{remote.zip_member} from the zip at {source}" if remote.zip_member else source
    return (
        f"Download {where} by hand and put it at {path}, or point --data-dir or "
        f"SWEEPER_DATA_DIR at a directory that holds {remote.subdir}/{remote.name}"
    )


def _write_atomically(path: Path, content: bytes) -> None:
    """Write `content` to `path` through a temporary file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory, so os.replace is a rename on one file system and readers never see a
    # partial file.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        # mkstemp creates the file private (0600); a dataset is meant to be readable by others.
        os.chmod(tmp_name, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
