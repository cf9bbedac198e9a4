"""Time-series windows over a CSV whose rows are time steps (`csv: ..., window: 24`).

```yaml
data:
  train: {csv: data/electricity_load.csv, target: load_mw, window: 24, horizon: 1, stride: 1}
  validation_split: 0.2            # the series' last 20% of rows: windows never straddle the cut
  preprocessing: [standardize]     # per column of the series, fitted on the training rows
```

Window i starts at row i·stride and holds rows start, start + r, ..., start + (window-1)·r
(r = sampling_rate), as Keras timeseries_dataset_from_array; its targets are the `horizon`
rows after its last row, step-major: y[i, k·m + j] is target column j, k + 1 steps ahead.
The inputs are a strided view of the series ([n, window, features], `.base` is the series):
nothing per window is copied until a batch gathers its rows, so memory stays O(series).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.errors import ConfigValueError, DataError


def is_time_series(source: Any) -> bool:
    """A CSV source read as a time series (`window:` given)."""
    return getattr(source, "csv", None) is not None and source.window is not None


@dataclass(frozen=True)
class Windowing:
    window: int
    horizon: int = 1
    stride: int = 1
    sampling_rate: int = 1

    @classmethod
    def of(cls, source: Any) -> "Windowing":
        return cls(source.window, source.horizon, source.stride, source.sampling_rate)

    @property
    def span(self) -> int:
        """Rows from a window's first row to its last, inclusive."""
        return (self.window - 1) * self.sampling_rate + 1

    def rows_needed(self, with_targets: bool = True) -> int:
        return self.span + (self.horizon if with_targets else 0)

    def count(self, n_rows: int, with_targets: bool = True) -> int:
        """Windows that fit in `n_rows` rows (with their targets, unless `with_targets` is False)."""
        free = n_rows - self.rows_needed(with_targets)
        return 0 if free < 0 else free // self.stride + 1

    def starts(self, n: int) -> np.ndarray:
        return np.arange(n, dtype=np.int64) * self.stride

    def inputs(self, series: np.ndarray, n: int) -> np.ndarray:
        """A read-only view [n, window, features] of series [rows, features] (no copy)."""
        view = np.lib.stride_tricks.sliding_window_view(series, self.span, axis=0)  # [rows - span + 1, f, span]
        view = view[: (n - 1) * self.stride + 1 : self.stride, :, :: self.sampling_rate]
        return view.transpose(0, 2, 1)

    def targets(self, target_series: np.ndarray, n: int) -> np.ndarray:
        """float32 [n, horizon·m]: the `horizon` rows of target_series [rows, m] after each window."""
        rows = self.starts(n)[:, None] + self.span + np.arange(self.horizon)[None, :]
        return np.ascontiguousarray(target_series[rows].reshape(n, -1), dtype=np.float32)

    def last_values(self, target_series: np.ndarray, n: int) -> np.ndarray:
        """[n, m]: the target columns at each window's last row (the persistence forecast)."""
        return target_series[self.starts(n) + self.span - 1]


@dataclass
class Series:
    """One CSV read as a series: numeric features [rows, f], targets [rows, m] (or None)."""

    x: np.ndarray
    text: list[np.ndarray] | None
    targets: np.ndarray | None
    weights: np.ndarray | None
    table: Any
    shown: str

    def __len__(self) -> int:
        return len(self.x)


def _column_problem(source: Any, message: str, where: str) -> tuple[str, str]:
    """The config key that named the column a DataError is about (target, features.i, sample_weight)."""
    targets = source.target if isinstance(source.target, list) else ([] if source.target is None else [source.target])
    for i, column in enumerate(targets):
        if repr(column) in message or f"index {column} " in message:
            return (f"{where}.target" + (f".{i}" if isinstance(source.target, list) else ""), message)
    for i, column in enumerate(source.features or []):
        if repr(column) in message or f"index {column} " in message:
            return f"{where}.features.{i}", message
    if source.sample_weight is not None and repr(source.sample_weight) in message:
        return f"{where}.sample_weight", message
    return where, message


