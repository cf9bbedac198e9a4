"""From a config to a finished run, and from a run back to a usable model.

This is the library behind the CLI commands: `train_from_config`, `open_run`,
`predict_file`, `evaluate_run`, `model_from_target`, `describe_model`, `check_config`.
It never prints; progress goes through callbacks.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from trainctl.train.callbacks import Callback, WeightHistory
from trainctl.errors import ArtifactError, ConfigValueError, DataError, TrainctlError

WEIGHT_HISTORY_FILE = "weight_history.json"
DATA_FILE = "data.json"  # where the data came from and how its labels were encoded


# -- model and compile from a config ---------------------------------------------------
def build_model(config, loaded=None):
    """The model; with `loaded`, a problem found while building it (shapes, names) is
    reported at its place in the file, as schema errors are."""
    from trainctl.nn.model import Sequential

    with located_in(loaded):
        return Sequential(config.model.layers, name=config.name, seed=config.seed)


def compile_from_config(model, config, loaded=None) -> None:
    """compile() with the config's choices; with `loaded`, a loss or metric that does not
    suit the model is reported at its place in the file (FILE:LINE:COL: loss: ...)."""
    with located_in(loaded):
        model.compile(optimizer=config.optimizer, loss=config.loss, metrics=config.metrics)


@contextmanager
def located_in(loaded):
    """Turn ConfigValueError's (path, message) pairs into located config problems."""
    try:
        yield
    except ConfigValueError as error:
        if loaded is None:
            raise
        from trainctl.config.problems import Problem, raise_problems

        raise_problems([Problem(str(loaded.path), mark.line, mark.col, path, message)
                        for path, message in error.problems
                        for mark in [loaded.positions.value(path)]])


def build_callbacks(config) -> list[Callback]:
    from trainctl.train.callbacks import CALLBACKS

    callbacks = []
    for spec in config.callbacks:
        spec = dict(spec) if isinstance(spec, dict) else {"type": spec.type, **spec.params.model_dump()}
        cls = CALLBACKS.get(spec.pop("type"))
        callbacks.append(cls(**cls.Params.model_validate(spec).model_dump()))
    return callbacks


def check_config(loaded) -> None:
    """Everything that can be checked without data: model shapes, loss vs output, metrics,
    callbacks and the values they monitor."""
    from trainctl.train.callbacks import check_monitors

    config = loaded.config
    model = build_model(config, loaded)
    compile_from_config(model, config, loaded)
    callbacks = build_callbacks(config)
    do_validation = validation_split_of(config) > 0 or getattr(config.data, "validation", None) is not None
    check_monitors(callbacks, ["loss", *[m.log_key for m in model.metrics]], do_validation)
    if not loaded.path:  # a config built in memory (experiment variants): no file to resolve data paths from
        return
    base_dir = Path(loaded.path).resolve().parent
    with located_in(loaded):
        problems = probe_data(config, model, base_dir)
        if problems:
            raise ConfigValueError(problems)


