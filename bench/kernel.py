"""The C kernel's arithmetic rate against the machine's measured peak, per vector width.

Trains one group of obesity MLPs (Adam; SAM with --sam) for a few epochs on random data, one
torch thread, and prints the kernel's GFLOP/s next to this core's measured peak (one thread of
``torch.mm`` on large matrices, in the same precision), for each vector width this CPU runs
(`sweeper.kernel.ISAS`), interleaved --repeat times so that a busy machine
slows all of them alike. Then, at the widest width, the same steps the older way (one kernel
call per mini-batch, the optimizer and SAM as PyTorch passes) and with PyTorch's batched
products (`StackedMLP`), in microseconds per member per step. Times are CPU seconds of this
thread (so other processes on the machine count less); best of the repeats.

FLOPs are counted as two per multiply-add of the forward and backward matrix products
(5,148 per member per row for 16-18-18-18-1, twice with SAM): the 1.25 TFLOP of the full
obesity reproduction (576 + 72 trials) in the same unit.

    python bench/kernel.py                   # about 30 seconds
    python bench/kernel.py --dtype float64 --sam
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from sweeper import kernel as native  # noqa: E402
from sweeper.kernel.lanes import LaneMLP, LaneOptimizer, Layers  # noqa: E402
from sweeper.optim.batched import BatchedOptimizer  # noqa: E402
from sweeper.optim.sam import sam_ascent  # noqa: E402
from sweeper.tasks.obesity.model import OUTPUT_SCALE, build_model  # noqa: E402
from sweeper.tasks.obesity.stacked import StackedMLP  # noqa: E402

WIDTHS = (16, 18, 18, 18, 1)
ROWS, BATCH = 1688, 32


def flops_per_row() -> int:
    """FLOPs of one forward + backward of one member on one row (2 per multiply-add)."""
    pairs = list(zip(WIDTHS, WIDTHS[1:], strict=False))
    forward = sum(i * o for i, o in pairs)
    back = sum(i * o for i, o in pairs[1:])  # no delta into the inputs
    return 2 * (2 * forward + back)


def peak_gflops(dtype: torch.dtype, seconds: float = 1.0) -> float:
    """One thread's best rate on ``torch.mm`` of 1024 x 1024 matrices (BLAS at its best)."""
    n = 1024
    a, b = torch.rand(n, n, dtype=dtype), torch.rand(n, n, dtype=dtype)
    torch.mm(a, b)
    best, spent = 0.0, 0.0
    while spent < seconds:
        t0 = time.thread_time()
        torch.mm(a, b)
        dt = time.thread_time() - t0
        spent += dt
        best = max(best, 2 * n**3 / max(dt, 1e-9) / 1e9)
    return best


def group(members: int, dtype: torch.dtype) -> Layers:
    layers = []
    for seed in range(members):
        model = build_model(seed, "float64").to(dtype)
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        layers.append([(m.weight.detach().clone(), m.bias.detach().clone()) for m in linears])
    return layers


def columns(net: LaneMLP | StackedMLP, members: int, sam: bool) -> list[torch.Tensor]:
    """lr, weight decay, momentum, rho as the net's columns."""
    lr = [(1e-4, 1e-3, 3e-3)[i % 3] for i in range(members)]
    wd = [(0.0, 1e-3)[i % 2] for i in range(members)]
    rho = [0.05 if sam else 0.0] * members
    return [net.column(v) for v in (lr, wd, [0.0] * members, rho)]


def fused_epochs(
    kernel: native.Kernel, layers: Layers, data: tuple[torch.Tensor, ...], sam: bool
) -> Callable[[], None]:
    x, y, perms = data
    net = LaneMLP(layers, OUTPUT_SCALE, kernel)
    net.shuffle(x, y, perms)
    lr, wd, mom, rho = columns(net, len(layers), sam)
    opt = LaneOptimizer(net, "adam", lr, wd, mom, rho)

    def run() -> None:
        net.train_epoch(opt, BATCH)

    return run


def stepped_epochs(
    net: LaneMLP | StackedMLP, data: tuple[torch.Tensor, ...], sam: bool
) -> Callable[[], None]:
    """The per-mini-batch path: a kernel (or bmm) call per pass, PyTorch's optimizer and SAM."""
    x, y, perms = data
    net.shuffle(x, y, perms)
    lr, wd, mom, rho = columns(net, perms.shape[0], sam)
    opt = BatchedOptimizer("adam", net.flat, lr, wd, mom)

    def run() -> None:
        for start in range(0, ROWS, BATCH):
            stop = min(start + BATCH, ROWS)
            net.batch_loss_and_grad(start, stop)
            if sam:
                saved = net.flat.clone()
                net.flat.add_(sam_ascent(net.grad, rho))
                net.batch_loss_and_grad(start, stop)
                net.flat.copy_(saved)
            opt.step(net.grad)

    return run


def best_time(run: Callable[[], None], epochs: int) -> float:
    run()  # warm up
    t0 = time.thread_time()
    for _ in range(epochs):
        run()
    return (time.thread_time() - t0) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=108, help="group size (108: a worker's)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timing")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--sam", action="store_true", help="SAM (two passes per step)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dtype = getattr(torch, args.dtype)
    real = "float" if dtype == torch.float32 else "double"
    kernels = {isa: native.load(real, isa) for isa in native.available_isas()}
    usable = {isa: k for isa, k in kernels.items() if k is not None}
    if not usable:
        raise SystemExit("the C kernel does not compile here (see the log); nothing to time")
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(ROWS, 16, generator=gen, dtype=dtype) * 5
    y = torch.rand(ROWS, generator=gen, dtype=dtype) * 7
    perms = torch.stack([torch.randperm(ROWS, generator=gen) for _ in range(args.members)])
    data = (x, y, perms)
    layers = group(args.members, dtype)
    passes = 2 if args.sam else 1
    work = args.members * ROWS * flops_per_row() * passes / 1e9  # GFLOP per epoch
    steps = args.members * -(-ROWS // BATCH)  # member-steps per epoch

    widest = next(iter(usable.values()))
    runs: dict[str, Callable[[], None]] = {
        f"fused epoch, {isa} ({k.lanes} lanes)": fused_epochs(k, layers, data, args.sam)
        for isa, k in usable.items()
    }
    runs[f"kernel per batch + torch optimizer, {widest.isa}"] = stepped_epochs(
        LaneMLP(layers, OUTPUT_SCALE, widest), data, args.sam
    )
    runs["torch.bmm per batch + torch optimizer"] = stepped_epochs(
        StackedMLP(layers, OUTPUT_SCALE), data, args.sam
    )
    best = {name: float("inf") for name in runs}
    peak = 0.0
    for _ in range(args.repeat):
        peak = max(peak, peak_gflops(dtype, 0.5))
        for name, run in runs.items():
            best[name] = min(best[name], best_time(run, args.epochs))
    sam = ", SAM" if args.sam else ""
    print(
        f"{args.members} members, Adam{sam}, {args.dtype}, batch {BATCH}, {ROWS} rows, "
        f"1 thread; CPU time, best of {args.repeat}"
    )
    print(f"peak of this core (torch.mm 1024^3, {args.dtype}): {peak:7.1f} GFLOP/s")
    print(f"{'':46} {'GFLOP/s':>8} {'of peak':>8} {'us/member/step':>15}")
    for name, seconds in best.items():
        rate = work / seconds
        per_step = seconds / steps * 1e6
        print(f"{name:46} {rate:8.1f} {rate / peak:8.0%} {per_step:15.2f}")


if __name__ == "__main__":
    main()
