"""From a run directory back to a usable model: `open_run`, `predict_file`, `evaluate_run`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.errors import ArtifactError, DataError, TrainctlError
from trainctl.runs.build import compile_from_config, load_training_data
from trainctl.runs.files import CONFIG_FILE, DATA_FILE, WEIGHTS_FILE


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


def open_run(path: Path, max_memory: int | None = None) -> Run:
    """A trained run, validated: architecture from model.json, weights checked against it.
    A TF.js model.json (or its folder) or a Keras .keras file opens as a run too."""
    from trainctl.runs.interop import foreign_format, open_foreign_run

    if foreign_format(path) is not None:
        return open_foreign_run(path)
    from trainctl.config import load_config_text
    from trainctl.data import PreprocessingState
    from trainctl.nn.model import Sequential
    from trainctl.runs.atomic import read_json
    from trainctl.runs.rundir import RunDir

    run_dir = RunDir.open(path)
    loaded = load_config_text(run_dir.read_config_text(), str(run_dir.file(CONFIG_FILE)))
    architecture = run_dir.read_model()
    try:  # shapes first: a model.json claiming 10^12 units is refused before any allocation
        from trainctl.runs.budget import check, inference_estimate

        check(inference_estimate(Sequential.from_json(architecture, seed=loaded.config.seed, shapes_only=True), 256),
              max_memory, "loading this model")
        model = Sequential.from_json(architecture, seed=loaded.config.seed)
    except TrainctlError as error:
        raise ArtifactError(f"{run_dir.file('model.json')}: {error}") from None
    expected = {w.name: (tuple(w.value.shape), w.value.dtype.name) for w in model.weights}
    model.set_weights(run_dir.read_weights(expected), source=str(run_dir.file(WEIGHTS_FILE)))
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
    from trainctl.runs.atomic import atomic_write_bytes, atomic_write_text

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
        if run.data_info.get("model_file"):  # a TF.js/Keras file opened directly
            raise TrainctlError(f"{run.data_info['model_file']}: a model file has no data of its own; pass --data FILE")
        data = load_training_data(run.config, run.config_dir, run.model)
        where = data.validation_description or "validation data"
        if data.x_val is None and data.validation_stream is not None:
            from trainctl.train.loop import Trainer

            return f"evaluation on {where}", Trainer(run.model).evaluate(data.validation_stream, batch_size)
        if data.x_val is None:
            raise TrainctlError(f"{run.run_dir.path}: the run has no validation data; pass --data FILE")
        x, y, title = data.x_val, data.y_val, f"evaluation on {where}"
    check_inputs(run.model, x, where)
    check_targets(run.model, y, where)
    return title, run.model.evaluate(x, y, batch_size=batch_size)
