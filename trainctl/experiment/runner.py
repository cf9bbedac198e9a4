"""Running an experiment on dask.distributed.

    result = run_experiment("configs/experiments/quickstart_lr.yaml", workers=2)
    rows, columns = result.comparison().table(spread)   # one row per configuration

Every experiment is an Optuna study run by one machinery (experiment/study.py): a plan
(grid × random draws × seeds) gives its variants as trials with fixed values, a `search:`
lets the sampler ask (experiment/search.py). Each trial is a dask task, on a LocalCluster of
spawned single-threaded worker processes or on a running scheduler, that trains into
`<experiment dir>/runs/<run id>` and returns a small dict. A run that raises is recorded as
failed; a run whose worker dies is retried once, then recorded as failed. `results.csv`,
`experiment.json` and the study's journal (`study.journal`) are in the experiment directory.
Running the same file again skips complete runs (same resolved-config hash in state.json,
metrics.json present; a search: its finished trials) and reruns interrupted ones from scratch.

This module never prints: live progress goes to the `progress` callable.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from trainctl.errors import ArtifactError, TrainctlError
from trainctl.experiment.plan import Experiment, load_experiment
from trainctl.experiment.results import ExperimentResult, RunResult, _write_results
from trainctl.experiment.plan_trials import plan_runs
from trainctl.experiment.study import RUN_RETRIES
from trainctl.runs.files import EXPERIMENT_FILE, RUNS_DIR


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


def _open_client(workers: int, scheduler: str | None, cluster_security: Any = None):
    """(client, cluster or None). LocalCluster workers are spawned processes, one thread each;
    see trainctl/experiment/security.py for who may talk to them."""
    import dask
    from distributed import Client, LocalCluster

    from trainctl.experiment.security import ClusterSecurity

    cluster_security = cluster_security or ClusterSecurity()
    if scheduler:
        try:
            return Client(scheduler, timeout="10s", security=cluster_security.client_security(scheduler)), None
        except (OSError, TimeoutError, ValueError) as error:
            raise TrainctlError(f"--scheduler {scheduler}: cannot connect to a dask scheduler "
                                f"({str(error)[:160]})") from None
    if workers < 1:
        raise TrainctlError(f"--workers must be at least 1, got {workers}")
    settings = {
        # numba's threading layer hangs in a forked child; spawned workers start clean.
        "distributed.worker.multiprocessing-method": "spawn",
        "distributed.scheduler.allowed-failures": RUN_RETRIES,
        # One task per worker thread; the rest wait at the scheduler for the first free worker
        # (the default 1.1 sends a second task to a busy single-threaded worker).
        "distributed.scheduler.worker-saturation": 1.0,
        # dask's housekeeping costs CPU every second, whether trials run or not: by default
        # ~6% of a core for a client and one worker (bench/experiment_scaling.py), mostly the
        # statistical profiler sampling the worker's threads every 10 ms and the 20 ms
        # event-loop ticks. A trial is seconds long: profile nothing, check less often.
        "distributed.worker.profile.enabled": False,
        "distributed.admin.tick.interval": "1s",
        "distributed.worker.memory.monitor-interval": "1s",
        "distributed.admin.system-monitor.interval": "2s",
        # Each worker ignores Ctrl-C (the client's to handle) and imports trainctl once at start.
        "distributed.worker.preload": ["trainctl.experiment.worker_setup"],
        # One BLAS thread per worker: N workers on N cores, not N×N threads fighting.
        "distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS": 1,
        "distributed.nanny.pre-spawn-environ.OPENBLAS_NUM_THREADS": 1,
        "distributed.nanny.pre-spawn-environ.MKL_NUM_THREADS": 1,
        "distributed.nanny.pre-spawn-environ.NUMBA_NUM_THREADS": 1,
    }
    security_settings = cluster_security.local_settings()
    # both want code run in each worker as it starts: one preload list, ours first (Ctrl-C
    # ignored before anything else), then the security module's (closes the worker's HTTP server)
    preloads = settings.pop("distributed.worker.preload") + security_settings.pop("distributed.worker.preload", [])
    with dask.config.set({**settings, **security_settings, "distributed.worker.preload": preloads}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               silence_logs=logging.CRITICAL, **cluster_security.local_cluster_options())
        try:
            cluster_security.after_start(cluster)
            return Client(cluster, security=cluster.security), cluster
        except BaseException:
            cluster.close()
            raise


def run_experiment(path: str | os.PathLike, *, workers: int = 2, scheduler: str | None = None,
                   dry_run: bool = False, out: Path | None = None, security: Any = None,
                   progress: Callable[[ExperimentProgress], None] | None = None) -> ExperimentResult:
    """Validate, plan and run an experiment; see the module docstring. Returns every run's
    result (skipped ones included). With dry_run, nothing is written or started."""
    from trainctl.experiment.plan_trials import PlanTrials
    from trainctl.experiment.study import run_study

    started = time.perf_counter()
    experiment = load_experiment(path)
    directory = experiment.directory(out).absolute()
    if dry_run:
        return ExperimentResult(experiment, directory, plan_runs(experiment, directory), dry_run)
    try:
        (directory / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ArtifactError(f"cannot create {directory / RUNS_DIR}: {error.strerror or error}") from None
    if experiment.spec.search is not None:  # Optuna's sampler picks the trials
        from trainctl.experiment.search import SearchTrials

        source = SearchTrials(experiment, directory)
    else:  # the plan's variants, each a trial with fixed values
        source = PlanTrials(experiment, directory)

    def record(current: ExperimentResult) -> None:  # the runs so far, for compare and plot
        _write_plan(experiment, directory, current.runs)
        _write_results(current)

    result = run_study(experiment, directory, source, workers=workers, scheduler=scheduler,
                       open_client=lambda n, address: _open_client(n, address, security),
                       progress=progress, snapshot=_snapshot, record=record)
    result.seconds = time.perf_counter() - started
    record(result)
    return result


def _snapshot(result: ExperimentResult, running: int, last: RunResult | None = None) -> ExperimentProgress:
    runs = result.runs
    return ExperimentProgress(
        total=len(runs), done=sum(run.status in ("ok", "skipped") for run in runs), running=running,
        failed=sum(run.status == "failed" for run in runs),
        skipped=sum(run.status == "skipped" for run in runs), metric=result.metric,
        mode=result.mode, best=result.best, last=last)


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
