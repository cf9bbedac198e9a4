"""From a config to a finished run, and from a run back to a usable model.

This is the library behind the CLI commands: `train_from_config`, `open_run`,
`predict_file`, `evaluate_run`, `model_from_target`, `describe_model`, `check_config`.
It never prints; progress goes through callbacks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from trainctl.callbacks import Callback, WeightHistory
from trainctl.errors import ArtifactError, DataError, TrainctlError

WEIGHT_HISTORY_FILE = "weight_history.json"
DATA_FILE = "data.json"  # where the data came from and how its labels were encoded


# -- model and compile from a config ---------------------------------------------------
def build_model(config):
    from trainctl.model import Sequential

    return Sequential(config.model.layers, name=config.name, seed=config.seed)


def compile_from_config(model, config) -> None:
    model.compile(optimizer=config.optimizer, loss=config.loss, metrics=config.metrics)


def build_callbacks(config) -> list[Callback]:
    from trainctl.callbacks import CALLBACKS

    callbacks = []
    for spec in config.callbacks:
        spec = dict(spec) if isinstance(spec, dict) else {"type": spec.type, **spec.params.model_dump()}
        cls = CALLBACKS.get(spec.pop("type"))
        callbacks.append(cls(**cls.Params.model_validate(spec).model_dump()))
    return callbacks


def check_config(loaded) -> None:
    """Everything that can be checked without data: model shapes, loss vs output, metrics."""
    model = build_model(loaded.config)
    compile_from_config(model, loaded.config)
    build_callbacks(loaded.config)


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
    from trainctl.training import check_inputs, check_targets

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
    from trainctl.artifacts import RunDir, load_weights

    path = Path(path)
    file = RunDir.open(path).file("weights.safetensors") if path.is_dir() else path
    expected = {w.name: (tuple(w.value.shape), w.value.dtype.name) for w in model.weights}
    try:
        return load_weights(file, expected)
    except ArtifactError as error:
        raise ArtifactError(f"--init-from {error}") from None


def train_from_config(loaded, *, out: Path | None = None, runs_root: Path = Path("runs"),
                      init_from: Path | None = None, callbacks: Iterable[Callback] = ()) -> TrainOutcome:
    """Build, check, train and save. Everything that can fail on bad input fails before
    the run directory is created."""
    from trainctl.artifacts import RunDir, atomic_write_json
    from trainctl.config import config_to_yaml

    config = loaded.config
    config_dir = Path(loaded.path).resolve().parent
    model = build_model(config)
    compile_from_config(model, config)
    user_callbacks = build_callbacks(config)
    data = load_training_data(config, config_dir, model)
    if init_from is not None:
        model.set_weights(load_init_weights(init_from, model), source=str(init_from))

    run_dir = RunDir.create(runs_root, config.name, out)
    run_dir.write_config(config_to_yaml(config))
    run_dir.write_model(model.to_json())
    preprocessing = data.preprocessing.to_arrays()
    if preprocessing:
        run_dir.write_preprocessing(preprocessing)
    atomic_write_json(run_dir.file(DATA_FILE), {
        "config_dir": str(config_dir), "class_names": data.class_names,
        "label_encoding": data.label_encoding, "feature_names": data.feature_names})

    fit = config.fit
    validation = None
    if data.x_val is not None:
        validation = (data.x_val, data.y_val, data.sample_weight_val)
    elif data.validation_stream is not None:
        validation = data.validation_stream
    start = time.perf_counter()
    history = model.fit(
        data.x, data.y, source=data.stream, epochs=fit.epochs, batch_size=fit.batch_size,
        shuffle=fit.shuffle, validation_data=validation, initial_epoch=fit.initial_epoch,
        class_weight=fit.class_weight, sample_weight=data.sample_weight,
        callbacks=[*user_callbacks, HistoryWriter(run_dir), *callbacks],
        steps_per_epoch=fit.steps_per_epoch or fit.batches_per_epoch,
        validation_batch_size=fit.validation_batch_size, validation_freq=fit.validation_freq or 1,
        validation_steps=fit.validation_steps or fit.validation_batches,
    )
    seconds = time.perf_counter() - start
    save_model_files(run_dir, model)
    for callback in user_callbacks:
        if isinstance(callback, WeightHistory):
            atomic_write_json(run_dir.file(WEIGHT_HISTORY_FILE), {
                "epochs": [e + 1 for e in callback.epochs], "weights": callback.values,
                "reference": callback.reference})
    final = {key: values[-1] for key, values in history.history.items()}
    epochs_run = len(history.epoch)
    run_dir.write_state({"epoch": fit.initial_epoch + epochs_run, "batch": 0, "completed": True})
    run_dir.write_metrics({**final, "epochs": epochs_run, "seconds": seconds})
    return TrainOutcome(run_dir, history, final, seconds, epochs_run)


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
    from trainctl.artifacts import RunDir, read_json
    from trainctl.config import load_config_text
    from trainctl.data import PreprocessingState
    from trainctl.model import Sequential

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
    arrays = run_dir.read_preprocessing() or {}
    try:
        preprocessing = PreprocessingState.from_arrays(steps, arrays) if steps else PreprocessingState([], [])
    except DataError as error:
        raise ArtifactError(f"{run_dir.file('preprocessing.safetensors')}: {error}") from None
    return Run(run_dir, loaded.config, model, preprocessing, data_info)


def _file_source(path: Path, run: Run, with_targets: bool):
    """A data-source config for a user-given file, reading it the way training read its data."""
    from trainctl.data.config import CsvSource, NpySource, NpzSource

    train = run.config.data.train
    suffix = path.suffix.lower()
    if suffix == ".csv":
        target = getattr(train, "target", None) if with_targets else None
        if with_targets and target is None:
            raise TrainctlError(f"{path}: the run was not trained from CSV, so the target column is unknown; "
                                "pass a .npz with x and y arrays")
        features = getattr(train, "features", None)
        if not with_targets and features is None and isinstance(train, CsvSource) and train.target is not None:
            features = None  # all columns; a file that still has the target column is reported by shape
        return CsvSource(csv=str(path), target=target, features=features,
                         labels=getattr(train, "labels", "auto"), class_names=run.class_names)
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

    @property
    def n_rows(self) -> int:
        return int(self.outputs.shape[0])


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
    classes = None
    if is_classifier(run):
        flat = outputs.reshape(outputs.shape[0], -1)
        classes = (flat[:, 0] > 0.5).astype(np.int64) if flat.shape[1] == 1 else np.argmax(flat, axis=1)
    result = Predictions(outputs, classes, run.class_names)
    if output_path is not None:
        write_predictions(Path(output_path), result)
    return result


def write_predictions(path: Path, result: Predictions) -> None:
    from trainctl.artifacts import atomic_write_bytes, atomic_write_text

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
    names = result.class_names or [str(i) for i in range(flat.shape[1])]
    if result.classes is None:
        lines = [",".join(f"y{i}" for i in range(flat.shape[1]))]
        lines += [",".join(f"{v:.8g}" for v in row) for row in flat]
    else:
        columns = [f"p_{name}" for name in names] if flat.shape[1] > 1 else ["p"]
        lines = [",".join(["class", *columns])]
        for cls, row in zip(result.classes, flat):
            label = names[cls] if cls < len(names) else str(cls)
            lines.append(",".join([label, *(f"{v:.8g}" for v in row)]))
    atomic_write_text(path, "\n".join(lines) + "\n")


def evaluate_run(run: Run, data_path: Path | None, batch_size: int) -> tuple[str, dict[str, float]]:
    """Loss and metrics on a given file, or on the run's own validation data."""
    from trainctl.training import check_inputs, check_targets

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
        if data.x_val is None:
            raise TrainctlError(f"{run.run_dir.path}: the run has no validation data; pass --data FILE")
        x, y, where = data.x_val, data.y_val, data.validation_description or "validation data"
        title = f"evaluation on {where}"
    check_inputs(run.model, x, where)
    check_targets(run.model, y, where)
    return title, run.model.evaluate(x, y, batch_size=batch_size)


