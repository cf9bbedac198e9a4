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
    """Read one in-memory source config (generator, csv, npy, npz, shards, zip) whole.

    `class_names` (from the training split) fixes the mapping of string labels."""
    from trainctl.data import readers

    base_dir = Path(base_dir)
    if hasattr(source, "generator"):
        from trainctl.data.generators import generate

        x, y, n_classes = generate(source, seed, split)
        if n_classes is None:
            return RawData(x=x, targets=y, description=f"generator {source.generator}")
        names = class_names or [str(i) for i in range(n_classes)]
        return RawData(x=x, labels=y, n_classes=n_classes, class_names=names, description=f"generator {source.generator}")
    if isinstance(source, (CsvSource, ShardsSource)):
        if getattr(source, "window", None) is not None:
            raise DataError(f"{source.csv}: a time-series CSV (window:) is read as data.train or data.validation only")
        table = table_for(source, base_dir)
        chunk = readers.concat_chunks(table.chunks(), table_shown(source))
        raw = RawData(
            x=chunk.x, targets=chunk.targets, sample_weight=chunk.weights,
            feature_names=table.feature_names, description=table_shown(source),
            text=chunk.text, layout=table.layout, specs=table.specs, needs_encoding=table.needs_encoding,
        )
        if chunk.labels is not None:
            raw.labels, raw.class_names = _index_labels(chunk.labels, source.class_names or class_names, raw.description)
            raw.n_classes, raw.targets = len(raw.class_names), None
        return raw
    if isinstance(source, NpySource):
        array = readers.NpyArray(readers.resolve_path(source.npy, base_dir), source.npy)
        x = _float_rows(array.mmap(), source.npy)
        raw = RawData(x=x, description=source.npy)
        if source.targets:
            y = readers.NpyArray(readers.resolve_path(source.targets, base_dir), source.targets)
            _same_rows(len(y), len(x), source.targets, source.npy)
            raw.targets = _target_array(np.asarray(y.mmap()), source.targets)
        if source.sample_weight:
            w = readers.NpyArray(readers.resolve_path(source.sample_weight, base_dir), source.sample_weight)
            _same_rows(len(w), len(x), source.sample_weight, source.npy)
            raw.sample_weight = _weights(np.asarray(w.mmap()), source.sample_weight)
        return raw
    if isinstance(source, NpzSource):
        path = readers.resolve_path(source.npz, base_dir)
        x = readers.load_npz(path, source.npz, source.x_key)
        if x.ndim == 0 or len(x) == 0:
            raise DataError(f"{source.npz}: array {source.x_key!r} has no rows")
        if x.ndim == 1:
            x = x[:, None]
        raw = RawData(x=readers.as_float32(x, f"{source.npz}[{source.x_key}]"), description=source.npz)
        if source.y_key:
            y = readers.load_npz(path, source.npz, source.y_key)
            _same_rows(len(y), len(x), f"{source.npz}[{source.y_key}]", f"{source.npz}[{source.x_key}]")
            raw.targets = _target_array(y, f"{source.npz}[{source.y_key}]")
        if source.sample_weight_key:
            w = readers.load_npz(path, source.npz, source.sample_weight_key)
            _same_rows(len(w), len(x), f"{source.npz}[{source.sample_weight_key}]", f"{source.npz}[{source.x_key}]")
            raw.sample_weight = _weights(w, f"{source.npz}[{source.sample_weight_key}]")
        return raw
    if isinstance(source, ZipSource):
        xs = read_source(source.zip.x, seed, base_dir, split)
        ys = read_source(source.zip.y, seed, base_dir, split)
        _same_rows(len(ys.x), len(xs.x), ys.description, xs.description)
        return RawData(x=xs.x, targets=np.ascontiguousarray(ys.x.reshape(len(ys.x), -1)), feature_names=xs.feature_names,
                       description=f"zip({xs.description}, {ys.description})")
    raise DataError(f"{type(source).__name__} cannot be read into memory")  # pragma: no cover


def table_for(source: CsvSource | ShardsSource, base_dir: Path, chunk_rows: int = 65536):
    from trainctl.data import readers

    path = readers.resolve_path(source.csv if isinstance(source, CsvSource) else source.shards, base_dir)
    options = dict(encoding=source.encoding, columns=source.columns, fill=source.fill, missing_values=source.missing_values)
    if isinstance(source, CsvSource):
        return readers.CsvTable(path, source.csv, source.target, source.features, source.sample_weight, source.delimiter,
                                source.header, window=source.window, **options)
    return readers.ShardTable(path, source.shards, source.pattern, source.target, source.features, source.sample_weight,
                              source.delimiter, chunk_rows, **options)


def table_shown(source: CsvSource | ShardsSource) -> str:
    return source.csv if isinstance(source, CsvSource) else source.shards


def _float_rows(x: np.ndarray, shown: str) -> np.ndarray:
    """float32 rows; a float32 memory map is kept as it is (checked finite block by block)."""
    if x.ndim == 1:
        x = x[:, None]
    if x.dtype == np.float32 and x.flags.c_contiguous:
        from trainctl.data.readers import _check_finite

        for start in range(0, len(x), 65536):
            _check_finite(x[start : start + 65536], shown, lambda row, col, s=start: f": row {s + row + 1}")
        return x
    from trainctl.data.readers import as_float32

    return as_float32(x, shown)


def _target_array(y: np.ndarray, shown: str) -> np.ndarray:
    if y.dtype.kind not in "biuf":
        raise DataError(f"{shown}: targets must be numeric, got dtype {y.dtype}")
    y = np.asarray(y)
    return _float_rows(y.reshape(len(y), -1) if y.ndim != 1 else y[:, None], shown)


