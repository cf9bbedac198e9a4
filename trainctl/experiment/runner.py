"""Experiments: many variants of one config, several seeds each, run on dask.distributed.

    experiment = load_experiment("configs/experiments/quickstart_lr.yaml")  # validates all
    result = run_experiment("configs/experiments/quickstart_lr.yaml", workers=2)
    rows, columns = result.comparison().table(spread)   # one row per configuration

`load_experiment` reads the experiment file (schema in `experiment_schema`), expands the
grid × random draws × seeds into variants and validates every variant's resolved config
before anything runs; every problem is reported at once, located in the experiment file
(the grid value or distribution that caused it) or in the base config.

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

import csv
import io
import itertools
import json
import logging
import math
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from trainctl.config.loader import Positions, parse_yaml, read_yaml
from trainctl.config.overrides import Override, apply_overrides_located
from trainctl.config.problems import Problem, RawProblem, raise_problems, show
from trainctl.errors import ArtifactError, ConfigError, TrainctlError
from trainctl.experiment.schema import ExperimentSpec

__all__ = [
    "Comparison",
    "Experiment",
    "ExperimentProgress",
    "ExperimentResult",
    "RunResult",
    "Variant",
    "compare_runs",
    "load_experiment",
    "run_experiment",
]

EXPERIMENT_FILE = "experiment.json"
RESULTS_FILE = "results.csv"
RUNS_DIR = "runs"
DEFAULT_ROOT = Path("experiments")  # default experiment directory: experiments/<name>
RUN_RETRIES = 1  # a run whose worker dies is retried this many times, then marked failed
POLL_SECONDS = 0.25  # how often the live progress is refreshed while no run finishes
_MAX_RUN_ID = 72  # characters; long override summaries are cut (the index keeps ids unique)


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One run of the plan: the base config with `overrides` applied and `seed` set."""

    index: int
    run_id: str
    overrides: dict[str, Any]  # dotted key -> value, in the experiment file's order (no seed)
    seed: int
    config_yaml: str  # the resolved config, exactly as the run directory will hold it
    config_hash: str  # trainctl.config.config_hash of the resolved config
    state_hash: str  # artifacts.config_hash of config_yaml: what state.json records


@dataclass
class Experiment:
    path: Path  # the experiment file
    name: str
    spec: ExperimentSpec
    base_source: str  # the base config's file (or the experiment file, for an inline base)
    variants: list[Variant]

    @property
    def metric(self) -> str:
        return self.spec.metric

    @property
    def mode(self) -> str:
        return self.spec.mode

    @property
    def keys(self) -> list[str]:
        """The varied config keys, grid first, then random."""
        random = list(self.spec.random.params) if self.spec.random else []
        return [*self.spec.grid, *random]

    def directory(self, out: Path | None = None) -> Path:
        return Path(out) if out is not None else DEFAULT_ROOT / self.name


def _problem_at(positions: Positions, path: str, message: str, at: str = "value") -> Problem:
    mark = positions.key(path) if at == "key" else positions.value(path)
    return Problem(positions.source, mark.line, mark.col, path, message)


def _locate_raw(problem: RawProblem, positions: Positions, prefix: str = "") -> Problem:
    dotted = ".".join(p for p in (prefix, problem.dotted) if p)
    mark = positions.key(dotted) if problem.at == "key" else positions.value(dotted)
    return Problem(positions.source, mark.line, mark.col, problem.dotted, problem.message)


