"""The plan of an experiment: `load_experiment` reads the experiment file (schema in
`experiment/schema.py`), expands the grid × random draws × seeds into variants and validates
every variant's resolved config before anything runs; every problem is reported at once,
located in the experiment file (the grid value or distribution that caused it) or in the
base config.

    experiment = load_experiment("configs/experiments/quickstart_lr.yaml")  # validates all
"""

from __future__ import annotations

import itertools
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from trainctl.config.loader import Positions, read_yaml
from trainctl.config.overrides import Override, apply_overrides_located
from trainctl.config.problems import Problem, RawProblem, raise_problems, show
from trainctl.errors import ConfigError, TrainctlError
from trainctl.experiment.schema import ExperimentSpec

DEFAULT_ROOT = Path("experiments")  # default experiment directory: experiments/<name>
_MAX_RUN_ID = 72  # characters; long override summaries are cut (the index keeps ids unique)


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
        """'min' or 'max': the experiment's mode, else the metric's direction (Monitor)."""
        from trainctl.train.callbacks.monitor import ranking_monitor

        return ranking_monitor(self.metric, self.spec.mode).direction

    @property
    def keys(self) -> list[str]:
        """The varied config keys, grid first, then random."""
        if self.spec.search is not None:
            return list(self.spec.search.params)
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


def read_base_data(experiment: Experiment) -> dict:
    """The base config's data as the experiment file names it (an inline mapping or a file)."""
    if isinstance(experiment.spec.base, dict):
        return experiment.spec.base
    return read_yaml((experiment.path.parent / experiment.spec.base).resolve()).data


def _line_col(positions: Positions, path: str) -> tuple[int, int]:
    mark = positions.value(path)
    return mark.line, mark.col


def _cross_checks(spec: ExperimentSpec, positions: Positions) -> list[Problem]:
    problems = []
    if spec.search is not None:
        for key in ("grid", "random", "seeds"):
            if getattr(spec, key):
                problems.append(_problem_at(positions, key, f"search picks every trial; give {key} or search, "
                                            "not both", at="key"))
        return problems
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
    from trainctl.config import config_hash, config_to_yaml
    from trainctl.config.schema import validate_config
    from trainctl.runs.atomic import config_hash as text_hash

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
    from trainctl.runs.build import check_config, validation_split_of

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
