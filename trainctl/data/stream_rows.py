"""The stream's source stage: row sources yielding (x, raw y, weights) chunks.

Each format (data/formats.py) gives one: .npy files read by row ranges, CSV/shard tables
read front to back, zip re-cutting two sources into equal chunks, anything else read whole
and sliced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from trainctl.data.source_params import NpySource
from trainctl.errors import DataError

Rows = tuple[np.ndarray, "np.ndarray | None", "np.ndarray | None"]  # x [c, ...], raw y, weights


class NpyRows:
    """x / targets / weights .npy files read by row ranges with readinto, never mapped whole."""

    def __init__(self, source: NpySource, base_dir: Path):
        from trainctl.data.readers import NpyArray, resolve_path

        self.description = source.npy
        self.x = NpyArray(resolve_path(source.npy, base_dir), source.npy)
        self.y = NpyArray(resolve_path(source.targets, base_dir), source.targets) if source.targets else None
        self.w = NpyArray(resolve_path(source.sample_weight, base_dir), source.sample_weight) if source.sample_weight else None
        for other in (self.y, self.w):
            if other is not None and len(other) != len(self.x):
                raise DataError(f"{other.shown}: has {len(other)} rows but {source.npy} has {len(self.x)}")
        self.n_rows: int | None = len(self.x)
        self.string_labels = False
        self.feature_names = None

    def label_chunks(self, start: int, stop: int | None, chunk_rows: int) -> Iterator[np.ndarray | None]:
        """Only the targets (the class survey does not need x)."""
        stop = len(self.x) if stop is None else stop
        for a in range(start, stop, chunk_rows):
            yield None if self.y is None else self.y.read_rows(a, min(stop, a + chunk_rows))

    def chunks(self, start: int, stop: int | None, chunk_rows: int) -> Iterator[Rows]:
        from trainctl.data.readers import as_float32

        stop = len(self.x) if stop is None else stop
        buffers = [np.empty((min(chunk_rows, stop - start), *a.row_shape), a.dtype) if a is not None else None
                   for a in (self.x, self.y, self.w)]
        for a in range(start, stop, chunk_rows):
            b = min(stop, a + chunk_rows)
            parts = [as_float32(arr.read_rows(a, b, buf), arr.shown, a) if arr is not None else None
                     for arr, buf in zip((self.x, self.y, self.w), buffers)]
            x, y, w = parts
            if y is not None:
                y = y.reshape(len(y), -1)
            if w is not None:
                w = w.reshape(-1)
            yield x if x.ndim > 1 else x[:, None], y, w


class MemoryRows:
    """Any source read whole (generator, npz, zip): sliced into chunks."""

    def __init__(self, raw: Any):
        self.raw = raw
        self.description = raw.description
        self.n_rows: int | None = len(raw.x)
        self.string_labels = False
        self.feature_names = raw.feature_names

    def chunks(self, start: int, stop: int | None, chunk_rows: int) -> Iterator[Rows]:
        raw = self.raw
        stop = len(raw.x) if stop is None else stop
        y_all = raw.labels if raw.labels is not None else raw.targets
        for a in range(start, stop, chunk_rows):
            b = min(stop, a + chunk_rows)
            y = None if y_all is None else y_all[a:b]
            w = None if raw.sample_weight is None else raw.sample_weight[a:b]
            yield raw.x[a:b], y, w


class TableRows:
    """CSV files and shard directories: read front to back, length unknown until read."""

    def __init__(self, form: Any, base_dir: Path, chunk_rows: int):
        self.table = form.table(base_dir, chunk_rows)  # a formats._TableFormat
        self.description = form.shown()
        self.n_rows: int | None = None
        self.string_labels = self.table.string_labels
        self.feature_names = self.table.feature_names
        self.encoder = None  # the TabularEncoder (categorical columns, fills), fitted on one pass

    def fit_encoder(self) -> Any:
        from trainctl.data.tabular import TabularEncoder

        self.encoder = TabularEncoder.fit(self.table.layout, self.table.specs,
                                          ((c.x, c.text) for c in self.table.chunks()), self.description)
        return self.encoder

    def chunks(self, start: int, stop: int | None, chunk_rows: int) -> Iterator[Rows]:
        for chunk in self.table.chunks():
            y = chunk.labels if chunk.labels is not None else chunk.targets
            x = chunk.x if self.encoder is None else self.encoder.transform(chunk.x, chunk.text, self.description)
            yield x, y, chunk.weights


class ZipRows:
    """x from one row source and y from another, re-cut into chunks of equal rows."""

    def __init__(self, xs, ys):
        self.xs, self.ys = xs, ys
        self.description = f"zip({xs.description}, {ys.description})"
        if xs.n_rows is not None and ys.n_rows is not None and xs.n_rows != ys.n_rows:
            raise DataError(f"{ys.description}: has {ys.n_rows} rows but {xs.description} has {xs.n_rows}")
        self.n_rows = xs.n_rows if xs.n_rows is not None else ys.n_rows
        self.string_labels = False
        self.feature_names = xs.feature_names

    def chunks(self, start: int, stop: int | None, chunk_rows: int) -> Iterator[Rows]:
        x_parts = _recut((c[0] for c in self.xs.chunks(start, stop, chunk_rows)), chunk_rows)
        y_parts = _recut((c[0] for c in self.ys.chunks(start, stop, chunk_rows)), chunk_rows)
        for x in x_parts:
            y = next(y_parts, None)
            if y is None or len(y) != len(x):
                raise DataError(f"{self.description}: the two sides have different numbers of rows")
            yield x, y.reshape(len(y), -1), None
        if next(y_parts, None) is not None:
            raise DataError(f"{self.description}: the two sides have different numbers of rows")


def _recut(arrays: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    pending: list[np.ndarray] = []
    held = 0
    for a in arrays:
        pending.append(a)
        held += len(a)
        while held >= size:
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield joined[:size]
            rest = joined[size:]
            pending, held = ([rest] if len(rest) else []), len(rest)
    if held:
        yield np.concatenate(pending) if len(pending) > 1 else pending[0]


def row_source(source: Any, seed: int, base_dir: Path, split: str, chunk_rows: int):
    """The row source of a source config, through its format (data/formats.py)."""
    from trainctl.data.formats import format_of

    return format_of(source).rows(seed, Path(base_dir), split, chunk_rows)


