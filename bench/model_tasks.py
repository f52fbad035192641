"""Model tasks: a group trained batched (torch.func or the C kernel) vs one trial at a time.

Two user models on synthetic classification data (made here): an MLP classifier and a small
1-D CNN. Each contender trains the same configurations (learning rate x weight decay x seeds,
Adam by default) for the same epochs; per-trial is `train_per_trial` in a loop, torch.func is
one `train_batched` call with the kernel off (``SWEEPER_NATIVE=0``), and kernel is the same
call where the C kernel takes the group (the MLP, a plain one: `sweeper.tasks.model.lanes`).
All run in this process, with the torch threads given (2 by default, the project's reference
machine; the kernel itself runs on one). Wall-clock and CPU seconds are both printed: on a
shared machine the wall clock depends on the load. Before timing, the paths' metrics are
compared (float64 runs of two members) so that a speed-up never comes from doing something else.

    python bench/model_tasks.py --threads 1 --rounds 3   # about a minute on 2 loaded cores
    python bench/model_tasks.py --configs 64 --cnn-configs 16 --epochs 3 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from sweeper.tasks.model import ModelResult, ModelSpec, accuracy  # noqa: E402
from sweeper.tasks.model.batched import train_batched  # noqa: E402
from sweeper.tasks.model.hyper import train_params  # noqa: E402
from sweeper.tasks.model.lanes import kernel_for  # noqa: E402
from sweeper.tasks.model.per_trial import train_per_trial  # noqa: E402

FEATURES, CLASSES = 32, 4


def make_data(n: int, dtype: torch.dtype) -> Any:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n + n // 4, FEATURES, generator=g, dtype=dtype)
    w = torch.randn(FEATURES, CLASSES, generator=g, dtype=dtype)
    y = (x @ w).argmax(dim=1)
    return (x[:n], y[:n]), (x[n:], y[n:])


def mlp(params: dict[str, Any]) -> nn.Module:
    w = params["width"]
    return nn.Sequential(
        nn.Linear(FEATURES, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, CLASSES)
    )


def cnn(params: dict[str, Any]) -> nn.Module:
    c = params["channels"]
    return nn.Sequential(
        nn.Unflatten(1, (1, FEATURES)),
        nn.Conv1d(1, c, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Conv1d(c, c, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(4),
        nn.Flatten(),
        nn.Linear(4 * c, CLASSES),
    )


def configs(count: int, arch: dict[str, Any], args: argparse.Namespace) -> list[Any]:
    """`count` members: lr x weight decay grid, two seeds (or one when count is odd)."""
    lrs = [1e-3 * 1.5**i for i in range(max(1, count // 8))]
    wds = [0.0, 1e-4, 1e-3, 1e-2]
    out = []
    for seed in range(2):
        for lr in lrs:
            for wd in wds:
                params = dict(arch, optimizer=args.optimizer, lr=lr, weight_decay=wd,
                              epochs=args.epochs, batch_size=args.batch_size)  # fmt: skip
                out.append((params, seed))
    return out[:count]


def torch_func(spec: ModelSpec, members: list[Any]) -> list[ModelResult | str]:
    """`train_batched` with the C kernel off: the torch.func path."""
    os.environ["SWEEPER_NATIVE"] = "0"
    try:
        return train_batched(spec, members)
    finally:
        del os.environ["SWEEPER_NATIVE"]


def on_kernel(spec: ModelSpec, members: list[Any]) -> bool:
    """Whether `train_batched` hands this group to the C kernel."""
    params = members[0][0]
    return (
        kernel_for(spec, spec.model(params, 0), train_params(params), spec.splits(params))
        is not None
    )


def check(spec: ModelSpec, members: list[Any], kernel: bool) -> float:
    """Largest difference between the paths' metrics on two members, in float64."""
    spec64 = ModelSpec(spec.build, make_data(64, torch.float64), spec.loss, spec.metrics, "float64")
    small = [(dict(p, epochs=1), s) for p, s in members[:2]]
    runs = [torch_func(spec64, small)] + ([train_batched(spec64, small)] if kernel else [])
    worst = 0.0
    for k, (params, seed) in enumerate(small):
        alone = train_per_trial(spec64, params, seed)
        for run in runs:
            result = run[k]
            assert isinstance(result, ModelResult), result
            worst = max(worst, *(abs(result.metrics[m] - v) for m, v in alone.metrics.items()))
    return worst


def timed(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    """The fastest of `rounds` calls: (wall-clock seconds, CPU seconds of this process)."""
    best = (float("inf"), float("inf"))
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def race(name: str, spec: ModelSpec, members: list[Any], rounds: int) -> None:
    kernel = on_kernel(spec, members)
    worst = check(spec, members, kernel)

    def per_trial() -> None:
        for params, seed in members:
            train_per_trial(spec, params, seed)

    def batched(fn: Callable[[ModelSpec, list[Any]], list[ModelResult | str]]) -> None:
        assert all(isinstance(r, ModelResult) for r in fn(spec, members))

    contenders = {"per-trial": per_trial, "torch.func": lambda: batched(torch_func)}
    if kernel:
        contenders["kernel"] = lambda: batched(train_batched)
    times = {label: timed(fn, rounds) for label, fn in contenders.items()}
    base = times["per-trial"][0]
    cells = "  ".join(
        f"{label} {wall:6.2f} s (cpu {cpu:6.2f}, {base / wall:5.1f}x)"
        for label, (wall, cpu) in times.items()
    )
    print(f"{name:19} {len(members):3} configs  {cells}  (float64 check: max |diff| {worst:.1e})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=64, help="MLP configurations")
    parser.add_argument("--cnn-configs", type=int, default=16, help="CNN configurations")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train", type=int, default=512, help="training rows")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--optimizer", default="adam", choices=["sgd", "adam", "adamw"])
    parser.add_argument("--width", type=int, default=16, help="the MLP's hidden width")
    parser.add_argument("--channels", type=int, default=8, help="the CNN's channels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = make_data(args.train, torch.float32)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.train} rows, "
          f"batch {args.batch_size}, {args.epochs} epochs, {args.optimizer}, float32")  # fmt: skip
    mlp_spec = ModelSpec(mlp, data, "cross_entropy", {"accuracy": accuracy})
    if args.configs:
        members = configs(args.configs, {"width": args.width}, args)
        race(f"mlp (width {args.width})", mlp_spec, members, args.rounds)
    if args.cnn_configs:
        cnn_spec = ModelSpec(cnn, data, "cross_entropy", {"accuracy": accuracy})
        members = configs(args.cnn_configs, {"channels": args.channels}, args)
        race(f"cnn ({args.channels} channels)", cnn_spec, members, args.rounds)


if __name__ == "__main__":
    main()
