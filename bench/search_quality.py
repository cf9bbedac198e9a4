"""TPE against random search on a shipped dataset, and the cost of the search machinery.

    python bench/search_quality.py [--trials 30] [--seeds 0 1 2] [--workers 2]

For each study seed, the same experiment (configs/experiments/iris_search.yaml without
pruning, so both samplers see whole trials) runs once with `sampler: tpe` and once with
`sampler: random`, `--trials` trials each, and the best validation loss found is compared.
The overhead row is what the study costs beyond training: per trial, the task's wall time
outside `train_seconds` (building, data, saving), and the client's time per trial outside
the workers' busy time (asking, telling, dask scheduling).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from trainctl.experiment.runner import run_experiment

ROOT = Path(__file__).resolve().parent.parent


def study(directory: Path, sampler: str, seed: int, trials: int, workers: int):
    spec = yaml.safe_load((ROOT / "configs/experiments/iris_search.yaml").read_text())
    spec["base"] = str(ROOT / "configs/iris.yaml")
    spec["name"] = f"{sampler}-{seed}"
    spec["search"].update(sampler=sampler, seed=seed, n_trials=trials, pruner="none")
    path = directory / f"{sampler}-{seed}.yaml"
    path.write_text(yaml.safe_dump(spec))
    started = time.perf_counter()
    result = run_experiment(path, workers=workers, out=directory / spec["name"])
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows, overheads = [], []
    with tempfile.TemporaryDirectory(prefix="trainctl-search-") as scratch:
        for seed in args.seeds:
            best = {}
            for sampler in ("tpe", "random"):
                result, seconds = study(Path(scratch), sampler, seed, args.trials, args.workers)
                best[sampler] = result.best.final if result.best else float("nan")
                done = [run for run in result.runs if run.wall_seconds]
                busy = sum(run.wall_seconds for run in done)
                inside = sum(run.wall_seconds - (run.train_seconds or 0.0) for run in done)
                overheads.append((inside / len(done), max(0.0, seconds * args.workers - busy) / len(done),
                                  busy / len(done)))
            rows.append((seed, best["tpe"], best["random"]))
    print(f"best val_loss over {args.trials} trials (iris MLP; lower is better)")
    print(f"{'seed':>4}  {'tpe':>8}  {'random':>8}  tpe <= random")
    for seed, tpe, random in rows:
        print(f"{seed:>4}  {tpe:8.4f}  {random:8.4f}  {'yes' if tpe <= random else 'no'}")
    task = sum(o[0] for o in overheads) / len(overheads)
    client = sum(o[1] for o in overheads) / len(overheads)
    trial = sum(o[2] for o in overheads) / len(overheads)
    print(f"per trial: {trial:.2f} s in the task, of which {task:.2f} s outside training; "
          f"{client:.2f} s of worker time idle per trial (dask + Optuna + client) = {100 * client / trial:.1f}%")


if __name__ == "__main__":
    main()