def load_experiment(path: str | os.PathLike) -> Experiment:
    """Read, expand and validate an experiment file. ConfigError with every problem, located."""
    from trainctl.config.schema import validate_model

    path = Path(path)
    source = os.fspath(path)
    document = read_yaml(path)
    raise_problems(document.problems)
    positions = document.positions
    data = document.data
    if not isinstance(data, dict):
        raise_problems([Problem(source, 1, 1, "", "an experiment file is a mapping with base, grid, "
                                f"random, seeds, metric and mode; got {show(data)}")])
    spec, raw_problems = validate_model(ExperimentSpec, data, ())
    problems = [_locate_raw(p, positions) for p in raw_problems]
    if spec is not None:
        problems += _cross_checks(spec, positions)
    raise_problems(problems)
    assert spec is not None
    name = spec.name if spec.name is not None else path.stem
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        where = "name" if spec.name is not None else ""
        raise_problems([Problem(source, *_line_col(positions, where), where,
                                f"experiment name {name!r} must be one path component of letters, "
                                "digits, '.', '_' and '-' (it names experiments/<name>)")])

    base_data, base_positions, base_source, base_prefix = _read_base(spec, path, positions)
    variants = _expand(spec, path, positions, base_data, base_positions, base_source, base_prefix)
    return Experiment(path=path, name=name, spec=spec, base_source=base_source, variants=variants)


def _line_col(positions: Positions, path: str) -> tuple[int, int]:
    mark = positions.value(path)
    return mark.line, mark.col


def _cross_checks(spec: ExperimentSpec, positions: Positions) -> list[Problem]:
    problems = []
    random_keys = list(spec.random.params) if spec.random else []
    for key in random_keys:
        if key in spec.grid:
            problems.append(_problem_at(positions, f"random.params.{key}", f"{key} is also in "
                                        "grid; vary a key in one place", at="key"))
    if spec.seeds is not None:
        seen: set[int] = set()
        for index, seed in enumerate(spec.seeds):
            if seed in seen:
                problems.append(_problem_at(positions, f"seeds.{index}", f"seed {seed} is repeated"))
            seen.add(seed)
        for place, keys in (("grid", spec.grid), ("random.params", random_keys)):
            if "seed" in keys:
                problems.append(_problem_at(positions, f"{place}.seed", "the seed is varied by "
                                            "`seeds:`; remove it here or drop `seeds:`", at="key"))
    return problems


def _read_base(spec: ExperimentSpec, path: Path,
               positions: Positions) -> tuple[dict, Positions, str, str]:
    """(base data, its positions, its source name, the prefix of its paths in `positions`)."""
    if isinstance(spec.base, dict):
        return spec.base, positions, os.fspath(path), "base"
    base_path = (path.parent / spec.base).resolve()
    if not base_path.is_file():
        raise_problems([_problem_at(positions, "base", f"config file {spec.base!r} not found "
                                    f"(looked for {base_path})")])
    document = read_yaml(base_path)
    raise_problems(document.problems)
    if not isinstance(document.data, dict):
        raise_problems([Problem(os.fspath(base_path), 1, 1, "", "the config must be a mapping of "
                                f"sections (name, model, optimizer, ...), got {show(document.data)}")])
    return document.data, document.positions, os.fspath(base_path), ""


@dataclass(frozen=True)
class _Setting:
    """One override of a variant and where the experiment file says it."""

    key: str
    value: Any
    place: str  # dotted path in the experiment file: grid.<key>.<i>, random.params.<key>, seeds.<i>


def _combinations(spec: ExperimentSpec) -> list[list[_Setting]]:
    grid_axes = [[_Setting(key, value, f"grid.{key}.{i}") for i, value in enumerate(values)]
                 for key, values in spec.grid.items()]
    grid_points = [list(point) for point in itertools.product(*grid_axes)]
    draws: list[list[_Setting]] = [[]]
    if spec.random is not None:
        from trainctl.seeding import rng_for

        rng = rng_for(spec.random.seed, "experiment", "random")
        draws = [[_Setting(key, dist.sample(rng), f"random.params.{key}")
                  for key, dist in spec.random.params.items()]
                 for _ in range(spec.random.count)]
    return [point + draw for point in grid_points for draw in draws]


