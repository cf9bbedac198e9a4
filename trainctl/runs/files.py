"""The file names of a run directory: one table, used by every module that reads or writes one.

Layout of a run directory::

    config.yaml                 resolved config (text)
    model.json                  architecture (JSON object)
    weights.safetensors         "dense_Dense1/kernel", ...
    optimizer.safetensors       optimizer slots + "iterations"
    state.json                  training position for resume + "config_hash"
    history.csv                 one row per epoch: epoch, then log keys
    metrics.json                final metrics
    preprocessing.safetensors   optional standardisation statistics
    data.json                   where the data came from and how its labels were encoded
    weight_history.json         optional per-epoch weight statistics (callback weight_history)
    model_checkpoints/          a model_checkpoint callback's checkpoints (same layout)
    checkpoints/<seq>-<tag>/    files + manifest.json (sha256 and size of each); a resume
                                checkpoint holds weights, optimizer, callbacks and state files
"""

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
PREPROCESSING_FILE = "preprocessing.safetensors"
DATA_FILE = "data.json"
WEIGHT_HISTORY_FILE = "weight_history.json"
CHECKPOINTS_DIR = "checkpoints"
MODEL_CHECKPOINTS_DIR = "model_checkpoints"  # where a configured model_checkpoint callback saves
MANIFEST_FILE = "manifest.json"
# What the run writes itself; a callback's declared files keep off these names.
RUN_OWNED = frozenset((CONFIG_FILE, MODEL_FILE, WEIGHTS_FILE, OPTIMIZER_FILE, STATE_FILE, HISTORY_FILE, METRICS_FILE,
                       PREPROCESSING_FILE, DATA_FILE, CHECKPOINTS_DIR, MANIFEST_FILE))
CALLBACKS_FILE = "callbacks.safetensors"  # inside a resume checkpoint: the callbacks' arrays

# An experiment directory: experiment.json (the plan), results.csv, runs/<run id>/ (run directories).
EXPERIMENT_FILE = "experiment.json"
RESULTS_FILE = "results.csv"
RUNS_DIR = "runs"
STUDY_FILE = "study.journal"  # a search's Optuna study (journal storage): a rerun continues it
TRIAL_FILE = "trial.json"  # in a search's run directory: trial number, state (ok|pruned), params

LOCK_FILE = ".lock"  # held (runs/lock.py) by the one process writing the run directory


def inside(root, name: str, what: str):
    """`root / name`, refused unless it stays inside `root` once symlinks are resolved (a
    callback's file must not reach outside the run directory through `..` or a link)."""
    from pathlib import Path

    from trainctl.errors import TrainctlError

    base = Path(root).resolve()
    target = (base / name).resolve()
    if target != base and base not in target.parents:
        raise TrainctlError(f"{what}: {name!r} leads outside the run directory {base} (to {target}); "
                            "give a file name inside it")
    return target
