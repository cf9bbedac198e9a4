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
            options = {key: getattr(train, key) for key in ("delimiter", "header", "columns", "fill", "missing_values", "encoding",
                                                    "window", "horizon", "stride", "sampling_rate")}
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
        if run.data_info.get("model_file"):  # a TF.js/Keras file opened directly
            raise TrainctlError(f"{run.data_info['model_file']}: a model file has no data of its own; pass --data FILE")
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
