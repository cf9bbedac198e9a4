"""Running an experiment on dask.distributed.

    result = run_experiment("configs/experiments/quickstart_lr.yaml", workers=2)
    rows, columns = result.comparison().table(spread)   # one row per configuration

`run_experiment` submits one dask task per variant that is not already complete, to a
LocalCluster of spawned single-threaded worker processes or to a running scheduler. Each
task trains into `<experiment dir>/runs/<run id>` and returns a small dict. A run that raises
is recorded as failed; a run whose worker dies is retried once, then recorded as failed.
`results.csv` and `experiment.json` are written atomically into the experiment directory.
Running the same file again skips complete runs (same resolved-config hash in state.json,
metrics.json present) and reruns interrupted ones from scratch.

This module never prints: live progress goes to the `progress` callable.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from trainctl.errors import ArtifactError, TrainctlError
from trainctl.experiment.plan import Experiment, load_experiment
from trainctl.experiment.results import (
    ExperimentResult,
    RunResult,
    _is_complete,
    _read_previous_results,
    _state_hash_of,
    _write_results,
    summarise_run_dir,
)
from trainctl.runs.files import EXPERIMENT_FILE, RESULTS_FILE, RUNS_DIR

RUN_RETRIES = 1  # a run whose worker dies is retried this many times, then marked failed


POLL_SECONDS = 0.25  # how often the live progress is refreshed while no run finishes


def _train_variant(task: Mapping[str, Any]) -> dict[str, Any]:
    """Train one variant into task["out"]; never raises for a failed run (returns status)."""
    started = time.perf_counter()
    out = Path(task["out"])
    result: dict[str, Any] = {"run_id": task["run_id"], "status": "ok", "error": None}
    try:
        from trainctl.config import load_config_text
        from trainctl.runs.train import train_from_config

        if out.exists():  # left by an interrupted attempt (or a worker that died): start over
            shutil.rmtree(out)
        loaded = load_config_text(task["config_yaml"], task["source"])
        train_from_config(loaded, out=out, callbacks=[])
        result.update(summarise_run_dir(out, task["metric"], task["mode"]))
    except TrainctlError as error:
        result.update(status="failed", error=str(error).replace("\n", "; "))
    except Exception as error:  # a bug in a run must not stop the others; keep its story
        result.update(status="failed", error=f"{type(error).__name__}: {error}".replace("\n", "; "))
    result["wall_seconds"] = time.perf_counter() - started
    return result


@dataclass(frozen=True)
class ExperimentProgress:
    """A snapshot for live display. done counts ok runs (skipped ones included)."""

    total: int
    done: int
    running: int
    failed: int
    skipped: int
    metric: str
    mode: str
    best: RunResult | None = None
    last: RunResult | None = None  # the run that just finished, when this snapshot is for one

    @property
    def queued(self) -> int:
        return self.total - self.done - self.failed - self.running


def _plan_runs(experiment: Experiment, directory: Path) -> tuple[list[RunResult], dict[int, Path]]:
    """Each variant as a RunResult: skipped (complete already) or planned with its run dir.
    Returns also the directories to clear before their run starts (interrupted runs)."""
    runs_root = directory / RUNS_DIR
    complete: dict[str, Path] = {}
    if runs_root.is_dir():
        for child in sorted(runs_root.iterdir()):
            if child.is_dir() and _is_complete(child):
                digest = _state_hash_of(child)
                if digest:
                    complete.setdefault(digest, child)
    previous = _read_previous_results(directory / RESULTS_FILE)
    runs: list[RunResult] = []
    stale: dict[int, Path] = {}
    for variant in experiment.variants:
        run = RunResult(variant.run_id, dict(variant.overrides), variant.seed, "planned",
                        config_hash=variant.config_hash, index=variant.index)
        if variant.state_hash in complete:
            run.status = "skipped"
            run.path = complete[variant.state_hash]
            run.run_id = run.path.name
            run.wall_seconds = previous.get(variant.config_hash)
            try:
                for key, value in summarise_run_dir(run.path, experiment.metric, experiment.mode).items():
                    setattr(run, key, value)
            except TrainctlError as error:
                run.error = str(error)
        else:
            path = runs_root / variant.run_id
            if path.exists() and _is_complete(path):  # a finished run of another config
                run.run_id = f"{variant.run_id}-{variant.config_hash[:8]}"
                path = runs_root / run.run_id
            if path.exists():
                stale[variant.index] = path
            run.path = path
        runs.append(run)
    return runs, stale


def _open_client(workers: int, scheduler: str | None):
    """(client, cluster or None). LocalCluster workers are spawned processes, one thread each."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="10s"), None
        except (OSError, TimeoutError) as error:
            raise TrainctlError(f"--scheduler {scheduler}: cannot connect to a dask scheduler "
                                f"({error})") from None
    if workers < 1:
        raise TrainctlError(f"--workers must be at least 1, got {workers}")
    settings = {
        # numba's threading layer hangs in a forked child; spawned workers start clean.
        "distributed.worker.multiprocessing-method": "spawn",
        "distributed.scheduler.allowed-failures": RUN_RETRIES,
        # One BLAS thread per worker: N workers on N cores, not N×N threads fighting.
        "distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS": 1,
        "distributed.nanny.pre-spawn-environ.OPENBLAS_NUM_THREADS": 1,
        "distributed.nanny.pre-spawn-environ.MKL_NUM_THREADS": 1,
        "distributed.nanny.pre-spawn-environ.NUMBA_NUM_THREADS": 1,
    }
    with dask.config.set(settings):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.CRITICAL)
        try:
            return Client(cluster), cluster
        except BaseException:
            cluster.close()
            raise


