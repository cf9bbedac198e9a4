"""From a config to objects: the model, its compile settings, callbacks and training data."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.errors import ArtifactError, ConfigValueError, DataError, TrainctlError
from trainctl.runs.files import WEIGHTS_FILE
from trainctl.train.callbacks import Callback


# -- model and compile from a config ---------------------------------------------------
def build_model(config, loaded=None, shapes_only: bool = False):
    """The model; with `loaded`, a problem found while building it (shapes, names) is
    reported at its place in the file, as schema errors are. With `shapes_only`, nothing is
    allocated (validate, summary, the memory estimate)."""
    from trainctl.nn.model import Sequential

    with located_in(loaded):
        return Sequential(config.model.layers, name=config.name, seed=config.seed, shapes_only=shapes_only)


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
        from trainctl.config.problems import raise_problems

        raise_problems([loaded.problem(path, message) for path, message in error.problems])


def build_callbacks(config) -> list[Callback]:
    from trainctl.train.callbacks import CALLBACKS

    callbacks = []
    for spec in config.callbacks:
        spec = dict(spec) if isinstance(spec, dict) else {"type": spec.type, **spec.params.model_dump()}
        cls = CALLBACKS.get(spec.pop("type"))
        callbacks.append(cls(**cls.Params.model_validate(spec).model_dump()))
    return callbacks


def check_config(loaded, max_memory: int | None = None) -> None:
    """Everything that can be checked without reading the data: model shapes, loss vs output,
    metrics, callbacks and the values they monitor, the data's row shape against the input
    (from file headers) and the memory training will take. Nothing is allocated."""
    from trainctl.runs.budget import preflight
    from trainctl.train.callbacks import check_monitors

    config = loaded.config
    model = build_model(config, loaded, shapes_only=True)
    compile_from_config(model, config, loaded)
    with located_in(loaded):
        preflight(config, model, Path(loaded.path).resolve().parent, max_memory, need_files=False)
    callbacks = build_callbacks(config)
    do_validation = validation_split_of(config) > 0 or getattr(config.data, "validation", None) is not None
    check_monitors(callbacks, ["loss", *[m.log_key for m in model.metrics]], do_validation, loaded)
    check_callback_files(callbacks, loaded)
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
            if shape_kept and not table.needs_encoding and tuple(model.input_shape) != table.row_shape:
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


def check_callback_files(callbacks: list[Callback], loaded=None) -> None:
    """The files callbacks declare stay inside the run directory, off the names the run
    writes itself (a csv_logger writing history.csv would clobber it), and apart."""
    from pathlib import PurePath

    from trainctl.runs.files import RUN_OWNED

    problems, owners = [], {}
    for index, callback in enumerate(callbacks):
        for name in callback.files():
            path = PurePath(name)
            if path.is_absolute() or ".." in path.parts:
                problem = "a callback writes inside the run directory; give a relative name"
            elif path.parts and path.parts[0] in RUN_OWNED:
                problem = "the run directory keeps that name for itself; choose another"
            elif path in owners:
                problem = f"callbacks.{owners[path]} writes it too"
            else:
                owners[path] = index
                continue
            problems.append((f"callbacks.{index}", f"{callback.type_id} writes {name!r}: {problem}"))
    if problems:
        with located_in(loaded):
            raise ConfigValueError(problems)


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


def save_model_files(run_dir, model) -> None:
    run_dir.write_weights({w.name: w.value for w in model.weights})
    optimizer = model.optimizer
    run_dir.write_optimizer(optimizer.state(), {"type": optimizer.get_config()["type"]})


def load_init_weights(path: Path, model) -> dict[str, np.ndarray]:
    from trainctl.runs.rundir import RunDir
    from trainctl.runs.tensors import load_weights

    from trainctl.runs.interop import foreign_format, read_foreign

    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"--init-from {path}: file not found")
    if foreign_format(path) is not None:  # a TF.js model.json or a Keras .keras file
        return read_foreign(path).model.get_weights()
    file = RunDir.open(path).file(WEIGHTS_FILE) if path.is_dir() else path
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


def _prepare(loaded, config_dir: Path, init_from: Path | None = None, max_memory: int | None = None) -> _Prepared:
    """Model, callbacks and data, all checked: everything that can fail on bad input. The
    memory it will take is estimated from shapes first, before anything is allocated."""
    from trainctl.runs.budget import preflight
    from trainctl.train.callbacks import TerminateOnNaN, check_monitors

    config = loaded.config
    with located_in(loaded):
        preflight(config, build_model(config, loaded, shapes_only=True), config_dir, max_memory)
    model = build_model(config, loaded)
    compile_from_config(model, config, loaded)
    user_callbacks = build_callbacks(config)
    check_callback_files(user_callbacks, loaded)
    with located_in(loaded):  # data problems tied to a config key (a time series' window, a column)
        data = load_training_data(config, config_dir, model)
        data.class_weight = resolve_class_weight(config.fit.class_weight, data)
    do_validation = data.x_val is not None or data.validation_stream is not None
    check_monitors(user_callbacks, log_keys(model), do_validation, loaded)
    if TerminateOnNaN.type_id not in {c.type_id for c in user_callbacks}:
        user_callbacks.append(TerminateOnNaN())  # on by default: a diverged run stops at once
    if init_from is not None:
        model.set_weights(load_init_weights(init_from, model), source=str(init_from))
    return _Prepared(config, config_dir, model, user_callbacks, data)
