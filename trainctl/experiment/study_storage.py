"""Where an experiment's Optuna study lives and how each side opens it: the optuna import
(one line when it is missing), the pruner by id (Optuna does not store it), the storage URL
(an RDB URL or the journal file in the experiment directory) and, for the CLI, the study of
an experiment directory. Used by the client (study.py), the worker (trial_worker.py) and the
trial sources."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trainctl.errors import TrainctlError
from trainctl.experiment.plan import Experiment
from trainctl.runs.files import EXPERIMENT_FILE, STUDY_FILE


def import_optuna():
    try:
        import optuna
    except ImportError:  # pragma: no cover - optuna is a dependency; a broken install still gets a line
        raise TrainctlError("experiments need optuna: pip install optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # trainctl shows its own progress
    return optuna


def pruner_of(name: str, optuna):
    """The pruner by id. Optuna does not store it with the study: the workers build it
    again from the id (load_study's default would be a median pruner)."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def storage_url_of(experiment: Experiment, directory: Path) -> str:
    """What a worker opens: an RDB URL (`search.storage`), or `journal:<path>` for the journal file."""
    spec = experiment.spec.search
    if spec is not None and spec.storage:
        return spec.storage
    return f"journal:{os.fspath(directory / STUDY_FILE)}"


_STORAGES: dict[str, Any] = {}  # per process: a journal replays only what is new since the last read


def open_storage(url: str):
    if not url.startswith("journal:"):
        return url  # an RDB URL: optuna opens it
    if url not in _STORAGES:
        optuna = import_optuna()
        from optuna.storages.journal import JournalFileBackend

        _STORAGES[url] = optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:"):]))
    return _STORAGES[url]


def load_study_of(directory: Path):
    """The study of an experiment directory (its journal file), or None. The name comes from
    experiment.json, else the journal's only study (experiment.json is written just after)."""
    from trainctl.runs.atomic import read_json

    journal = directory / STUDY_FILE
    if not journal.is_file():
        return None
    optuna = import_optuna()
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(os.fspath(journal)))  # a fresh read
    if (directory / EXPERIMENT_FILE).is_file():
        name = read_json(directory / EXPERIMENT_FILE)["name"]
    else:
        names = optuna.get_all_study_names(storage)
        if len(names) != 1:
            return None
        name = names[0]
    return optuna.load_study(study_name=name, storage=storage)
