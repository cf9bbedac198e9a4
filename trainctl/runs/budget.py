"""Memory before allocation: what training (or predicting with) a model will take, from its
shapes alone, checked against the memory available or `--max-memory`.

The estimate adds the weights (values, gradients, the flat copy the optimizer updates and the
initialiser's float64 draw), the optimizer's slots, the layers' per-batch buffers (what each
layer's `allocate` takes, as its `buffer_nbytes` says), a checkpoint being serialised and the
data held in memory. When it is over the limit the run is refused with one located line
naming the config key that drives the largest part (`model.layers.0.units`, `fit.batch_size`,
`data.train.n_samples`), before a byte of it is allocated.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainctl.errors import ConfigValueError, TrainctlError

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def parse_size(text: str) -> int:
    """'2GiB', '512MiB', '1.5G', '1000000' → bytes. A TrainctlError names a bad value."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _UNITS:
        raise TrainctlError(f"--max-memory: expected a size like 2GiB, 512MiB or 1000000 (bytes), got {str(text)[:40]!r}")
    value = float(match.group(1)) * _UNITS[unit]
    if not 0 < value < 1 << 62:
        raise TrainctlError(f"--max-memory: must be a positive size, got {str(text)[:40]!r}")
    return int(value)


def format_bytes(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:,.1f} {unit}" if value < 10_000 else f"{value:.3g} {unit}"
    return f"{n} bytes"


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> int:
    """Bytes this process may still take: MemAvailable, lowered by a cgroup limit."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = 1 << 62
    limit, used = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and used is not None:
        available = min(available, max(0, limit - used))
    return available


def process_rss() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@dataclass(frozen=True)
class Part:
    label: str
    nbytes: int
    key: str  # the config key that drives it


@dataclass(frozen=True)
class Estimate:
    parts: tuple[Part, ...]

    @property
    def total(self) -> int:
        return sum(part.nbytes for part in self.parts)

    def largest(self) -> Part:
        return max(self.parts, key=lambda part: part.nbytes)

    def breakdown(self) -> str:
        return ", ".join(f"{p.label} {format_bytes(p.nbytes)}" for p in self.parts if p.nbytes)


def _layer_key(model: Any, index: int) -> str:
    """The key that sizes layer `index`'s weights: its own width, or the input's width."""
    layer = model.layers[index]
    own = getattr(layer.params, "units", None)
    fan_in = math.prod(layer.input_shape[-1:]) if layer.input_shape else 0
    if own is not None and own >= fan_in:
        return f"model.layers.{index}.units"
    for earlier in range(index - 1, -1, -1):  # the width came from an earlier layer
        if getattr(model.layers[earlier].params, "units", None) is not None:
            return f"model.layers.{earlier}.units"
    return "model.layers.0.input_shape"


# Integer options of a layer that size nothing.
_NOT_SIZES = {"seed", "axis", "dims", "input_shape", "batch_input_shape", "batch_size", "input_dim"}


def _input_key(model: Any) -> str:
    return ("model.layers.0.input_shape" if model.layers[0].params.input_shape is not None
            else "model.layers.0.batch_input_shape")


def _buffer_key(model: Any, batch_size: int, batch_key: str) -> str:
    """The key that sizes the largest layer's buffers: the largest of its factors, the batch,
    its own sizes (units, filters, an up-sampling size...), its input's steps (a recurrent
    layer keeps every step) and its input's width."""
    sizes = [layer.buffer_nbytes(batch_size, model.dtype.itemsize) for layer in model.layers]
    index = max(range(len(sizes)), key=sizes.__getitem__)
    layer = model.layers[index]
    factors = [(batch_size, batch_key)]
    for name, value in layer.params:
        values = value if isinstance(value, (list, tuple)) else [value]
        if name not in _NOT_SIZES and values and all(type(v) is int and v > 0 for v in values):
            factors.append((math.prod(values), f"model.layers.{index}.{name}"))
    shape = tuple(layer.input_shape or ())
    if len(shape) > 1:
        factors.append((math.prod(shape[:-1]), _input_key(model)))
    if shape:
        earlier = [i for i in range(index) if getattr(model.layers[i].params, "units", None) is not None]
        factors.append((shape[-1], f"model.layers.{earlier[-1]}.units" if earlier else _input_key(model)))
    return max(factors, key=lambda factor: factor[0])[1]


def model_parts(model: Any, batch_size: int, slot_count: int, *, training: bool = True,
                batch_key: str = "fit.batch_size") -> list[Part]:
    """Weights, optimizer slots, per-batch buffers (each layer's `buffer_nbytes`: for a
    recurrent layer the states and gates of every step, kept for backpropagation through
    time) and, when training, a checkpoint being serialised, of a model built with shapes_only."""
    itemsize = model.dtype.itemsize
    sizes = [sum(w.value.size for w in layer.weights) for layer in model.layers]
    params = sum(sizes)
    trainable = sum(w.value.size for w in model.trainable_weights)
    largest_weight = max((w.value.size for w in model.weights), default=0)
    heaviest = max(range(len(sizes)), key=sizes.__getitem__) if sizes else 0
    weight_key = _layer_key(model, heaviest)
    # value + grad, the flat buffer they are copied into, the initialiser's float64 draw
    copies = 3 if training else 2
    weights = params * itemsize * copies + largest_weight * 8
    outputs = math.prod(model.output_shape)
    buffers = model.buffer_nbytes(batch_size) + batch_size * (math.prod(model.input_shape) + outputs * 4) * itemsize
    buffer_key = _buffer_key(model, batch_size, batch_key)
    parts = [Part("weights", weights, weight_key)]
    if training:
        parts.append(Part("optimizer slots", slot_count * trainable * itemsize, weight_key))
    parts.append(Part("batch buffers", buffers, buffer_key))
    if training:
        # A checkpoint holds the weights and the optimizer state serialised, beside the copy
        # of the slots the state is taken from, while it is written.
        parts.append(Part("checkpoint", (params + 2 * slot_count * trainable) * itemsize, weight_key))
    return parts