def probe_data(config, model, base_dir: Path) -> list[tuple[str, str]]:
    """What `validate` can tell from the data files without reading them whole: a missing
    file, a missing target column, the feature count against input_shape, the classes seen
    against the output units and the class_weight keys (CSV: the header and pyarrow's first
    block; .npy: the header). (dotted config path, message) pairs."""
    from trainctl.data import table_for
    from trainctl.data.config import CsvSource, NpySource, NpzSource, ShardsSource
    from trainctl.data.readers import NpyArray, resolve_path

    problems: list[tuple[str, str]] = []
    sections = [("data.train", config.data.train)]
    if config.data.validation is not None:
        sections.append(("data.validation", config.data.validation))
    steps = {step.type for step in config.data.preprocessing}
    shape_kept = steps <= {"standardize", "min_max", "rescale", "one_hot"}
    units = model.output_shape[-1] if model.output_shape else None
    last = f"model.layers.{len(config.model.layers) - 1}.units"
    for path, source in sections:
        if hasattr(source, "stream"):
            path, source = f"{path}.stream.source", source.stream.source
        if isinstance(source, (CsvSource, ShardsSource)):
            key = "csv" if isinstance(source, CsvSource) else "shards"
            try:
                table = table_for(source, base_dir)
            except DataError as error:
                message = str(error)
                where = f"{path}.target" if "unknown column" in message and _names_target(source, message) else (
                    f"{path}.{key}" if "no such" in message or "is a directory" in message or "empty" in message else path)
                problems.append((where, message))
                continue
            first = table.tables[0] if hasattr(table, "tables") else table
            if shape_kept and not table.needs_encoding and tuple(model.input_shape) != (len(table.feature_names),):
                problems.append(("model.layers.0.input_shape",
                                 f"{source.csv if key == 'csv' else source.shards} has {len(table.feature_names)} feature columns "
                                 f"({', '.join(table.feature_names)}), the model expects input_shape {list(model.input_shape)}"))
            if path.startswith("data.train") and table.string_labels and getattr(first, "_sample", None) is not None:
                sample = first._sample.column(first.target_cols[0]).to_pylist()
                seen = sorted({str(v).strip() for v in sample if v is not None and str(v).strip()})
                names = source.class_names or seen
                k = len(names)
                complete = source.class_names is not None or (units is not None and k >= (2 if units == 1 else units))
                if units is not None and (k > units and not (units == 1 and k == 2)):
                    problems.append((last, f"the data has {k} classes ({', '.join(names)}) in its first rows, "
                                           f"the output has {units} units"))
                weights = config.fit.class_weight
                if isinstance(weights, dict) and complete:
                    for class_key in weights:
                        if isinstance(class_key, str) and class_key not in names:
                            problems.append((f"fit.class_weight.{class_key}",
                                             f"no class {class_key!r}; the classes are: {', '.join(names)}"))
            elif (path.startswith("data.train") and len(first.target_cols) == 1 and units and units > 1
                  and getattr(source, "labels", "auto") != "none" and getattr(first, "_sample", None) is not None
                  and model.loss.name in ("categorical_crossentropy", "sparse_categorical_crossentropy")):
                values = [v for v in first._sample.column(first.target_cols[0]).to_pylist() if isinstance(v, (int, float))]
                if values and all(float(v).is_integer() and v >= 0 for v in values) and max(values) + 1 > units:
                    problems.append((last, f"the data has class index {int(max(values))} in its first rows, "
                                           f"the output has {units} units (indices 0 to {units - 1})"))
        elif isinstance(source, NpySource):
            for field in ("npy", "targets", "sample_weight"):
                name = getattr(source, field)
                if name is None:
                    continue
                try:
                    array = NpyArray(resolve_path(name, base_dir), name)
                except DataError as error:
                    problems.append((f"{path}.{field}", str(error)))
                    continue
                if field == "npy" and shape_kept and array.row_shape and tuple(array.row_shape) != tuple(model.input_shape) \
                        and int(np.prod(array.row_shape)) != int(np.prod(model.input_shape)):
                    problems.append(("model.layers.0.input_shape", f"{name} has samples of shape {list(array.row_shape)}, "
                                                                  f"the model expects input_shape {list(model.input_shape)}"))
        elif isinstance(source, NpzSource):
            if not resolve_path(source.npz, base_dir).exists():
                problems.append((f"{path}.npz", f"{source.npz}: no such file (looked for {resolve_path(source.npz, base_dir)})"))
    return problems


def _names_target(source, message: str) -> bool:
    target = source.target
    targets = target if isinstance(target, list) else [target]
    return any(isinstance(t, str) and repr(t) in message for t in targets)


# -- data -----------------------------------------------------------------------------
def validation_split_of(config) -> float:
    """fit.validation_split (TF.js's home for it) or data.validation_split; not two values."""
    fit_split = config.fit.validation_split or 0.0
    data_split = config.data.validation_split or 0.0
    if fit_split and data_split and fit_split != data_split:
        raise TrainctlError(f"config: fit.validation_split ({fit_split}) and data.validation_split "
                            f"({data_split}) disagree; give one")
    return fit_split or data_split


def load_training_data(config, base_dir: Path, model):
    """The config's data, split (TF.js: the last fraction, before any shuffling), encoded for
    the loss and preprocessed with statistics from the training split only; then checked
    against the model (shapes, label ranges) before any training."""
    from trainctl.data import load_data
    from trainctl.train.loop import check_inputs, check_targets

    split = validation_split_of(config)
    data_config = config.data
    if split != data_config.validation_split:
        if data_config.validation is not None:
            raise TrainctlError("config: give fit.validation_split or data.validation, not both")
        data_config = data_config.model_copy(update={"validation_split": split})
    data = load_data(data_config, seed=config.seed, base_dir=base_dir, loss=model.loss.name)
    if data.stream is not None:
        check_shape_of_stream(model, data.stream, data.description)
        return data
    check_inputs(model, data.x, data.description)
    check_targets(model, data.y, data.description)
    if data.x_val is not None:
        where = data.validation_description or "validation data"
        check_inputs(model, data.x_val, where)
        check_targets(model, data.y_val, where)
    return data


