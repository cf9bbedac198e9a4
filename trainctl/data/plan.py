"""What a data section will hold, from the config and file headers alone (nothing is read
whole, nothing allocated): the shape of one input row and the bytes loading it takes.

`validate` uses the row shape to catch an `input_shape` that does not match the data; the
memory estimate before training (trainctl.runs.budget) uses the bytes, with the config key
that drives them (`data.train.n_samples`, `data.train.csv`, ...).
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.data.generator_params import (
    BlobsGenerator,
    LinearGenerator,
    RandomNormalGenerator,
    RandomUniformGenerator,
    TeacherGenerator,
)
from trainctl.errors import DataError


@dataclass
class SourcePlan:
    x_shape: tuple[int, ...] | None  # one input row; None when it cannot be told without reading
    nbytes: int  # peak bytes of reading it into memory (or of the stream's buffers)
    drivers: list[tuple[str, int]] = field(default_factory=list)  # (key under the source, size it adds)
    rows: int | None = None
    y_width: int = 1  # floats per target row (before one-hot encoding)
    n_classes: int | None = None


def _driver(plan_drivers: list[tuple[str, int]]) -> str | None:
    return max(plan_drivers, key=lambda item: item[1])[0] if plan_drivers else None


def generator_plan(cfg: Any) -> SourcePlan:
    n = cfg.n_samples
    gen64, kept32 = 8, 4  # generators draw float64, then keep a float32 copy
    per_value = gen64 * 2 + kept32  # the draw, one temporary of the same size, the copy
    if isinstance(cfg, (RandomNormalGenerator, RandomUniformGenerator)):
        x_values, y_values = math.prod(cfg.shape), math.prod(cfg.target_shape)
        plan = SourcePlan((*cfg.shape,), n * (x_values + y_values) * per_value, rows=n, y_width=y_values)
        plan.drivers = [("n_samples", n), ("shape", x_values), ("target_shape", y_values)]
        return plan
    if isinstance(cfg, LinearGenerator):
        width = len(cfg.true_w) if isinstance(cfg.true_w, list) else 1
        return SourcePlan((width,), n * (width + 1) * per_value, [("n_samples", n)], rows=n)
    if isinstance(cfg, TeacherGenerator):
        nf, hidden, nc = cfg.n_features, cfg.hidden, cfg.n_classes
        step = min(n, max(1, 4_000_000 // nf))  # the generator's block of rows
        truth = (nf * hidden + hidden * nc + 2048 * nf + 2048 * hidden + 2048 * nc) * gen64
        blocks = step * (nf * kept32 + (hidden + nc) * gen64 * 2)
        nbytes = n * nf * kept32 + n * 8 + truth + blocks
        # each key's share: the terms it multiplies into
        drivers = [("n_samples", n * (nf + nc)), ("n_features", nf * (n + hidden + 2048)),
                   ("hidden", hidden * (nf + nc + 2048)), ("n_classes", nc * (hidden + n + 2048))]
        return SourcePlan((nf,), nbytes, drivers, rows=n, n_classes=nc)
    if isinstance(cfg, BlobsGenerator):
        nf, nc = cfg.n_features, cfg.n_classes
        nbytes = nc * nf * gen64 + n * nf * per_value + n * 8
        drivers = [("n_samples", n * (nf + nc)), ("n_features", nf * (n + nc)), ("n_classes", nc * (n + nf))]
        return SourcePlan((nf,), nbytes, drivers, rows=n, n_classes=nc)
    if cfg.generator == "time_series":  # windows cut from one series of n + window + horizon steps
        window, horizon = cfg.window, cfg.horizon
        nbytes = n * (window + horizon) * per_value + (n + window + horizon) * gen64 * 3
        drivers = [("n_samples", n * (window + horizon)), ("window", window * n), ("horizon", horizon * n)]
        return SourcePlan((window, 1), nbytes, drivers, rows=n, y_width=horizon)
    if cfg.generator == "adding_problem":
        length = cfg.length
        return SourcePlan((length, 2), n * (2 * length + 1) * per_value, [("n_samples", n * length), ("length", length * n)],
                          rows=n)
    if cfg.generator == "token_sequences":  # token ids [n, length], per-token class scores, their gather
        length, vocab, nc = cfg.length, cfg.vocab_size, cfg.n_classes
        nbytes = n * length * (8 * 3 + 4) + vocab * nc * gen64 + n * length * nc * gen64
        drivers = [("n_samples", n * length * (nc + 4)), ("length", length * n * (nc + 4)),
                   ("vocab_size", vocab * nc), ("n_classes", nc * (vocab + n * length))]
        return SourcePlan((length,), nbytes, drivers, rows=n, n_classes=nc)
    if cfg.generator not in ("polynomial", "sine", "moons", "circles", "spirals", "xor"):
        # a generator this module does not know: no row shape (the loader checks it), a rough size
        return SourcePlan(None, n * 64 * per_value, [("n_samples", n)], rows=n)
    n_classes = getattr(cfg, "n_classes", None) or (2 if cfg.generator in ("moons", "circles", "xor") else None)
    width = 2 if cfg.generator in ("moons", "circles", "spirals", "xor") else 1
    return SourcePlan((width,), n * (width + 1) * per_value * 2, [("n_samples", n)], rows=n, n_classes=n_classes)


def _npy_header(path: Path, shown: str) -> tuple[tuple[int, ...], np.dtype]:
    from trainctl.data.readers import NpyArray

    array = NpyArray(path, shown)  # checks the header against the file size
    return array.shape, array.dtype


def npy_plan(source: Any, base_dir: Path) -> SourcePlan:
    from trainctl.data.readers import resolve_path

    shape, dtype = _npy_header(resolve_path(source.npy, base_dir), source.npy)
    row = math.prod(shape[1:])
    nbytes = shape[0] * row * (4 if dtype != np.float32 else 0)  # a float32 file stays mapped
    for extra in (source.targets, source.sample_weight):
        if extra:
            other, other_dtype = _npy_header(resolve_path(extra, base_dir), extra)
            nbytes += math.prod(other) * (4 + other_dtype.itemsize)
    x_shape = tuple(shape[1:]) or (1,)
    return SourcePlan(x_shape, nbytes, [("npy", nbytes)], rows=shape[0])


def npz_plan(source: Any, base_dir: Path) -> SourcePlan:
    from trainctl.data.readers import excerpt, npz_member, resolve_path

    path = resolve_path(source.npz, base_dir)
    if not path.is_file():
        raise DataError(f"{source.npz}: no such file (looked for {path})")
    try:
        with zipfile.ZipFile(path) as archive:
            _, shape, dtype = npz_member(archive, source.npz, source.x_key)
            nbytes = math.prod(shape) * (dtype.itemsize + 4)
            for key in (source.y_key, source.sample_weight_key):
                if key and key + ".npy" in archive.namelist():
                    _, other, other_dtype = npz_member(archive, source.npz, key)
                    nbytes += math.prod(other) * (other_dtype.itemsize + 4)
    except zipfile.BadZipFile:
        raise DataError(f"{source.npz}: not a .npz file (not a zip archive, or a damaged one)") from None
    except (ValueError, OSError, EOFError) as error:
        raise DataError(f"{source.npz}: not a readable .npz file ({excerpt(str(error), 80)})") from None
    x_shape = tuple(shape[1:]) or (1,)
    return SourcePlan(x_shape, nbytes, [("npz", nbytes)], rows=shape[0] if shape else 0)


def table_plan(form: Any, base_dir: Path) -> SourcePlan:
    """A CSV file or shard directory (form: its formats._TableFormat): the header line only."""
    from trainctl.data.readers import resolve_path

    source, key = form.params, form.key
    path = resolve_path(form.shown(), base_dir)
    try:
        table = form.table(base_dir)  # reads the header line only
    except DataError as error:
        if getattr(source, "window", None) is None or "column" not in str(error):
            raise
        # a time series' loader names the config key of the column (data.train.target, ...)
        return SourcePlan(None, 2 * os.path.getsize(path), [("csv", os.path.getsize(path))])
    if path.is_dir():
        size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    else:
        size = os.path.getsize(path)
    width = len(getattr(table, "feature_cols", []) or []) or None
    if getattr(table, "categorical", None):  # one-hot widths need the vocabulary (the whole file)
        width = None
    return SourcePlan((width,) if width else None, 2 * size, [(key, size)])


def zip_plan(source: Any, base_dir: Path) -> SourcePlan:
    xs, ys = _file_or_generator(source.zip.x, base_dir), _file_or_generator(source.zip.y, base_dir)
    plan = SourcePlan(xs.x_shape, xs.nbytes + ys.nbytes, rows=xs.rows)
    plan.drivers = [(f"zip.x.{k}", v) for k, v in xs.drivers] + [(f"zip.y.{k}", v) for k, v in ys.drivers]
    return plan


def _file_or_generator(source: Any, base_dir: Path) -> SourcePlan:
    from trainctl.data.formats import format_of

    return format_of(source).plan(base_dir, 32)


def stream_plan(source: Any, base_dir: Path, batch_size: int) -> SourcePlan:
    stream = source.stream
    inner = _file_or_generator(stream.source, base_dir)
    if hasattr(stream.source, "generator"):
        row_bytes = inner.nbytes // max(inner.rows or 1, 1)
        held = inner.nbytes  # a generator is drawn whole, then streamed
    else:
        row_bytes = 4 * (math.prod(inner.x_shape) if inner.x_shape else 1) + 8
        held = 0
    chunk = stream.chunk_rows * row_bytes * 3  # a chunk read, its float32 copy, the mapped rows
    buffer = (stream.shuffle.buffer_size * row_bytes * 2) if stream.shuffle is not None else 0
    batches = batch_size * row_bytes * 2
    plan = SourcePlan(inner.x_shape, held + chunk + buffer + batches, rows=inner.rows)
    plan.drivers = [(f"stream.source.{k}", v) for k, v in inner.drivers if held] + [
        ("stream.chunk_rows", chunk), ("stream.shuffle.buffer_size", buffer)]
    return plan


def plan_source(source: Any, base_dir: Path, batch_size: int = 32) -> SourcePlan:
    """The plan of one source config (generator, file, zip or stream)."""
    from trainctl.data.formats import format_of

    return format_of(source).plan(Path(base_dir), batch_size)


def input_row_shape(data_config: Any, base_dir: Path) -> tuple[tuple[int, ...] | None, str]:
    """The shape of one model input row after preprocessing, and where it came from."""
    from trainctl.data.formats import format_of

    plan = plan_source(data_config.train, base_dir)
    shape = plan.x_shape
    for step in data_config.preprocessing:
        if shape is None:
            break
        if step.type == "flatten":
            shape = (math.prod(shape),)
        elif step.type == "reshape":
            shape = tuple(step.target_shape)
    return shape, format_of(data_config.train).shown()


def data_driver(plan: SourcePlan) -> str | None:
    return _driver(plan.drivers)
