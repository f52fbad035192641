"""The obesity MLP's SIMD kernel in C, compiled on first use with the machine's C compiler.

It serves only the obesity task's batched trainer: `sweeper.tasks.obesity.stacked.LaneMLP`
trains a group of obesity MLPs with one member per SIMD lane through ``stacked_mlp.c``
(forward, backward and loss in one call per mini-batch): 3.2 to 3.7 us per member per forward
and backward of the obesity model in float32, 3.4 to 4.3 times faster than PyTorch's batched
matrix products (``bench/kernel.py``). The source is compiled once per machine kind into
``$SWEEPER_CACHE_DIR`` (default: the user cache, ``~/.cache/sweeper`` on Linux; see
`sweeper.data.cache_dir`), one shared library per precision, and
loaded with ctypes; two processes compiling at once each write their own file and rename it
into place. A library is loaded only from a directory the user owns and nobody else can write,
after its bytes have matched the SHA-256 recorded when it was built; otherwise it is built again
in a private directory, so a file planted at the cache path is never run (`.cache`).

Where no C compiler works, `load` returns None and the batched executor uses PyTorch's batched
products instead (the same math, slower); ``SWEEPER_NATIVE=0`` asks for that explicitly.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sysconfig
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# CACHE_ENV, the variable naming where compiled kernels are kept, re-exported for tests.
from sweeper.data import CACHE_ENV as CACHE_ENV
from sweeper.data import cache_dir
from sweeper.tasks.obesity.kernel import cache

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("stacked_mlp.c")
#: environment variable: "0" turns the kernel off (PyTorch's batched products are used).
ENABLE_ENV = "SWEEPER_NATIVE"

_I64 = ctypes.c_int64
_PTR = ctypes.c_void_p


@dataclass(frozen=True)
class Kernel:
    """The compiled kernel for one precision.

    Attributes:
        real: "float" or "double".
        lanes: members per SIMD vector (8 for float, 4 for double).
        loss_grad: ``stacked_mlp_loss_grad`` (see ``stacked_mlp.c`` for its arguments).
        path: the shared library it was loaded from.
    """

    real: str
    lanes: int
    loss_grad: Callable[..., None]
    path: Path | None = None


def enabled() -> bool:
    """Whether the kernel may be used (``SWEEPER_NATIVE`` is not "0")."""
    return os.environ.get(ENABLE_ENV, "1") != "0"


@functools.cache
def load(real: str) -> Kernel | None:
    """The kernel for ``real`` ("float" or "double"), compiling it if needed; None if unavailable.

    Never raises for a missing or failing compiler: the reason is logged and None returned, so
    the caller falls back to PyTorch.
    """
    if not enabled():
        return None
    try:
        library = _build(real)
        # Checked by `_build` and opened again by name here: nobody else can swap the file in
        # between because the directory is one only this user can write (`cache.unsound`).
        lib = ctypes.CDLL(str(library))
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("stacked-MLP kernel unavailable (%s); using PyTorch batched products", exc)
        return None
    fn = lib.stacked_mlp_loss_grad
    fn.restype = None
    scalar = ctypes.c_float if real == "float" else ctypes.c_double
    # blocks, depth, widths, n_params, params, grad, x, y, idx, idx_stride, batch, scale, loss, work
    fn.argtypes = [_I64, _I64, _PTR, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _I64, _I64, scalar]
    fn.argtypes += [_PTR, _PTR]
    lanes = lib.stacked_mlp_lanes
    lanes.restype = _I64
    return Kernel(real=real, lanes=int(lanes()), loss_grad=fn, path=library)


def _flags() -> list[str]:
    """Compiler flags: AVX2 + FMA where the CPU has them (as PyTorch detected), else portable."""
    flags = ["-O3", "-std=gnu11", "-fPIC", "-shared"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        import torch

        if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
            flags += ["-mavx2", "-mfma"]
    return flags


def _compiler() -> str:
    """``$CC`` if set (and nothing else then), else the first of Python's own, cc, gcc, clang."""
    if os.environ.get("CC"):
        candidates = [os.environ["CC"]]
    else:
        candidates = [sysconfig.get_config_var("CC") or "", "cc", "gcc", "clang"]
    for candidate in candidates:
        if candidate and shutil.which(candidate.split()[0]):
            return candidate.split()[0]
    raise OSError(f"no C compiler found (tried {', '.join(c for c in candidates if c)})")


def library_name(real: str) -> str:
    """The file name of the kernel for `real` in the cache: ``stacked_mlp-REAL-KEY.so``, KEY a
    hash of the source, the compiler, its flags and the platform (one build per machine kind)."""
    return _recipe(real)[2]


def _recipe(real: str) -> tuple[str, list[str], str]:
    """The compiler, its flags and the library's file name for `real`."""
    compiler = _compiler()
    flags = _flags() + [f"-DREAL={real}"]
    source = SOURCE.read_bytes()
    key = hashlib.sha256(
        source + " ".join([compiler, *flags, platform.platform()]).encode()
    ).hexdigest()[:16]
    return compiler, flags, f"stacked_mlp-{real}-{key}.so"


def _build(real: str) -> Path:
    """The kernel for `real`, compiled unless the cache already holds this exact build and it
    passes `cache.problem`; in `cache.private_dir`, never in a directory others can write."""
    compiler, flags, name = _recipe(real)
    library = cache.private_dir(cache_dir()) / name
    problem = cache.problem(library)
    if problem is None:
        return library
    if problem != cache.MISSING:
        log.warning("the cached kernel %s %s; building it again", library, problem)
    _compile(compiler, flags, library)
    return library


def _compile(compiler: str, flags: list[str], library: Path) -> None:
    """Compile the kernel to a temporary file beside `library`, then `cache.install` it."""
    fd, tmp = tempfile.mkstemp(dir=library.parent, suffix=".so")
    os.close(fd)
    try:
        subprocess.run(
            [compiler, *flags, "-o", tmp, str(SOURCE), "-lm"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        cache.install(Path(tmp), library)
    except subprocess.CalledProcessError as exc:
        raise OSError(f"{compiler} failed: {exc.stderr.decode(errors='replace').strip()}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