# -- summary ---------------------------------------------------------------------------
def model_from_target(target: Path, overrides: list[str]):
    """The model (weights initialised, never trained) from a config file or a run directory,
    with the compile choices to show beside it. No data is read and no kernel compiled."""
    from trainctl.config import load_config, load_config_text

    target = Path(target)
    if target.is_dir():
        from trainctl.artifacts import RunDir
        from trainctl.model import Sequential

        run_dir = RunDir.open(target, require_weights=False)
        config = load_config_text(run_dir.read_config_text(), str(run_dir.file("config.yaml"))).config
        model = Sequential.from_json(run_dir.read_model(), seed=config.seed)
    else:
        config = load_config(target, overrides).config
        model = build_model(config)
    return model, config


def describe_model(model, config):
    from trainctl.model import weights_nbytes

    rows = model.summary_rows()
    totals = model.param_totals()
    weights = [(w.name, list(w.value.shape)) for w in model.weights]
    optimizer = config.optimizer.to_dict()
    optimizer_text = optimizer.pop("type") + "".join(
        f", {key}={value}" for key, value in optimizer.items() if value is not None)
    extras = {
        "Optimizer": optimizer_text,
        "Loss": config.loss,
        "Metrics": ", ".join(config.metrics) or "none",
        "FLOPs per sample (forward)": f"{model.flops_per_sample():,}",
        "Weights size": f"{weights_nbytes(model):,} bytes",
    }
    return rows, totals, weights, extras