def resolve_class_weight(spec, data) -> dict[int, float] | None:
    """fit.class_weight as {class index: weight}: keys are indices or class names; `balanced`
    is n_samples / (n_classes · count(class)) over the training split, as scikit-learn's."""
    if spec is None:
        return None
    names = data.class_names
    if names is None:
        raise ConfigValueError([("fit.class_weight", "needs class labels; these targets are not classes")])
    if spec == "balanced":
        counts = class_counts(data, len(names))
        present = counts > 0
        total = counts.sum()
        return {i: float(total / (present.sum() * counts[i])) for i in range(len(names)) if counts[i] > 0}
    resolved: dict[int, float] = {}
    for key, weight in spec.items():
        if isinstance(key, str) and not key.lstrip("-").isdigit():
            if key not in names:
                from trainctl.registry import did_you_mean

                hint = did_you_mean(key, names)
                suffix = f"; did you mean {hint!r}?" if hint else f"; the classes are: {', '.join(names)}"
                raise ConfigValueError([(f"fit.class_weight.{key}", f"no class {key!r}{suffix}")])
            index = names.index(key)
        else:
            index = int(key)
            if not 0 <= index < len(names):
                raise ConfigValueError([(f"fit.class_weight.{key}", f"class index {index} out of range for {len(names)} classes ({', '.join(names)})")])
        resolved[index] = float(weight)
    return resolved


def class_counts(data, n_classes: int) -> np.ndarray:
    """Samples per class in the training split (arrays or one pass over the stream)."""
    counts = np.zeros(n_classes, dtype=np.int64)
    blocks = [data.y] if data.y is not None else (y for _, y, _ in data.stream._mapped())
    for y in blocks:
        y = np.asarray(y).reshape(len(y), -1)
        index = np.argmax(y, axis=1) if y.shape[1] > 1 else np.rint(y[:, 0]).astype(np.int64)
        counts += np.bincount(index, minlength=n_classes)[:n_classes]
    return counts


def class_mapping_line(names: list[str], class_weight: dict[int, float] | None) -> str:
    parts = [f"{i}={name}" + (f" (weight {class_weight[i]:.4g})" if class_weight and i in class_weight else "")
             for i, name in enumerate(names)]
    return "classes: " + "  ".join(parts)


def check_shape_of_stream(model, stream, where: str) -> None:
    if tuple(stream.x_shape) != tuple(model.input_shape):
        raise DataError(f"{where}: inputs have shape [n,{','.join(map(str, stream.x_shape))}] but the model "
                        f"expects [n,{','.join(map(str, model.input_shape))}]")


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

    def summary_line(self) -> str:
        shown = "  ".join(f"{key} {value:.4g}" for key, value in self.metrics.items()
                          if isinstance(value, float) and "/" not in key)
        return f"trained {self.epochs} epoch{'s' if self.epochs != 1 else ''} in {self.seconds:.1f}s  {shown}"


class HistoryWriter(Callback):
    """Appends a history.csv row as each epoch ends, so a crash keeps the epochs done."""

    def __init__(self, run_dir):
        super().__init__()
        self.run_dir = run_dir

    def on_epoch_end(self, epoch, logs=None):
        self.run_dir.append_history({"epoch": epoch + 1, **(logs or {})})


def save_model_files(run_dir, model) -> None:
    run_dir.write_weights({w.name: w.value for w in model.weights})
    optimizer = model.optimizer
    run_dir.write_optimizer(optimizer.state(), {"type": optimizer.get_config()["type"]})


def load_init_weights(path: Path, model) -> dict[str, np.ndarray]:
    from trainctl.runs.artifacts import RunDir, load_weights

    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"--init-from {path}: file not found")
    file = RunDir.open(path).file("weights.safetensors") if path.is_dir() else path
    expected = {w.name: (tuple(w.value.shape), w.value.dtype.name) for w in model.weights}
    try:
        return load_weights(file, expected)
    except ArtifactError as error:
        raise ArtifactError(f"--init-from {error}") from None


def log_keys(model) -> list[str]:
    """What each batch logs: loss, then the metric keys (params['metrics'] of the loop)."""
    return ["loss", *[m.log_key for m in model.metrics]]


@dataclass
class _Prepared:
    config: Any
    config_dir: Path
    model: Any
    callbacks: list[Callback]  # the config's, plus terminate_on_nan unless listed
    data: Any


def _prepare(loaded, config_dir: Path, init_from: Path | None = None) -> _Prepared:
    """Model, callbacks and data, all checked: everything that can fail on bad input."""
    from trainctl.train.callbacks import TerminateOnNaN, check_monitors

    config = loaded.config
    model = build_model(config, loaded)
    compile_from_config(model, config, loaded)
    user_callbacks = build_callbacks(config)
    data = load_training_data(config, config_dir, model)
    with located_in(loaded):
        data.class_weight = resolve_class_weight(config.fit.class_weight, data)
    do_validation = data.x_val is not None or data.validation_stream is not None
    check_monitors(user_callbacks, log_keys(model), do_validation)
    if not any(isinstance(c, TerminateOnNaN) for c in user_callbacks):
        user_callbacks.append(TerminateOnNaN())  # on by default: a diverged run stops at once
    if init_from is not None:
        model.set_weights(load_init_weights(init_from, model), source=str(init_from))
    return _Prepared(config, config_dir, model, user_callbacks, data)