def _weights(w: np.ndarray, shown: str) -> np.ndarray:
    from trainctl.data.readers import as_float32

    w = as_float32(np.asarray(w).reshape(len(w), -1), shown)
    if w.shape[1] != 1:
        raise DataError(f"{shown}: sample weights must be one number per sample, got shape {list(w.shape)}")
    if (w < 0).any():
        raise DataError(f"{shown}: row {int(np.flatnonzero(w[:, 0] < 0)[0]) + 1}: sample weight is negative")
    return np.ascontiguousarray(w[:, 0])


def _same_rows(n_other: int, n_x: int, other: str, x_name: str) -> None:
    if n_other != n_x:
        raise DataError(f"{other}: has {n_other} rows but {x_name} has {n_x}")


def _index_labels(labels: np.ndarray, class_names: list[str] | None, shown: str) -> tuple[np.ndarray, list[str]]:
    """String labels [n] → int64 indices [n] and the class names (sorted, unless given)."""
    unique, inverse = np.unique(labels, return_inverse=True)
    if class_names is None:
        return inverse.astype(np.int64), [str(u) for u in unique]
    lookup = {name: i for i, name in enumerate(class_names)}
    missing = [str(u) for u in unique if str(u) not in lookup]
    if missing:
        row = int(np.flatnonzero(labels == missing[0])[0]) + 1
        raise DataError(f"{shown}: row {row}: class {missing[0]!r} is not one of the classes {class_names}")
    mapping = np.array([lookup[str(u)] for u in unique], dtype=np.int64)
    return mapping[inverse], list(class_names)


# ---------------------------------------------------------------- labels


def label_encoding(labels_option: str, loss: str | None, n_classes: int | None, natural_classes: bool, has_one_hot_step: bool) -> str:
    """How class labels become y: one_hot | sparse | binary | none (raw numeric targets)."""
    loss_encoding = _loss_label_encoding(loss)
    if labels_option == "none":
        return "none"
    if has_one_hot_step:
        return "sparse"  # the one_hot step expands the index column
    if labels_option != "auto":
        return labels_option
    if not natural_classes and loss_encoding not in ("sparse", "one_hot"):
        return "none"
    if loss_encoding in ("sparse", "one_hot"):
        return loss_encoding
    return "binary" if n_classes == 2 else "one_hot"


def _loss_label_encoding(loss: Any) -> str | None:
    """The label encoding the loss declares (Loss.label_encoding); None for an unknown id."""
    from trainctl.nn.losses import LOSSES

    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES.get(loss).label_encoding
    return getattr(loss, "label_encoding", None)


def _classes_from_numeric(targets: np.ndarray, class_names: list[str] | None, shown: str) -> tuple[np.ndarray, int, list[str]]:
    if targets.shape[1] != 1:
        raise DataError(f"{shown}: class labels need one target column, got {targets.shape[1]}")
    values = np.asarray(targets[:, 0])
    as_int = values.astype(np.int64)
    bad = np.flatnonzero((as_int != values) | (as_int < 0))
    if bad.size:
        raise DataError(f"{shown}: row {int(bad[0]) + 1}: target {values[bad[0]]:g} is not a class index (a whole number ≥ 0)")
    n_classes = len(class_names) if class_names else int(as_int.max()) + 1
    if as_int.max() >= n_classes:
        row = int(np.flatnonzero(as_int >= n_classes)[0]) + 1
        raise DataError(f"{shown}: row {row}: class index {as_int[row - 1]} out of range for {n_classes} classes")
    return as_int, n_classes, class_names or [str(i) for i in range(n_classes)]


def encode_targets(raw: RawData, encoding: str, n_classes: int | None, class_names: list[str] | None) -> tuple[np.ndarray | None, int | None, list[str] | None]:
    """(y float32, n_classes, class_names) for `raw` under `encoding`."""
    if raw.labels is None and raw.targets is None:
        return None, None, None
    if encoding == "none":
        if raw.labels is not None:
            if raw.targets is None and raw.class_names and not all(c.isdigit() for c in raw.class_names):
                raise DataError(f"{raw.description}: text class labels cannot be used as numeric targets (labels: none)")
            return raw.labels.astype(np.float32)[:, None], raw.n_classes, raw.class_names
        return raw.targets, None, None
    if raw.labels is None and encoding == "one_hot" and raw.targets.ndim == 2 and raw.targets.shape[1] > 1:
        # already one-hot (the usual TF.js form): keep it; the model check compares widths
        width = raw.targets.shape[1]
        return raw.targets.astype(np.float32, copy=False), width, class_names or [str(i) for i in range(width)]
    if raw.labels is not None:
        indices, k, names = raw.labels, n_classes or raw.n_classes, class_names or raw.class_names
        if k is not None and indices.size and indices.max() >= k:
            raise DataError(f"{raw.description}: class index {int(indices.max())} out of range for {k} classes")
    else:
        indices, k, names = _classes_from_numeric(raw.targets, class_names, raw.description)
        k = n_classes or k
    if encoding == "one_hot":
        return one_hot(indices, k, raw.description), k, names
    if encoding == "binary" and k != 2:
        raise DataError(f"{raw.description}: labels: binary needs 2 classes, found {k}")
    return indices.astype(np.float32)[:, None], k, names


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

    if getattr(data_config.train, "window", None) is not None:
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
    if getattr(source, "window", None) is not None:
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
