"""Per-trial vs batched execution of the obesity grid, side by side in one run.

Default: the whole obesity grid (576 trials) with training shortened to --epochs (SAM: half),
run once through the per-trial executor and once through the batched executor, both with
joblib workers on this machine, each into its own temporary database. Prints wall times, the
time per model, their ratio, and how well the two executors' cell means agree.

--full: the real reproduction (studies/obesity.toml + studies/obesity_sam200.toml, 648 models
at full length) through the batched executor, and a random sample of --sample of the same
trials through the per-trial executor (the whole per-trial run takes about 50 minutes), with peak
memory. Ratios compare time per model. Then the reproduction as a user types it, whole commands
side by side, --repeat times each, interleaved: ``sweeper run`` of both studies in one command
(the workers start once) and in two commands (the figure before the two could share workers).

    python bench/batched.py --data-dir ../shared/data            # about 2 minutes on 2 cores
    python bench/batched.py --data-dir ../shared/data --full     # about 1.5 minutes
    python bench/batched.py --full --sample 0                     # the batched run only
    python bench/batched.py --full --sample 0 --repeat 3          # + the commands, 3 times each

Wall and CPU seconds are printed: on a machine other processes share, the workers' CPU time
(user + system, from the operating system's accounting of finished children) says more.

The batched executor uses the C kernel where it compiles (`sweeper.kernel`, at
the CPU's widest vectors); set SWEEPER_KERNEL_ISA=avx2 or portable to time a narrower build, or
SWEEPER_NATIVE=0 to time PyTorch's batched products instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sweeper.data import resolve_data_dir  # noqa: E402
from sweeper.launch.backends import launch_local  # noqa: E402
from sweeper.launch.options import DEFAULT_GROUP_SIZE, WorkerOptions  # noqa: E402
from sweeper.plan import PlannedTrial, grid  # noqa: E402
from sweeper.store import Store  # noqa: E402
from sweeper.study import Study, load_study  # noqa: E402
from sweeper.tasks import get_task  # noqa: E402


class TreeMemory:
    """Peak resident memory of this process and all its descendants, sampled from /proc."""

    def __init__(self, interval: float = 0.2) -> None:
        self.peak_mb, self.interval = 0.0, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        root = os.getpid()
        while not self._stop.wait(self.interval):
            parents, rss = {}, {}
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                    pages = int(Path(f"/proc/{entry}/statm").read_text().split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                parents[int(entry)], rss[int(entry)] = int(fields[1]), pages * 4096
            total = 0
            for pid in rss:
                p = pid
                while p in parents and p != root:
                    p = parents[p]
                if p == root:
                    total += rss[pid]
            self.peak_mb = max(self.peak_mb, total / 2**20)


def workers_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(
    study: Study, plan: list[PlannedTrial], *, batched: bool, workers: int, data_dir: Path
) -> tuple[float, dict[str, float]]:
    """Run `plan` in a fresh temporary database; return wall seconds and test_mse by key."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        with Store(url, create=True) as store:
            sid = store.save_study(study, plan).study_id
        options = WorkerOptions(
            data_dir=str(data_dir), batched=batched, group_size=DEFAULT_GROUP_SIZE if batched else 1
        )
        start = time.perf_counter()
        launch_local(url, study.name, workers, options)
        wall = time.perf_counter() - start
        with Store(url) as store:
            frame = store.frame(sid)
    done = frame[frame["state"] == "completed"]
    if len(done) != len(plan):
        raise SystemExit(f"only {len(done)} of {len(plan)} trials completed")
    return wall, dict(zip(done["key"], done["test_mse"], strict=True))