def _write_run_files(run_dir, prepared: _Prepared, settings: dict[str, Any]) -> None:
    """Everything a resume needs besides checkpoints. config.yaml is written after the files
    it implies, so a run directory with a config.yaml is always complete enough to resume."""
    from trainctl.runs.artifacts import atomic_write_json
    from trainctl.config import config_to_yaml

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
                      checkpoint_every: int | None = None, keep_checkpoints: int = 3,
                      handle_signals: bool = False) -> TrainOutcome:
    """Build, check, train and save. Everything that can fail on bad input fails before
    the run directory is created. Checkpoints (for `resume_training`) are written at the
    start, at the end of every epoch and every `checkpoint_every` steps; the last
    `keep_checkpoints` are kept. With `handle_signals` (main thread only), SIGINT/SIGTERM
    stop after the current batch with a checkpoint (TrainingInterrupted)."""
    from trainctl.runs.artifacts import RunDir

    prepared = _prepare(loaded, Path(loaded.path).resolve().parent, init_from)
    run_dir = RunDir.create(runs_root, prepared.config.name, out)
    settings = {"checkpoint_every": checkpoint_every, "keep_checkpoints": keep_checkpoints}
    _write_run_files(run_dir, prepared, settings)
    return _run_training(run_dir, prepared, list(callbacks), settings, None, handle_signals)


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
                    handle_signals: bool = False, warn: Any = None) -> TrainOutcome:
    """Continue an interrupted run from its newest intact checkpoint (a damaged one is
    skipped: `warn(line)`), ending exactly where an uninterrupted run ends. The config is
    the run's saved one, or `config_path`, with `overrides`; one that differs from the
    saved config is refused unless `force`."""
    import warnings

    from trainctl.runs.artifacts import STATE_FILE, CheckpointWarning, RunDir, read_json
    from trainctl.config import config_hash, load_config, load_config_text

    run_dir = RunDir.open(run_path, require_weights=False)
    saved_source = str(run_dir.file("config.yaml"))
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
                "keep_checkpoints": keep_checkpoints or state.get("keep_checkpoints") or 3}
    if state.get("completed") and not changed:
        epochs = int(state.get("epoch", 0))
        return TrainOutcome(run_dir, None, {}, 0.0, epochs, messages=[
            f"{run_dir.path}: training already finished ({epochs} epochs); nothing to resume"],
            already_complete=True)

    prepared = _prepare(loaded, config_dir)
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
    if changed:  # forced: the run continues under the new config
        from trainctl.config import config_to_yaml

        run_dir.write_config(config_to_yaml(prepared.config))
        run_dir.write_model(prepared.model.to_json())
    run_dir.write_state({"completed": False, **settings})
    return _run_training(run_dir, prepared, list(callbacks), settings, checkpoint, handle_signals)


