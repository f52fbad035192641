"""TPE against random search on the obesity space, with the same budget, over sampler seeds.

Runs studies/obesity_tpe.toml and studies/obesity_random.toml once per sampler seed (as
``obesity_tpe_s0``, ``obesity_random_s0``, ...) into one database, then prints, per sampler seed,
the best configuration's seed-mean test MSE for each sampler, and compares with the best cell of
the full grid (the ``obesity`` study in results.db, when it is there).

    python bench/search.py --data-dir ../shared/data               # 3 sampler seeds, budget 40
    python bench/search.py --seeds 1 --budget 12 --db /tmp/s.db    # a quick look

Resumable: run it again with the same --db and it finishes the studies (nothing is re-run).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def study_text(base: Path, name: str, sampler_seed: int, budget: int) -> str:
    lines = []
    for line in base.read_text(encoding="utf-8").splitlines():
        if line.startswith("name = "):
            line = f'name = "{name}"'
        elif line.startswith("sampler_seed = "):
            line = f"sampler_seed = {sampler_seed}"
        elif line.startswith("budget = "):
            line = f"budget = {budget}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def best_config(db: str, name: str) -> tuple[float, int, dict[str, object]]:
    """The best seed-mean, how many configurations completed, and its parameters."""
    from sweeper import search
    from sweeper.store import Store

    with Store(db) as store:
        info = store.study(name)
        history = search.summarize(
            info.study, store.proposals(info.id), store.search_trials(info.id)
        )
    done = [c for c in history if c.value is not None]
    best = min(done, key=lambda c: c.value or 0.0)
    shown = {k: best.params[k] for k in info.study.search}
    return float(best.value or 0.0), len(done), shown


def grid_best(db: Path) -> float | None:
    """The best cell (seed mean) of the obesity grid in `db`, if it holds that study."""
    if not db.exists():
        return None
    from sweeper.report import best_configs
    from sweeper.store import Store

    with Store(f"sqlite:///{db}") as store:
        try:
            info = store.study("obesity")
        except Exception:  # noqa: BLE001 - no grid stored: nothing to compare with
            return None
        frame = store.frame(info.id, metrics=False)
    frame[info.study.metric] = frame["value"]
    ranked = best_configs(frame, axes=info.study.axes, metric="test_mse", direction="minimize")
    return float(ranked["mean"].iloc[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", default=str(ROOT / "bench_search.db"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seeds", type=int, default=3, help="sampler seeds per sampler")
    parser.add_argument("--budget", type=int, default=40, help="configurations per study")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--grid-db", default=str(ROOT / "results.db"))
    args = parser.parse_args()
    db = args.db if "://" in args.db else f"sqlite:///{Path(args.db).resolve()}"

    work = Path(args.db).resolve().parent if "://" not in args.db else Path.cwd()
    results: dict[tuple[str, int], tuple[float, int, dict[str, object], float]] = {}
    for sampler_seed in range(args.seeds):
        for kind in ("tpe", "random"):
            base = ROOT / "studies" / f"obesity_{kind}.toml"
            name = f"obesity_{kind}_s{sampler_seed}"
            path = work / f"{name}.toml"
            path.write_text(study_text(base, name, sampler_seed, args.budget), encoding="utf-8")
            tomllib.loads(path.read_text(encoding="utf-8"))
            cmd = [sys.executable, "-m", "sweeper", "run", str(path), "--db", db]
            cmd += ["--workers", str(args.workers), "--no-progress", "--no-table"]
            if args.data_dir:
                cmd += ["--data-dir", args.data_dir]
            started = time.perf_counter()
            subprocess.run(cmd, check=True)
            elapsed = time.perf_counter() - started
            results[(kind, sampler_seed)] = (*best_config(db, name), elapsed)

    grid = grid_best(Path(args.grid_db))
    print()
    print(f"best seed-mean test MSE, budget {args.budget} configurations x 3 seeds")
    print(f"{'sampler seed':>12} {'tpe':>8} {'random':>8}  tpe <= random  run time (tpe, random)")
    wins = 0
    for s in range(args.seeds):
        tpe, rnd = results[("tpe", s)], results[("random", s)]
        win = tpe[0] <= rnd[0]
        wins += win
        print(
            f"{s:>12} {tpe[0]:>8.4f} {rnd[0]:>8.4f}  {'yes' if win else 'no':>13}  "
            f"{tpe[3]:.0f}s, {rnd[3]:.0f}s"
        )
    print(f"TPE at least as good as random in {wins} of {args.seeds} sampler seeds")
    if grid is not None:
        gaps = [results[("tpe", s)][0] - grid for s in range(args.seeds)]
        print(
            f"best grid cell (obesity, 576 trials): {grid:.4f}; TPE minus grid: "
            + ", ".join(f"{g:+.4f}" for g in gaps)
        )
    for s in range(args.seeds):
        print(f"tpe s{s} best: {results[('tpe', s)][2]}")


if __name__ == "__main__":
    main()