def time_commands(commands: list[list[str]], data_dir: Path) -> tuple[float, float]:
    """Run `commands` one after the other into one fresh database; wall and CPU seconds (the
    commands' own, their workers' included)."""
    with tempfile.TemporaryDirectory() as tmp:
        cpu, start = workers_cpu(), time.perf_counter()
        for command in commands:
            db = ["--db", f"{tmp}/cli.db", "--data-dir", str(data_dir)]
            subprocess.run([*command, *db], check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start, workers_cpu() - cpu


def agreement(plan: list[PlannedTrial], a: dict[str, float], b: dict[str, float]) -> str:
    """Share of cells whose seed-means differ by less than the per-trial seeds' std."""
    cells: dict[str, list[str]] = {}
    for t in plan:
        cells.setdefault(t.group + repr(sorted(t.params.items())), []).append(t.key)
    inside = 0
    for keys in cells.values():
        xs, ys = [a[k] for k in keys], [b[k] for k in keys]
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        std = (sum((v - mean_x) ** 2 for v in xs) / max(1, len(xs) - 1)) ** 0.5
        inside += abs(mean_x - mean_y) <= std
    return f"{inside}/{len(cells)} cells' batched seed-mean within the per-trial seed spread"


def shortened(study: Study, epochs: int) -> Study:
    fixed = {**study.fixed, "epochs": epochs, "sam_epochs": max(1, epochs // 2)}
    return dataclasses.replace(study, name=f"{study.name}_e{epochs}", fixed=fixed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the default mode")
    parser.add_argument("--full", action="store_true", help="time the full reproduction")
    parser.add_argument(
        "--sample", type=int, default=12, help="per-trial sample in --full (0: none)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each whole command in --full (0: none)"
    )
    args = parser.parse_args()
    data_dir = resolve_data_dir(args.data_dir)
    task = get_task("obesity")
    print(f"{args.workers} workers, 1 torch thread each; data from {data_dir}")

    if not args.full:
        study = shortened(load_study(REPO / "studies" / "obesity.toml"), args.epochs)
        plan = grid(study, task.group_key)
        print(
            f"obesity grid, {len(plan)} trials, {args.epochs} epochs ({args.epochs // 2} with SAM)"
        )
        t_trial, per_trial = run(
            study, plan, batched=False, workers=args.workers, data_dir=data_dir
        )
        t_batch, batched = run(study, plan, batched=True, workers=args.workers, data_dir=data_dir)
        n = len(plan)
        print(f"per-trial executor: {t_trial:8.1f} s  ({t_trial / n * 1000:7.1f} ms per model)")
        print(f"batched executor:   {t_batch:8.1f} s  ({t_batch / n * 1000:7.1f} ms per model)")
        print(f"ratio: {t_trial / t_batch:.1f}x")
        print(agreement(plan, per_trial, batched))
        return

    studies = [load_study(REPO / "studies" / f) for f in ("obesity.toml", "obesity_sam200.toml")]
    plans = [grid(s, task.group_key) for s in studies]
    total = sum(len(p) for p in plans)
    t_batch = cpu_batch = 0.0
    with TreeMemory() as memory:
        for study, plan in zip(studies, plans, strict=True):
            cpu = workers_cpu()
            wall, _ = run(study, plan, batched=True, workers=args.workers, data_dir=data_dir)
            cpu = workers_cpu() - cpu
            print(f"batched {study.name}: {len(plan)} models in {wall:.1f} s ({cpu:.1f} CPU s)")
            t_batch += wall
            cpu_batch += cpu
    peak = memory.peak_mb
    print(
        f"batched, full reproduction: {total} models in {t_batch:.1f} s, workers' CPU "
        f"{cpu_batch:.1f} s (peak memory of all processes {peak:.0f} MB)"
    )
    if args.repeat:
        sweeper = [sys.executable, "-m", "sweeper", "run", "--workers", str(args.workers)]
        quiet = ["--no-table", "--no-progress"]
        files = [str(REPO / "studies" / f) for f in ("obesity.toml", "obesity_sam200.toml")]
        variants = {
            "sweeper run obesity obesity_sam200 (one command)": [[*sweeper, *files, *quiet]],
            "sweeper run obesity; sweeper run obesity_sam200": [
                [*sweeper, f, *quiet] for f in files
            ],
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for _ in range(args.repeat):
            for name, commands in variants.items():
                times[name].append(time_commands(commands, data_dir))
        print(f"whole commands, {total} models, median of {args.repeat} (wall, CPU incl. workers):")
        for name, runs in times.items():
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            print(f"  {name:50s} {wall:6.1f} s wall  {cpu:6.1f} s CPU")
    if args.sample == 0:
        return
    rng = random.Random(0)
    sample = rng.sample(plans[0], args.sample)
    t_trial, _ = run(studies[0], sample, batched=False, workers=args.workers, data_dir=data_dir)
    per_model_trial = t_trial / len(sample)
    # SAM-200 trials cost twice a main-grid trial (200 epochs of two passes): count them so.
    units = len(plans[0]) + 2 * len(plans[1])
    print(
        f"per-trial executor, {len(sample)} sampled trials: {t_trial:.1f} s "
        f"({per_model_trial:.2f} s per model); the full reproduction would take about "
        f"{per_model_trial * units / 60:.0f} min"
    )
    print(f"ratio (time per model): {per_model_trial * units / t_batch:.1f}x")


if __name__ == "__main__":
    main()