def read_series(source: Any, base_dir: Path, where: str | None) -> Series:
    """The CSV as a series. With `where` (the config path of the source), a column the file
    lacks or a target that is text is a ConfigValueError at the key that named it."""
    from trainctl.data import table_for
    from trainctl.data.readers import _check_finite, concat_chunks

    try:
        table = table_for(source, base_dir)
    except DataError as error:
        message = str(error)
        if where is not None and ("column" in message and ("unknown" in message or "out of range" in message)):
            raise ConfigValueError([_column_problem(source, message, where)]) from None
        raise
    if table.string_labels:
        problem = (f"{where}.target", f"{source.csv}: column {table.target_names[0]!r} holds text; "
                                      "a time-series target is numeric")
        if where is not None:
            raise ConfigValueError([problem])
        raise DataError(problem[1])
    chunk = concat_chunks(table.chunks(), source.csv)
    if chunk.targets is not None:
        names = table.target_names
        _check_finite(chunk.targets, source.csv,
                      lambda row, col: f": row {row + 1}, column {names[col]!r} (a target cell is never filled)")
    return Series(chunk.x, chunk.text, chunk.targets, chunk.weights, table, source.csv)


def _too_short(windowing: Windowing, n_rows: int, what: str) -> str:
    needs = f"window {windowing.window}" + (f" sampled every {windowing.sampling_rate} rows" if windowing.sampling_rate > 1 else "")
    return (f"{needs} and horizon {windowing.horizon} need {windowing.rows_needed()} rows, "
            f"but {what} has {n_rows}")


def _encoded(series: Series, encoder: Any) -> np.ndarray:
    if encoder is not None:
        return encoder.transform(series.x, series.text, series.shown)
    if series.table.needs_encoding:
        raise DataError(f"{series.shown}: categorical columns or fills were given, but the run was trained without them")
    return series.x