def _run_training(run_dir, prepared: _Prepared, extra: list[Callback], settings: dict[str, Any],
                  checkpoint: tuple[str, dict[str, bytes]] | None, handle_signals: bool) -> TrainOutcome:
    import contextlib

    from trainctl.runs.artifacts import HISTORY_FILE, atomic_write_json
    from trainctl.train.callbacks import EarlyStopping, History, ModelCheckpoint, TerminateOnNaN
    from trainctl.config import config_hash
    from trainctl.train.resume import (Checkpointer, CheckpointWriter, EpochTotals, StopOnSignal, model_checkpoint_saver,
                                 prepare_csv_loggers, trim_history)

    config, model, data, user_callbacks = prepared.config, prepared.model, prepared.data, prepared.callbacks
    fit = config.fit
    totals = EpochTotals()
    writer = CheckpointWriter(run_dir, model, user_callbacks, totals, config_hash(config))
    initial_epoch, start_batch, stopped = fit.initial_epoch, 0, False
    resumed_epoch = None
    if checkpoint is not None:
        position = writer.restore(checkpoint[1], checkpoint[0])
        initial_epoch, start_batch, stopped = int(position["epoch"]), int(position["batch"]), bool(position["stopped"])
        resumed_epoch = initial_epoch
        trim_history(run_dir.file(HISTORY_FILE), initial_epoch, 1)
    for callback in user_callbacks:
        if isinstance(callback, ModelCheckpoint):
            callback.set_saver(model_checkpoint_saver(writer, callback, run_dir))
    prepare_csv_loggers(user_callbacks, run_dir.path, resumed_epoch)
    checkpointer = Checkpointer(writer, settings.get("checkpoint_every"), int(settings["keep_checkpoints"]),
                                resumed=checkpoint is not None)
    stopper = StopOnSignal(checkpointer, run_dir.path)

    validation = None
    if data.x_val is not None:
        validation = (data.x_val, data.y_val, data.sample_weight_val)
    elif data.validation_stream is not None:
        validation = data.validation_stream
    guard = contextlib.nullcontext() if not handle_signals else stopper.installed()
    start = time.perf_counter()
    with guard:
        model.fit(
            data.x, data.y, source=data.stream, epochs=initial_epoch if stopped else fit.epochs,
            batch_size=fit.batch_size, shuffle=fit.shuffle, validation_data=validation,
            initial_epoch=initial_epoch, start_batch=start_batch,
            class_weight=data.class_weight, sample_weight=data.sample_weight,
            # EpochTotals first (it fixes a resumed epoch's logs before anyone reads them),
            # the checkpointer after every callback that reacts to an epoch.
            callbacks=[totals, *user_callbacks, HistoryWriter(run_dir), *extra, checkpointer, stopper],
            steps_per_epoch=fit.steps_per_epoch or fit.batches_per_epoch,
            validation_batch_size=fit.validation_batch_size, validation_freq=fit.validation_freq or 1,
            validation_steps=fit.validation_steps or fit.validation_batches,
        )
    seconds = time.perf_counter() - start
    for callback in user_callbacks:
        if isinstance(callback, TerminateOnNaN) and callback.stopped_at is not None:
            last = run_dir.list_checkpoints()
            where = f"; the last good checkpoint is {last[-1][2]}" if last else ""
            raise TrainctlError(f"{callback.message}{where}")
    save_model_files(run_dir, model)
    for callback in user_callbacks:
        if isinstance(callback, WeightHistory):
            atomic_write_json(run_dir.file(WEIGHT_HISTORY_FILE), {
                "epochs": [e + 1 for e in callback.epochs], "weights": callback.values,
                "reference": callback.reference})
    history = History()
    for epoch, row in zip(totals.epochs, totals.rows):
        history.on_epoch_end(epoch, row)
    final = totals.final_metrics()
    epochs_run = len(totals.epochs)
    last_epoch = (totals.epochs[-1] + 1) if totals.epochs else initial_epoch
    run_dir.write_state({"epoch": last_epoch, "batch": 0, "completed": True, **settings})
    run_dir.write_metrics({**final, "epochs": epochs_run, "seconds": seconds})
    messages = [c.message for c in user_callbacks if isinstance(c, EarlyStopping) and c.message]
    if data.class_names:
        messages.insert(0, class_mapping_line(data.class_names, data.class_weight))
    return TrainOutcome(run_dir, history, final, seconds, epochs_run, messages=messages)


# -- opening a run --------------------------------------------------------------------
@dataclass
class Run:
    run_dir: Any
    config: Any
    model: Any
    preprocessing: Any  # PreprocessingState with the training split's statistics
    data_info: dict[str, Any]

    @property
    def class_names(self) -> list[str] | None:
        return self.data_info.get("class_names")

    @property
    def config_dir(self) -> Path:
        return Path(self.data_info.get("config_dir") or ".")


def open_run(path: Path) -> Run:
    """A trained run, validated: architecture from model.json, weights checked against it."""
    from trainctl.runs.artifacts import RunDir, read_json
    from trainctl.config import load_config_text
    from trainctl.data import PreprocessingState
    from trainctl.nn.model import Sequential

    run_dir = RunDir.open(path)
    loaded = load_config_text(run_dir.read_config_text(), str(run_dir.file("config.yaml")))
    architecture = run_dir.read_model()
    try:
        model = Sequential.from_json(architecture, seed=loaded.config.seed)
    except TrainctlError as error:
        raise ArtifactError(f"{run_dir.file('model.json')}: {error}") from None
    expected = {w.name: (tuple(w.value.shape), w.value.dtype.name) for w in model.weights}
    model.set_weights(run_dir.read_weights(expected), source=str(run_dir.file("weights.safetensors")))
    compile_from_config(model, loaded.config)
    data_file = run_dir.file(DATA_FILE)
    data_info = read_json(data_file) if data_file.exists() else {}
    steps = list(loaded.config.data.preprocessing)
    target_steps = list(loaded.config.data.target_preprocessing)
    arrays = run_dir.read_preprocessing() or {}
    try:
        preprocessing = PreprocessingState.from_arrays(steps, arrays, target_steps) if steps or target_steps \
            else PreprocessingState([], [])
    except DataError as error:
        raise ArtifactError(f"{run_dir.file('preprocessing.safetensors')}: {error}") from None
    if data_info.get("tabular"):
        from trainctl.data.tabular import TabularEncoder

        try:
            preprocessing.tabular = TabularEncoder.from_json(data_info["tabular"])
        except DataError as error:
            raise ArtifactError(f"{data_file}: {error}") from None
    preprocessing.input_width = data_info.get("input_width")
    return Run(run_dir, loaded.config, model, preprocessing, data_info)


