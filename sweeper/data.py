"""Datasets and caches on disk: where they live, and fetching a file once with a verified checksum.

Directories come from platformdirs (the same place pooch's ``os_cache`` uses): the user cache
``~/.cache/sweeper`` on Linux (``$XDG_CACHE_HOME`` honoured), ``~/Library/Caches/sweeper`` on
macOS, ``%LOCALAPPDATA%/sweeper/Cache`` on Windows. `cache_dir` is the one root of sweeper's
caches (compiled kernels, decoded ECG arrays; ``$SWEEPER_CACHE_DIR`` overrides it);
`resolve_data_dir` is where datasets are read and downloaded.

A dataset file lives at ``data_dir/<subdir>/<name>``. `fetch` returns that path when the file is
there and its sha256 matches; otherwise pooch downloads it into a temporary directory (from a
plain URL or as a zip), the bytes (or the zip member's) are verified *before* anything is
written under the data directory, and the file is moved into place atomically, so a crash or a
bad download never leaves a half-written or unverified file behind.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit
from urllib.request import url2pathname

import platformdirs

from sweeper.errors import DataError

#: the application name platformdirs places sweeper's directories under.
APP_NAME = "sweeper"
#: environment variable: the root of sweeper's caches (compiled kernels, decoded datasets).
CACHE_ENV = "SWEEPER_CACHE_DIR"
#: environment variable: the data directory (``--data-dir`` wins over it).
DATA_ENV = "SWEEPER_DATA_DIR"

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


def user_cache_dir() -> Path:
    """The user's cache directory for sweeper, from platformdirs (``~/.cache/sweeper`` on Linux,
    ``$XDG_CACHE_HOME/sweeper`` when that is set and not empty). Nothing is created here."""
    return platformdirs.user_cache_path(APP_NAME, appauthor=False)


def user_data_dir() -> Path:
    """The user's data directory for sweeper, from platformdirs (``~/.local/share/sweeper`` on
    Linux, ``$XDG_DATA_HOME/sweeper`` when that is set): for what cannot be made again, such
    as users' trial directories. Nothing is created here."""
    return platformdirs.user_data_path(APP_NAME, appauthor=False)


def cache_dir() -> Path:
    """The root of sweeper's caches: ``$SWEEPER_CACHE_DIR``, else `user_cache_dir`.

    Compiled kernels (``stacked_mlp-*.so``) and decoded datasets (``ecg-*.npz``) live directly
    in it, each under its own file-name prefix. Nothing is created here.
    """
    explicit = os.environ.get(CACHE_ENV)
    return Path(explicit).expanduser() if explicit else user_cache_dir()


def make_private_roots(path: Path) -> None:
    """Create the cache roots above `path` (`user_cache_dir`, `cache_dir`) that are missing,
    with mode 0o700 whatever the umask: the kernel is loaded only from a directory nobody else
    can write (`sweeper.kernel.cache`), and a root made group-writable by a
    umask of 002 would send every process to rebuild it in a temporary directory."""
    path = Path(os.path.abspath(path))
    for root in {Path(os.path.abspath(user_cache_dir())), Path(os.path.abspath(cache_dir()))}:
        if path == root or root in path.parents:
            os.makedirs(root, mode=0o700, exist_ok=True)


def default_data_dir() -> Path:
    """Where datasets are downloaded when neither ``--data-dir`` nor ``SWEEPER_DATA_DIR`` is
    given: ``data`` in `user_cache_dir` (``~/.cache/sweeper/data`` on Linux).

    A cache rather than platformdirs' user *data* directory because every file there can be
    downloaded again and is checked against its checksum (pooch's ``os_cache`` makes the same
    choice); earlier releases downloaded to the same place.
    """
    return user_cache_dir() / "data"


def resolve_data_dir(flag: Path | None) -> Path:
    """Return the data directory: the ``--data-dir`` flag, else ``SWEEPER_DATA_DIR``, else
    `default_data_dir`. Nothing is created here.

    Args:
        flag: the value of ``--data-dir``, or None when it was not given.

    Returns:
        The directory (``~`` expanded; it may not exist yet).
    """
    if flag is not None:
        return flag.expanduser()
    from_env = os.environ.get(DATA_ENV)
    if from_env:
        return Path(from_env).expanduser()
    return default_data_dir()


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

    payload = _download(remote, source, path)
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
    import pooch

    digest: str = pooch.file_hash(str(path), alg="sha256")
    return digest


def _download(remote: RemoteFile, source: str, path: Path) -> bytes:
    """Download `source` with pooch into a temporary directory outside the data directory and
    return its bytes (small files: the obesity zip is 60 kB); a ``file:`` URL is read directly.

    pooch's own ``retrieve`` is not used: it checks the hash of the downloaded file, and for a
    zip the pinned checksum is the member's, not the archive's (which the publisher may repack);
    its ``Unzip`` would also write into the data directory before anything is verified.

    Raises:
        DataError: an unsupported URL, a refused connection, a timeout or an HTTP error.
    """
    import pooch
    from pooch.downloaders import choose_downloader

    parts = urlsplit(source)
    try:
        if parts.scheme == "file":  # an offline mirror named by an override variable
            return Path(url2pathname(parts.path)).read_bytes()
        if parts.scheme in ("http", "https"):
            downloader = pooch.HTTPDownloader(timeout=DOWNLOAD_TIMEOUT_S)
        else:
            downloader = choose_downloader(source)  # ftp, sftp, doi; else ValueError
        with tempfile.TemporaryDirectory(prefix="sweeper-download-") as tmp:
            target = Path(tmp) / "download"
            downloader(source, str(target), None)
            return target.read_bytes()
    except (OSError, ValueError) as exc:
        # requests' errors (refused connections, timeouts, HTTP status) are OSErrors; ValueError
        # is a malformed or unsupported URL (e.g. a typo in an override variable).
        raise DataError(
            f"download of {source} failed ({_reason(exc)}). {_by_hand(remote, path, source)}"
        ) from exc


def _reason(exc: BaseException) -> str:
    """The innermost cause of a download error, e.g. ``[Errno 111] Connection refused``.

    requests wraps the socket error in urllib3's retry and connection errors, whose texts
    repeat the host and the URL; the innermost one says what went wrong.
    """
    inner = exc
    for _ in range(8):  # bounded: an exception chain could in principle loop
        nested = getattr(inner, "reason", None)
        if not isinstance(nested, BaseException) and inner.args:
            nested = inner.args[0]
        if not isinstance(nested, BaseException):
            break
        inner = nested
    text = str(inner)
    # urllib3's NewConnectionError reads "<connection object>: Failed to establish ...: [Errno
    # 111] Connection refused"; keep what follows the object's repr.
    if text.startswith("<") and ">: " in text:
        text = text.split(">: ", 1)[1]
    return text or type(inner).__name__


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
    make_private_roots(path.parent)
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
