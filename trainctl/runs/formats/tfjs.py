"""TF.js layers-model: `model.json` + float32 weight shards, as `tf.loadLayersModel` reads it.

model.json holds `format: layers-model`, `generatedBy`, a Keras-2-style `modelTopology`
(`Sequential` with `batch_input_shape` on the first layer, snake_case config keys, nested
`{class_name, config}` objects, as tfjs-layers 4.x serialises), `weightsManifest` (one
group; the concatenated little-endian float32 weights cut into shards of at most 4 MB,
`group1-shard1of2.bin`, ... as tfjs-converter names them) and, when the model was
compiled, `trainingConfig` (loss, metrics, optimizer_config) so TF.js can compile it and
keep training. Optimizer slots may travel too, as TF.js's `includeOptimizer` writes them
(weights of `group: optimizer`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.runs.formats import ExportRefused, ImportFailed
from trainctl.runs.formats.keras_objects import (
    layer_from_keras, layer_to_keras, optimizer_from_tfjs, optimizer_to_tfjs,
)

FORMAT = "layers-model"
KERAS_VERSION = "tfjs-layers 4.22.0"  # the tfjs-layers release whose reader this matches
SHARD_BYTES = 4 * 1024 * 1024  # tfjs-converter's default shard size
_SHARD_RE = re.compile(r"^group(\d+)-shard(\d+)of(\d+)\.bin$")
_DTYPES = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4")}


@dataclass
class TrainingSpec:
    """What `compile` needs, in trainctl's terms."""

    optimizer: Any  # id or {type: id, ...}
    loss: str
    metrics: list[str]


@dataclass
class TfjsModel:
    """A model read from TF.js files: the built model with its weights, the training
    config it was saved with (or None) and the optimizer state (trainctl names) or None."""

    model: Any
    training: TrainingSpec | None
    optimizer_state: dict[str, np.ndarray] | None
    source: Path


# -- writing ---------------------------------------------------------------------------------
def model_topology(model) -> dict[str, Any]:
    layers = []
    for index, layer in enumerate(model.layers):
        item = layer_to_keras(layer, "tfjs")
        if index == 0:
            item["config"]["batch_input_shape"] = [None, *model.input_shape]
            item["config"]["dtype"] = "float32"
        layers.append(item)
    return {"class_name": "Sequential", "config": {"name": model.name, "layers": layers},
            "keras_version": KERAS_VERSION, "backend": "tensor_flow.js"}


def training_config(training: TrainingSpec) -> dict[str, Any]:
    from trainctl.nn.losses import LOSSES

    return {"loss": LOSSES.resolve(training.loss) if isinstance(training.loss, str) else training.loss,
            "metrics": list(training.metrics),
            "optimizer_config": optimizer_to_tfjs(training.optimizer)}


def _optimizer_entries(model, optimizer) -> list[tuple[dict, np.ndarray]]:
    """TF.js `includeOptimizer` weights: `iter`, then each slot kind over all weights in
    order (setWeights splits the list by position)."""
    state = optimizer.state()
    entries = [({"name": "iter", "shape": [], "dtype": "int32", "group": "optimizer"},
                np.asarray(state["iterations"]).reshape(()).astype("<i4"))]
    for slot in optimizer.slot_names:
        for w in model.trainable_weights:
            value = state.get(f"{w.name}/{slot}")
            if value is None:  # slots are created on the first step
                return entries[:1]
            entries.append(({"name": f"{w.name}/{slot}", "shape": list(value.shape), "dtype": "float32",
                             "group": "optimizer"}, np.asarray(value, "<f4")))
    return entries


def tfjs_artifacts(model, training: TrainingSpec | None = None, *, optimizer=None,
                   shard_bytes: int = SHARD_BYTES) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """(model.json object, [(shard file name, bytes), ...]) for a built model."""
    from trainctl import __version__

    specs, chunks = [], []
    for w in model.weights:
        specs.append({"name": w.name, "shape": list(w.value.shape), "dtype": "float32"})
        chunks.append(np.ascontiguousarray(w.value, dtype="<f4").tobytes())
    if optimizer is not None:
        for spec, value in _optimizer_entries(model, optimizer):
            specs.append(spec)
            chunks.append(value.tobytes())
    data = b"".join(chunks)
    n_shards = max(1, math.ceil(len(data) / shard_bytes))
    shards = [(f"group1-shard{i + 1}of{n_shards}.bin", data[i * shard_bytes:(i + 1) * shard_bytes])
              for i in range(n_shards)]
    model_json: dict[str, Any] = {
        "format": FORMAT,
        "generatedBy": f"trainctl {__version__}",
        "convertedBy": None,
        "modelTopology": model_topology(model),
        "weightsManifest": [{"paths": [name for name, _ in shards], "weights": specs}],
    }
    if training is not None:
        model_json["trainingConfig"] = training_config(training)
    return model_json, shards


