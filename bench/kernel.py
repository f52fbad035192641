"""The C kernel against PyTorch's batched products: one forward + backward of the obesity MLP.

For groups of 36, 108 and 216 members (what a worker of 2 trains for the obesity grid, and
more), times `LaneMLP.batch_loss_and_grad` (the C kernel, one member per SIMD lane) and
`StackedMLP.batch_loss_and_grad` (torch.bmm) on the same members and mini-batches, one torch
thread, side by side in one run, and prints microseconds per member and their ratio. Checks
first that both give the same losses.

    python bench/kernel.py            # about 20 seconds
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from sweeper.tasks.obesity import kernel as native  # noqa: E402
from sweeper.tasks.obesity.model import OUTPUT_SCALE, build_model  # noqa: E402
from sweeper.tasks.obesity.stacked import LaneMLP, StackedMLP  # noqa: E402


def per_member_us(net: LaneMLP | StackedMLP, members: int, steps: int) -> float:
    """Microseconds per member per forward + backward, over `steps` mini-batches of 32."""
    for start in range(0, 10 * 32, 32):  # warm up
        net.batch_loss_and_grad(start, start + 32)
    t0 = time.perf_counter()
    for i in range(steps):
        start = (i % 52) * 32
        net.batch_loss_and_grad(start, start + 32)
    return (time.perf_counter() - t0) / steps / members * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = parser.parse_args()
    torch.set_num_threads(1)
    kernel = native.load("float" if args.dtype == "float32" else "double")
    if kernel is None:
        raise SystemExit("the C kernel does not compile here (see the log); nothing to compare")
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1688, 16, generator=gen, dtype=dtype) * 5
    y = torch.rand(1688, generator=gen, dtype=dtype) * 7
    print(f"one forward + backward, batch 32, {args.dtype}, 1 thread, {args.steps} steps each")
    print(f"{'members':>8} {'C kernel':>12} {'torch.bmm':>12} {'ratio':>7}")
    for members in (36, 108, 216):
        layers = []
        for seed in range(members):
            model = build_model(seed, args.dtype)
            linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
            layers.append([(m.weight.detach(), m.bias.detach()) for m in linears])
        perms = torch.stack([torch.randperm(1688, generator=gen) for _ in range(members)])
        lanes, stacked = LaneMLP(layers, OUTPUT_SCALE, kernel), StackedMLP(layers, OUTPUT_SCALE)
        for net in (lanes, stacked):
            net.shuffle(x, y, perms)
        a, b = lanes.batch_loss_and_grad(0, 32), stacked.batch_loss_and_grad(0, 32)
        if not torch.allclose(a, b, rtol=1e-4):
            raise SystemExit(f"the two implementations disagree at {members} members")
        t_lanes = per_member_us(lanes, members, args.steps)
        t_stacked = per_member_us(stacked, members, args.steps)
        print(f"{members:>8} {t_lanes:>9.2f} us {t_stacked:>9.2f} us {t_stacked / t_lanes:>6.1f}x")


if __name__ == "__main__":
    main()
