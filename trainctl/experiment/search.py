"""Adaptive search: Optuna picks the trials, dask runs them, the study lives on disk.

    search: {sampler: tpe, n_trials: 30, pruner: median, params: {optimizer.learning_rate: {loguniform: [1e-4, 0.1]}}}

Ask-and-tell with the sampler on the client: while fewer than `n_trials` trials are finished
or pruned, ask for as many trials as there are free workers, build each trial's config (the
base with its values applied), and submit one dask task per trial that trains into
`runs/trial-NNNN`. Inside the task a callback reports the monitored metric after every epoch
to the study and asks the pruner; a pruned trial stops at the end of that epoch, its run
directory is marked `pruned` (trial.json), and its worker takes the next trial.

The study is stored in the experiment directory (Optuna's journal file, or `search.storage`
as an RDB URL), so running the same experiment again continues it: finished and pruned
trials are kept and count toward `n_trials`; a trial that was running when the client died
is marked failed and its values are asked again first.
"""

from __future__ import annotations

import math
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from trainctl.errors import TrainctlError
from trainctl.experiment.plan import Experiment
from trainctl.experiment.results import ExperimentResult, RunResult
from trainctl.runs.files import EXPERIMENT_FILE, RUNS_DIR, STUDY_FILE, TRIAL_FILE
from trainctl.train.callbacks import Callback

TRIAL_ID_WIDTH = 4  # runs/trial-0007
INTERRUPTED = "trainctl_interrupted"  # user attribute of a trial whose client died while it ran


def _optuna():
    try:
        import optuna
    except ImportError:  # pragma: no cover - optuna is a dependency; a broken install still gets a line
        raise TrainctlError("search needs optuna: pip install optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # trainctl shows its own progress
    return optuna


def _sampler(spec, optuna):
    name, seed = spec.sampler, spec.seed
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    space = {}
    for key, dist in spec.params.items():  # grid: every choice, or the two ends of a range
        if dist.kind == "choice":
            space[key] = list(dist.choice)
        elif dist.kind == "int":
            low, high = dist.int_
            space[key] = list(range(low, high + 1))
        else:
            space[key] = list(dist.value_of(dist.kind))
    return optuna.samplers.GridSampler(space, seed=seed)


def _pruner(name: str, optuna):
    """The pruner by id. Optuna does not store it with the study: the workers build it
    again from the id (load_study's default would be a median pruner)."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def _storage_url(experiment: Experiment, directory: Path) -> str:
    """What a worker opens: an RDB URL, or `journal:<path>` for the journal file."""
    spec = experiment.spec.search
    return spec.storage if spec.storage else f"journal:{os.fspath(directory / STUDY_FILE)}"


def open_storage(url: str):
    optuna = _optuna()
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:"):]))
    return url  # an RDB URL: optuna opens it


def load_study_of(directory: Path):
    """The study of a search's experiment directory (its journal file), or None."""
    from trainctl.runs.atomic import read_json

    journal = directory / STUDY_FILE
    if not journal.is_file():
        return None
    plan = read_json(directory / EXPERIMENT_FILE)
    optuna = _optuna()
    return optuna.load_study(study_name=plan["name"], storage=open_storage(f"journal:{os.fspath(journal)}"))


def suggest(trial, params) -> dict[str, Any]:
    """The trial's values for the experiment's distributions (same names as the config keys)."""
    values = {}
    for key, dist in params.items():
        kind = dist.kind
        if kind == "uniform":
            values[key] = trial.suggest_float(key, *dist.uniform)
        elif kind == "loguniform":
            values[key] = trial.suggest_float(key, *dist.loguniform, log=True)
        elif kind == "int":
            values[key] = trial.suggest_int(key, *dist.int_)
        else:
            values[key] = trial.suggest_categorical(key, list(dist.choice))
    return values


class PruneOnPlateau(Callback):
    """Reports the monitored metric to the trial after each epoch; stops training when the
    pruner says so (at the end of that epoch, like Keras's early stopping)."""

    def __init__(self, storage_url: str, study_name: str, trial_id: int, metric: str, pruner: str):
        super().__init__()
        self.storage_url, self.study_name, self.trial_id, self.metric = storage_url, study_name, trial_id, metric
        self.pruner = pruner
        self.pruned_at: int | None = None
        self._trial = None

    def on_train_begin(self, logs=None):
        optuna = _optuna()
        study = optuna.load_study(study_name=self.study_name, storage=open_storage(self.storage_url),
                                  pruner=_pruner(self.pruner, optuna))
        self._trial = optuna.trial.Trial(study, self.trial_id)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.metric)
        if value is None or not math.isfinite(float(value)):
            return
        self._trial.report(float(value), epoch)
        if self._trial.should_prune():
            self.pruned_at = epoch
            self.model.stop_training = True


