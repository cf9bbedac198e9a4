"""Training runs from a config: `train_from_config` makes a run directory and trains into it,
`resume_training` continues one. Neither prints; progress goes through callbacks.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from trainctl.data.baselines import forecast_baseline_line
from trainctl.errors import ArtifactError, TrainctlError
from trainctl.runs.build import _prepare, _Prepared, save_model_files
from trainctl.runs.files import CONFIG_FILE, DATA_FILE, HISTORY_FILE
from trainctl.train.callbacks import Callback

TRAINING_CHECKPOINTS = 3  # kept while training: a damaged newest one still leaves two to resume from
FINISHED_RUN_CHECKPOINTS = 1  # kept once finished: a forced resume (more epochs) continues from the last


# -- training from a config ----------------------------------------------------------
@dataclass
class TrainOutcome:
    run_dir: Any
    history: Any
    metrics: dict[str, float]
    seconds: float
    epochs: int
    messages: list[str] = field(default_factory=list)  # lines for the user (early stopping, ...)
    already_complete: bool = False  # --resume of a run that had finished
    first_epoch: int = 0  # 0-based index of the first epoch this process trained (a resume starts later)
    restored_epoch: int | None = None  # 1-based epoch whose weights early stopping restored (metrics are its)

    def summary_line(self) -> str:
        """`trained 5 epochs in 2.1s  loss ...`: the epochs this process trained (a resume
        says which), then the values of the weights the run ends with (the restored epoch's
        after early stopping with restore_best_weights)."""
        shown = "  ".join(f"{key} {value:.4g}" for key, value in self.metrics.items()
                          if isinstance(value, float) and "/" not in key)
        line = f"trained {self.epochs} epoch{'s' if self.epochs != 1 else ''}"
        if self.first_epoch and self.epochs:
            last = self.first_epoch + self.epochs
            line += f" ({self.first_epoch + 1}–{last})" if self.epochs > 1 else f" ({last})"
        line += f" in {self.seconds:.1f}s"
        if self.restored_epoch is not None:
            line += f"  restored epoch {self.restored_epoch}:"
        return f"{line}  {shown}"


class HistoryWriter(Callback):
    """Appends a history.csv row as each epoch ends, so a crash keeps the epochs done."""

    def __init__(self, run_dir):
        super().__init__()
        self.run_dir = run_dir

    def on_epoch_end(self, epoch, logs=None):
        self.run_dir.append_history({"epoch": epoch + 1, **(logs or {})})


def _write_run_files(run_dir, prepared: _Prepared, settings: dict[str, Any]) -> None:
    """Everything a resume needs besides checkpoints. config.yaml is written after the files
    it implies, so a run directory with a config.yaml is always complete enough to resume."""
    from trainctl.config import config_to_yaml
    from trainctl.runs.atomic import atomic_write_json

    data = prepared.data
    tabular = data.preprocessing.tabular
    atomic_write_json(run_dir.file(DATA_FILE), {
        "config_dir": str(prepared.config_dir), "class_names": data.class_names,
        "class_index": {name: i for i, name in enumerate(data.class_names)} if data.class_names else None,
        "class_weight": {str(k): v for k, v in data.class_weight.items()} if data.class_weight else None,
        "label_encoding": data.label_encoding, "feature_names": data.feature_names,
        "target_names": _target_names(prepared.config),
        "input_width": data.preprocessing.input_width,
        "tabular": tabular.to_json() if tabular is not None else None})
    run_dir.write_model(prepared.model.to_json())
    preprocessing = data.preprocessing.to_arrays()
    if preprocessing:
        run_dir.write_preprocessing(preprocessing)
    run_dir.write_config(config_to_yaml(prepared.config))
    run_dir.write_state({"completed": False, **settings})


def train_from_config(loaded, *, out: Path | None = None, runs_root: Path = Path("runs"),
                      init_from: Path | None = None, callbacks: Iterable[Callback] = (),
                      checkpoint_every: int | None = None, keep_checkpoints: int | None = None,
                      handle_signals: bool = False, max_memory: int | None = None) -> TrainOutcome:
    """Build, check, train and save. Everything that can fail on bad input fails before
    the run directory is created. Checkpoints (for `resume_training`) are written at the
    start, at the end of every epoch and every `checkpoint_every` steps; the last
    `keep_checkpoints` are kept (default: 3 while training, the last one once finished). With `handle_signals` (main thread only), SIGINT/SIGTERM
    stop after the current batch with a checkpoint (TrainingInterrupted)."""
    from trainctl.runs.rundir import RunDir

    from trainctl.runs.lock import lock_run_dir, unlock_run_dir

    prepared = _prepare(loaded, Path(loaded.path).resolve().parent, init_from, max_memory)
    if out is not None:  # lock before looking: a second train into the same --out is told who has it
        try:
            Path(out).mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # RunDir.create reports it
        else:
            lock_run_dir(out)
    try:
        run_dir = RunDir.create(runs_root, prepared.config.name, out)
        lock_run_dir(run_dir.path)  # for the life of the process (idempotent)
    except BaseException:
        if out is not None:
            unlock_run_dir(out)
        raise
    try:
        settings = {"checkpoint_every": checkpoint_every, "keep_checkpoints": keep_checkpoints}
        _write_run_files(run_dir, prepared, settings)
        return _run_training(run_dir, prepared, list(callbacks), settings, None, handle_signals)
    finally:
        unlock_run_dir(run_dir.path)


def _epochs_done(run_dir) -> int:
    """Epoch rows in history.csv (0 when there is none or it cannot be read)."""
    try:
        lines = run_dir.file(HISTORY_FILE).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return 0
    return max(0, len([line for line in lines if line.strip()]) - 1)


def _target_names(config) -> list[str] | None:
    train = config.data.train
    train = train.stream.source if hasattr(train, "stream") else train
    target = getattr(train, "target", None)
    targets = target if isinstance(target, list) else ([target] if target is not None else [])
    return [str(t) for t in targets] if targets and all(isinstance(t, str) for t in targets) else None


def _config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in list(old) + [k for k in new if k not in old]:
            found += _config_differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        found = []
        for index, (a, b) in enumerate(zip(old, new)):
            found += _config_differences(a, b, f"{prefix}{index}.")
        return found
    return [] if old == new else [f"{prefix[:-1]} ({old!r} -> {new!r})"]


def resume_training(run_path: Path, *, config_path: Path | None = None, overrides: Iterable[str] = (),
                    force: bool = False, callbacks: Iterable[Callback] = (),
                    checkpoint_every: int | None = None, keep_checkpoints: int | None = None,
                    handle_signals: bool = False, warn: Any = None, max_memory: int | None = None) -> TrainOutcome:
    """Continue an interrupted run from its newest intact checkpoint (a damaged one is
    skipped: `warn(line)`), ending exactly where an uninterrupted run ends. The config is
    the run's saved one, or `config_path`, with `overrides`; one that differs from the
    saved config is refused unless `force`."""
    from trainctl.runs.lock import lock_run_dir, unlock_run_dir
    from trainctl.runs.rundir import RunDir

    run_dir = RunDir.open(run_path, require_weights=False)
    lock_run_dir(run_dir.path)  # two resumes of one run: the second is told who has it
    try:
        return _resume_locked(run_dir, config_path, overrides, force, callbacks, checkpoint_every,
                              keep_checkpoints, handle_signals, warn, max_memory)
    finally:
        unlock_run_dir(run_dir.path)


def _resume_locked(run_dir, config_path, overrides, force, callbacks, checkpoint_every, keep_checkpoints,
                   handle_signals, warn, max_memory) -> TrainOutcome:
    import warnings

    from trainctl.config import config_hash, load_config, load_config_text
    from trainctl.runs.atomic import read_json
    from trainctl.runs.checkpoints import CheckpointWarning
    from trainctl.runs.files import STATE_FILE

    saved_source = str(run_dir.file(CONFIG_FILE))
    saved = load_config_text(run_dir.read_config_text(), saved_source)
    overrides = list(overrides)
    if config_path is not None:
        loaded = load_config(config_path, overrides)
        config_dir = Path(config_path).resolve().parent
    else:
        loaded = load_config_text(run_dir.read_config_text(), saved_source, overrides)
        data_file = run_dir.file(DATA_FILE)
        info = read_json(data_file) if data_file.exists() else {}
        config_dir = Path(info.get("config_dir") or run_dir.path)
    changed = config_hash(loaded.config) != config_hash(saved.config)
    if changed and not force:
        differences = _config_differences(saved.config.to_dict(), loaded.config.to_dict())
        shown = ", ".join(differences[:3]) + (f" and {len(differences) - 3} more" if len(differences) > 3 else "")
        raise TrainctlError(f"{run_dir.path}: the config differs from the run's config.yaml ({shown}); "
                            "pass --force to resume with it anyway")
    state_file = run_dir.file(STATE_FILE)
    state = read_json(state_file) if state_file.exists() else {}
    if not isinstance(state, dict):
        raise ArtifactError(f"{state_file}: expected a JSON object")
    settings = {"checkpoint_every": checkpoint_every if checkpoint_every is not None else state.get("checkpoint_every"),
                "keep_checkpoints": keep_checkpoints or state.get("keep_checkpoints")}  # None: the defaults
    if state.get("completed") and not changed:
        epochs = int(state.get("epoch", 0))
        return TrainOutcome(run_dir, None, {}, 0.0, epochs, messages=[
            f"{run_dir.path}: training already finished ({epochs} epochs); nothing to resume"],
            already_complete=True)

    prepared = _prepare(loaded, config_dir, max_memory=max_memory)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CheckpointWarning)
        latest = run_dir.latest_checkpoint()
    for warning in caught:
        if warn is not None and issubclass(warning.category, CheckpointWarning):
            warn(str(warning.message))
    checkpoint = None
    if latest is not None:
        tag, files = latest
        path = next(p for _, t, p in reversed(run_dir.list_checkpoints()) if t == tag)
        checkpoint = (str(path), files)
    elif run_dir.list_checkpoints():
        raise ArtifactError(f"{run_dir.checkpoints_path}: every checkpoint is damaged; cannot resume")
    else:
        done = _epochs_done(run_dir)
        if done and not force:  # progress was made and its checkpoints are gone: say so, do not retrain silently
            raise ArtifactError(f"{run_dir.path}: nothing to resume from: {run_dir.checkpoints_path.name}/ holds no "
                                f"checkpoint, but {done} epoch{'s' if done != 1 else ''} were trained; pass --force "
                                "to restart the run from the beginning")
    if changed:  # forced: the run continues under the new config
        from trainctl.config import config_to_yaml

        run_dir.write_config(config_to_yaml(prepared.config))
        run_dir.write_model(prepared.model.to_json())
    run_dir.write_state({"completed": False, **settings})
    return _run_training(run_dir, prepared, list(callbacks), settings, checkpoint, handle_signals)


@contextlib.contextmanager
def _closing(writer) -> Iterator[None]:
    """Wait for the checkpoints' last sync after the fit: its own failure only when the fit
    did not fail first (that error is the one to report)."""
    try:
        yield
    except BaseException:
        writer.close(raise_failure=False)
        raise
    writer.close()


def _run_training(run_dir, prepared: _Prepared, extra: list[Callback], settings: dict[str, Any],
                  checkpoint: tuple[str, dict[str, bytes]] | None, handle_signals: bool) -> TrainOutcome:
    from trainctl.config import config_hash
    from trainctl.runs.files import HISTORY_FILE
    from trainctl.runs.build import log_keys
    from trainctl.train.callbacks import History
    from trainctl.train.callbacks.base import RunContext
    from trainctl.train.epoch import EpochAccumulator
    from trainctl.train.resume import Checkpointer, CheckpointWriter, RunHistory, StopOnSignal, checkpoint_saver, trim_history

    config, model, data, user_callbacks = prepared.config, prepared.model, prepared.data, prepared.callbacks
    fit = config.fit
    run_history, epoch_totals = RunHistory(), EpochAccumulator(log_keys(model))
    writer = CheckpointWriter(run_dir, model, user_callbacks, run_history, epoch_totals, config_hash(config))
    initial_epoch, start_batch, stopped = fit.initial_epoch, 0, False
    resumed_epoch = None
    if checkpoint is not None:
        position = writer.restore(checkpoint[1], checkpoint[0])
        initial_epoch, start_batch, stopped = int(position["epoch"]), int(position["batch"]), bool(position["stopped"])
        resumed_epoch = initial_epoch
        trim_history(run_dir.file(HISTORY_FILE), initial_epoch, 1)
    context = RunContext(run_dir.path, resumed_epoch, checkpoint_saver(writer, run_dir))
    for callback in user_callbacks:
        callback.bind_run(context)
    checkpointer = Checkpointer(writer, settings.get("checkpoint_every"),
                                int(settings.get("keep_checkpoints") or TRAINING_CHECKPOINTS),
                                resumed=checkpoint is not None)
    stopper = StopOnSignal(checkpointer, run_dir.path)

    validation = None
    if data.x_val is not None:
        validation = (data.x_val, data.y_val, data.sample_weight_val)
    elif data.validation_stream is not None:
        validation = data.validation_stream
    guard = contextlib.nullcontext() if not handle_signals else stopper.installed()
    start = time.perf_counter()
    with guard, _closing(writer):
        model.fit(  # verbose=0: the caller's callbacks (the CLI's display) show progress
            data.x, data.y, verbose=0, source=data.stream, epochs=initial_epoch if stopped else fit.epochs,
            batch_size=fit.batch_size, shuffle=fit.shuffle, validation_data=validation,
            initial_epoch=initial_epoch, start_batch=start_batch,
            class_weight=data.class_weight, sample_weight=data.sample_weight,
            # The run history first (it keeps the loop's logs before callbacks add to them),
            # the checkpointer after every callback that reacts to an epoch.
            callbacks=[run_history, *user_callbacks, HistoryWriter(run_dir), *extra, checkpointer, stopper],
            epoch_totals=epoch_totals,
            steps_per_epoch=fit.steps_per_epoch or fit.batches_per_epoch,
            validation_batch_size=fit.validation_batch_size, validation_freq=fit.validation_freq or 1,
            validation_steps=fit.validation_steps or fit.validation_batches,
            augmentation=data.augmentation,
            flush_denormals=fit.flush_denormals, steps_per_execution=fit.steps_per_execution,
            jit_compile=fit.jit_compile,
        )
    seconds = time.perf_counter() - start
    for callback in user_callbacks:
        if callback.failure is not None:
            last = run_dir.list_checkpoints()
            where = f"; the last good checkpoint is {last[-1][2]}" if last else ""
            raise TrainctlError(f"{callback.failure}{where}")
    save_model_files(run_dir, model)
    for callback in user_callbacks:
        callback.end_run(run_dir)
    history = History()
    for epoch, row in zip(run_history.epochs, run_history.rows):
        history.on_epoch_end(epoch, row)
    final = run_history.final_metrics()
    restored_epoch = next((c.restored_epoch for c in user_callbacks if c.restored_epoch is not None), None)
    if restored_epoch is not None and restored_epoch in run_history.epochs:
        # The run ends with that epoch's weights: its values are the run's final metrics.
        final = dict(run_history.rows[run_history.epochs.index(restored_epoch)])
    trained_here = len([e for e in run_history.epochs if e >= initial_epoch])  # not the epochs a resume restored
    last_epoch = (run_history.epochs[-1] + 1) if run_history.epochs else initial_epoch
    run_dir.write_state({"epoch": last_epoch, "batch": 0, "completed": True, **settings})
    restored = {} if restored_epoch is None else {"restored_epoch": restored_epoch + 1}
    run_dir.write_metrics({**final, "epochs": len(run_history.epochs), **restored, "seconds": seconds})
    run_dir.prune_checkpoints(settings.get("keep_checkpoints") or FINISHED_RUN_CHECKPOINTS)
    messages = [c.message for c in user_callbacks if c.message]
    if data.class_names and (data.class_weight or data.class_names != [str(i) for i in range(len(data.class_names))]):
        from trainctl.runs.build import class_mapping_line  # text classes (or weighted ones): say which index is which

        messages.insert(0, class_mapping_line(data.class_names, data.class_weight))
    model_mae = final.get("val_mae", final.get("val_mean_absolute_error"))  # the name as the user wrote it, or TF.js's
    baseline = forecast_baseline_line(config.data, data, model_mae)
    if baseline is not None:
        messages.append(baseline)
    return TrainOutcome(run_dir, history, final, seconds, trained_here, messages=messages,
                        first_epoch=initial_epoch if checkpoint is not None else 0,
                        restored_epoch=None if restored_epoch is None else restored_epoch + 1)
