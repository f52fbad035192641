"""The compiled-kernel cache never runs a library someone else put there (issue 15).

A "planted" library is a real shared library whose constructor writes a marker file as soon as
it is loaded (before any symbol is looked up), and which exports the kernel's two symbols, so
that the old cache (load whatever file is at the path) would have loaded it without a complaint.
Each test plants it where `kernel.load` would look and checks that the marker never appears and
that the kernel in use is a genuine build.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sweeper import kernel as native
from sweeper.kernel import cache

MARKER_ENV = "SWEEPER_TEST_PLANTED_MARKER"
REAL = "float"

PLANTED_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>

__attribute__((constructor)) static void planted(void) {
    const char *marker = getenv("SWEEPER_TEST_PLANTED_MARKER");
    if (marker) {
        FILE *f = fopen(marker, "w");
        if (f) { fputs("planted code ran\n", f); fclose(f); }
    }
}

int64_t stacked_mlp_lanes(void) { return 99; }
void stacked_mlp_loss_grad(void) {}
"""


@pytest.fixture(scope="module")
def planted_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of the planted library (skipped where no C compiler works)."""
    try:
        compiler = native._compiler()
    except OSError as exc:
        pytest.skip(f"the C kernel does not compile here ({exc})")
    where = tmp_path_factory.mktemp("planted_src")
    (where / "planted.c").write_text(PLANTED_C)
    out = where / "planted.so"
    try:
        subprocess.run(
            [compiler, "-shared", "-fPIC", "-o", str(out), str(where / "planted.c")],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"the C compiler does not work here ({exc})")
    return out.read_bytes()


@pytest.fixture
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file the planted library's constructor writes when it runs."""
    path = tmp_path / "planted-code-ran"
    monkeypatch.setenv(MARKER_ENV, str(path))
    return path


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Each compilation of the kernel, by target path; `kernel.load` starts afresh."""
    monkeypatch.delenv(native.ENABLE_ENV, raising=False)
    done: list[Path] = []
    compile_ = native._compile

    def counting(compiler: str, flags: list[str], library: Path) -> None:
        done.append(library)
        compile_(compiler, flags, library)

    monkeypatch.setattr(native, "_compile", counting)
    native.load.cache_clear()
    yield done
    native.load.cache_clear()


def _use_cache(monkeypatch: pytest.MonkeyPatch, directory: Path) -> Path:
    """Point the kernel cache at `directory`; the path `kernel.load` would load from there."""
    monkeypatch.setenv(native.CACHE_ENV, str(directory))
    return directory / native.library_name(REAL)


def _private(path: Path) -> Path:
    path.mkdir(parents=True)
    path.chmod(0o700)
    return path


def stat_mode(path: Path) -> int:
    return os.lstat(path).st_mode & 0o777


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _load_genuine(marker: Path | None = None) -> native.Kernel:
    """`kernel.load`, checked to have run no planted code and to be a genuine build."""
    kernel = native.load(REAL)
    assert marker is None or not marker.exists(), "the planted library was loaded"
    assert kernel is not None, "the kernel should load (built afresh)"
    # A genuine float kernel has a vector's worth of floats (16, 8 or 4); the planted one says 99.
    assert kernel.lanes == native.ISAS[kernel.isa][0] // 4, kernel.lanes
    assert kernel.path is not None
    return kernel


def test_the_planted_library_runs_code_when_loaded(
    planted_bytes: bytes, marker: Path, tmp_path: Path
) -> None:
    # The control: loading the planted library is enough to write the marker, so its absence
    # in the other tests means it was never loaded.
    copy = tmp_path / "control" / "planted.so"
    copy.parent.mkdir()
    copy.write_bytes(planted_bytes)
    ctypes.CDLL(str(copy))
    assert marker.exists()


def test_planted_library_in_a_world_writable_cache_is_not_run(
    planted_bytes: bytes,
    marker: Path,
    builds: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    shared.chmod(0o777)
    planted = _use_cache(monkeypatch, shared)
    planted.write_bytes(planted_bytes)
    # Even a "right" hash beside it does not help: nothing in such a directory is trusted.
    cache.sidecar(planted).write_text(_sha(planted_bytes) + "\n")
    with caplog.at_level(logging.WARNING):
        kernel = _load_genuine(marker)
    assert not marker.exists(), "the planted library was loaded"
    assert kernel.path is not None and kernel.path.parent != shared
    assert kernel.path.name == planted.name
    assert builds == [kernel.path]
    assert stat_mode(kernel.path.parent) == 0o700
    assert planted.read_bytes() == planted_bytes, "nothing is written into the unsafe directory"
    assert any("others can write to it" in r.getMessage() for r in caplog.records)


def _no_sidecar(library: Path, planted: bytes, other: Path) -> None:
    pass


def _wrong_sidecar(library: Path, planted: bytes, other: Path) -> None:
    cache.sidecar(library).write_text("0" * 64 + "\n")


def _symlinked_sidecar(library: Path, planted: bytes, other: Path) -> None:
    (other / "planted.sha256").write_text(_sha(planted) + "\n")
    cache.sidecar(library).symlink_to(other / "planted.sha256")


def _library_writable_by_others(library: Path, planted: bytes, other: Path) -> None:
    cache.sidecar(library).write_text(_sha(planted) + "\n")
    library.chmod(0o666)


def _library_of_another_user(library: Path, planted: bytes, other: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("giving a file to another user needs root")
    cache.sidecar(library).write_text(_sha(planted) + "\n")
    os.chown(library, 65534, -1)


@pytest.mark.parametrize(
    "spoil",
    [
        _no_sidecar,
        _wrong_sidecar,
        _symlinked_sidecar,
        _library_writable_by_others,
        _library_of_another_user,
    ],
)
def test_planted_library_in_a_private_cache_without_a_valid_record_is_rebuilt(
    spoil: Callable[[Path, bytes, Path], None],
    planted_bytes: bytes,
    marker: Path,
    builds: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    private = _private(tmp_path / "cache")
    library = _use_cache(monkeypatch, private)
    library.write_bytes(planted_bytes)
    spoil(library, planted_bytes, _private(tmp_path / "elsewhere"))
    kernel = _load_genuine(marker)
    assert not marker.exists(), "the planted library was loaded"
    assert kernel.path == library and builds == [library]
    assert not library.is_symlink() and not cache.sidecar(library).is_symlink()
    rebuilt = library.read_bytes()
    assert rebuilt != planted_bytes
    assert cache.sidecar(library).read_text().strip() == _sha(rebuilt)
    assert stat_mode(library) == 0o700


@pytest.mark.parametrize("tamper", ["planted", "one byte flipped"])
def test_tampered_library_is_detected_and_rebuilt(
    tamper: str,
    planted_bytes: bytes,
    marker: Path,
    builds: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    library = _use_cache(monkeypatch, _private(tmp_path / "cache"))
    first = _load_genuine()
    assert first.path == library and builds == [library]
    recorded = cache.sidecar(library).read_text()
    genuine = library.read_bytes()
    if tamper == "planted":
        changed = planted_bytes
    else:
        middle = len(genuine) // 2
        changed = genuine[:middle] + bytes([genuine[middle] ^ 0xFF]) + genuine[middle + 1 :]
    # Written under another name and renamed over it: the genuine library is mapped into this
    # process, and rewriting its pages in place could break the code already loaded.
    (library.parent / "tmp").write_bytes(changed)
    os.replace(library.parent / "tmp", library)
    native.load.cache_clear()
    second = _load_genuine(marker)
    assert not marker.exists(), "the tampered library was loaded"
    assert second.path == library and builds == [library, library]
    assert library.read_bytes() != changed
    assert cache.sidecar(library).read_text().strip() == _sha(library.read_bytes())
    assert recorded.strip() == _sha(genuine)


def test_symlinked_cache_directory_is_refused(
    planted_bytes: bytes,
    marker: Path,
    builds: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = _private(tmp_path / "target")
    link = tmp_path / "link"
    link.symlink_to(target)
    planted = _use_cache(monkeypatch, link)
    (target / planted.name).write_bytes(planted_bytes)
    cache.sidecar(target / planted.name).write_text(_sha(planted_bytes) + "\n")
    with caplog.at_level(logging.WARNING):
        kernel = _load_genuine(marker)
    assert not marker.exists(), "the planted library was loaded through the link"
    assert kernel.path is not None and kernel.path.parent not in (link, target)
    assert builds == [kernel.path]
    assert (target / planted.name).read_bytes() == planted_bytes
    assert any("symbolic link" in r.getMessage() for r in caplog.records)


def test_symlinked_library_is_refused(
    planted_bytes: bytes,
    marker: Path,
    builds: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    library = _use_cache(monkeypatch, _private(tmp_path / "cache"))
    elsewhere = _private(tmp_path / "elsewhere") / "planted.so"
    elsewhere.write_bytes(planted_bytes)
    library.symlink_to(elsewhere)
    cache.sidecar(library).write_text(_sha(planted_bytes) + "\n")
    kernel = _load_genuine(marker)
    assert not marker.exists(), "the library the link points to was loaded"
    assert kernel.path == library and builds == [library]
    assert not library.is_symlink()
    assert elsewhere.read_bytes() == planted_bytes, "the link's target is left alone"


def test_private_cache_inside_a_world_writable_parent_is_refused(
    planted_bytes: bytes,
    marker: Path,
    builds: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Whoever can write the parent (not sticky, unlike /tmp) can rename the cache away and put
    # their own directory in its place between the check and the load.
    parent = tmp_path / "open"
    parent.mkdir()
    parent.chmod(0o777)
    planted = _use_cache(monkeypatch, _private(parent / "cache"))
    planted.write_bytes(planted_bytes)
    cache.sidecar(planted).write_text(_sha(planted_bytes) + "\n")
    with caplog.at_level(logging.WARNING):
        kernel = _load_genuine(marker)
    assert not marker.exists(), "the planted library was loaded"
    assert kernel.path is not None and kernel.path.parent != planted.parent
    assert any(f"its parent {parent}" in r.getMessage() for r in caplog.records)


def test_cache_directory_of_another_user_is_refused(
    planted_bytes: bytes,
    marker: Path,
    builds: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if os.getuid() != 0:
        pytest.skip("giving a directory to another user needs root")
    theirs = _private(tmp_path / "theirs")
    planted = _use_cache(monkeypatch, theirs)
    planted.write_bytes(planted_bytes)
    cache.sidecar(planted).write_text(_sha(planted_bytes) + "\n")
    for path in (theirs, planted, cache.sidecar(planted)):
        os.chown(path, 65534, -1)
    kernel = _load_genuine(marker)
    assert not marker.exists(), "the planted library was loaded"
    assert kernel.path is not None and kernel.path.parent != theirs


def test_second_load_is_a_cache_hit(
    builds: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        native._compiler()
    except OSError as exc:
        pytest.skip(f"the C kernel does not compile here ({exc})")
    directory = tmp_path / "new" / "cache"
    library = _use_cache(monkeypatch, directory)
    with caplog.at_level(logging.WARNING):
        first = _load_genuine()
        assert stat_mode(directory) == 0o700, "a missing cache directory is created private"
        assert first.path == library and builds == [library]
        before = [os.stat(p) for p in (library, cache.sidecar(library))]
        native.load.cache_clear()
        second = _load_genuine()
    assert second.path == library
    assert builds == [library], "the second load compiled again"
    after = [os.stat(p) for p in (library, cache.sidecar(library))]
    assert [(s.st_ino, s.st_mtime_ns) for s in after] == [(s.st_ino, s.st_mtime_ns) for s in before]
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def test_cache_roots_are_made_private_under_a_permissive_umask(tmp_path, monkeypatch) -> None:
    """A umask of 002 (Ubuntu's default) must not leave the cache root group-writable: the
    kernel would then refuse it and rebuild in a temporary directory in every process."""
    import stat as stat_module

    from sweeper.data import make_private_roots

    root = tmp_path / "cache-root"
    monkeypatch.setenv("SWEEPER_CACHE_DIR", str(root))
    old = os.umask(0o002)
    try:
        make_private_roots(root / "ecg-x.npz")
    finally:
        os.umask(old)
    assert stat_module.S_IMODE(os.stat(root).st_mode) == 0o700
