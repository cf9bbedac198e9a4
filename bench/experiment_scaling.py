"""Wall time of a 16-run sweep with 1 and 2 LocalCluster workers, and the speed-up.

    python bench/experiment_scaling.py [EXPERIMENT_FILE] [--workers 1 2 4]

Default: configs/experiments/quickstart_sweep.yaml (the quickstart MLP, 2 learning rates ×
2 widths × 2 random beta1 draws × 2 seeds = 16 runs of 12 epochs). Each measurement starts
its own cluster in a fresh directory, so it includes worker start-up (spawned processes
importing numpy/numba and loading the cached kernels), which is what a user waits for.
One untimed single-run experiment warms the kernel cache first. On a machine with fewer
cores than workers the speed-up is bounded by the cores (shown as `cores`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from trainctl.experiment.plan import load_experiment
from trainctl.experiment.runner import run_experiment

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", nargs="?", default=ROOT / "configs/experiments/quickstart_sweep.yaml",
                        type=Path)
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    args = parser.parse_args()

    experiment = load_experiment(args.experiment)
    scratch = Path(tempfile.mkdtemp(prefix="trainctl-bench-"))
    try:
        warm = scratch / "warm.yaml"  # compile (or load) the kernels once, untimed
        warm.write_text(f"base: {experiment.base_source}\n", encoding="utf-8")
        run_experiment(warm, workers=1, scheduler=None, dry_run=False, out=scratch / "warm", progress=None)

        rows = []
        for workers in args.workers:
            start = time.perf_counter()
            result = run_experiment(args.experiment, workers=workers, scheduler=None, dry_run=False,
                                    out=scratch / f"w{workers}", progress=None)
            wall = time.perf_counter() - start
            failed = len(result.failed)
            train = sum(run.train_seconds or 0.0 for run in result.runs)
            rows.append((workers, len(result.runs), failed, wall, train))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    base_wall = rows[0][3]
    print(f"experiment: {args.experiment}  runs: {len(experiment.variants)}  cores: {os.cpu_count()}")
    print(f"{'workers':>7}  {'runs':>4}  {'failed':>6}  {'wall s':>7}  {'sum train s':>11}  {'speed-up':>8}")
    for workers, runs, failed, wall, train in rows:
        print(f"{workers:>7}  {runs:>4}  {failed:>6}  {wall:>7.1f}  {train:>11.1f}  {base_wall / wall:>7.2f}x")


if __name__ == "__main__":
    main()