def run_experiment(path: str | os.PathLike, *, workers: int = 2, scheduler: str | None = None,
                   dry_run: bool = False, out: Path | None = None,
                   progress: Callable[[ExperimentProgress], None] | None = None) -> ExperimentResult:
    """Validate, plan and run an experiment; see the module docstring. Returns every run's
    result (skipped ones included). With dry_run, nothing is written or started."""
    started = time.perf_counter()
    experiment = load_experiment(path)
    directory = experiment.directory(out).absolute()
    runs, stale = _plan_runs(experiment, directory)
    result = ExperimentResult(experiment, directory, runs, dry_run)
    if dry_run:
        return result
    try:
        (directory / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ArtifactError(f"cannot create {directory / RUNS_DIR}: {error.strerror or error}") from None
    if experiment.spec.search is not None:  # Optuna picks the trials (experiment/search.py)
        from trainctl.experiment.search import run_search

        def record(searched: ExperimentResult) -> None:  # the trials so far, for compare and plot
            _write_plan(experiment, directory, searched.runs)
            _write_results(searched)

        result = run_search(experiment, directory, workers=workers, scheduler=scheduler, open_client=_open_client,
                            progress=progress, snapshot=_snapshot, record=record)
        result.seconds = time.perf_counter() - started
        record(result)
        return result
    _write_plan(experiment, directory, runs)
    _write_results(result)
    todo = [run for run in runs if run.status == "planned"]
    if todo:
        for index, stale_path in stale.items():
            shutil.rmtree(stale_path, ignore_errors=True)
        _run_on_dask(experiment, result, todo, workers, scheduler, progress)
    elif progress is not None:
        progress(_snapshot(result, running=0))
    result.seconds = time.perf_counter() - started
    _write_results(result)
    return result


def _snapshot(result: ExperimentResult, running: int, last: RunResult | None = None) -> ExperimentProgress:
    runs = result.runs
    return ExperimentProgress(
        total=len(runs), done=sum(run.status in ("ok", "skipped") for run in runs), running=running,
        failed=sum(run.status == "failed" for run in runs),
        skipped=sum(run.status == "skipped" for run in runs), metric=result.metric,
        mode=result.mode, best=result.best, last=last)


def _run_on_dask(experiment: Experiment, result: ExperimentResult, todo: list[RunResult],
                 workers: int, scheduler: str | None,
                 progress: Callable[[ExperimentProgress], None] | None) -> None:
    from distributed import wait

    variants = {variant.index: variant for variant in experiment.variants}
    client, cluster = _open_client(workers, scheduler)
    futures = {}
    try:
        token = uuid.uuid4().hex[:8]
        for order, run in enumerate(todo):
            variant = variants[run.index]
            task = {"run_id": run.run_id, "out": os.fspath(run.path), "config_yaml": variant.config_yaml,
                    "source": experiment.base_source, "metric": experiment.metric,
                    "mode": experiment.mode}
            future = client.submit(_train_variant, task, key=f"trainctl-{run.run_id}-{token}",
                                   pure=False, priority=len(todo) - order)
            futures[future] = run
        for run in todo:
            run.status = "pending"
        pending = set(futures)
        last_shown: tuple | None = None
        while pending:
            try:
                finished, pending_now = wait(list(pending), timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
            except TimeoutError:
                finished, pending_now = set(), pending
            pending = set(pending_now)
            for future in finished:
                run = futures[future]
                _record(run, future)
                _write_results(result)
                if progress is not None:
                    running = _count_running(client, pending)
                    last_shown = (running, len(pending))
                    progress(_snapshot(result, running, last=run))
            if progress is not None and not finished:
                running = _count_running(client, pending)
                if (running, len(pending)) != last_shown:
                    last_shown = (running, len(pending))
                    progress(_snapshot(result, running))
    finally:
        for future in futures:
            if not future.done():
                future.cancel()
        client.close()
        if cluster is not None:
            cluster.close()


def _count_running(client, pending: set) -> int:
    """Tasks of ours that a worker is executing now."""
    if not pending:
        return 0
    keys = {future.key for future in pending}
    try:
        processing = client.processing()
        threads = client.nthreads()
    except Exception:  # the scheduler went away; the futures will report it
        return 0
    # A worker may hold more tasks than threads (queued on it); only `threads` of them run.
    return sum(min(sum(key in keys for key in tasks), threads.get(worker, 1))
               for worker, tasks in processing.items())


def _record(run: RunResult, future) -> None:
    from distributed import KilledWorker

    try:
        outcome = future.result()
    except KilledWorker:
        run.status = "failed"
        run.error = (f"the worker running it died ({RUN_RETRIES + 1}×: killed, or out of memory); "
                     "not retried again")
        return
    except Exception as error:
        run.status = "failed"
        run.error = f"{type(error).__name__}: {error}".replace("\n", "; ")
        return
    run.status = outcome["status"]
    run.error = outcome.get("error")
    run.wall_seconds = outcome.get("wall_seconds")
    for key in ("final", "best", "best_epoch", "epochs", "train_seconds"):
        setattr(run, key, outcome.get(key))


def _write_plan(experiment: Experiment, directory: Path, runs: list[RunResult]) -> None:
    from trainctl.runs.atomic import atomic_write_json

    plan = {
        "name": experiment.name,
        "experiment_file": os.fspath(experiment.path.absolute()),
        "base": experiment.base_source,
        "metric": experiment.metric,
        "mode": experiment.mode,
        "keys": experiment.keys,
        "runs": [{"index": run.index, "run_id": run.run_id, "overrides": run.overrides,
                  "seed": run.seed, "config_hash": run.config_hash,
                  "path": os.fspath(run.path.relative_to(directory)) if run.path else None}
                 for run in runs],
    }
    atomic_write_json(directory / EXPERIMENT_FILE, plan)