def _expand(spec: ExperimentSpec, path: Path, positions: Positions, base_data: dict,
            base_positions: Positions, base_source: str, base_prefix: str) -> list[Variant]:
    from trainctl.runs.artifacts import config_hash as text_hash
    from trainctl.config import config_hash, config_to_yaml
    from trainctl.config.schema import validate_config

    combos = _combinations(spec)
    seeds: list[_Setting | None] = ([_Setting("seed", s, f"seeds.{i}") for i, s in enumerate(spec.seeds)]
                                    if spec.seeds is not None else [None])
    keys = [*spec.grid, *(spec.random.params if spec.random else ())]
    labels = _short_labels(keys)
    width = len(str(len(combos) * len(seeds) - 1))
    failures: dict[tuple, list[str]] = {}  # (problem fields) -> run ids that have it
    variants: list[Variant] = []
    checked: dict[str, str | None] = {}  # config hash -> check_config error (or None)
    for index, (combo, seed_setting) in enumerate(itertools.product(combos, seeds)):
        settings = combo + ([seed_setting] if seed_setting is not None else [])
        raw, path_problems = _apply(base_data, settings, positions)
        seed_value = seed_setting.value if seed_setting else raw.get("seed", 0)
        run_id = _run_id(index, width, combo, labels, seed_value)
        problems = list(path_problems)
        config = None
        if not path_problems:
            config, raw_problems = validate_config(raw)
            problems += [_locate_variant(p, settings, positions, base_positions, base_source,
                                         base_prefix) for p in raw_problems]
        if config is not None:
            digest = config_hash(config)
            if digest not in checked:
                checked[digest] = _check_variant(config, spec.metric)
            if checked[digest]:
                problems.append(Problem(os.fspath(path), None, None, "", checked[digest]))
            else:
                text = config_to_yaml(config)
                variants.append(Variant(index, run_id, {s.key: s.value for s in combo},
                                        config.seed, text, digest, text_hash(text)))
        for problem in problems:
            failures.setdefault(_problem_fields(problem), []).append(run_id)
    if failures:
        lines = []
        for fields_, run_ids in sorted(failures.items(), key=lambda item: _sort_fields(item[0])):
            problem = Problem(*fields_)
            shown = ", ".join(run_ids[:3]) + (f" and {len(run_ids) - 3} more" if len(run_ids) > 3 else "")
            every = len(run_ids) == len(combos) * len(seeds)
            suffix = "" if every and len(run_ids) > 1 else f" (run{'s' * (len(run_ids) > 1)} {shown})"
            if every and len(run_ids) > 1:
                suffix = " (every run)"
            lines.append(problem.format() + suffix)
        raise ConfigError(lines)
    return variants


def _problem_fields(problem: Problem) -> tuple:
    return (problem.source, problem.line, problem.col, problem.path, problem.message)


def _sort_fields(fields_: tuple) -> tuple:
    source, line, col, path, message = fields_
    return (source, line or 0, col or 0, path, message)


def _apply(base: dict, settings: list[_Setting], positions: Positions) -> tuple[dict, list[Problem]]:
    """The base data with the settings applied in order; a bad path is located at its key."""
    overrides = [Override(tuple(s.key.split(".")), s.value, index) for index, s in enumerate(settings)]
    data, _, path_problems = apply_overrides_located(base, overrides)
    problems = []
    for problem in path_problems:
        setting = settings[problem.rank - 1]
        place = setting.place.rsplit(".", 1)[0] if setting.place.startswith(("grid.", "seeds.")) else setting.place
        problems.append(_problem_at(positions, place, problem.message, at="key"))
    return data, problems


def _locate_variant(problem: RawProblem, settings: list[_Setting], positions: Positions,
                    base_positions: Positions, base_source: str, base_prefix: str) -> Problem:
    """A variant's config problem, placed at the setting that wrote the value, else in the base."""
    path = tuple(str(part) for part in problem.path)
    for setting in reversed(settings):
        written = tuple(setting.key.split("."))
        if path[: len(written)] == written or (problem.at == "parent" and written[: len(path)] == path):
            message = problem.message
            if problem.at == "key" or problem.at == "parent":
                place = setting.place.rsplit(".", 1)[0] if setting.place.startswith("grid.") else setting.place
                mark = positions.key(place)
            else:
                mark = positions.value(setting.place)
                if setting.place.startswith("random."):  # a drawn value is not in the file
                    message = f"{message} (drawn {setting.key}={_show_value(setting.value)})"
            return Problem(positions.source, mark.line, mark.col, problem.dotted, message)
    located = _locate_raw(problem, base_positions, base_prefix)
    return replace(located, source=base_source)


