"""Trials per minute with 1 and 2 dask workers, and what the experiment machinery (dask +
Optuna + trainctl's bookkeeping) costs per trial beyond the training run itself.

    nice python bench/experiment_scaling.py [--trials 12] [--workers 1 2] [--seconds 2]
                                            [--kinds plan search]

The trial: the quickstart MLP (configs/quickstart.yaml) with its epochs scaled so that one
`train_from_config` in a warm process takes about `--seconds` of CPU (calibrated first). The
direct baseline is that same call, repeated in this process with one BLAS thread as in a
worker: wall and CPU seconds per run, run directory writes included (what `trainctl train`
does).

Each experiment is `--trials` runs of that config through `run_experiment` on a fresh
LocalCluster: `plan` is a seeds list (one trial per seed, fixed values), `search` a TPE study
over a narrow learning-rate range (pruner none). Reported per experiment:

- trials/min over the whole command (cluster start included) and in steady state (from the
  first submission to the last result);
- the overhead in CPU, because on a shared machine wall-clock is polluted by the neighbours:
  the CPU of the client process (its scheduler and nannies included) and of the worker
  processes, outside the trials' own task threads, per trial. It has two parts: dask's
  housekeeping, paid per second (measured on the idle cluster first: `idle ms/s`), and what
  is paid per trial (`fixed`). `2 s trial` projects both onto a 2-second trial on a quiet
  machine: (fixed + idle x 2 s / workers) / 2 s;
- where the client's wall time goes per trial (ms): ask (source.next: the fixed trial or
  study.ask, the trial's config), submit, tell (the result and study.tell), record
  (experiment.json + results.csv), and the gap a worker waits between two trials;
- warm-up: CPU seconds of a worker's first trial beyond its later ones (numba's kernel
  cache, lazy imports), paid once per worker.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


class Timers:
    """Wall time accumulated per phase on the client."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, owner, name: str, phase: str):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - start

        setattr(owner, name, timed)
        return lambda: setattr(owner, name, original)


