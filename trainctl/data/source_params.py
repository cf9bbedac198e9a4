"""The options of the file sources: CSV (tabular or a time series), .npy, .npz, shard directories."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import field_validator, model_validator

from trainctl.config.base import FiniteFloat, PositiveInt, StrictModel
from trainctl.data.params import Column, LabelMode

# ---------------------------------------------------------------- files


class _Labelled(StrictModel):
    labels: LabelMode = "auto"
    class_names: list[str] | None = None  # fixes the class order (and is needed to stream string labels)


FillStrategy = Literal["mean", "median", "constant", "most_frequent"]


class ColumnSpec(StrictModel):
    """How one feature column becomes model inputs (fitted on the training split).

    `neighborhood: categorical` is short for `neighborhood: {type: categorical}`."""

    type: Literal["numeric", "categorical"] = "numeric"
    encoding: Literal["one_hot", "index"] = "one_hot"  # categorical: one-hot columns, or one index column for an embedding
    fill: FillStrategy | None = None  # missing cells: None is an error naming the row
    value: Union[FiniteFloat, str, None] = None  # the constant for fill: constant

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"type": data}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "ColumnSpec":
        if self.fill == "constant" and self.value is None:
            raise ValueError("fill: constant needs a value")
        if self.fill != "constant" and self.value is not None:
            raise ValueError("value is only used with fill: constant")
        if self.type == "categorical" and self.fill in ("mean", "median"):
            raise ValueError(f"fill: {self.fill} needs a numeric column; use most_frequent or constant for a categorical one")
        if self.type == "numeric" and self.fill == "constant" and isinstance(self.value, str):
            raise ValueError("a numeric column's fill value must be a number")
        if self.type == "numeric" and self.encoding != "one_hot":
            raise ValueError("encoding applies to categorical columns")
        return self


class _Table(_Labelled):
    """Column selection shared by CSV files and shard directories."""

    target: Union[Column, list[Column], None] = None  # None: no targets (predict inputs)
    features: list[Column] | None = None  # None: every column that is not a target or weight
    sample_weight: Column | None = None  # a column of per-sample weights
    columns: dict[str, ColumnSpec] = {}  # per-feature treatment by header name: categorical, fill
    fill: FillStrategy | None = None  # default fill for every numeric feature column not in `columns`
    missing_values: list[str] = ["", "NA", "N/A", "null"]  # cells read as missing (a literal nan stays NaN)
    encoding: str = "utf-8"  # the file's text encoding (latin-1, utf-16, ...)

    @field_validator("fill")
    @classmethod
    def _no_constant(cls, value):
        if value in ("constant", "most_frequent"):
            raise ValueError(f"fill: {value} is per column: columns: {{name: {{fill: {value}, ...}}}}")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r}") from None
        return value


# Keras timeseries_dataset_from_array names → ours (the window/stride are canonical)
_KERAS_WINDOW_NAMES = {"sequence_length": "window", "sequenceLength": "window",
                       "sequence_stride": "stride", "sequenceStride": "stride"}


class CsvSource(_Table):
    """A CSV file: one sample per row, or with `window` a time series (rows are time steps).

    Time-series mode cuts windows from the series as Keras timeseries_dataset_from_array
    does: window i starts at row i·stride and holds `window` rows sampled every
    `sampling_rate` rows; its targets are the `horizon` rows after its last row (y is
    [n, horizon·targets]). Windows are views of the series, never copies; validation_split
    cuts the series by time, so no window straddles the two splits. `features` defaults to
    every numeric column (the target too: its past is an input); `sequence_length` and
    `sequence_stride` (Keras's names) are accepted for window and stride."""

    csv: str
    delimiter: str = ","
    header: bool = True  # first line names the columns
    window: PositiveInt | None = None  # time steps per input sequence (Keras sequence_length); None: rows are samples
    horizon: PositiveInt = 1  # steps predicted after the window (1: the next step)
    stride: PositiveInt = 1  # steps between window starts (Keras sequence_stride)
    sampling_rate: PositiveInt = 1  # steps between the rows of one window (Keras sampling_rate)

    @model_validator(mode="before")
    @classmethod
    def _keras_names(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(k in data for k in _KERAS_WINDOW_NAMES):
            data = dict(data)
            for keras, ours in _KERAS_WINDOW_NAMES.items():
                if keras in data:
                    if ours in data:
                        raise ValueError(f"give {ours} or {keras}, not both")
                    data[ours] = data.pop(keras)
        return data

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, value: str) -> str:
        if len(value) != 1:
            raise ValueError("delimiter must be a single character")
        return value

    @model_validator(mode="after")
    def _time_series_options(self) -> "CsvSource":
        if self.window is None:
            given = [k for k in ("horizon", "stride", "sampling_rate") if getattr(self, k) != 1]
            if given:
                raise ValueError(f"{given[0]} applies to a time series: set window (time steps per input sequence)")
        elif self.labels not in ("auto", "none"):
            raise ValueError(f"labels: {self.labels} does not apply to a time series (its targets are numbers)")
        return self

    @property
    def windowed(self) -> bool:
        return self.window is not None


class NpySource(_Labelled):
    npy: str  # x, any shape [n, ...]; memory-mapped
    targets: str | None = None  # y, [n] class indices or [n, ...] values
    sample_weight: str | None = None  # [n]


class NpzSource(_Labelled):
    npz: str
    x_key: str = "x"
    y_key: str | None = "y"
    sample_weight_key: str | None = None


class ShardsSource(_Table):
    """A directory of .csv files (each with the same header) or of 2-D .npy tables, read in
    name order; columns are chosen as for CSV (names for .csv, indices for .npy)."""

    shards: str
    pattern: str | None = None  # glob inside the directory; default *.csv, else *.npy
    delimiter: str = ","
