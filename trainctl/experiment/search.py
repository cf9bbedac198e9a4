"""Adaptive search: Optuna picks the trials, dask runs them, the study lives on disk.

    search: {sampler: tpe, n_trials: 30, pruner: median, params: {optimizer.learning_rate: {loguniform: [1e-4, 0.1]}}}

The search is the `SearchTrials` source of the one experiment machinery (experiment/study.py):
ask-and-tell with the sampler on the client: while fewer than `n_trials` trials are finished
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

import shutil
import time
from pathlib import Path
from typing import Any

from trainctl.experiment.plan import Experiment
from trainctl.experiment.results import ExperimentResult, RunResult
from trainctl.experiment.study import (  # noqa: F401  (load_study_of: the CLI's door to a study)
    INTERRUPTED,
    Asked,
    TrialSource,
    import_optuna,
    load_study_of,
    storage_url_of,
    task_for,
)
from trainctl.runs.files import RUNS_DIR

TRIAL_ID_WIDTH = 4  # runs/trial-0007


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


def trial_config(experiment: Experiment, values: dict[str, Any],
                 base: dict | None = None) -> tuple[str | None, str | None]:
    """(the trial's resolved config as YAML, None) or (None, why it is not a valid config)."""
    from trainctl.config import config_to_yaml
    from trainctl.config.overrides import Override, apply_overrides_located
    from trainctl.config.schema import validate_config
    from trainctl.experiment.plan import read_base_data

    base = read_base_data(experiment) if base is None else base
    overrides = [Override(tuple(key.split(".")), value, index) for index, (key, value) in enumerate(values.items())]
    data, _, path_problems = apply_overrides_located(base, overrides)
    if path_problems:
        return None, "; ".join(problem.message for problem in path_problems)
    config, problems = validate_config(data)
    if config is None:
        return None, "; ".join(f"{problem.dotted}: {problem.message}" for problem in problems)
    return config_to_yaml(config), None


def grid_size(spec) -> int | None:
    """The number of points of a grid search (None for the other samplers)."""
    if spec.sampler != "grid":
        return None
    size = 1
    for dist in spec.params.values():
        size *= (dist.int_[1] - dist.int_[0] + 1) if dist.kind == "int" else \
            (len(dist.choice) if dist.kind == "choice" else 2)
    return size


class SearchTrials(TrialSource):
    """The sampler's trials: asked one per free worker until `n_trials` are finished or
    pruned (the whole study's, earlier invocations included), or the timeout has passed."""

    unit = "trials"

    def __init__(self, experiment: Experiment, directory: Path):
        from trainctl.experiment.plan import read_base_data

        self.experiment, self.directory = experiment, directory
        self.spec = experiment.spec.search
        self.pruner = self.spec.pruner
        self.runs_root = directory / RUNS_DIR
        self.storage_url = storage_url_of(experiment, directory)
        self.base = read_base_data(experiment)  # once: each trial applies its values to it
        self.wanted = min(self.spec.n_trials, grid_size(self.spec) or self.spec.n_trials)  # a grid has so many points
        self.started: float | None = None
        self.invalid = 0  # trials whose values made no valid config

    def sampler(self, optuna):
        return _sampler(self.spec, optuna)

    def lookahead(self, slots: int) -> int:
        """Random, grid and QMC samplers do not learn from results (GridSampler also skips the
        points of running trials): asking one trial ahead per worker loses nothing and keeps
        the workers busy while the client tells and asks. TPE and CMA-ES ask when a worker
        is free, with every result so far."""
        return slots if self.spec.sampler in ("random", "grid", "qmc") else 0

    def resume(self, study, interrupted: list) -> list[RunResult]:
        for trial in interrupted:  # its client died mid-trial: drop the half-written run, ask its values first
            study.enqueue_trial(trial.params, skip_if_exists=False)
            shutil.rmtree(self.runs_root / _run_id(trial.number), ignore_errors=True)
        return _runs_of(study, self.runs_root, self.experiment)

    def counted(self, study) -> int:
        states = import_optuna().trial.TrialState
        return sum(t.state in (states.COMPLETE, states.PRUNED) for t in study.get_trials(deepcopy=False))

    def remaining(self, study) -> int:
        return self.wanted - self.counted(study)

    def next(self, study, result: ExperimentResult, in_flight: int) -> Asked | None:
        if self.started is None:
            self.started = time.monotonic()
        if self.spec.timeout is not None and time.monotonic() - self.started > self.spec.timeout:
            return None
        if self.invalid >= self.spec.n_trials or self.counted(study) + in_flight >= self.wanted:
            return None
        trial = study.ask()
        values = suggest(trial, self.spec.params)
        run = _trial_run(trial.number, values, self.runs_root)
        result.runs.append(run)
        text, problem = trial_config(self.experiment, values, self.base)
        if problem is not None:
            self.invalid += 1
            run.status, run.error = "failed", problem
            return Asked(trial, run, None)
        return Asked(trial, run, task_for(self.experiment, self.storage_url, trial, run, text, values, self.pruner))

    def done(self, study, result: ExperimentResult) -> tuple[int, int]:
        return self.counted(study), self.spec.n_trials


def _run_id(number: int) -> str:
    return f"trial-{number:0{TRIAL_ID_WIDTH}d}"


def _trial_run(number: int, values: dict[str, Any], runs_root: Path) -> RunResult:
    run_id = _run_id(number)
    return RunResult(run_id, dict(values), None, "planned", path=runs_root / run_id, index=number)


def _runs_of(study, runs_root: Path, experiment: Experiment) -> list[RunResult]:
    """RunResults of the trials an earlier invocation finished (complete, pruned, failed)."""
    from trainctl.errors import TrainctlError
    from trainctl.experiment.results import summarise_run_dir

    runs = []
    for trial in study.get_trials(deepcopy=False):
        state = trial.state.name.lower()
        if state not in ("complete", "pruned", "fail") or trial.user_attrs.get(INTERRUPTED):
            continue  # an interrupted trial was asked again under a new number
        run = _trial_run(trial.number, dict(trial.params), runs_root)
        run.status = {"complete": "skipped", "pruned": "pruned", "fail": "failed"}[state]
        if run.path.is_dir() and state != "fail":
            try:
                for key, value in summarise_run_dir(run.path, experiment.metric, experiment.mode).items():
                    setattr(run, key, value)
            except TrainctlError as error:
                run.error = str(error)
        runs.append(run)
    return runs