def _train_trial(task: dict[str, Any]) -> dict[str, Any]:
    """One trial in a worker: train, report per epoch, return the outcome (never raises)."""
    from trainctl.experiment.results import summarise_run_dir
    from trainctl.runs.atomic import atomic_write_json

    started = time.perf_counter()
    out = Path(task["out"])
    result: dict[str, Any] = {"number": task["number"], "status": "ok", "error": None}
    try:
        from trainctl.config import load_config_text
        from trainctl.runs.train import train_from_config

        if out.exists():  # left by an interrupted attempt: start over
            shutil.rmtree(out)
        pruning = PruneOnPlateau(task["storage"], task["study"], task["trial_id"], task["metric"], task["pruner"])
        loaded = load_config_text(task["config_yaml"], task["source"])
        train_from_config(loaded, out=out, callbacks=[pruning])
        result.update(summarise_run_dir(out, task["metric"], task["mode"]))
        if pruning.pruned_at is not None:
            result.update(status="pruned", pruned_at=pruning.pruned_at)
        atomic_write_json(out / TRIAL_FILE, {"number": task["number"], "state": result["status"],
                                             "params": task["params"], "pruned_at": pruning.pruned_at})
    except TrainctlError as error:
        result.update(status="failed", error=str(error).replace("\n", "; "))
    except Exception as error:  # a bug in one trial must not stop the study
        result.update(status="failed", error=f"{type(error).__name__}: {error}".replace("\n", "; "))
    result["wall_seconds"] = time.perf_counter() - started
    return result