def _check_variant(config, metric: str) -> str | None:
    """What a config alone can still get wrong (shapes, loss vs output), and whether the
    metric to rank by will be logged. None when fine."""
    from trainctl.config import LoadedConfig
    from trainctl.runs.run import check_config, validation_split_of

    try:
        check_config(LoadedConfig(config=config, path="", raw={}, positions=Positions("")))
        validates = bool(validation_split_of(config)) or getattr(config.data, "validation", None) is not None
    except TrainctlError as error:
        return str(error)
    from trainctl.nn.metrics import metric_key_aliases

    logged = ["loss", *(m if isinstance(m, str) else (getattr(m.params, "name", None) or m.type) for m in config.metrics)]
    if validates:
        logged += [f"val_{key}" for key in logged]
    if metric not in logged and not any(alias in logged for alias in metric_key_aliases(metric)):
        from trainctl.registry import did_you_mean

        hint = did_you_mean(metric, logged)
        why = "" if validates or not metric.startswith("val_") else (
            " (the runs have no validation data: set fit.validation_split)")
        return (f"metric: runs will log {', '.join(logged)}; not {metric!r}{why}"
                + (f"; did you mean {hint!r}?" if hint and not why else ""))
    return None


def _show_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return show(value).strip("'") if isinstance(value, str) else show(value)


def _short_labels(keys: list[str]) -> dict[str, str]:
    """The shortest unambiguous tail of each dotted key: learning_rate, 0.units / 1.units."""
    labels = {}
    for key in keys:
        parts = key.split(".")
        for depth in range(1, len(parts) + 1):
            tail = ".".join(parts[-depth:])
            if all(other == key or not (other == tail or other.endswith("." + tail)) for other in keys):
                break
        labels[key] = tail
    return labels


def _run_id(index: int, width: int, combo: list[_Setting], labels: dict[str, str], seed: Any) -> str:
    parts = [f"{labels[s.key]}={_show_value(s.value)}" for s in combo]
    summary = re.sub(r"[^A-Za-z0-9._=+-]+", "_", "-".join(parts)).strip("_")
    head = f"{index:0{width}d}"
    tail = f"s{seed}"
    room = _MAX_RUN_ID - len(head) - len(tail) - 2
    summary = summary[:room].rstrip("-_")
    return "-".join(p for p in (head, summary, tail) if p)


# -- results ----------------------------------------------------------------------------------


@dataclass
class RunResult:
    """One run's outcome. status: planned, skipped (complete from an earlier invocation),
    ok, failed, pending (not finished; the experiment was interrupted), incomplete, missing."""

    run_id: str
    overrides: dict[str, Any]
    seed: int | None
    status: str
    path: Path | None = None
    final: float | None = None  # the metric after the last epoch
    best: float | None = None  # the best value over epochs (min or max by mode)
    best_epoch: int | None = None
    epochs: int | None = None
    train_seconds: float | None = None  # training time, from metrics.json
    wall_seconds: float | None = None  # the whole task: build, data, train, save
    error: str | None = None
    config_hash: str | None = None
    index: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.status in ("ok", "skipped") and self.final is not None


def _float_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number


