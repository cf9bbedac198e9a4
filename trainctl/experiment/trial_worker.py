"""What a dask worker runs for one trial of a study (experiment/study.py submits it):
train the trial's config into its run directory, report the monitored metric per epoch to
the study when a pruner watches, write trial.json, and return the outcome."""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from trainctl.errors import TrainctlError
from trainctl.experiment.study_storage import import_optuna, open_storage, pruner_of
from trainctl.runs.files import TRIAL_FILE
from trainctl.train.callbacks import Callback


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
        optuna = import_optuna()
        study = optuna.load_study(study_name=self.study_name, storage=open_storage(self.storage_url),
                                  pruner=pruner_of(self.pruner, optuna))
        self._trial = optuna.trial.Trial(study, self.trial_id)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.metric)
        if value is None or not math.isfinite(float(value)):
            return
        self._trial.report(float(value), epoch)
        if self._trial.should_prune():
            self.pruned_at = epoch
            self.model.stop_training = True


def train_trial(task: dict[str, Any]) -> dict[str, Any]:
    """One trial in a worker: train into task["out"], report per epoch when a pruner watches,
    write trial.json, return the outcome (never raises for a failed run)."""
    from trainctl.experiment.results import summarise_run_dir
    from trainctl.runs.atomic import atomic_write_json

    started, cpu = time.perf_counter(), time.thread_time()
    out = Path(task["out"])
    # started_at/ended_at (epoch seconds) and pid: when and where it ran (a worker's idle gaps)
    result: dict[str, Any] = {"number": task["number"], "status": "ok", "error": None,
                              "pid": os.getpid(), "started_at": time.time()}
    try:
        from trainctl.config import load_config_text
        from trainctl.runs.train import train_from_config

        if out.exists():  # left by an interrupted attempt (or a worker that died): start over
            shutil.rmtree(out)
        pruning = None
        if task["pruner"] != "none":
            pruning = PruneOnPlateau(task["storage"], task["study"], task["trial_id"], task["metric"], task["pruner"])
        loaded = load_config_text(task["config_yaml"], task["source"])
        train_from_config(loaded, out=out, callbacks=[pruning] if pruning is not None else [])
        result.update(summarise_run_dir(out, task["metric"], task["mode"]))
        pruned_at = pruning.pruned_at if pruning is not None else None
        if pruned_at is not None:
            result.update(status="pruned", pruned_at=pruned_at)
        atomic_write_json(out / TRIAL_FILE, {"number": task["number"], "state": result["status"],
                                             "params": task["params"], "pruned_at": pruned_at})
    except TrainctlError as error:
        result.update(status="failed", error=str(error).replace("\n", "; "))
    except Exception as error:  # a bug in one trial must not stop the others; keep its story
        result.update(status="failed", error=f"{type(error).__name__}: {error}".replace("\n", "; "))
    result["wall_seconds"] = time.perf_counter() - started
    result["cpu_seconds"] = time.thread_time() - cpu  # this task's thread, not the worker's others
    result["ended_at"] = time.time()
    return result
