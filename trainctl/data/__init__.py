"""Data: generators, file readers, preprocessing and the streaming pipeline.

    data = load_data(config.data, seed=config.seed, base_dir=config_dir, loss=config.loss)
    data.x, data.y, data.sample_weight       # in-memory training arrays (None for a stream)
    data.x_val, data.y_val                   # validation (explicit or validation_split)
    data.stream, data.validation_stream      # BatchSource objects when data.train is a stream
    data.preprocessing.to_arrays()           # fitted statistics, to save with the run

Importing this package does not import numba: kernels load when a stream first batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.data.config import (
    CsvSource,
    DataConfig,
    NpySource,
    NpzSource,
    ShardsSource,
    StreamSource,
    ZipSource,
)
from trainctl.data.augmentation import build_augmentation
from trainctl.data.preprocessing import (
    PreprocessingState,
    apply_preprocessing,
    apply_target_preprocessing,
    fit_preprocessing,
    one_hot,
)
from trainctl.data.labels import encode_targets, label_encoding  # noqa: F401 - public here
from trainctl.data.windows import is_time_series
from trainctl.errors import DataError

__all__ = [
    "DataConfig",
    "LoadedData",
    "RawData",
    "PreprocessingState",
    "apply_preprocessing",
    "apply_target_preprocessing",
    "fit_preprocessing",
    "load_data",
    "load_inputs",
    "read_source",
]



@dataclass
class RawData:
    """One split as read, before label encoding and preprocessing."""

    x: np.ndarray  # float32 [n, ...] (possibly memory-mapped)
    targets: np.ndarray | None = None  # float32 [n, m] numeric targets ...
    labels: np.ndarray | None = None  # ... or int64 class indices [n]
    n_classes: int | None = None
    class_names: list[str] | None = None
    sample_weight: np.ndarray | None = None  # float32 [n]
    feature_names: list[str] | None = None
    description: str = ""
    text: list[np.ndarray] | None = None  # categorical feature columns as read (x then holds the numeric ones)
    layout: list[tuple[str, str, int]] | None = None  # features in order: (name, numeric|categorical, position)
    specs: dict[str, Any] = field(default_factory=dict)  # column name → ColumnSpec (categorical, fill)
    needs_encoding: bool = False  # x must go through a TabularEncoder (categorical columns or fills)


@dataclass
class LoadedData:
    x: np.ndarray | None  # float32 [n, *features]; None when training from a stream
    y: np.ndarray | None  # float32: one-hot [n, k], class indices / 0-1 labels [n, 1], or targets [n, m]
    sample_weight: np.ndarray | None = None  # float32 [n]
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    sample_weight_val: np.ndarray | None = None
    class_names: list[str] | None = None
    feature_names: list[str] | None = None
    description: str = ""  # where the training data came from, for messages ("data/iris.csv")
    validation_description: str | None = None
    label_encoding: str = "none"  # one_hot | sparse | binary | none (how y encodes classes)
    preprocessing: PreprocessingState = field(default_factory=lambda: PreprocessingState([], []))
    stream: Any = None  # a StreamSource (BatchSource protocol) when data.train is a stream
    validation_stream: Any = None
    augmentation: Any = None  # an Augmentation (data/augmentation.py) for the training batches, or None
    class_weight: dict[int, float] | None = None  # fit.class_weight resolved to class indices (by the run builder)
    forecast_baseline: float | None = None  # a time series: the last-value forecast's val MAE, in y's units

    @property
    def x_shape(self) -> tuple[int, ...]:
        """Per-sample input shape (no batch axis), for the model's input_shape."""
        return tuple(self.x.shape[1:]) if self.x is not None else tuple(self.stream.x_shape)

    @property
    def y_shape(self) -> tuple[int, ...]:
        return tuple(self.y.shape[1:]) if self.y is not None else tuple(self.stream.y_shape)

    @property
    def n_samples(self) -> int | None:
        return len(self.x) if self.x is not None else self.stream.n_samples


# ---------------------------------------------------------------- reading one source


def read_source(
    source: Any,
    seed: int,
    base_dir: Path,
    split: str = "train",
    class_names: list[str] | None = None,
) -> RawData:
    """Read one in-memory source config (generator, csv, npy, npz, shards, zip) whole, through
    its format (data/formats.py). `class_names` (from the training split) fixes the mapping of
    string labels."""
    from trainctl.data.formats import format_of

    return format_of(source).read(seed, Path(base_dir), split, class_names)


def table_for(source: CsvSource | ShardsSource, base_dir: Path, chunk_rows: int = 65536):
    """The table reader (readers.CsvTable / ShardTable) of a CSV or shards source."""
    from trainctl.data.formats import format_of

    return format_of(source).table(Path(base_dir), chunk_rows)


def table_shown(source: CsvSource | ShardsSource) -> str:
    from trainctl.data.formats import format_of

    return format_of(source).shown()


# ---------------------------------------------------------------- the whole section


