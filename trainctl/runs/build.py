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
    data = load_training_data(config, config_dir, model)
    do_validation = data.x_val is not None or data.validation_stream is not None
    check_monitors(user_callbacks, log_keys(model), do_validation, loaded)
    if TerminateOnNaN.type_id not in {c.type_id for c in user_callbacks}:
        user_callbacks.append(TerminateOnNaN())  # on by default: a diverged run stops at once
    if init_from is not None:
        model.set_weights(load_init_weights(init_from, model), source=str(init_from))
    return _Prepared(config, config_dir, model, user_callbacks, data)
