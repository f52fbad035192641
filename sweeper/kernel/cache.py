"""Where the compiled kernel is kept, and what is checked before it is loaded.

Loading a shared library runs its code at once (its constructors), before any symbol is looked
up, so a file someone else planted at the cache path must never reach ``dlopen``. The kernel is
therefore built in, and loaded from, only a directory that the current user owns and that no
one else can write (nor rename away: its parents are checked too); and a cached library is
loaded only if it is a regular file of ours, not writable by others, whose bytes hash to the
SHA-256 recorded beside it (``NAME.so.sha256``) when it was built. Otherwise it is built again:
in the cache when the cache directory is sound, else in a fresh private directory
(`tempfile.mkdtemp`, mode 0o700) for this process, said once in a warning.

The race between checking the file and ``dlopen`` opening it again by name is closed by the
directory, not by the hash: in a directory only this user can write, nobody else can swap the
file in between. That is why a directory that fails the check is not used at all, even for a
file that would pass.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

#: suffix of the file beside each library that records its SHA-256 (hex, one line).
HASH_SUFFIX = ".sha256"
#: what `problem` says of a library that is simply not there (no warning is due then).
MISSING = "is not there"
#: mode bits that let someone other than the owner write.
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH

# configured cache directory -> the private directory used instead for this process.
_fallbacks: dict[Path, Path] = {}


def sidecar(library: Path) -> Path:
    """The file recording `library`'s SHA-256: ``NAME.so.sha256`` beside it."""
    return library.with_name(library.name + HASH_SUFFIX)


def private_dir(configured: Path) -> Path:
    """The directory to build and load the kernel in: `configured` (created with mode 0o700 if
    missing) when `unsound` finds nothing wrong with it, else a fresh private directory for this
    process, removed at exit; the first time a configured directory is refused a warning says
    why."""
    configured = Path(os.path.abspath(configured))
    if configured in _fallbacks:
        return _fallbacks[configured]
    try:
        configured.parent.mkdir(parents=True, exist_ok=True)
        os.makedirs(configured, 0o700, exist_ok=True)
    except OSError:
        pass  # already there (checked below), or cannot be made (`unsound` says why)
    reason = unsound(configured)
    if reason is None:
        return configured
    fallback = Path(tempfile.mkdtemp(prefix="sweeper-kernel-"))
    atexit.register(shutil.rmtree, fallback, ignore_errors=True)
    _fallbacks[configured] = fallback
    log.warning(
        "not building or loading the stacked-MLP kernel in %s: %s; using the private "
        "directory %s for this process instead",
        configured,
        reason,
        fallback,
    )
    return fallback


def unsound(directory: Path) -> str | None:
    """Why `directory` may not hold the kernel, or None when it may: it must be a real
    directory (not a symbolic link) owned by the current user, writable by nobody else, and
    each of its parents must be owned by the user or root and be writable by nobody else unless
    it is sticky (as ``/tmp`` is), so that no one else can rename the directory away."""
    uid = _uid()
    if uid is None:
        return "file ownership cannot be checked on this platform"
    try:
        st = os.lstat(directory)
    except OSError as exc:
        return f"it cannot be examined ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    if st.st_uid != uid:
        return f"it is owned by uid {st.st_uid}, not by the current user (uid {uid})"
    if st.st_mode & _OTHERS_WRITE:
        mode = stat.S_IMODE(st.st_mode)
        return f"others can write to it (mode {mode:o}; `chmod go-w {directory}` makes it private)"
    for parent in _parents(directory):
        try:
            pst = os.stat(parent)
        except OSError as exc:
            return f"its parent {parent} cannot be examined ({exc.strerror})"
        if pst.st_uid not in (uid, 0):
            return f"its parent {parent} is owned by uid {pst.st_uid}"
        if pst.st_mode & _OTHERS_WRITE and not pst.st_mode & stat.S_ISVTX:
            return f"others can write to its parent {parent} (mode {stat.S_IMODE(pst.st_mode):o})"
    return None


def problem(library: Path) -> str | None:
    """What is wrong with the cached `library`, or None when it may be loaded: it and its
    ``.sha256`` must be regular files (not symbolic links) of the current user that nobody else
    can write, and the SHA-256 of the bytes read (once, through one file descriptor) must be the
    one recorded. `MISSING` when there is no library at all."""
    if not os.path.lexists(library):
        return MISSING
    data = _read_own(library)
    if isinstance(data, str):
        return data
    recorded = _read_own(sidecar(library))
    if isinstance(recorded, str):
        return f"has no usable recorded SHA-256 ({sidecar(library).name} {recorded})"
    actual = hashlib.sha256(data).hexdigest().encode()
    if not hmac.compare_digest(actual, recorded.strip()):
        return "does not match the SHA-256 recorded when it was built"
    return None


def install(built: Path, library: Path) -> None:
    """Move the freshly compiled `built` to `library` (both in the same private directory),
    recording the SHA-256 of its bytes in ``library.sha256``; both files are written under
    temporary names and renamed into place, so a reader never sees half of one."""
    os.chmod(built, 0o700)  # whatever the umask made of the linker's output
    digest = hashlib.sha256(built.read_bytes()).hexdigest()
    fd, tmp = tempfile.mkstemp(dir=library.parent, suffix=HASH_SUFFIX)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(digest + "\n")
        os.replace(tmp, sidecar(library))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    os.replace(built, library)


def _uid() -> int | None:
    getuid = getattr(os, "getuid", None)
    return getuid() if getuid is not None else None


def _parents(directory: Path) -> list[Path]:
    """The parents of `directory` as written and as resolved (a symbolic link among them leads
    through other directories), deepest first."""
    path = Path(os.path.abspath(directory))
    resolved = Path(os.path.realpath(path.parent))
    found = {*path.parents, resolved, *resolved.parents}
    return sorted(found, key=lambda p: (-len(p.parts), str(p)))


def _read_own(path: Path) -> bytes | str:
    """The bytes of `path` if it is a regular file of the current user that nobody else can
    write, else what is wrong with it. Opened without following a symbolic link (and without
    blocking on a FIFO); the checks are made on the open descriptor the bytes are read from."""
    flags = os.O_RDONLY
    for name in ("O_NOFOLLOW", "O_NONBLOCK", "O_CLOEXEC"):
        flags |= getattr(os, name, 0)
    if os.path.islink(path):
        return "is a symbolic link"
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        return f"cannot be opened ({exc.strerror})"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "is not a regular file"
        if st.st_uid != _uid():
            return f"is owned by uid {st.st_uid}, not by the current user"
        if st.st_mode & _OTHERS_WRITE:
            return f"can be written by others (mode {stat.S_IMODE(st.st_mode):o})"
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