def load_windows(data_config: Any, seed: int, base_dir: Path) -> Any:
    """load_data for a time-series CSV: LoadedData whose x / x_val are window views."""
    from trainctl.data import LoadedData
    from trainctl.data.preprocessing import (apply_preprocessing, apply_target_preprocessing, fit_preprocessing,
                                             fit_target_preprocessing)

    source = data_config.train
    windowing = Windowing.of(source)
    for i, step in enumerate(data_config.preprocessing):
        if step.type not in ("standardize", "min_max", "rescale"):
            raise ConfigValueError([(f"data.preprocessing.{i}", f"preprocessing {step.type} does not apply to "
                                     "time-series windows: standardize, min_max and rescale act per column of the "
                                     "series (flatten or reshape in the model instead)")])
    validation = data_config.validation
    if validation is not None and not is_time_series(validation):
        raise ConfigValueError([("data.validation", "the training data is a time series (window:); give validation "
                                                    "as one too: {csv: ..., target: ..., window: ...}")])
    if validation is not None and Windowing.of(validation) != windowing:
        raise ConfigValueError([("data.validation.window", f"validation windows must be cut as training's: {windowing}")])
    series = read_series(source, Path(base_dir), "data.train")
    if series.targets is None:
        raise ConfigValueError([("data.train", f"{source.csv}: a time series to train on needs target: "
                                               "(the column to forecast)")])
    n_rows = len(series)
    cut = n_rows
    if data_config.validation_split > 0:
        cut = int(np.floor(n_rows * (1.0 - data_config.validation_split)))  # by time: the last rows validate
    n_train = windowing.count(cut)
    if n_train == 0:
        if cut == n_rows or windowing.count(n_rows) == 0:  # the whole series is too short
            raise ConfigValueError([("data.train.window", _too_short(windowing, n_rows, source.csv))])
        what = f"the training split of {source.csv} (its first {cut} rows)"
        raise ConfigValueError([("data.validation_split", _too_short(windowing, cut, what))])
    encoder = None
    if series.table.needs_encoding:
        from trainctl.data.tabular import TabularEncoder

        text = None if series.text is None else [t[:cut] for t in series.text]
        encoder = TabularEncoder.fit(series.table.layout, series.table.specs, [(series.x[:cut], text)], series.shown)
    values = _encoded(series, encoder)
    steps = list(data_config.preprocessing)
    state = fit_preprocessing(steps, values[:cut])  # per column, on the training rows only
    state.tabular, state.input_width = encoder, len(series.table.layout)
    if steps:
        values = apply_preprocessing(state, values)  # one new series, not one per window
    x = windowing.inputs(values[:cut], n_train)
    y = windowing.targets(series.targets[:cut], n_train)
    w = None if series.weights is None else np.ascontiguousarray(series.weights[windowing.starts(n_train) + windowing.span])
    raw_val = x_val = y_val = w_val = None
    val_description = None
    if cut < n_rows:
        n_val = windowing.count(n_rows - cut)
        if n_val == 0:
            raise ConfigValueError([("data.validation_split", _too_short(
                windowing, n_rows - cut, f"the validation split (the last {n_rows - cut} rows of {source.csv})"))])
        x_val = windowing.inputs(values[cut:], n_val)
        raw_val = (series.targets[cut:], n_val)
        val_description = f"last {n_rows - cut} rows of {source.csv} ({n_val} windows)"
        if series.weights is not None:
            w_val = np.ascontiguousarray(series.weights[cut:][windowing.starts(n_val) + windowing.span])
    elif data_config.validation is not None:
        other = read_series(data_config.validation, Path(base_dir), "data.validation")
        if other.targets is None:
            raise ConfigValueError([("data.validation", f"{other.shown}: validation needs the target column")])
        if other.x.shape[1] != series.x.shape[1]:
            raise DataError(f"{other.shown}: has {other.x.shape[1]} feature columns, training has {series.x.shape[1]}")
        n_val = windowing.count(len(other))
        if n_val == 0:
            raise ConfigValueError([("data.validation.window", _too_short(windowing, len(other), other.shown))])
        other_values = _encoded(other, encoder)
        x_val = windowing.inputs(apply_preprocessing(state, other_values) if steps else other_values, n_val)
        raw_val, val_description = (other.targets, n_val), other.shown
    if raw_val is not None:
        y_val = windowing.targets(*raw_val)
    target_steps = list(data_config.target_preprocessing)
    if target_steps:
        fit_target_preprocessing(state, target_steps, y, series.shown)
        y = apply_target_preprocessing(state, y)
        y_val = apply_target_preprocessing(state, y_val) if y_val is not None else None
    baseline = None
    if raw_val is not None:  # persistence: every step ahead forecast as the window's last value, in y's units
        forecast = np.tile(windowing.last_values(*raw_val), (1, windowing.horizon))
        forecast = apply_target_preprocessing(state, forecast) if target_steps else forecast
        baseline = float(np.mean(np.abs(forecast.astype(np.float64) - y_val.astype(np.float64))))
    return LoadedData(
        x=x, y=y, sample_weight=w, x_val=x_val, y_val=y_val, sample_weight_val=w_val,
        feature_names=series.table.feature_names, description=f"{source.csv} ({n_train} windows)",
        validation_description=val_description, label_encoding="none", preprocessing=state,
        forecast_baseline=baseline,
    )


def window_inputs(source: Any, base_dir: Path, state: Any) -> Any:
    """load_inputs for a time-series CSV (predict, evaluate): windows over the file's series
    with the run's fitted encoder and preprocessing. Without a target, every window the file
    holds is a forecast, the last one of the steps after the file's end."""
    from trainctl.data import RawData
    from trainctl.data.preprocessing import apply_preprocessing

    windowing = Windowing.of(source)
    series = read_series(source, Path(base_dir), None)
    values = _encoded(series, state.tabular)
    width = values.shape[1] if state.tabular is None else len(series.table.layout)
    if state.input_width is not None and width != state.input_width:
        raise DataError(f"{series.shown}: has {width} feature columns, the model was trained on {state.input_width}")
    with_targets = series.targets is not None
    n = windowing.count(len(series), with_targets)
    if n == 0:
        what = (_too_short(windowing, len(series), "the file") if with_targets
                else f"window {windowing.window} needs {windowing.span} rows, but the file has {len(series)}")
        raise DataError(f"{series.shown}: {what}")
    values = apply_preprocessing(state, values) if state.steps else values
    raw = RawData(x=windowing.inputs(values, n), feature_names=series.table.feature_names,
                  description=series.shown)
    if with_targets:
        raw.targets = windowing.targets(series.targets, n)
    return raw
