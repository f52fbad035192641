"""A command task: any program that prints JSON lines works the same way.

Each line with "step" is a curve point; the last line without "step" holds the final metrics.
Here a noisy quadratic stands in for training, so the example needs nothing installed.
"""

import argparse
import json
import random

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--momentum", type=float, default=0.0)
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

rng = random.Random(args.seed)
w, velocity = 5.0, 0.0
for step in range(1, args.epochs + 1):
    grad = 2 * (w - 1.0) + rng.gauss(0, 0.1)
    velocity = args.momentum * velocity - args.lr * grad
    w += velocity
    print(json.dumps({"step": step, "loss": (w - 1.0) ** 2}), flush=True)
print(f"finished after {args.epochs} steps")  # any other line is kept as the trial's log
print(json.dumps({"loss": (w - 1.0) ** 2, "w": w}))