def summarise_run_dir(path: Path, metric: str, mode: str) -> dict[str, Any]:
    """final/best/best_epoch/epochs/train_seconds of a finished run directory.
    Raises ArtifactError for an unfinished or damaged one, TrainctlError if the metric is absent."""
    from trainctl.runs.artifacts import RunDir

    run_dir = RunDir(path)
    metrics = run_dir.read_metrics()
    history = run_dir.read_history()
    if history and metric not in history[0]:  # the other spelling (acc/accuracy, ce/crossentropy) names the same value
        from trainctl.nn.metrics import metric_key_aliases

        metric = next((alias for alias in metric_key_aliases(metric) if alias in history[0]), metric)
    values = [(int(row["epoch"]), float(row[metric])) for row in history if metric in row]
    if not values:
        logged = sorted({key for row in history for key in row if key != "epoch"})
        raise TrainctlError(f"{path}: history.csv has no {metric!r} column (logged: "
                            f"{', '.join(logged) or 'nothing'})")
    sign = 1.0 if mode == "min" else -1.0
    finite = [(epoch, value) for epoch, value in values if not math.isnan(value)]
    best_epoch, best = min(finite, key=lambda ev: sign * ev[1]) if finite else (None, math.nan)
    return {"final": values[-1][1], "best": best, "best_epoch": best_epoch,
            "epochs": int(metrics.get("epochs", len(history))),
            "train_seconds": _float_or_none(metrics.get("seconds"))}


def _is_complete(path: Path, state_hash: str | None = None) -> bool:
    """metrics.json written and state.json marks the run completed (for this config)."""
    from trainctl.runs.artifacts import RunDir

    run_dir = RunDir(path)
    if not run_dir.file("metrics.json").is_file():
        return False
    try:
        state = run_dir.read_state()
    except (ArtifactError, OSError):
        return False
    if not state.get("completed", False):
        return False
    return state_hash is None or state.get("config_hash") == state_hash


def _state_hash_of(path: Path) -> str | None:
    from trainctl.runs.artifacts import RunDir

    try:
        return RunDir(path).read_state(verify_config=False).get("config_hash")
    except (ArtifactError, OSError):
        return None


# -- the task that runs on a worker -----------------------------------------------------------


def _train_variant(task: Mapping[str, Any]) -> dict[str, Any]:
    """Train one variant into task["out"]; never raises for a failed run (returns status)."""
    started = time.perf_counter()
    out = Path(task["out"])
    result: dict[str, Any] = {"run_id": task["run_id"], "status": "ok", "error": None}
    try:
        from trainctl.config import load_config_text
        from trainctl.runs.run import train_from_config

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


# -- running ----------------------------------------------------------------------------------


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


@dataclass
class ExperimentResult:
    experiment: Experiment
    directory: Path
    runs: list[RunResult]
    dry_run: bool
    seconds: float = 0.0

    @property
    def metric(self) -> str:
        return self.experiment.metric

    @property
    def mode(self) -> str:
        return self.experiment.mode

    @property
    def results_csv(self) -> Path:
        return self.directory / RESULTS_FILE

    @property
    def failed(self) -> list[RunResult]:
        return [run for run in self.runs if run.status == "failed"]

    @property
    def best(self) -> RunResult | None:
        return _best_run(self.runs, self.mode)

    def comparison(self) -> "Comparison":
        return Comparison(self.runs, self.experiment.keys, self.metric, self.mode)


def _best_run(runs: Iterable[RunResult], mode: str) -> RunResult | None:
    sign = 1.0 if mode == "min" else -1.0
    candidates = [run for run in runs if run.succeeded and not math.isnan(run.final)]
    return min(candidates, key=lambda run: sign * run.final) if candidates else None


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


def _read_previous_results(path: Path) -> dict[str, float]:
    """config hash -> wall seconds from an earlier results.csv (to keep them for skipped runs)."""
    if not path.is_file():
        return {}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    found = {}
    for row in rows:
        seconds = _float_or_none(row.get("wall_seconds"))
        if row.get("config_hash") and seconds is not None:
            found[row["config_hash"]] = seconds
    return found


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


# -- writing ----------------------------------------------------------------------------------


def _write_plan(experiment: Experiment, directory: Path, runs: list[RunResult]) -> None:
    from trainctl.runs.artifacts import atomic_write_json

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


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list, bool)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def results_columns(keys: Sequence[str], metric: str) -> list[str]:
    return ["run_id", "status", *keys, "seed", f"final_{metric}", f"best_{metric}", "best_epoch",
            "epochs", "train_seconds", "wall_seconds", "config_hash", "path", "error"]


