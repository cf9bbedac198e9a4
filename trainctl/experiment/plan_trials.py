"""Grid, random draws and seeds as trials of the one study machinery (experiment/study.py):
the plan's variants in plan order, each a trial with the variant's values fixed, trained into
the variant's own run directory."""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path
from typing import Any

from trainctl.errors import TrainctlError
from trainctl.experiment.plan import Experiment
from trainctl.experiment.results import ExperimentResult, RunResult
from trainctl.experiment.study import Asked, TrialSource, fixed_trial, import_optuna, storage_url_of, task_for, told
from trainctl.runs.files import RUNS_DIR


def _choices(values: list) -> bool:
    """Whether Optuna can hold these values as a categorical: distinct strings, or distinct
    numbers (no bools among them: True == 1 would alias)."""
    if all(isinstance(v, str) for v in values):
        kinds_ok = True
    else:
        kinds_ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    return kinds_ok and len(set(values)) == len(values)


def _plan_distributions(experiment: Experiment) -> dict[str, Any]:
    """Optuna distributions of the plan's varied keys whose values are scalars (so the study's
    plots show them); a key with a list or mapping value lives in experiment.json only."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    spec = experiment.spec
    found: dict[str, Any] = {}
    for key, values in spec.grid.items():
        if _choices(values):
            found[key] = CategoricalDistribution(list(values))
    for key, dist in (spec.random.params.items() if spec.random else ()):
        kind = dist.kind
        if kind == "uniform":
            found[key] = FloatDistribution(*dist.uniform)
        elif kind == "loguniform":
            found[key] = FloatDistribution(*dist.loguniform, log=True)
        elif kind == "int":
            found[key] = IntDistribution(*dist.int_)
        elif _choices(dist.choice):
            found[key] = CategoricalDistribution(list(dist.choice))
    if spec.seeds is not None and len(spec.seeds) > 1:
        found["seed"] = CategoricalDistribution(list(spec.seeds))
    return found


def plan_runs(experiment: Experiment, directory: Path) -> list[RunResult]:
    """Each variant as a RunResult: skipped (its run directory is complete for its config)
    or planned, with the run directory it trains into."""
    from trainctl.experiment.results import _is_complete, _read_previous_results, _state_hash_of, summarise_run_dir
    from trainctl.runs.files import RESULTS_FILE

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
            run.path = path
        runs.append(run)
    return runs


class PlanTrials(TrialSource):
    """The plan's variants (grid × random draws × seeds) as trials with fixed values.

    A variant is done when its run directory is complete for its resolved config (state.json's
    config hash, metrics.json): a rerun skips it, and runs the others (interrupted or failed)
    again from scratch, in plan order, into the variant's own run directory."""

    def __init__(self, experiment: Experiment, directory: Path):
        self.experiment, self.directory = experiment, directory
        self.variants = {variant.index: variant for variant in experiment.variants}
        self.distributions = _plan_distributions(experiment)
        self.todo: deque[RunResult] = deque()
        self.storage_url = storage_url_of(experiment, directory)

    def lookahead(self, slots: int) -> int:
        return slots

    def resume(self, study, interrupted: list) -> list[RunResult]:
        runs = plan_runs(self.experiment, self.directory)
        self.todo = deque(run for run in runs if run.status == "planned")
        self._complete_in_study(study, [run for run in runs if run.status == "skipped"])
        return runs

    def _complete_in_study(self, study, skipped: list[RunResult]) -> None:
        """A complete run the study does not hold as complete (it finished while its client
        was stopping, or the experiment predates its study) joins it, so the study's plots
        show every finished variant."""
        states = import_optuna().trial.TrialState
        held = {trial.user_attrs.get("run_id") for trial in study.get_trials(deepcopy=False, states=(states.COMPLETE,))}
        for run in skipped:
            if run.run_id in held or run.final is None or not math.isfinite(run.final):
                continue
            told(study, self._trial(study, run), run.final)

    def _trial(self, study, run: RunResult):
        """A RUNNING trial of the run's variant: its scalar values as params, its run id."""
        variant = self.variants[run.index]
        values = {**variant.overrides, "seed": variant.seed}
        params = {key: values[key] for key in self.distributions if key in values}
        return fixed_trial(study, params, {key: self.distributions[key] for key in params},
                           {"run_id": run.run_id, "config_hash": variant.config_hash})

    def remaining(self, study) -> int:
        return len(self.todo)

    def next(self, study, result: ExperimentResult, in_flight: int) -> Asked | None:
        if not self.todo:
            return None
        run = self.todo.popleft()
        variant = self.variants[run.index]
        trial = self._trial(study, run)
        task = task_for(self.experiment, self.storage_url, trial, run, variant.config_yaml,
                        dict(variant.overrides), "none")
        return Asked(trial, run, task)

    def done(self, study, result: ExperimentResult) -> tuple[int, int]:
        return sum(run.status in ("ok", "skipped") for run in result.runs), len(result.runs)
