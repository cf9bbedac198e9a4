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
@dataclass
class TrainingData:
    x: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray | None
    validation: tuple[np.ndarray, np.ndarray] | None
    preprocessing: dict[str, np.ndarray] = field(default_factory=dict)
    class_names: list[str] | None = None


def load_training_data(config, base_dir: Path, model) -> TrainingData:
    """Load the config's data, split off validation (TF.js: the last fraction, before any
    shuffling), fit preprocessing on the training part only, check shapes against the model."""
    from trainctl.data import load_data
    from trainctl.data.source import split_validation
    from trainctl.training import check_inputs, check_targets

    data = load_data(config.data, seed=config.seed, base_dir=base_dir, loss=model.loss.name)
    x, y, weights = data.x, data.y, data.sample_weight
    validation = (data.x_val, data.y_val) if data.x_val is not None else None
    split = validation_split_of(config)
    if split:
        if validation is not None:
            raise TrainctlError("config: give fit.validation_split or data.validation, not both")
        (x, y, weights), (xv, yv, _) = split_validation(x, y, weights, split)
        if x.shape[0] == 0 or xv.shape[0] == 0:
            raise DataError(f"validation_split {split} of {data.x.shape[0]} samples leaves an empty split")
        validation = (xv, yv)
    stats = data.fit_preprocessing(x) if hasattr(data, "fit_preprocessing") else {}
    if stats:
        x = data.apply_preprocessing(stats, x)
        if validation is not None:
            validation = (data.apply_preprocessing(stats, validation[0]), validation[1])
    where = getattr(data, "description", "training data")
    check_inputs(model, x, where)
    check_targets(model, y, where)
    if validation is not None:
        check_inputs(model, validation[0], f"{where} (validation)")
        check_targets(model, validation[1], f"{where} (validation)")
    return TrainingData(x, y, weights, validation, stats, getattr(data, "class_names", None))


def validation_split_of(config) -> float:
    fit_split = config.fit.validation_split or 0.0
    data_split = getattr(config.data, "validation_split", None) or 0.0
    if fit_split and data_split and fit_split != data_split:
        raise TrainctlError(f"config: fit.validation_split ({fit_split}) and data.validation_split "
                            f"({data_split}) disagree; give one")
    return fit_split or data_split


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
    from trainctl.artifacts import RunDir
    from trainctl.config import config_to_yaml

    config = loaded.config
    model = build_model(config)
    compile_from_config(model, config)
    user_callbacks = build_callbacks(config)
    data = load_training_data(config, Path(loaded.path).parent, model)
    if init_from is not None:
        model.set_weights(load_init_weights(init_from, model), source=str(init_from))

    run_dir = RunDir.create(runs_root, config.name, out)
    run_dir.write_config(config_to_yaml(config))
    run_dir.write_model(model.to_json())
    if data.preprocessing:
        run_dir.write_preprocessing(data.preprocessing)
    if data.class_names:
        from trainctl.artifacts import atomic_write_json

        atomic_write_json(run_dir.file("classes.json"), {"class_names": data.class_names})

    fit = config.fit
    start = time.perf_counter()
    history = model.fit(
        data.x, data.y, epochs=fit.epochs, batch_size=fit.batch_size, shuffle=fit.shuffle,
        validation_data=data.validation, initial_epoch=fit.initial_epoch,
        class_weight=fit.class_weight, sample_weight=data.sample_weight,
        callbacks=[*user_callbacks, HistoryWriter(run_dir), *callbacks],
        steps_per_epoch=fit.steps_per_epoch, validation_batch_size=fit.validation_batch_size,
        validation_freq=fit.validation_freq or 1, validation_steps=fit.validation_steps,
    )
    seconds = time.perf_counter() - start
    save_model_files(run_dir, model)
    for callback in user_callbacks:
        if isinstance(callback, WeightHistory):
            from trainctl.artifacts import atomic_write_json

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
    preprocessing: dict[str, np.ndarray] | None
    class_names: list[str] | None