def _write_results(result: ExperimentResult) -> None:
    from trainctl.runs.artifacts import atomic_write_text

    keys = result.experiment.keys
    columns = results_columns(keys, result.metric)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for run in result.runs:
        path = os.fspath(run.path.relative_to(result.directory)) if run.path else ""
        writer.writerow([_cell(v) for v in (
            run.run_id, run.status, *(run.overrides.get(key) for key in keys), run.seed, run.final,
            run.best, run.best_epoch, run.epochs, run.train_seconds, run.wall_seconds,
            run.config_hash, path, run.error)])
    atomic_write_text(result.directory / RESULTS_FILE, buffer.getvalue())


# -- comparing --------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Runs grouped by configuration (their overrides without the seed), for one table."""

    runs: list[RunResult]
    keys: list[str]  # the config keys that differ between configurations: the table's columns
    metric: str
    mode: str

    @property
    def sort_column(self) -> str:
        return self.metric

    @property
    def best(self) -> RunResult | None:
        return _best_run(self.runs, self.mode)

    def groups(self) -> list[list[RunResult]]:
        """Runs with equal overrides, in first-seen order."""
        grouped: dict[str, list[RunResult]] = {}
        for run in self.runs:
            identity = json.dumps([run.overrides.get(key) for key in self.keys], sort_keys=True,
                                  default=str)
            grouped.setdefault(identity, []).append(run)
        return list(grouped.values())

    def columns(self) -> list[str]:
        labels = _short_labels(self.keys)
        return [*(labels[key] for key in self.keys), "seeds", self.metric, f"best {self.metric}",
                "train s", "runs"]

    def table(self, spread: Callable[[Sequence[float]], str]) -> tuple[list[dict[str, Any]], list[str]]:
        """(rows, columns) for a compare table: per configuration, `spread(values)` of the final
        and best metric and the training time over its successful runs (e.g. "0.12 ± 0.01"),
        the seeds and "ok/total" runs. Configurations without a successful run show None."""
        rows = []
        for group in self.groups():
            good = [run for run in group if run.succeeded]
            labels = _short_labels(self.keys)
            row: dict[str, Any] = {labels[key]: _show_value(group[0].overrides.get(key))
                                   for key in self.keys}
            seeds = [str(run.seed) for run in group if run.seed is not None]
            row["seeds"] = ",".join(seeds) if len(seeds) <= 4 else f"{len(seeds)} seeds"
            row[self.metric] = spread([run.final for run in good]) if good else None
            row[f"best {self.metric}"] = spread([run.best for run in good]) if good else None
            times = [run.train_seconds for run in good if run.train_seconds is not None]
            row["train s"] = spread(times) if times else None
            row["runs"] = f"{len(good)}" if len(good) == len(group) else f"{len(good)}/{len(group)}"
            rows.append(row)
        return rows, self.columns()