def process_tree_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of each child process of this one (workers and nannies)."""
    import psutil

    found = {}
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
            found[child.pid] = times.user + times.system
        except psutil.Error:
            continue
    return found


def calibrated_config(scratch: Path, seconds: float) -> tuple[Path, float, float, int]:
    """(config path, direct wall s, direct CPU s, epochs): the quickstart MLP trained for as many
    epochs as take about `seconds` of CPU in this (warm) process (CPU: on a shared machine the
    wall-clock of a run depends on the neighbours; on a quiet one they agree)."""
    from trainctl.config import load_config
    from trainctl.runs.train import train_from_config

    data = yaml.safe_load((ROOT / "configs/quickstart.yaml").read_text())
    data["data"]["train"]["n_samples"] = 6000

    from threadpoolctl import threadpool_limits

    def direct(epochs: int, repeats: int) -> tuple[float, float]:
        data["fit"]["epochs"] = epochs
        path = scratch / "trial.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        walls, cpus = [], []
        for repeat in range(repeats):
            out = scratch / f"direct-{epochs}-{repeat}"
            wall, cpu = time.perf_counter(), time.process_time()
            with threadpool_limits(1):  # as in a worker: one BLAS thread (runner._open_client)
                train_from_config(load_config(path), out=out, callbacks=[])
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            shutil.rmtree(out)
        return statistics.median(walls), statistics.median(cpus)

    direct(2, 1)  # compile or load the kernels
    short, long = direct(5, 2)[1], direct(25, 2)[1]  # CPU = start-up + epochs x per-epoch
    per_epoch = (long - short) / 20
    epochs = max(1, round(5 + (seconds - short) / per_epoch))
    wall, cpu = direct(epochs, 3)
    return scratch / "trial.yaml", wall, cpu, epochs


def experiment_file(scratch: Path, config: Path, kind: str, trials: int, workers: int) -> Path:
    name = f"{kind}-w{workers}"
    if kind == "plan":
        spec = {"name": name, "base": os.fspath(config), "seeds": list(range(trials)), "metric": "val_loss"}
    else:
        spec = {"name": name, "base": os.fspath(config), "metric": "val_loss",
                "search": {"sampler": "tpe", "n_trials": trials, "seed": 0, "pruner": "none",
                           "params": {"optimizer.learning_rate": {"loguniform": [0.002, 0.004]}}}}
    path = scratch / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def measure(path: Path, out: Path, workers: int) -> dict:
    import trainctl.experiment.runner as runner
    import trainctl.experiment.study as study
    from distributed import Client

    timers = Timers()
    outcomes: list[dict] = []
    original_tell = study._tell

    def tell(study_, asked, future):
        start = time.perf_counter()
        try:
            outcomes.append(future.result())
        except Exception:  # the machinery records it; the bench only times it
            pass
        original_tell(study_, asked, future)
        timers.seconds["tell"] += time.perf_counter() - start

    restore = [timers.wrap(runner, "_write_plan", "record"), timers.wrap(runner, "_write_results", "record"),
               timers.wrap(Client, "submit", "submit")]
    study._tell = tell
    from trainctl.experiment.plan_trials import PlanTrials
    from trainctl.experiment.search import SearchTrials

    for source in (PlanTrials, SearchTrials):
        restore.append(timers.wrap(source, "next", "ask"))
    marks: dict[str, tuple[float, float, dict[int, float]]] = {}
    lock = threading.Lock()

    def progress(snapshot):
        with lock:
            now = (time.perf_counter(), time.process_time(), process_tree_cpu())
            if "first" not in marks and snapshot.running > 0:
                marks["first"] = now
            if snapshot.done + snapshot.failed == snapshot.total or snapshot.last is not None:
                marks["last"] = now

    start = time.perf_counter()
    try:
        result = runner.run_experiment(path, workers=workers, out=out, progress=progress)
    finally:
        study._tell = original_tell
        for undo in restore:
            undo()
    total = time.perf_counter() - start
    trials = sum(run.status in ("ok", "skipped") for run in result.runs)
    first, last = marks["first"], marks["last"]
    tree_cpu = sum(last[2].get(pid, 0.0) - first[2].get(pid, 0.0) for pid in last[2])
    gaps, warmup = [], 0.0
    by_worker = defaultdict(list)
    for outcome in outcomes:
        by_worker[outcome.get("pid")].append((outcome["started_at"], outcome["ended_at"], outcome["cpu_seconds"]))
    for spans in by_worker.values():
        spans.sort()
        gaps += [b[0] - a[1] for a, b in zip(spans, spans[1:])]
        if len(spans) > 1:  # a worker's first trial imports trainctl and loads the kernels, once
            warmup += spans[0][2] - statistics.median(span[2] for span in spans[1:])
    return {"trials": trials, "failed": len(result.failed), "total": total, "steady": last[0] - first[0],
            "client_cpu": last[1] - first[1], "tree_cpu": tree_cpu,
            "task_wall": statistics.median(o["wall_seconds"] for o in outcomes),
            "task_cpu": sum(o["cpu_seconds"] for o in outcomes) / max(len(outcomes), 1), "warmup": warmup,
            "workers": len(by_worker),
            "phases": {k: v / max(trials, 1) for k, v in timers.seconds.items()},
            "gap": statistics.median(gaps) if gaps else float("nan")}


def idle_rate(workers: int, seconds: float = 8.0) -> float:
    """CPU ms per second that an idle cluster of this size costs (client + scheduler +
    nannies + workers): dask's housekeeping, paid per second whatever the trials do."""
    from trainctl.experiment.runner import _open_client

    client, cluster = _open_client(workers, None)
    try:
        client.submit(int, 1, pure=False).result()  # the workers are up
        start, cpu, tree = time.perf_counter(), time.process_time(), process_tree_cpu()
        time.sleep(seconds)
        after = process_tree_cpu()
        used = time.process_time() - cpu + sum(after[pid] - tree.get(pid, 0.0) for pid in after)
        return 1000 * used / (time.perf_counter() - start)
    finally:
        client.close()
        cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=2.0, help="the CPU length of one trial's training run")
    parser.add_argument("--kinds", nargs="+", default=["plan", "search"], choices=["plan", "search"])
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="trainctl-bench-"))
    rows, rates = [], {}
    try:
        config, direct_wall, direct_cpu, epochs = calibrated_config(scratch, args.seconds)
        for workers in args.workers:
            rates[workers] = idle_rate(workers)
        for kind in args.kinds:
            for workers in args.workers:
                path = experiment_file(scratch, config, kind, args.trials, workers)
                rows.append((kind, workers, measure(path, scratch / path.stem, workers)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"trial: quickstart MLP, 6000 samples x {epochs} epochs; direct train_from_config "
          f"{direct_wall:.2f} s wall, {direct_cpu:.2f} s CPU (median of 3, one BLAS thread)  "
          f"cores: {os.cpu_count()}  load: {os.getloadavg()[0]:.1f}")
    print(f"{'kind':>6} {'workers':>7} {'trials':>6} {'total s':>7} {'trials/min':>10} {'steady/min':>10} "
          f"{'task CPU s':>10} {'ovh CPU ms':>10} {'idle ms/s':>9} {'fixed ms':>8} {'2 s trial':>9} "
          f"{'ask':>5} {'submit':>6} {'tell':>5} {'record':>6} {'gap ms':>6} {'warm-up s':>9}")
    for kind, workers, m in rows:
        n = max(m["trials"], 1)
        overhead = 1000 * (m["client_cpu"] + m["tree_cpu"] - m["task_cpu"] * n) / n  # CPU outside the tasks
        fixed = overhead - rates[workers] * m["steady"] / n  # what is paid per trial, not per second
        quiet = fixed + rates[workers] * args.seconds / workers  # a 2 s trial on a quiet machine
        phases = m["phases"]
        print(f"{kind:>6} {workers:>7} {m['trials']:>6} {m['total']:>7.1f} {60 * n / m['total']:>10.1f} "
              f"{60 * n / m['steady']:>10.1f} {m['task_cpu']:>10.2f} {overhead:>10.0f} {rates[workers]:>9.1f} "
              f"{fixed:>8.0f} {100 * quiet / (1000 * args.seconds):>8.1f}% "
              + " ".join(f"{1000 * phases.get(p, 0.0):>{w}.1f}" for p, w in
                         (("ask", 5), ("submit", 6), ("tell", 5), ("record", 6)))
              + f" {1000 * m['gap']:>6.1f} {m['warmup'] / max(m['workers'], 1):>9.2f}")
    print("ovh CPU: client + scheduler + nannies + workers, outside the trials' own task threads, per trial, "
          "over the steady state; idle: what the idle cluster costs per second (housekeeping); fixed: ovh minus "
          "the idle cost of the steady state's seconds, i.e. paid per trial; 2 s trial: (fixed + idle x 2 s / "
          "workers) / 2 s, the overhead of a 2-second trial on a quiet machine; ask/submit/tell/record: the "
          "client's wall ms per trial; gap: a worker's median idle wall time between two trials; warm-up: CPU s "
          "of a worker's first trial beyond its others (imports, kernel cache), once per worker")


if __name__ == "__main__":
    main()