def load_data(data_config: DataConfig, seed: int, base_dir: Path, loss: str | None = None) -> LoadedData:
    """Read, split, encode and preprocess the data section.

    `loss` (the config's loss id) decides how class labels are encoded when `labels: auto`:
    sparse_categorical_crossentropy → indices [n, 1], categorical_crossentropy → one-hot,
    binary_crossentropy → one 0/1 column. Preprocessing statistics come from the training
    split only (after validation_split is held out)."""
    base_dir = Path(base_dir)
    steps = list(data_config.preprocessing)
    has_one_hot = any(step.type == "one_hot" for step in steps)
    if isinstance(data_config.train, StreamSource):
        from trainctl.data.stream import load_stream_data

        loaded = load_stream_data(data_config, seed, base_dir, loss)
        loaded.augmentation = build_augmentation(steps, loaded.x_shape, seed)
        return loaded

    if is_time_series(data_config.train):
        from trainctl.data.windows import load_windows

        return load_windows(data_config, seed, base_dir)
    train = read_source(data_config.train, seed, base_dir, "train")
    natural = train.labels is not None
    encoding = label_encoding(data_config.train.labels if hasattr(data_config.train, "labels") else "auto", loss, train.n_classes, natural, has_one_hot)
    y, n_classes, class_names = encode_targets(train, encoding, None, getattr(data_config.train, "class_names", None))
    input_width = int(np.prod(train.x.shape[1:], dtype=np.int64)) if train.layout is None else len(train.layout)
    encoder = None
    if train.needs_encoding:
        from trainctl.data.tabular import TabularEncoder

        n_fit = len(train.x)
        if data_config.validation_split > 0:
            n_fit = int(np.floor(len(train.x) * (1.0 - data_config.validation_split)))
        fit_text = None if train.text is None else [t[:n_fit] for t in train.text]
        encoder = TabularEncoder.fit(train.layout, train.specs, [(train.x[:n_fit], fit_text)], train.description)
        train.x = encoder.transform(train.x, train.text, train.description)
    x, w = train.x, train.sample_weight
    x_val = y_val = w_val = None
    val_description = None
    if data_config.validation_split > 0:
        n_train = int(np.floor(len(x) * (1.0 - data_config.validation_split)))  # as source.split_validation
        n_val = len(x) - n_train
        if n_val == 0 or n_train == 0:
            raise DataError(f"{train.description}: validation_split {data_config.validation_split} of {len(x)} samples leaves an empty split")
        # TF.js/Keras take the *last* fraction, before any shuffling.
        x, x_val = x[:n_train], x[n_train:]
        if y is not None:
            y, y_val = y[:n_train], y[n_train:]
        if w is not None:
            w, w_val = w[:n_train], w[n_train:]
        val_description = f"last {n_val} samples of {train.description}"
    elif data_config.validation is not None:
        if isinstance(data_config.validation, StreamSource):
            raise DataError("a validation stream needs a training stream; give validation as an in-memory source")
        val = read_source(data_config.validation, seed, base_dir, "validation", class_names)
        if encoder is not None:
            _check_width(val, input_width, train.feature_names)
            val.x = encoder.transform(val.x, val.text, val.description)
        y_val, _, _ = encode_targets(val, encoding, n_classes, class_names)
        x_val, w_val, val_description = val.x, val.sample_weight, val.description
        if tuple(x_val.shape[1:]) != tuple(x.shape[1:]):
            raise DataError(f"{val.description}: validation samples have shape {list(x_val.shape[1:])}, training samples {list(x.shape[1:])}")
    state = fit_preprocessing(steps, x, y, n_classes)
    state.tabular, state.input_width = encoder, input_width
    target_steps = list(data_config.target_preprocessing)
    if target_steps:
        if encoding != "none" or y is None:
            raise DataError(f"{train.description}: target_preprocessing scales regression targets; these targets are class labels")
        from trainctl.data.preprocessing import fit_target_preprocessing

        fit_target_preprocessing(state, target_steps, y, train.description)
    if steps or target_steps:
        x = apply_preprocessing(state, x)
        y = apply_target_preprocessing(state, y) if y is not None else None
        if x_val is not None:
            x_val = apply_preprocessing(state, x_val)
            y_val = apply_target_preprocessing(state, y_val) if y_val is not None else None
    if y_val is not None and y is not None and y_val.shape[1:] != y.shape[1:]:
        raise DataError(f"{val_description}: validation targets have shape {list(y_val.shape[1:])}, training targets {list(y.shape[1:])}")
    return LoadedData(
        augmentation=build_augmentation(steps, tuple(x.shape[1:]), seed),
        x=x, y=y, sample_weight=w, x_val=x_val, y_val=y_val, sample_weight_val=w_val,
        class_names=class_names if encoding != "none" else None, feature_names=train.feature_names,
        description=train.description, validation_description=val_description,
        label_encoding=encoding, preprocessing=state,
    )


def load_inputs(source: Any, seed: int, base_dir: Path, state: PreprocessingState) -> RawData:
    """x (and targets, when the source has them) for predict/evaluate, with the saved
    preprocessing applied to x; targets are left as read for the caller to encode."""
    if is_time_series(source):
        from trainctl.data.windows import window_inputs

        return window_inputs(source, base_dir, state)
    raw = read_source(source, seed, base_dir, "predict")
    if state.input_width is not None:
        _check_width(raw, state.input_width, state.tabular.input_names if state.tabular is not None else None)
    if state.tabular is not None:
        raw.x = state.tabular.transform(raw.x, raw.text, raw.description)
    elif raw.needs_encoding:
        raise DataError(f"{raw.description}: categorical columns or fills were given, but the run was trained without them")
    raw.x = apply_preprocessing(state, raw.x)
    return raw


def _check_width(raw: RawData, expected: int, names: list[str] | None) -> None:
    """The input has as many feature columns as the training data (checked before any
    preprocessing, so a wrong file is named instead of failing inside numpy)."""
    found = len(raw.layout) if raw.layout is not None else int(np.prod(raw.x.shape[1:], dtype=np.int64))
    if found != expected:
        listed = f" (trained on columns {', '.join(names)})" if names else ""
        shape = ",".join(map(str, raw.x.shape[1:])) if raw.layout is None else str(found)
        raise DataError(f"{raw.description}: inputs have shape [n,{shape}], the model expects [n,{expected}]{listed}")