def compare_runs(paths: Sequence[str | os.PathLike], *, metric: str | None = None,
                 mode: str | None = None) -> Comparison:
    """Compare run directories and/or experiment directories (which hold experiment.json).

    One experiment directory alone: its plan's runs and varied keys, ranked by its metric.
    Otherwise the columns are the config keys whose values differ between the runs (the seed
    is a column of its own); the metric defaults to val_loss if every run logged it, else loss.
    """
    if not paths:
        raise TrainctlError("compare: give run directories or an experiment directory")
    if mode is not None and mode not in ("min", "max"):
        raise TrainctlError(f"--mode must be min or max, not {mode!r}")
    entries: list[tuple[Path, dict | None]] = []  # (run dir, plan entry or None)
    plans: list[dict] = []
    for raw_path in paths:
        path = Path(raw_path)
        if (path / EXPERIMENT_FILE).is_file():
            from trainctl.runs.artifacts import read_json

            plan = read_json(path / EXPERIMENT_FILE)
            if not isinstance(plan, dict) or not isinstance(plan.get("runs"), list):
                raise ArtifactError(f"{path / EXPERIMENT_FILE}: not an experiment plan")
            plans.append(plan)
            entries += [(path / item["path"], item) for item in plan["runs"] if item.get("path")]
        elif (path / "config.yaml").is_file():
            entries.append((path, None))
        elif path.is_dir():
            raise ArtifactError(f"{path}: neither a run directory (config.yaml) nor an experiment "
                                f"directory ({EXPERIMENT_FILE})")
        else:
            raise ArtifactError(f"{path}: not found")
    single_plan = len(plans) == 1 and all(item is not None for _, item in entries)
    if metric is None:
        metric = plans[0]["metric"] if plans else _default_metric([p for p, _ in entries])
    if mode is None:
        mode = plans[0].get("mode", "min") if plans else "min"
    configs = {path: _read_flat_config(path) for path, _ in entries}
    if single_plan:
        keys = list(plans[0].get("keys") or [])
    else:
        keys = _differing_keys([flat for flat in configs.values() if flat is not None])
    previous = _previous_errors(plans, paths)
    runs = []
    for path, item in entries:
        flat = configs[path]
        if single_plan:
            overrides = dict(item.get("overrides") or {})
        else:
            overrides = {key: flat.get(key) for key in keys} if flat is not None else dict(item.get("overrides") or {})
        seed = flat.get("seed") if flat is not None else (item or {}).get("seed")
        run = RunResult(path.name, overrides, seed, "ok", path=path,
                        config_hash=(item or {}).get("config_hash"))
        if _is_complete(path):
            try:
                for key, value in summarise_run_dir(path, metric, mode).items():
                    setattr(run, key, value)
            except TrainctlError as error:
                run.status, run.error = "failed", str(error)
        else:
            run.status = "incomplete" if path.exists() else "missing"
            run.error = previous.get(os.fspath(path.absolute()))
            if run.error:
                run.status = "failed"
        runs.append(run)
    return Comparison(runs, keys, metric, mode)


def _previous_errors(plans: list[dict], paths: Sequence) -> dict[str, str]:
    """run dir -> error, from the results.csv of experiment directories (for failed runs)."""
    errors = {}
    for raw_path in paths:
        results = Path(raw_path) / RESULTS_FILE
        if not results.is_file():
            continue
        try:
            with open(results, newline="", encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    if row.get("error") and row.get("path"):
                        errors[os.fspath((Path(raw_path) / row["path"]).absolute())] = row["error"]
        except (OSError, UnicodeDecodeError, csv.Error):
            continue
    return errors


def _default_metric(paths: list[Path]) -> str:
    from trainctl.runs.artifacts import RunDir

    for path in paths:
        try:
            history = RunDir(path).read_history()
        except (ArtifactError, OSError):
            continue
        if history and "val_loss" not in history[-1]:
            return "loss"
    return "val_loss"


def _read_flat_config(path: Path) -> dict[str, Any] | None:
    """A run's config.yaml as {dotted key: leaf value}, or None when it has none."""
    file = path / "config.yaml"
    if not file.is_file():
        return None
    document = parse_yaml(file.read_text(encoding="utf-8"), os.fspath(file))
    if document.problems:
        raise ConfigError([p.format() for p in document.problems])
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        elif isinstance(node, list) and node and any(isinstance(v, (dict, list)) for v in node):
            for index, value in enumerate(node):
                walk(value, f"{prefix}.{index}")
        else:
            flat[prefix] = node

    walk(document.data, "")
    return flat


def _differing_keys(configs: list[dict[str, Any]]) -> list[str]:
    """Keys (in first-seen order) whose value is not the same in every config; not the seed."""
    ordered: dict[str, None] = {}
    for flat in configs:
        ordered.update(dict.fromkeys(flat))
    def spelled(flat: dict[str, Any], key: str) -> str:
        return json.dumps([key in flat, flat.get(key)], sort_keys=True, default=str)

    return [key for key in ordered
            if key != "seed" and len({spelled(flat, key) for flat in configs}) > 1]
