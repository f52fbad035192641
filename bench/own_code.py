"""Per-trial overhead of sweeping your own code: a function task, a command task, and Optuna.

Every contender runs trivial trials (no training), so that only the orchestration is timed, on
SQLite files in a temporary directory, one worker, in this process:

- function: `task = "train.py:train"` whose function returns at once; `sweeper.run` in-process.
- command (echo): `command = ["echo", "{...}"]`: a program that only prints its final metrics,
  so the figure is sweeper's cost around a process (fork/exec, pipes, parsing, record).
- command (python): `command = ["python", "train.py", ...]`: the same with a Python program, as
  most users will write it (the interpreter's own start-up dominates).
- the bare process: `subprocess.run` of the same two programs in a loop, no sweeper: the floor a
  command task cannot go below.
- Optuna: `study.optimize` with a trivial objective, RandomSampler, RDBStorage on SQLite.

Rounds alternate the contenders; the table shows each one's median ms per trial over rounds.

    python bench/own_code.py                  # about a minute on 2 cores
    python bench/own_code.py --trials 200 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TRAIN = """
def train(params, seed, trial):
    return {"loss": params["x"] + seed}
"""
SCRIPT = """
import json, sys
print(json.dumps({"loss": float(sys.argv[1])}))
"""


def sweep(directory: Path, task: str, n: int) -> float:
    """Seconds per trial of `n` trivial trials of a fresh study through `sweeper.run`."""
    import sweeper

    (directory / "train.py").write_text(TRAIN if task == "function" else SCRIPT)
    head = {
        "function": {"task": "train.py:train"},
        "echo": {"command": ["echo", '{{"loss": {x}}}']},
        "python": {"command": [sys.executable, "train.py", "{x}"]},
    }[task]
    study = sweeper.Study.from_dict(
        {"name": task, **head, "metric": "loss", "space": {"x": [float(i) for i in range(n)]}},
        base_dir=directory,
    )
    db = f"sqlite:///{directory / (task + '.db')}"
    start = time.perf_counter()
    summary = sweeper.run(study, db=db, workers=1)
    elapsed = time.perf_counter() - start
    assert summary.completed == n, summary
    return elapsed / n


def bare(directory: Path, program: str, n: int) -> float:
    (directory / "train.py").write_text(SCRIPT)
    argv = ["echo", '{"loss": 1.0}'] if program == "echo" else [sys.executable, "train.py", "1.0"]
    start = time.perf_counter()
    for _ in range(n):
        subprocess.run(argv, cwd=directory, capture_output=True, check=True)
    return (time.perf_counter() - start) / n


def optuna_trivial(directory: Path, n: int) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=f"sqlite:///{directory / 'optuna.db'}",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    start = time.perf_counter()
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=n)
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100, help="trials per contender per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    contenders: dict[str, Callable[[Path], float]] = {
        "sweeper function task": lambda d: sweep(d, "function", args.trials),
        "sweeper command task (echo)": lambda d: sweep(d, "echo", args.trials),
        "  bare subprocess (echo)": lambda d: bare(d, "echo", args.trials),
        "sweeper command task (python)": lambda d: sweep(d, "python", args.trials),
        "  bare subprocess (python)": lambda d: bare(d, "python", args.trials),
        "optuna RandomSampler, trivial objective": lambda d: optuna_trivial(d, args.trials),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, run in contenders.items():
            with tempfile.TemporaryDirectory() as tmp:
                times[name].append(run(Path(tmp)))
    print(f"{args.trials} trivial trials per contender, {args.rounds} rounds, one worker, SQLite")
    print(f"{'contender':<42} {'ms/trial (median)':>18} {'range':>16}")
    for name, values in times.items():
        lo, hi = min(values) * 1e3, max(values) * 1e3
        print(f"{name:<42} {statistics.median(values) * 1e3:>18.2f} {lo:>7.2f}-{hi:<8.2f}")


if __name__ == "__main__":
    main()
