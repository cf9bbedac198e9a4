"""An experiment's results: one RunResult per variant, the summary of a finished run
directory, and results.csv.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from trainctl.errors import ArtifactError, TrainctlError
from trainctl.experiment.plan import Experiment
from trainctl.runs.files import METRICS_FILE, RESULTS_FILE
from trainctl.train.callbacks.monitor import ranking_monitor

if TYPE_CHECKING:
    from trainctl.experiment.compare import Comparison


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
    from trainctl.runs.rundir import RunDir

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
    best_epoch, best = ranking_monitor(metric, mode).best_of(values, lambda ev: ev[1]) or (None, math.nan)
    return {"final": values[-1][1], "best": best, "best_epoch": best_epoch,
            "epochs": int(metrics.get("epochs", len(history))),
            "train_seconds": _float_or_none(metrics.get("seconds"))}


def _is_complete(path: Path, state_hash: str | None = None) -> bool:
    """metrics.json written and state.json marks the run completed (for this config)."""
    from trainctl.runs.rundir import RunDir

    run_dir = RunDir(path)
    if not run_dir.file(METRICS_FILE).is_file():
        return False
    try:
        state = run_dir.read_state()
    except (ArtifactError, OSError):
        return False
    if not state.get("completed", False):
        return False
    return state_hash is None or state.get("config_hash") == state_hash


def _state_hash_of(path: Path) -> str | None:
    from trainctl.runs.rundir import RunDir

    try:
        return RunDir(path).read_state(verify_config=False).get("config_hash")
    except (ArtifactError, OSError):
        return None


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
        from trainctl.experiment.compare import Comparison

        return Comparison(self.runs, self.experiment.keys, self.metric, self.mode)


def _best_run(runs: Iterable[RunResult], mode: str) -> RunResult | None:
    return ranking_monitor("", mode).best_of([run for run in runs if run.succeeded], lambda run: run.final)


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
    from trainctl.runs.atomic import atomic_write_text

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