def write_tfjs(model, out_dir: str | Path, training: TrainingSpec | None = None, *, optimizer=None,
               shard_bytes: int = SHARD_BYTES) -> Path:
    """Write model.json and its shards into `out_dir` (created; must not hold a model.json).
    Returns the model.json path."""
    from trainctl.runs.atomic import atomic_write_bytes, atomic_write_json

    out = Path(out_dir)
    if out.suffix == ".json":
        out = out.parent
    out.mkdir(parents=True, exist_ok=True)
    model_json, shards = tfjs_artifacts(model, training, optimizer=optimizer, shard_bytes=shard_bytes)
    for name, data in shards:
        atomic_write_bytes(out / name, data)
    atomic_write_json(out / "model.json", model_json)  # last: a reader never sees missing shards
    return out / "model.json"


# -- reading ---------------------------------------------------------------------------------
def _topology_layers(topology: Any, where: str) -> tuple[str, list[Any]]:
    if isinstance(topology, dict) and "model_config" in topology:  # Keras-converted: {model_config, training_config}
        topology = topology["model_config"]
    if not isinstance(topology, dict) or "class_name" not in topology:
        raise ImportFailed(f"{where}: modelTopology must be an object with class_name and config")
    if topology["class_name"] != "Sequential":
        raise ImportFailed(f"{where}: modelTopology class {topology['class_name']!r} is not supported; "
                           "trainctl imports Sequential models")
    config = topology.get("config")
    if isinstance(config, list):  # Keras < 2.2.3 wrote the layer list directly
        return "sequential", config
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ImportFailed(f"{where}: modelTopology.config.layers must be a list")
    return str(config.get("name") or "sequential"), config["layers"]


def layer_specs_from_topology(topology: Any, fmt: str, where: str) -> tuple[str, list[dict[str, Any]]]:
    name, items = _topology_layers(topology, where)
    specs: list[dict[str, Any]] = []
    pending_shape = None
    for index, item in enumerate(items):
        place = f"{where}: modelTopology layer {index}"
        if isinstance(item, dict) and item.get("class_name") == "InputLayer":  # newer Keras 2 Sequential
            config = item.get("config") or {}
            pending_shape = config.get("batch_input_shape") or config.get("batch_shape")
            continue
        spec = layer_from_keras(item, fmt, place)
        if pending_shape is not None and not specs:
            spec["batch_input_shape"] = list(pending_shape)
        specs.append(spec)
    if not specs:
        raise ImportFailed(f"{where}: the model has no layers")
    first = specs[0]
    shape = first.get("batch_input_shape")
    if shape is None:
        raise ImportFailed(f"{where}: the first layer has no batch_input_shape")
    if any(d is None for d in shape[1:]):
        raise ImportFailed(f"{where}: input shape {shape} has unknown sizes; trainctl needs fixed sizes")
    first["input_shape"] = list(shape[1:])
    del first["batch_input_shape"]
    return name, specs


def _read_weight_groups(model_json: dict[str, Any], base: Path, where: Path) -> list[tuple[dict, np.ndarray]]:
    manifest = model_json.get("weightsManifest")
    if not isinstance(manifest, list):
        raise ImportFailed(f"{where}: weightsManifest must be a list of groups")
    out = []
    for g, group in enumerate(manifest, start=1):
        if not isinstance(group, dict) or not isinstance(group.get("paths"), list) \
                or not isinstance(group.get("weights"), list):
            raise ImportFailed(f"{where}: weightsManifest group {g} needs 'paths' and 'weights' lists")
        parts = []
        for name in group["paths"]:
            path = (base / str(name))
            if not path.is_file():
                raise ImportFailed(f"{path}: weight shard missing (listed in {where} weightsManifest group {g})")
            parts.append(path.read_bytes())
        data = b"".join(parts)
        offset = 0
        for spec in group["weights"]:
            label = spec.get("name", "?") if isinstance(spec, dict) else "?"
            if not isinstance(spec, dict) or not isinstance(spec.get("shape"), list):
                raise ImportFailed(f"{where}: weightsManifest group {g} weight {label!r} needs name and shape")
            if "quantization" in spec:
                raise ImportFailed(f"{where}: weight {label!r} is quantized; trainctl reads float32 weights")
            dtype = _DTYPES.get(spec.get("dtype", "float32"))
            if dtype is None:
                raise ImportFailed(f"{where}: weight {label!r} has dtype {spec.get('dtype')!r}; "
                                   "trainctl reads float32 (and int32 optimizer counters)")
            count = math.prod(int(d) for d in spec["shape"])
            size = count * dtype.itemsize
            if offset + size > len(data):
                last = base / str(group["paths"][-1]) if group["paths"] else where
                raise ImportFailed(f"{last}: weight shards truncated: group {g} holds {len(data)} bytes, "
                                   f"weight {label!r} needs bytes {offset}..{offset + size}")
            value = np.frombuffer(data, dtype, count, offset).reshape([int(d) for d in spec["shape"]])
            out.append((spec, value))
            offset += size
        if offset != len(data):
            raise ImportFailed(f"{where}: weightsManifest group {g} describes {offset} bytes but its shards "
                               f"hold {len(data)}")
    return out


