"""Comparing finished runs (of an experiment or any run directories) on one metric."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from trainctl.config.loader import parse_yaml
from trainctl.errors import ArtifactError, ConfigError, TrainctlError
from trainctl.experiment.plan import _short_labels, _show_value
from trainctl.experiment.results import RunResult, _best_run, _is_complete, summarise_run_dir
from trainctl.runs.files import CONFIG_FILE, EXPERIMENT_FILE, RESULTS_FILE, TRIAL_FILE
from trainctl.train.callbacks.monitor import ranking_monitor


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
        seeds = ["seeds"] if any(run.seed is not None for run in self.runs) else []
        state = ["state"] if any(run.status not in ("ok", "skipped") for run in self.runs) else []
        return [*(labels[key] for key in self.keys), *seeds, self.metric, f"best {self.metric}",
                "train s", "runs", *state]

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
            states = sorted({run.status for run in group if run.status not in ("ok", "skipped")})
            if states:  # pruned and failed trials have no ranking value: they list after the others
                row["state"] = ", ".join(states)
                if not good:
                    row[self.metric] = row[f"best {self.metric}"] = None
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
            from trainctl.runs.atomic import read_json

            plan = read_json(path / EXPERIMENT_FILE)
            if not isinstance(plan, dict) or not isinstance(plan.get("runs"), list):
                raise ArtifactError(f"{path / EXPERIMENT_FILE}: not an experiment plan")
            plans.append(plan)
            entries += [(path / item["path"], item) for item in plan["runs"] if item.get("path")]
        elif (path / CONFIG_FILE).is_file():
            entries.append((path, None))
        elif path.is_dir():
            raise ArtifactError(f"{path}: neither a run directory (config.yaml) nor an experiment "
                                f"directory ({EXPERIMENT_FILE})")
        else:
            raise ArtifactError(f"{path}: not found")
    single_plan = len(plans) == 1 and all(item is not None for _, item in entries)
    if metric is None:
        metric = plans[0]["metric"] if plans else _default_metric([p for p, _ in entries])
    # The plan's mode, else the metric's direction: val_accuracy is maximised (Monitor).
    mode = ranking_monitor(metric, mode or (plans[0].get("mode") if plans else None)).direction
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
            if _trial_state(path) == "pruned":  # a search trial stopped by its pruner
                run.status = "pruned"
        else:
            run.status = "incomplete" if path.exists() else "missing"
            run.error = previous.get(os.fspath(path.absolute()))
            if run.error:
                run.status = "failed"
        runs.append(run)
    return Comparison(runs, keys, metric, mode)


def _trial_state(path: Path) -> str | None:
    """A search trial's state from its trial.json (ok or pruned), None for other runs."""
    from trainctl.runs.atomic import read_json

    if not (path / TRIAL_FILE).is_file():
        return None
    try:
        return read_json(path / TRIAL_FILE).get("state")
    except (TrainctlError, AttributeError):
        return None


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
    from trainctl.runs.rundir import RunDir

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
    file = path / CONFIG_FILE
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