def _file_source(path: Path, run: Run, with_targets: bool):
    """A data-source config for a user-given file, reading it the way training read its data."""
    from trainctl.data.config import CsvSource, NpySource, NpzSource

    train = run.config.data.train
    if hasattr(train, "stream"):  # a streamed run reads files the way its stream's source did
        train = train.stream.source
    suffix = path.suffix.lower()
    if suffix == ".csv":
        target = getattr(train, "target", None) if with_targets else None
        if with_targets and target is None:
            raise TrainctlError(f"{path}: the run was not trained from CSV, so the target column is unknown; "
                                "pass a .npz with x and y arrays")
        features = getattr(train, "features", None)
        if features is None and isinstance(train, CsvSource) and train.header:
            # the columns training used, by name: a file that still has the target column works
            features = run.data_info.get("feature_names")
        options = {}
        if isinstance(train, CsvSource):  # read it as training read its CSV: same columns, fills, encoding
            options = {key: getattr(train, key) for key in ("delimiter", "header", "columns", "fill", "missing_values", "encoding")}
        return CsvSource(csv=str(path), target=target, features=features,
                         labels=getattr(train, "labels", "auto"), class_names=run.class_names, **options)
    if suffix == ".npz":
        return NpzSource(npz=str(path), x_key=getattr(train, "x_key", "x"),
                         y_key=(getattr(train, "y_key", "y") or "y") if with_targets else None)
    if suffix == ".npy":
        if with_targets:
            raise TrainctlError(f"{path}: a .npy file holds inputs only; give a .npz (x, y) or a .csv with the target column")
        return NpySource(npy=str(path))
    raise TrainctlError(f"{path}: unsupported file type {suffix or '(none)'}; use .npy, .npz or .csv")


# -- predict and evaluate -------------------------------------------------------------
@dataclass
class Predictions:
    outputs: np.ndarray
    classes: np.ndarray | None
    class_names: list[str] | None
    target_names: list[str] | None = None  # regression: the target columns' names

    @property
    def n_rows(self) -> int:
        return int(self.outputs.shape[0])

    def output_labels(self) -> list[str]:
        """Column names of the outputs, the same in the printed table and the CSV."""
        width = int(np.prod(self.outputs.shape[1:], dtype=np.int64)) if self.outputs.ndim > 1 else 1
        if self.classes is None:
            names = self.target_names if self.target_names and len(self.target_names) == width else None
            return list(names) if names else [f"y{i}" for i in range(width)]
        if width == 1:  # one sigmoid unit: the probability of the second (positive) class
            return [f"p_{self.class_names[1]}"] if self.class_names and len(self.class_names) == 2 else ["p"]
        names = self.class_names if self.class_names and len(self.class_names) == width else [str(i) for i in range(width)]
        return [f"p_{name}" for name in names]

    def class_label(self, index: int) -> str:
        names = self.class_names
        return names[index] if names and 0 <= index < len(names) else str(index)


def is_classifier(run: Run) -> bool:
    return run.data_info.get("label_encoding", "none") != "none" or run.model.loss.name in (
        "categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy")


def predict_file(run: Run, input_path: Path, output_path: Path | None, batch_size: int) -> Predictions:
    from trainctl.data import load_inputs

    input_path = Path(input_path)
    if not input_path.exists():
        raise DataError(f"{input_path}: file not found")
    raw = load_inputs(_file_source(input_path, run, with_targets=False), run.config.seed, Path.cwd(), run.preprocessing)
    x = raw.x
    if tuple(x.shape[1:]) != tuple(run.model.input_shape):
        raise DataError(f"{input_path}: inputs have shape [n,{','.join(map(str, x.shape[1:]))}], "
                        f"the model expects [n,{','.join(map(str, run.model.input_shape))}]")
    outputs = run.model.predict(x, batch_size=batch_size)
    if run.preprocessing.target_steps:  # back to the target's units
        from trainctl.data.preprocessing import invert_target_preprocessing

        outputs = invert_target_preprocessing(run.preprocessing, outputs.reshape(len(outputs), -1)).reshape(outputs.shape)
    classes = None
    if is_classifier(run):
        flat = outputs.reshape(outputs.shape[0], -1)
        classes = (flat[:, 0] > 0.5).astype(np.int64) if flat.shape[1] == 1 else np.argmax(flat, axis=1)
    result = Predictions(outputs, classes, run.class_names, run.data_info.get("target_names"))
    if output_path is not None:
        write_predictions(Path(output_path), result)
    return result