def open_run(path: Path) -> Run:
    """A trained run, validated: architecture from model.json, weights checked against it."""
    from trainctl.artifacts import RunDir, read_json
    from trainctl.config import load_config_text
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
    model.compile(optimizer=loaded.config.optimizer, loss=loaded.config.loss, metrics=loaded.config.metrics)
    classes_file = run_dir.file("classes.json")
    class_names = read_json(classes_file)["class_names"] if classes_file.exists() else None
    return Run(run_dir, loaded.config, model, run_dir.read_preprocessing(), class_names)


# -- predict and evaluate -------------------------------------------------------------
@dataclass
class Predictions:
    outputs: np.ndarray
    classes: np.ndarray | None
    class_names: list[str] | None

    @property
    def n_rows(self) -> int:
        return int(self.outputs.shape[0])


def is_classifier(model) -> bool:
    return model.loss.name in ("categorical_crossentropy", "sparse_categorical_crossentropy",
                               "binary_crossentropy", "categorical_hinge", "hinge", "squared_hinge")


def predict_file(run: Run, input_path: Path, output_path: Path | None, batch_size: int) -> Predictions:
    from trainctl.data import read_features

    x = read_features(Path(input_path), run.model.input_shape, run.config.data)
    if run.preprocessing:
        from trainctl.data import apply_preprocessing_stats

        x = apply_preprocessing_stats(run.preprocessing, x)
    if tuple(x.shape[1:]) != tuple(run.model.input_shape):
        raise DataError(f"{input_path}: inputs have shape [n,{','.join(map(str, x.shape[1:]))}], "
                        f"the model expects [n,{','.join(map(str, run.model.input_shape))}]")
    outputs = run.model.predict(x, batch_size=batch_size)
    classes = None
    if is_classifier(run.model):
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
    elif suffix == ".csv":
        names = result.class_names or [str(i) for i in range(flat.shape[1])]
        if result.classes is not None:
            header = ["class"] + ([f"p_{n}" for n in names] if flat.shape[1] > 1 else ["p"])
            lines = [",".join(header)]
            for cls, row in zip(result.classes, flat):
                label = names[cls] if result.class_names and flat.shape[1] > 1 else str(cls)
                lines.append(",".join([label, *(f"{v:.8g}" for v in row)]))
        else:
            lines = [",".join(f"y{i}" for i in range(flat.shape[1]))]
            lines += [",".join(f"{v:.8g}" for v in row) for row in flat]
        atomic_write_text(path, "\n".join(lines) + "\n")
    else:
        raise TrainctlError(f"--output {path}: unsupported format {suffix or '(none)'}; use .npy or .csv")


def evaluate_run(run: Run, data_path: Path | None, batch_size: int) -> tuple[str, dict[str, float]]:
    """Loss and metrics on a given file, or on the run's own validation data."""
    if data_path is not None:
        from trainctl.data import read_labelled

        x, y = read_labelled(Path(data_path), run.config.data, run.model.loss.name, run.class_names)
        title = f"evaluation on {data_path}"
    else:
        base_dir = Path(run.config_path).parent if hasattr(run, "config_path") else Path.cwd()
        data = load_training_data(run.config, base_dir, run.model)
        if data.validation is None:
            raise TrainctlError(f"{run.run_dir.path}: the run has no validation data; pass --data FILE")
        x, y = data.validation
        title = "evaluation on the run's validation data"
        run.preprocessing = None  # load_training_data applied the (recomputed) statistics already
    if run.preprocessing:
        from trainctl.data import apply_preprocessing_stats

        x = apply_preprocessing_stats(run.preprocessing, x)
    from trainctl.training import check_inputs, check_targets

    check_inputs(run.model, x, str(data_path or "validation data"))
    check_targets(run.model, y, str(data_path or "validation data"))
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
