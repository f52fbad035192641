"""The stacked-MLP SIMD kernel in C, compiled on first use with the machine's C compiler.

It serves the obesity task's batched trainer and a model task's plain MLPs
(`sweeper.tasks.model.lanes`): `sweeper.kernel.lanes.LaneMLP` trains a group of MLPs
with one member per SIMD lane through ``stacked_mlp.c``: forward, backward and loss of a
mini-batch in one call, a whole epoch of training (SAM's two passes and the SGD / Adam / AdamW
update fused in) in one call (``bench/kernel.py`` measures it against the machine's peak), or
every member's predictions on shared rows. Hidden activations (ReLU, tanh, sigmoid, GELU),
head (identity or ``scale * sigmoid``), outputs and loss (MSE or cross-entropy) are arguments.

The vector width is chosen at build time (`ISAS`): AVX-512 (16 floats or 8 doubles per
vector) where the CPU has it, else AVX2 with FMA (8 or 4), else portable 16-byte vectors (4 or
2, plain C vector extensions); ``SWEEPER_KERNEL_ISA=avx512|avx2|portable`` forces one. Every
lane runs the same instructions whatever the width, so AVX-512 and AVX2 give a member bit for
bit the same numbers; the portable build has no fused multiply-add and rounds differently.

The source is compiled once per machine kind into ``$SWEEPER_CACHE_DIR`` (default: the user
cache, ``~/.cache/sweeper`` on Linux; see `sweeper.data.cache_dir`), one shared library per
precision and vector width, and loaded with ctypes; two processes compiling at once each write
their own file and rename it into place. A library is loaded only from a directory the user
owns and nobody else can write, after its bytes have matched the SHA-256 recorded when it was
built; otherwise it is built again in a private directory, so a file planted at the cache path
is never run (`.cache`).

Where no C compiler works, `load` returns None and the batched executor uses PyTorch's batched
products instead (the same math, slower), and a model task's group ``torch.func``;
``SWEEPER_NATIVE=0`` asks for that explicitly.
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
from sweeper.kernel import cache

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("stacked_mlp.c")
#: the headers `SOURCE` includes: its vector primitives and its layer products.
HEADERS = tuple(SOURCE.with_name(name) for name in ("lanes.h", "layers.h", "activations.h"))
#: environment variable: "0" turns the kernel off (PyTorch's batched products, or torch.func
#: for a model task, are used).
ENABLE_ENV = "SWEEPER_NATIVE"
#: environment variable forcing the vector width: one of `ISAS` (default: the widest the CPU has).
ISA_ENV = "SWEEPER_KERNEL_ISA"
#: vector widths the kernel builds for, widest first: name -> (bytes per vector, compiler flags).
ISAS: dict[str, tuple[int, tuple[str, ...]]] = {
    "avx512": (64, ("-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma")),
    "avx2": (32, ("-mavx2", "-mfma")),
    "portable": (16, ()),
}

_I64 = ctypes.c_int64
_PTR = ctypes.c_void_p


@dataclass(frozen=True)
class Kernel:
    """The compiled kernel for one precision and vector width.

    Attributes:
        real: "float" or "double".
        lanes: members per SIMD vector (16 floats or 8 doubles with AVX-512, 8 or 4 with AVX2,
            4 or 2 portable).
        loss_grad: ``stacked_mlp_loss_grad`` (see ``stacked_mlp.c`` for its arguments).
        train_epoch: ``stacked_mlp_train_epoch``: one epoch, SAM and the optimizer fused in.
        predict: ``stacked_mlp_predict``: every member's outputs on the same rows.
        work_size: ``stacked_mlp_work_size``: the scratch numbers the three above need.
        path: the shared library it was loaded from.
        isa: the vector width it was built for, a name in `ISAS`.
    """

    real: str
    lanes: int
    loss_grad: Callable[..., None]
    train_epoch: Callable[..., None]
    predict: Callable[..., None]
    work_size: Callable[..., int]
    isa: str
    path: Path | None = None


def enabled() -> bool:
    """Whether the kernel may be used (``SWEEPER_NATIVE`` is not "0")."""
    return os.environ.get(ENABLE_ENV, "1") != "0"


def available_isas() -> list[str]:
    """The names in `ISAS` this CPU runs, widest first ("portable" always)."""
    found = ["portable"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
        if capability in ("AVX2", "AVX512"):
            found.insert(0, "avx2")
        if capability == "AVX512":
            found.insert(0, "avx512")
    return found


def chosen_isa() -> str:
    """``$SWEEPER_KERNEL_ISA`` when set, else the widest ISA this CPU runs.

    Raises:
        ValueError: the variable names no ISA, or one this CPU cannot run.
    """
    forced = os.environ.get(ISA_ENV, "").strip().lower()
    if not forced:
        return available_isas()[0]
    if forced not in ISAS:
        raise ValueError(f"unknown {ISA_ENV} {forced!r}; choose one of: {', '.join(ISAS)}")
    if forced not in available_isas():
        best = available_isas()[0]
        raise ValueError(f"{ISA_ENV}={forced}: this CPU cannot run it (the widest it runs: {best})")
    return forced


@functools.cache
def load(real: str, isa: str | None = None) -> Kernel | None:
    """The kernel for ``real`` ("float" or "double") built for `isa` (default `chosen_isa`),
    compiling it if needed; None if unavailable.

    Never raises for a missing or failing compiler, nor for a bad ``SWEEPER_KERNEL_ISA``: the
    reason is logged and None returned, so the caller falls back to PyTorch.
    """
    if not enabled():
        return None
    try:
        isa = isa or chosen_isa()
        library = _build(real, isa)
        # Checked by `_build` and opened again by name here: nobody else can swap the file in
        # between because the directory is one only this user can write (`cache.unsound`).
        lib = ctypes.CDLL(str(library))
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        log.warning("stacked-MLP kernel unavailable (%s); using PyTorch batched products", exc)
        return None
    scalar = ctypes.c_float if real == "float" else ctypes.c_double
    fn = lib.stacked_mlp_loss_grad
    fn.restype = None
    # blocks, depth, widths, act, head, loss_kind, n_params, params, grad, x, y, idx,
    # idx_stride, batch, scale, loss, work
    fn.argtypes = [_I64, _I64, _PTR, _PTR, _I64, _I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR]
    fn.argtypes += [_I64, _I64, scalar, _PTR, _PTR]
    lanes = lib.stacked_mlp_lanes
    lanes.restype = _I64
    epoch = lib.stacked_mlp_train_epoch
    epoch.restype = None
    # blocks, depth, widths, act, head, loss_kind, n_params, params, state_a, state_b, x, y,
    # idx, n_rows, batch, scale, update, hyper, sam, step, loss_sum, work
    epoch.argtypes = [_I64, _I64, _PTR, _PTR, _I64, _I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR]
    epoch.argtypes += [_PTR, _I64, _I64, scalar, _I64, _PTR, _I64, _I64, _PTR, _PTR]
    predict = lib.stacked_mlp_predict
    predict.restype = None
    # blocks, depth, widths, act, head, scale, n_params, params, x, n, chunk, out, work
    predict.argtypes = [_I64, _I64, _PTR, _PTR, _I64, scalar, _I64, _PTR, _PTR, _I64, _I64]
    predict.argtypes += [_PTR, _PTR]
    size = lib.stacked_mlp_work_size
    size.restype = _I64
    size.argtypes = [_I64, _PTR, _I64, _I64]
    return Kernel(
        real=real,
        lanes=int(lanes()),
        loss_grad=fn,
        train_epoch=epoch,
        predict=predict,
        work_size=size,
        isa=isa,
        path=library,
    )


def _flags(isa: str) -> list[str]:
    """Compiler flags for `isa`. Contraction of ``a * b + c`` into one fused multiply-add is
    asked for explicitly (GCC's default, not clang's), so that every compiler treats the AVX2
    and AVX-512 builds alike and they agree bit for bit."""
    vec_bytes, isa_flags = ISAS[isa]
    flags = ["-O3", "-std=gnu11", "-fPIC", "-shared", "-ffp-contract=fast"]
    return [*flags, *isa_flags, f"-DVEC_BYTES={vec_bytes}"]


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


def library_name(real: str, isa: str | None = None) -> str:
    """The file name of the kernel for `real` and `isa` (default `chosen_isa`) in the cache:
    ``stacked_mlp-REAL-ISA-KEY.so``, KEY a hash of the source and its headers, the compiler,
    its flags (the ISA's among them) and the platform (one build per machine kind)."""
    return _recipe(real, isa or chosen_isa())[2]


def _recipe(real: str, isa: str) -> tuple[str, list[str], str]:
    """The compiler, its flags and the library's file name for `real` and `isa`."""
    compiler = _compiler()
    flags = _flags(isa) + [f"-DREAL={real}"]
    # The headers are hashed with the source: a changed header is a new build.
    source = b"".join(path.read_bytes() for path in (SOURCE, *HEADERS))
    key = hashlib.sha256(
        source + " ".join([compiler, *flags, platform.platform()]).encode()
    ).hexdigest()[:16]
    return compiler, flags, f"stacked_mlp-{real}-{isa}-{key}.so"


def _build(real: str, isa: str) -> Path:
    """The kernel for `real` and `isa`, compiled unless the cache already holds this exact
    build and it passes `cache.problem`; in `cache.private_dir`, never in a directory others
    can write."""
    compiler, flags, name = _recipe(real, isa)
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