def data_parts(data_config: Any, base_dir: Path, batch_size: int, output_width: int) -> list[Part]:
    """The training data (and explicit validation data) held in memory while training."""
    from trainctl.data.plan import data_driver, plan_source

    parts = []
    for name in ("train", "validation"):
        source = getattr(data_config, name, None)
        if source is None:
            continue
        plan = plan_source(source, base_dir, batch_size)
        nbytes = plan.nbytes
        key = data_driver(plan)
        if plan.rows is not None:
            # encoded targets (one-hot rows of the output width), the shuffled index
            width = max(output_width, plan.n_classes or 0)  # one-hot targets are n_classes wide
            targets = plan.rows * width * 4 + plan.rows * 8
            if plan.n_classes is not None and plan.rows * width * 4 > plan.nbytes:
                key = "n_classes"  # the one-hot targets outweigh the inputs
            nbytes += targets
        if data_config.preprocessing and plan.rows is not None and plan.x_shape:
            nbytes += plan.rows * math.prod(plan.x_shape) * 4  # preprocessing writes a new copy
        parts.append(Part(f"{name} data", nbytes, f"data.{name}" + (f".{key}" if key else "")))
    return parts


def check(estimate: Estimate, limit: int | None, what: str = "training") -> None:
    """ConfigValueError at the key driving the largest part when the estimate is over the limit
    (`limit` from --max-memory; None: the memory available now)."""
    given = limit is not None
    limit = limit if given else available_memory()
    need = estimate.total + process_rss()
    if need <= limit:
        return
    largest = estimate.largest()
    source = "--max-memory" if given else "available"
    raise ConfigValueError([(largest.key, f"{what} needs about {format_bytes(need)} ({estimate.breakdown()}), "
                                          f"more than the {format_bytes(limit)} {source}; {largest.label} "
                                          f"is the largest part")])


def training_estimate(model: Any, config: Any, base_dir: Path | None) -> Estimate:
    """The estimate for training `config` (model built with shapes_only). With base_dir None,
    the data is left out (summary of a config whose files are elsewhere)."""
    from trainctl.nn.optimizers import OPTIMIZERS

    fit = config.fit
    batch = max(fit.batch_size, fit.validation_batch_size or 0)
    batch_key = "fit.batch_size" if batch == fit.batch_size else "fit.validation_batch_size"
    optimizer_cls = OPTIMIZERS.get(config.optimizer.type)
    slots = len(getattr(optimizer_cls, "slot_names", ()) or ())
    parts = model_parts(model, batch, slots, batch_key=batch_key)
    if base_dir is not None:
        parts += data_parts(config.data, base_dir, batch, math.prod(model.output_shape))
    return Estimate(tuple(parts))


def inference_estimate(model: Any, batch_size: int, rows: int = 0) -> Estimate:
    """Predict/evaluate a saved model: its weights (read and placed), batch buffers and outputs."""
    parts = model_parts(model, batch_size, 0, training=False)
    if rows:
        parts.append(Part("outputs", rows * math.prod(model.output_shape) * model.dtype.itemsize, "--input"))
    return Estimate(tuple(parts))


def preflight(config: Any, model: Any, base_dir: Path, max_memory: int | None, *, need_files: bool = True) -> None:
    """Before anything is allocated: the data's row shape against the model's input, then the
    memory estimate against the limit. `model` is built with shapes_only. With `need_files`
    False (validate), a data file that does not exist yet is no error here (train says so)."""
    from trainctl.data.config import CsvSource, ShardsSource
    from trainctl.data.plan import input_row_shape
    from trainctl.errors import DataError

    table = isinstance(config.data.train, (CsvSource, ShardsSource))

    try:
        row, where = input_row_shape(config.data, base_dir)
    except DataError as error:
        if need_files or ("no such file" not in str(error) and not table):
            raise
        return  # validate: a missing file is train's to report; a table's own checks locate theirs
    if table:  # CSV/shards: the table's checks (data probe) compare its feature columns, located
        row = None
    if row is not None and tuple(row) != tuple(model.input_shape):
        key = ("model.layers.0.input_shape" if model.layers[0].params.input_shape is not None
               else "model.layers.0.batch_input_shape")
        shape = lambda dims: "[n," + ",".join(map(str, dims)) + "]"
        raise ConfigValueError([(key, f"the data ({where}) has inputs of shape {shape(row)} but the model "
                                      f"expects {shape(model.input_shape)}")])
    check(training_estimate(model, config, base_dir), max_memory)
