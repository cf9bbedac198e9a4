"""Data-source formats: one class per config form (`generator:`, `csv:`, `npy:`, `npz:`,
`shards:`, `zip:`, `stream:`), looked up by that key in the FORMATS registry.

A format declares its config key, its options model (`Params`) and how it is read: whole
into memory (`read` → RawData), as chunks of rows for a stream (`rows`), and what it will
hold before anything is read (`plan`, for validate and the memory estimate). The config's
dispatch, read_source, the stream and the plan all go through `format_of(params)`: adding
a reader is one class here (its table reader beside it in its own module).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from trainctl.errors import DataError
from trainctl.registry import Registry

FORMATS: Registry[type["Format"]] = Registry("data source")
FORM_ORDER: list[str] = []  # registration order: how messages list the forms


def register(cls: type["Format"]) -> type["Format"]:
    FORMATS.register(cls.key)(cls)
    FORM_ORDER.append(cls.key)
    return cls


class Format:
    """The contract of a data-source form. `params` is the validated options model."""

    key: ClassVar[str]  # the config key naming the form (`csv`), also its registry id
    in_memory: ClassVar[bool] = True  # can be read whole (FileOrGenerator); False: only as data.train / validation

    def __init__(self, params: Any):
        self.params = params

    @classmethod
    def params_model(cls, value: dict) -> type:
        """The options model validating a mapping of this form."""
        raise NotImplementedError

    def shown(self) -> str:
        """How messages name the source (its path as written)."""
        return str(getattr(self.params, self.key))

    def read(self, seed: int, base_dir: Path, split: str, class_names: list[str] | None = None) -> Any:
        """The whole source as RawData (x, targets or labels, weights)."""
        raise DataError(f"{type(self.params).__name__} cannot be read into memory")

    def rows(self, seed: int, base_dir: Path, split: str, chunk_rows: int) -> Any:
        """A row source for the stream (data/stream_rows.py); by default the source read whole."""
        from trainctl.data.stream_rows import MemoryRows

        return MemoryRows(self.read(seed, base_dir, split))

    def plan(self, base_dir: Path, batch_size: int) -> Any:
        """A SourcePlan (data/plan.py) from the options and file headers alone."""
        raise NotImplementedError


def format_of(params: Any) -> Format:
    """The format of a validated source model (the form whose key is one of its fields)."""
    fields = type(params).model_fields
    for key in FORM_ORDER:
        if key in fields:
            return FORMATS.get(key)(params)
    raise DataError(f"{type(params).__name__}: not a data source")  # pragma: no cover


# ---------------------------------------------------------------- the built-in forms


@register
class GeneratorFormat(Format):
    key = "generator"

    @classmethod
    def params_model(cls, value: dict) -> type:
        from trainctl.config.base import spec_id
        from trainctl.data.generators import GENERATORS

        return GENERATORS.get(spec_id(GENERATORS, value, key="generator")[0]).Params

    def shown(self) -> str:
        return f"generator {self.params.generator}"

    def read(self, seed, base_dir, split, class_names=None):
        from trainctl.data import RawData
        from trainctl.data.generators import generate

        x, y, n_classes = generate(self.params, seed, split)
        if n_classes is None:
            return RawData(x=x, targets=y, description=self.shown())
        names = class_names or [str(i) for i in range(n_classes)]
        return RawData(x=x, labels=y, n_classes=n_classes, class_names=names, description=self.shown())

    def plan(self, base_dir, batch_size):
        from trainctl.data.plan import generator_plan

        return generator_plan(self.params)


class _TableFormat(Format):
    """CSV files and shard directories: columns chosen by name or index, read in chunks."""

    def table(self, base_dir: Path, chunk_rows: int = 65536):
        raise NotImplementedError

    def read(self, seed, base_dir, split, class_names=None):
        from trainctl.data import RawData
        from trainctl.data.labels import index_labels
        from trainctl.data.readers import concat_chunks

        if getattr(self.params, "window", None) is not None:
            raise DataError(f"{self.shown()}: a time-series CSV (window:) is read as data.train or data.validation only")
        table = self.table(Path(base_dir))
        chunk = concat_chunks(table.chunks(), self.shown())
        raw = RawData(
            x=chunk.x, targets=chunk.targets, sample_weight=chunk.weights,
            feature_names=table.feature_names, description=self.shown(),
            text=chunk.text, layout=table.layout, specs=table.specs, needs_encoding=table.needs_encoding,
        )
        if chunk.labels is not None:
            raw.labels, raw.class_names = index_labels(chunk.labels, self.params.class_names or class_names, raw.description)
            raw.n_classes, raw.targets = len(raw.class_names), None
        return raw

    def rows(self, seed, base_dir, split, chunk_rows):
        from trainctl.data.stream_rows import TableRows

        return TableRows(self, Path(base_dir), chunk_rows)

    def plan(self, base_dir, batch_size):
        from trainctl.data.plan import table_plan

        return table_plan(self, Path(base_dir))

    def _options(self) -> dict:
        p = self.params
        return dict(encoding=p.encoding, columns=p.columns, fill=p.fill, missing_values=p.missing_values)


@register
class CsvFormat(_TableFormat):
    key = "csv"

    @classmethod
    def params_model(cls, value):
        from trainctl.data.source_params import CsvSource

        return CsvSource

    def table(self, base_dir, chunk_rows=65536):
        from trainctl.data.readers import CsvTable, resolve_path

        p = self.params
        return CsvTable(resolve_path(p.csv, base_dir), p.csv, p.target, p.features, p.sample_weight, p.delimiter,
                        p.header, window=p.window, **self._options())


@register
class NpyFormat(Format):
    key = "npy"

    @classmethod
    def params_model(cls, value):
        from trainctl.data.source_params import NpySource

        return NpySource

    def read(self, seed, base_dir, split, class_names=None):
        from trainctl.data import RawData
        from trainctl.data.arrays import float_rows, same_rows, target_array, weights
        from trainctl.data.readers import NpyArray, resolve_path

        p = self.params
        x = float_rows(NpyArray(resolve_path(p.npy, base_dir), p.npy).mmap(), p.npy)
        raw = RawData(x=x, description=p.npy)
        if p.targets:
            y = NpyArray(resolve_path(p.targets, base_dir), p.targets)
            same_rows(len(y), len(x), p.targets, p.npy)
            raw.targets = target_array(np.asarray(y.mmap()), p.targets)
        if p.sample_weight:
            w = NpyArray(resolve_path(p.sample_weight, base_dir), p.sample_weight)
            same_rows(len(w), len(x), p.sample_weight, p.npy)
            raw.sample_weight = weights(np.asarray(w.mmap()), p.sample_weight)
        return raw

    def rows(self, seed, base_dir, split, chunk_rows):
        from trainctl.data.stream_rows import NpyRows

        return NpyRows(self.params, Path(base_dir))

    def plan(self, base_dir, batch_size):
        from trainctl.data.plan import npy_plan

        return npy_plan(self.params, Path(base_dir))


@register
class NpzFormat(Format):
    key = "npz"

    @classmethod
    def params_model(cls, value):
        from trainctl.data.source_params import NpzSource

        return NpzSource

    def read(self, seed, base_dir, split, class_names=None):
        from trainctl.data import RawData
        from trainctl.data.arrays import same_rows, target_array, weights
        from trainctl.data.readers import as_float32, load_npz, resolve_path

        p = self.params
        path = resolve_path(p.npz, base_dir)
        x = load_npz(path, p.npz, p.x_key)
        if x.ndim == 0 or len(x) == 0:
            raise DataError(f"{p.npz}: array {p.x_key!r} has no rows")
        if x.ndim == 1:
            x = x[:, None]
        raw = RawData(x=as_float32(x, f"{p.npz}[{p.x_key}]"), description=p.npz)
        if p.y_key:
            y = load_npz(path, p.npz, p.y_key)
            same_rows(len(y), len(x), f"{p.npz}[{p.y_key}]", f"{p.npz}[{p.x_key}]")
            raw.targets = target_array(y, f"{p.npz}[{p.y_key}]")
        if p.sample_weight_key:
            w = load_npz(path, p.npz, p.sample_weight_key)
            same_rows(len(w), len(x), f"{p.npz}[{p.sample_weight_key}]", f"{p.npz}[{p.x_key}]")
            raw.sample_weight = weights(w, f"{p.npz}[{p.sample_weight_key}]")
        return raw

    def plan(self, base_dir, batch_size):
        from trainctl.data.plan import npz_plan

        return npz_plan(self.params, Path(base_dir))


@register
class ShardsFormat(_TableFormat):
    key = "shards"

    @classmethod
    def params_model(cls, value):
        from trainctl.data.source_params import ShardsSource

        return ShardsSource

    def table(self, base_dir, chunk_rows=65536):
        from trainctl.data.readers import resolve_path
        from trainctl.data.shards import ShardTable

        p = self.params
        return ShardTable(resolve_path(p.shards, base_dir), p.shards, p.pattern, p.target, p.features, p.sample_weight,
                          p.delimiter, chunk_rows, **self._options())


@register
class ZipFormat(Format):
    key = "zip"

    @classmethod
    def params_model(cls, value):
        from trainctl.data.config import ZipSource

        return ZipSource

    def shown(self) -> str:
        return "zip source"

    def read(self, seed, base_dir, split, class_names=None):
        from trainctl.data import RawData
        from trainctl.data.arrays import same_rows

        xs = format_of(self.params.zip.x).read(seed, base_dir, split)
        ys = format_of(self.params.zip.y).read(seed, base_dir, split)
        same_rows(len(ys.x), len(xs.x), ys.description, xs.description)
        return RawData(x=xs.x, targets=np.ascontiguousarray(ys.x.reshape(len(ys.x), -1)), feature_names=xs.feature_names,
                       description=f"zip({xs.description}, {ys.description})")

    def rows(self, seed, base_dir, split, chunk_rows):
        from trainctl.data.stream_rows import ZipRows

        parts = self.params.zip
        return ZipRows(format_of(parts.x).rows(seed, base_dir, split, chunk_rows),
                       format_of(parts.y).rows(seed, base_dir, split, chunk_rows))

    def plan(self, base_dir, batch_size):
        from trainctl.data.plan import zip_plan

        return zip_plan(self.params, Path(base_dir))


@register
class StreamFormat(Format):
    key = "stream"
    in_memory = False

    @classmethod
    def params_model(cls, value):
        from trainctl.data.config import StreamSource

        return StreamSource

    def shown(self) -> str:
        return "stream of " + format_of(self.params.stream.source).shown()

    def plan(self, base_dir, batch_size):
        from trainctl.data.plan import stream_plan

        return stream_plan(self.params, Path(base_dir), batch_size)