def trial_config(experiment: Experiment, values: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the trial's resolved config as YAML, None) or (None, why it is not a valid config)."""
    from trainctl.config import config_to_yaml
    from trainctl.config.overrides import Override, apply_overrides_located
    from trainctl.config.schema import validate_config
    from trainctl.experiment.plan import read_base_data

    base = read_base_data(experiment)
    overrides = [Override(tuple(key.split(".")), value, index) for index, (key, value) in enumerate(values.items())]
    data, _, path_problems = apply_overrides_located(base, overrides)
    if path_problems:
        return None, "; ".join(problem.message for problem in path_problems)
    config, problems = validate_config(data)
    if config is None:
        return None, "; ".join(f"{problem.dotted}: {problem.message}" for problem in problems)
    return config_to_yaml(config), None


def run_search(experiment: Experiment, directory: Path, *, workers: int, scheduler: str | None,
               open_client: Callable, progress: Callable | None, snapshot: Callable,
               record: Callable[[ExperimentResult], None]) -> ExperimentResult:
    """Run (or continue) the study until n_trials are finished or pruned, or the timeout.
    `record(result)` writes the plan and results.csv after each trial; Ctrl-C stops the
    study cleanly (running trials are cancelled; the next run of the command resumes it)."""
    optuna = _optuna()
    spec = experiment.spec.search
    storage_url = _storage_url(experiment, directory)
    direction = "maximize" if experiment.mode == "max" else "minimize"
    study = optuna.create_study(study_name=experiment.name, storage=open_storage(storage_url),
                                direction=direction, sampler=_sampler(spec, optuna),
                                pruner=_pruner(spec.pruner, optuna), load_if_exists=True)
    states = optuna.trial.TrialState
    runs_root = directory / RUNS_DIR
    runs_root.mkdir(parents=True, exist_ok=True)
    for trial in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
        # its client died mid-trial: drop the half-written run, ask its values again first
        study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
        study._storage.set_trial_state_values(trial._trial_id, states.FAIL)
        study.enqueue_trial(trial.params, skip_if_exists=False)
        shutil.rmtree(runs_root / _run_id(trial.number), ignore_errors=True)
    result = ExperimentResult(experiment, directory, _runs_of(study, runs_root, experiment), False)
    record(result)

    def counted() -> int:
        return sum(t.state in (states.COMPLETE, states.PRUNED) for t in study.get_trials(deepcopy=False))

    started = time.monotonic()
    client, cluster = open_client(workers, scheduler)
    futures: dict[Any, tuple[Any, RunResult]] = {}
    token = uuid.uuid4().hex[:8]
    try:
        from distributed import wait

        slots = max(1, sum(client.nthreads().values()))
        wanted = min(spec.n_trials, grid_size(spec) or spec.n_trials)  # a grid has so many points
        while True:
            timed_out = spec.timeout is not None and time.monotonic() - started > spec.timeout
            while not timed_out and len(futures) < slots and counted() + len(futures) < wanted:
                trial = study.ask()
                values = suggest(trial, spec.params)
                run = _trial_run(trial.number, values, runs_root, experiment)
                result.runs.append(run)
                text, problem = trial_config(experiment, values)
                if problem is not None:
                    _told(study, trial, state=states.FAIL)
                    run.status, run.error = "failed", problem
                    continue
                task = {"number": trial.number, "trial_id": trial._trial_id, "study": experiment.name,
                        "storage": storage_url, "out": os.fspath(run.path), "config_yaml": text,
                        "source": experiment.base_source, "metric": experiment.metric,
                        "mode": experiment.mode, "params": values, "pruner": spec.pruner}
                future = client.submit(_train_trial, task, key=f"trainctl-trial-{trial.number}-{token}", pure=False)
                futures[future] = (trial, run)
                run.status = "pending"
            if not futures:
                break
            done, _ = wait(list(futures), return_when="FIRST_COMPLETED")
            for future in done:
                trial, run = futures.pop(future)
                _tell(study, trial, run, future, states)
                record(result)
                if progress is not None:
                    progress(snapshot(result, running=len(futures), last=run))
    except KeyboardInterrupt:
        _quiet_dask()
        for _, run in futures.values():
            run.status = "pending"
        record(result)
        raise TrainctlError(f"interrupted: {counted()} of {spec.n_trials} trials done; run the same command "
                            "again to resume the study") from None
    finally:
        for future in futures:
            future.cancel()
        client.close()
        if cluster is not None:
            cluster.close()
    return result


def _quiet_dask() -> None:
    """Closing a client under Ctrl-C makes dask log tracebacks of its cancelled tasks; the
    user asked to stop, so say it in one line instead."""
    import logging

    for name in ("distributed", "distributed.client", "distributed.worker", "distributed.nanny",
                 "distributed.scheduler", "distributed.core"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _run_id(number: int) -> str:
    return f"trial-{number:0{TRIAL_ID_WIDTH}d}"


def _trial_run(number: int, values: dict[str, Any], runs_root: Path, experiment: Experiment) -> RunResult:
    run_id = _run_id(number)
    return RunResult(run_id, dict(values), None, "planned", path=runs_root / run_id, index=number)


def _told(study, trial, value=None, state=None) -> None:
    """study.tell, tolerating GridSampler's `study.stop()` when its grid is exhausted (meant
    for study.optimize; in ask-and-tell it raises after the trial's state is stored)."""
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as error:
        if "Study.stop" not in str(error):
            raise


def grid_size(spec) -> int | None:
    """The number of points of a grid search (None for the other samplers)."""
    if spec.sampler != "grid":
        return None
    size = 1
    for dist in spec.params.values():
        size *= (dist.int_[1] - dist.int_[0] + 1) if dist.kind == "int" else \
            (len(dist.choice) if dist.kind == "choice" else 2)
    return size


def _tell(study, trial, run: RunResult, future, states) -> None:
    try:
        outcome = future.result()
    except Exception as error:  # the worker died twice (dask retried once): the trial failed
        _told(study, trial, state=states.FAIL)
        run.status, run.error = "failed", f"{type(error).__name__}: {error}".replace("\n", "; ")
        return
    run.status, run.error = outcome["status"], outcome.get("error")
    run.wall_seconds = outcome.get("wall_seconds")
    for key in ("final", "best", "best_epoch", "epochs", "train_seconds"):
        setattr(run, key, outcome.get(key))
    if run.status == "pruned":
        _told(study, trial, state=states.PRUNED)
    elif run.status == "ok" and run.final is not None and math.isfinite(run.final):
        _told(study, trial, run.final)
    else:
        _told(study, trial, state=states.FAIL)
        run.status = "failed"
        run.error = run.error or "the metric is not finite"


def _runs_of(study, runs_root: Path, experiment: Experiment) -> list[RunResult]:
    """RunResults of the trials an earlier invocation finished (complete, pruned, failed)."""
    from trainctl.experiment.results import summarise_run_dir

    states = study.get_trials(deepcopy=False)
    runs = []
    for trial in states:
        state = trial.state.name.lower()
        if state not in ("complete", "pruned", "fail") or trial.user_attrs.get(INTERRUPTED):
            continue  # an interrupted trial was asked again under a new number
        run = _trial_run(trial.number, dict(trial.params), runs_root, experiment)
        run.status = {"complete": "skipped", "pruned": "pruned", "fail": "failed"}[state]
        if run.path.is_dir() and state != "fail":
            try:
                for key, value in summarise_run_dir(run.path, experiment.metric, experiment.mode).items():
                    setattr(run, key, value)
            except TrainctlError as error:
                run.error = str(error)
        runs.append(run)
    return runs