def _optimizer_state(spec: dict[str, Any], entries: list[tuple[dict, np.ndarray]], where: Path):
    """TF.js optimizer weights (iter, <weight>/<slot>) → trainctl optimizer state, or None."""
    from trainctl.nn.optimizers import build_optimizer

    if not entries:
        return None
    optimizer = build_optimizer(spec)
    state: dict[str, np.ndarray] = {}
    iterations = 0
    for entry, value in entries:
        if entry["name"] == "iter":
            iterations = int(value.reshape(-1)[0])
            continue
        weight, _, slot = entry["name"].rpartition("/")
        if slot not in optimizer.slot_names:
            raise ImportFailed(f"{where}: optimizer weight {entry['name']!r} is not a {optimizer.type_id} slot")
        state[entry["name"]] = np.array(value, np.float32)
    state["iterations"] = np.array([iterations], np.int64)
    # Accumulated powers (Adam's beta1^t ...): TF.js's setWeights recomputes them from `iter`
    # as initial * initial^iter; trainctl's scalars start at the same initial value.
    for name, initial in optimizer.initial_scalars().items():
        state[name] = np.array([np.float32(initial) ** np.float32(iterations + 1)], np.float32)
    return state


def read_tfjs(path: str | Path, *, seed: int = 0) -> TfjsModel:
    """Read a TF.js layers-model (model.json path or its directory) into a trainctl model."""
    from trainctl.runs.atomic import read_json
    from trainctl.errors import TrainctlError
    from trainctl.nn.model import Sequential

    path = Path(path)
    if path.is_dir():
        path = path / "model.json"
    model_json = read_json(path)
    if not isinstance(model_json, dict) or "modelTopology" not in model_json:
        raise ImportFailed(f"{path}: not a TF.js layers-model (no modelTopology)")
    if model_json.get("format", FORMAT) != FORMAT:
        raise ImportFailed(f"{path}: format {model_json.get('format')!r} is not a TF.js layers-model "
                           "(graph models cannot be trained)")
    name, specs = layer_specs_from_topology(model_json["modelTopology"], "tfjs", str(path))
    try:
        model = Sequential(specs, name=name, seed=seed)
    except TrainctlError as error:
        raise ImportFailed(f"{path}: {error}") from None
    entries = _read_weight_groups(model_json, path.parent, path)
    weights = {e["name"]: v for e, v in entries if e.get("group", "model") == "model"}
    model.set_weights({k: v.astype(model.dtype) for k, v in weights.items()}, source=str(path))
    training = None
    raw = model_json.get("trainingConfig")
    if isinstance(raw, dict):
        training = TrainingSpec(optimizer_from_tfjs(raw.get("optimizer_config"), f"{path}: trainingConfig"),
                                _loss_from(raw.get("loss"), path), _metrics_from(raw.get("metrics"), path))
    optimizer_entries = [(e, v) for e, v in entries if e.get("group") == "optimizer"]
    state = _optimizer_state(training.optimizer, optimizer_entries, path) if training and optimizer_entries else None
    return TfjsModel(model, training, state, path)


def _loss_from(value: Any, where: Path) -> str:
    from trainctl.nn.losses import LOSSES

    if not isinstance(value, str) or value not in LOSSES:
        raise ImportFailed(f"{where}: trainingConfig.loss {value!r} is not a loss trainctl knows")
    return LOSSES.resolve(value)


def _metrics_from(value: Any, where: Path) -> list[str]:
    from trainctl.nn.metrics import METRICS

    if value is None:
        return []
    if isinstance(value, dict):
        raise ImportFailed(f"{where}: trainingConfig.metrics per output is not supported (one output only)")
    out = []
    for item in value:
        if not isinstance(item, str) or item not in METRICS:
            raise ImportFailed(f"{where}: trainingConfig.metrics: unknown metric {item!r}")
        out.append(item)
    return out


def check_exportable(model) -> None:
    """Raise ExportRefused for the first layer the TF.js format cannot express."""
    for layer in model.layers:
        layer_to_keras(layer, "tfjs")


__all__ = ["ExportRefused", "ImportFailed", "TfjsModel", "TrainingSpec", "read_tfjs", "tfjs_artifacts",
           "write_tfjs", "model_topology", "training_config"]