def write_predictions(path: Path, result: Predictions) -> None:
    from trainctl.runs.artifacts import atomic_write_bytes, atomic_write_text

    suffix = path.suffix.lower()
    flat = result.outputs.reshape(result.n_rows, -1)
    if suffix == ".npy":
        import io

        buffer = io.BytesIO()
        np.save(buffer, result.outputs, allow_pickle=False)
        atomic_write_bytes(path, buffer.getvalue())
        return
    if suffix != ".csv":
        raise TrainctlError(f"--output {path}: unsupported format {suffix or '(none)'}; use .npy or .csv")
    columns = result.output_labels()
    if result.classes is None:
        lines = [",".join(columns)]
        lines += [",".join(f"{v:.8g}" for v in row) for row in flat]
    else:
        lines = [",".join(["class", *columns])]
        for cls, row in zip(result.classes, flat):
            lines.append(",".join([result.class_label(int(cls)), *(f"{v:.8g}" for v in row)]))
    atomic_write_text(path, "\n".join(lines) + "\n")


def _evaluation_data(run: Run, data_path: Path | None, batch_size: int):
    """(title, where, x, y) for a file or the run's validation arrays, or (title, where,
    stream, None) for a validation stream; y is encoded and target-scaled as in training."""
    from trainctl.train.loop import check_inputs, check_targets

    if data_path is not None:
        from trainctl.data import apply_target_preprocessing, encode_targets, load_inputs

        data_path = Path(data_path)
        if not data_path.exists():
            raise DataError(f"{data_path}: file not found")
        raw = load_inputs(_file_source(data_path, run, with_targets=True), run.config.seed, Path.cwd(), run.preprocessing)
        encoding = run.data_info.get("label_encoding", "none")
        n_classes = len(run.class_names) if run.class_names else None
        y, _, _ = encode_targets(raw, encoding, n_classes, run.class_names)
        if y is None:
            raise DataError(f"{data_path}: no targets found to evaluate against")
        y = apply_target_preprocessing(run.preprocessing, y)
        x, title, where = raw.x, f"evaluation on {data_path}", str(data_path)
    else:
        data = load_training_data(run.config, run.config_dir, run.model)
        where = data.validation_description or "validation data"
        if data.x_val is None and data.validation_stream is not None:
            return f"evaluation on {where}", where, data.validation_stream, None
        if data.x_val is None:
            raise TrainctlError(f"{run.run_dir.path}: the run has no validation data; pass --data FILE")
        x, y, title = data.x_val, data.y_val, f"evaluation on {where}"
    check_inputs(run.model, x, where)
    check_targets(run.model, y, where)
    return title, where, x, y


def evaluate_run(run: Run, data_path: Path | None, batch_size: int) -> tuple[str, dict[str, float]]:
    """Loss and metrics on a given file, or on the run's own validation data."""
    title, _, x, y = _evaluation_data(run, data_path, batch_size)
    if y is None:
        from trainctl.train.loop import Trainer

        return title, Trainer(run.model).evaluate(x, batch_size)
    return title, run.model.evaluate(x, y, batch_size=batch_size)


@dataclass
class EvaluationReport:
    """What `trainctl evaluate` shows: loss and metrics, then per class (classifiers: a
    classification report and confusion matrix) or per target (regressors: MAE, RMSE, R²
    in the target's own units). `y_true`/`y_pred` (class indices or values) feed the plot."""

    title: str
    metrics: dict[str, float]
    task: str  # classification | regression
    report: dict[str, Any]
    y_true: np.ndarray
    y_pred: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "task": self.task, "metrics": self.metrics, **self.report}


def evaluation_report(run: Run, data_path: Path | None, batch_size: int) -> EvaluationReport:
    """Loss/metrics (as evaluate_run) and the per-class or per-target report over every row."""
    title, where, x, y = _evaluation_data(run, data_path, batch_size)
    if y is None:  # a validation stream: gather its batches once
        from trainctl.train.loop import Trainer

        metrics = Trainer(run.model).evaluate(x, batch_size)
        outputs, targets = [], []
        for xb, yb, _ in x.batches(0, batch_size):
            outputs.append(np.array(run.model.predict(xb, batch_size=batch_size)))
            targets.append(np.array(yb))
        outputs, y = np.concatenate(outputs), np.concatenate(targets)
    else:
        metrics = run.model.evaluate(x, y, batch_size=batch_size)
        outputs = run.model.predict(x, batch_size=batch_size)
    n = len(outputs)
    out2d, y2d = outputs.reshape(n, -1), np.asarray(y).reshape(n, -1)
    if is_classifier(run):
        true_index = _class_indices(y2d, out2d.shape[1])
        pred_index = (out2d[:, 0] > 0.5).astype(np.int64) if out2d.shape[1] == 1 else np.argmax(out2d, axis=1)
        k = 2 if out2d.shape[1] == 1 else out2d.shape[1]
        names = run.class_names if run.class_names and len(run.class_names) == k else [str(i) for i in range(k)]
        return EvaluationReport(title, metrics, "classification", classification_report(true_index, pred_index, names),
                                true_index, pred_index)
    from trainctl.data.preprocessing import invert_target_preprocessing

    truth = invert_target_preprocessing(run.preprocessing, y2d).astype(np.float64)
    predicted = invert_target_preprocessing(run.preprocessing, out2d).astype(np.float64)
    names = run.data_info.get("target_names")
    names = names if names and len(names) == truth.shape[1] else [f"y{i}" for i in range(truth.shape[1])]
    return EvaluationReport(title, metrics, "regression", regression_report(truth, predicted, names), truth, predicted)


def _class_indices(y2d: np.ndarray, width: int) -> np.ndarray:
    if y2d.shape[1] > 1:
        return np.argmax(y2d, axis=1)
    return np.rint(y2d[:, 0]).astype(np.int64) if width > 1 else (y2d[:, 0] != 0).astype(np.int64)


def classification_report(true_index: np.ndarray, pred_index: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support, their macro and weighted averages,
    accuracy and the confusion matrix (rows: true class, columns: predicted), as scikit-learn's
    classification_report and confusion_matrix compute them (0 where a ratio is 0/0)."""
    k = len(names)
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (true_index, pred_index), 1)
    tp = np.diag(matrix).astype(np.float64)
    predicted, support = matrix.sum(axis=0).astype(np.float64), matrix.sum(axis=1).astype(np.float64)
    ratio = lambda a, b: np.divide(a, b, out=np.zeros_like(a), where=b > 0)  # noqa: E731
    precision, recall = ratio(tp, predicted), ratio(tp, support)
    f1 = ratio(2 * precision * recall, precision + recall)
    rows = [{"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for name, p, r, f, n in zip(names, precision, recall, f1, support)]
    total = support.sum()

    def average(weights):
        return {key: float((values * weights).sum() / weights.sum()) if weights.sum() else 0.0
                for key, values in (("precision", precision), ("recall", recall), ("f1", f1))}

    return {
        "classes": list(names), "per_class": rows,
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_avg": {**average(np.ones(k)), "support": int(total)},
        "weighted_avg": {**average(support), "support": int(total)},
        "confusion_matrix": matrix.tolist(),
    }


def regression_report(truth: np.ndarray, predicted: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Per target column: MAE, RMSE and R² (1 − SS_res/SS_tot) in the target's units."""
    rows = []
    for j, name in enumerate(names):
        error = predicted[:, j] - truth[:, j]
        ss_tot = float(((truth[:, j] - truth[:, j].mean()) ** 2).sum())
        rows.append({"target": name, "mae": float(np.abs(error).mean()), "rmse": float(np.sqrt((error ** 2).mean())),
                     "r2": 1.0 - float((error ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan"),
                     "n": int(len(error))})
    return {"targets": rows}


# -- summary ---------------------------------------------------------------------------
def model_from_target(target: Path, overrides: list[str]):
    """The model (weights initialised, never trained) from a config file or a run directory,
    with the compile choices to show beside it. No data is read and no kernel compiled."""
    from trainctl.config import load_config, load_config_text

    target = Path(target)
    if target.is_dir():
        from trainctl.runs.artifacts import RunDir
        from trainctl.nn.model import Sequential

        run_dir = RunDir.open(target, require_weights=False)
        config = load_config_text(run_dir.read_config_text(), str(run_dir.file("config.yaml"))).config
        model = Sequential.from_json(run_dir.read_model(), seed=config.seed)
    else:
        config = load_config(target, overrides).config
        model = build_model(config)
    return model, config


def describe_model(model, config):
    from trainctl.nn.model import weights_nbytes

    rows = model.summary_rows()
    totals = model.param_totals()
    weights = [(w.name, list(w.value.shape)) for w in model.weights]
    optimizer = config.optimizer.to_dict()
    optimizer_text = optimizer.pop("type") + "".join(
        f", {key}={value}" for key, value in optimizer.items() if value is not None)
    extras = {
        "Optimizer": optimizer_text,
        "Loss": config.loss,
        "Metrics": ", ".join(m if isinstance(m, str) else (getattr(m.params, "name", None) or m.type) for m in config.metrics) or "none",
        "FLOPs per sample (forward)": f"{model.flops_per_sample():,}",
        "Weights size": f"{weights_nbytes(model):,} bytes",
    }
    return rows, totals, weights, extras
