"""Sequential: a stack of layers built from config, with TF.js's compile/fit/evaluate/predict.

Weights are named `<layer>/<weight>` (dense_Dense1/kernel) everywhere: summary, safetensors
files, optimizer state. Importing this module does not import numba.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from trainctl.errors import ConfigValueError, TrainctlError
from trainctl.nn.layers import LAYERS, BuildContext, Layer, Weight
from trainctl.nn.layers.base import auto_name

MODEL_FORMAT = "trainctl-model/1"


@dataclass(frozen=True)
class SummaryRow:
    name: str
    class_name: str
    output_shape: tuple[int | None, ...]  # with None for the batch axis
    n_params: int


@dataclass(frozen=True)
class ParamTotals:
    total: int
    trainable: int
    non_trainable: int


def layer_from_spec(spec: Any, index: int) -> Layer:
    """A layer from `{type: dense, units: 32, ...}` or from an already validated spec."""
    if isinstance(spec, Layer):
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        if "type" not in spec:
            raise ConfigValueError([(f"model.layers.{index}", "missing key 'type'")])
        layer_cls = LAYERS.get(spec.pop("type"))
        try:
            params = layer_cls.Params.model_validate(spec)
        except Exception as error:  # pydantic ValidationError: report its first problem in one line
            from trainctl.config.problems import describe

            first = error.errors()[0] if hasattr(error, "errors") else {"loc": (), "msg": str(error), "type": ""}
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigValueError([(f"model.layers.{index}.{where}".rstrip("."), describe(first))]) from None
        return layer_cls(params)
    layer_cls = LAYERS.get(spec.type)  # a validated TypedSpec from the config package
    return layer_cls(spec.params)


class Sequential:
    """Layers applied in order. Built (shapes inferred, weights initialised) on construction.

    With `shapes_only`, nothing is allocated: every weight is a `ShapeOnly` (shape and dtype),
    so parameter counts, weight and buffer sizes of any config come out of its shapes
    (`validate`, `summary`, the memory estimate before training). Such a model cannot run."""

    def __init__(self, layers: Iterable[Any], *, name: str = "sequential", seed: int = 0, dtype=np.float32,
                 shapes_only: bool = False):
        self.shapes_only = shapes_only
        self.layers: list[Layer] = [layer_from_spec(spec, i) for i, spec in enumerate(layers)]
        if not self.layers:
            raise ConfigValueError([("model.layers", "a model needs at least one layer")])
        self.name, self.seed, self.dtype = name, int(seed), np.dtype(dtype)
        # masks exist only where a layer makes one (overrides compute_mask): otherwise every
        # input_mask stays None and forward skips the per-layer mask calls
        self._masking = any(type(layer).compute_mask is not Layer.compute_mask for layer in self.layers)
        self.stop_training = False
        self.history: Any = None  # the History of the last fit
        self.optimizer: Any = None
        self.loss: Any = None
        self.metrics: list[Any] = []
        self.compile_config: dict[str, Any] = {}
        self._build()

    # -- construction ------------------------------------------------------------------
    def _build(self) -> None:
        first = self.layers[0].params
        if first.input_shape is not None:
            shape = tuple(first.input_shape)
        elif first.batch_input_shape is not None:
            shape = tuple(first.batch_input_shape[1:])
        else:
            raise ConfigValueError([("model.layers.0", "the first layer needs input_shape (e.g. input_shape: [784])")])
        if any(d is None or d <= 0 for d in shape):
            raise ConfigValueError([("model.layers.0.input_shape", f"sizes must be positive integers, got {list(shape)}")])
        self.input_shape: tuple[int, ...] = shape
        context = BuildContext(seed=self.seed, dtype=self.dtype, shapes_only=self.shapes_only)
        seen: set[str] = set()
        mask = None  # the mask the next layer receives, as the shapes tell it (Layer.output_mask_spec)
        for index, layer in enumerate(self.layers):
            if index > 0 and layer.params.input_shape is not None and tuple(layer.params.input_shape) != shape:
                raise ConfigValueError([(f"model.layers.{index}.input_shape",
                                         f"{list(layer.params.input_shape)} does not match "
                                         f"the previous layer's output {list(shape)}")])
            layer.name = layer.params.name or auto_name(layer, context)
            if layer.name in seen:
                raise ConfigValueError([(f"model.layers.{index}.name", f"duplicate layer name {layer.name!r}")])
            seen.add(layer.name)
            try:
                shape = layer.build(shape, context)
            except ConfigValueError:
                raise
            except TrainctlError as error:  # a layer's own message ("dense_Dense1: ..."), placed
                raise ConfigValueError([(f"model.layers.{index}", str(error))]) from None
            if mask is not None and layer.reads_step_mask and mask.shape != layer.input_shape[:1]:
                # forward could not read it: numpy cannot broadcast it into the [n, steps] mask
                # the layer keeps its state by (fit died there, with a traceback)
                raise ConfigValueError([(f"model.layers.{index}", _unreadable_mask(layer, mask))])
            mask = layer.output_mask_spec(mask)
        self.output_shape: tuple[int, ...] = shape
        self._allocated = 0
        if self.shapes_only:
            self.flat_values = self.flat_grads = None
        else:
            self._gather_trainable_weights()

    def _gather_trainable_weights(self) -> None:
        """Move every trainable weight (and its grad) into one flat buffer, each weight a view
        of its slice, so the optimizer updates all of them in one kernel call per step."""
        trainable = self.trainable_weights
        total = sum(w.value.size for w in trainable)
        self.flat_values = np.empty(total, self.dtype)
        self.flat_grads = np.zeros(total, self.dtype)
        offset = 0
        for w in trainable:
            size, shape = w.value.size, w.value.shape
            self.flat_values[offset:offset + size] = w.value.reshape(-1)
            w.value = self.flat_values[offset:offset + size].reshape(shape)
            w.grad = self.flat_grads[offset:offset + size].reshape(shape)
            offset += size

    @classmethod
    def from_json(cls, architecture: dict[str, Any], *, seed: int = 0, shapes_only: bool = False) -> "Sequential":
        """Rebuild from model.json (weights are initialised; load the saved ones after)."""
        if not isinstance(architecture, dict) or architecture.get("format") != MODEL_FORMAT:
            found = architecture.get("format") if isinstance(architecture, dict) else None
            raise TrainctlError(f"model.json: unsupported format {str(found)[:40]!r}")
        layers, dtype = architecture.get("layers"), architecture.get("dtype", "float32")
        if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
            raise TrainctlError("model.json: 'layers' must be a list of layer mappings")
        if dtype not in ("float32", "float64"):
            raise TrainctlError(f"model.json: dtype must be float32 or float64, got {str(dtype)[:40]!r}")
        return cls(layers, name=str(architecture.get("name", "sequential")), seed=seed,
                   dtype=np.dtype(dtype), shapes_only=shapes_only)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "class_name": "Sequential",
            "name": self.name,
            "dtype": self.dtype.name,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "layers": [layer.get_config() for layer in self.layers],
            "weights": [{"name": w.name, "shape": list(w.value.shape), "dtype": w.value.dtype.name,
                         "trainable": w.trainable} for w in self.weights],
        }

    # -- weights -----------------------------------------------------------------------
    @property
    def weights(self) -> list[Weight]:
        return [w for layer in self.layers for w in layer.weights]

    @property
    def trainable_weights(self) -> list[Weight]:
        return [w for layer in self.layers if layer.trainable for w in layer.weights if w.trainable]

    def get_weights(self) -> dict[str, np.ndarray]:
        return {w.name: w.value for w in self.weights}

    def set_weights(self, arrays: dict[str, np.ndarray], *, source: str = "weights") -> None:
        """Copy `arrays` into the weights, matched by name and shape; any mismatch is an error."""
        expected = {w.name: w for w in self.weights}
        missing = [name for name in expected if name not in arrays]
        unknown = [name for name in arrays if name not in expected]
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if unknown:
                parts.append(f"unexpected {', '.join(unknown)}")
            raise TrainctlError(f"{source}: weights do not match the model: {'; '.join(parts)}")
        for name, weight in expected.items():
            value = np.asarray(arrays[name])
            if value.shape != weight.value.shape:
                raise TrainctlError(
                    f"{source}: {name} has shape {list(value.shape)}, the model expects {list(weight.value.shape)}"
                )
        for name, weight in expected.items():
            weight.value[...] = arrays[name]

    # -- summary -----------------------------------------------------------------------
    def summary_rows(self) -> list[SummaryRow]:
        return [SummaryRow(l.name, l.class_name, (None, *l.output_shape), l.count_params()) for l in self.layers]

    def param_totals(self) -> ParamTotals:
        total = sum(int(w.value.size) for w in self.weights)
        trainable = sum(int(w.value.size) for w in self.trainable_weights)
        return ParamTotals(total, trainable, total - trainable)

    def flops_per_sample(self) -> int:
        return sum(layer.flops_per_sample() for layer in self.layers)

    def buffer_nbytes(self, batch_size: int) -> int:
        """Bytes of the layers' per-batch buffers for `batch_size` rows (from shapes alone)."""
        return sum(layer.buffer_nbytes(batch_size, self.dtype.itemsize) for layer in self.layers)

    # -- running -----------------------------------------------------------------------
    def allocate(self, batch_size: int) -> None:
        """Size every layer's buffers for at least `batch_size` rows (they only grow)."""
        if self.shapes_only:
            raise TrainctlError("a model built from shapes alone cannot run; build it with weights")
        if batch_size > self._allocated:
            for layer in self.layers:
                layer.allocate(batch_size)
            self._allocated = batch_size

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """x: [n, *input_shape] with n <= allocated batch size → [n, *output_shape] (a buffer view)."""
        if not self._masking:
            for layer in self.layers:
                x = layer.forward(x, training)
            return x
        mask = None
        for layer in self.layers:
            layer.input_mask = mask
            mask = layer.compute_mask(x, mask)
            x = layer.forward(x, training)
        return x

    def backward(self, dy: np.ndarray, *, through_last_activation: bool = True) -> None:
        """Back-propagate dLoss/dOutput (or dLoss/dLogits when the last activation was fused
        into the loss) and fill every weight's grad."""
        last = len(self.layers) - 1
        for index in range(last, -1, -1):
            layer = self.layers[index]
            need_dx = index > 0
            if index == last and not through_last_activation:
                dy = layer.backward_from_preactivation(dy, need_dx)
            else:
                dy = layer.backward(dy, need_dx)

    def regularization_loss(self) -> float:
        return sum(layer.regularization_loss() for layer in self.layers)

    def activity_loss(self, n: int) -> float:
        return sum(layer.activity_loss(n) for layer in self.layers)

    @property
    def has_regularizers(self) -> bool:
        return any(w.regularizer is not None for w in self.weights)

    @property
    def has_activity_regularizers(self) -> bool:
        return any(layer.has_activity_regularizer for layer in self.layers)

    # -- compile / fit / evaluate / predict (TF.js names) ------------------------------
    def compile(self, optimizer: Any = "sgd", loss: Any = "mean_squared_error", metrics: Iterable[str] = ()) -> None:
        from trainctl.nn.metrics import METRICS
        from trainctl.train.loop import compile_model

        compile_model(self, optimizer, loss, list(metrics))
        # What save() records to compile a loaded model the same way (ids as given, the
        # optimizer as configured).
        self.compile_config = {"optimizer": self.optimizer.get_config(), "loss": self.loss.name,
                               "metrics": [METRICS.resolve(m) if isinstance(m, str) else
                                           m.to_dict() if hasattr(m, "to_dict") else dict(m) if isinstance(m, dict) else m.name
                                           for m in metrics]}

    def fit(self, x=None, y=None, *, verbose: int | None = None, **options):
        """TF.js/Keras fit. `verbose` as Keras: 0 silent, 1 the CLI's live progress, 2 one line
        per epoch; default: 1 in a terminal, 0 otherwise. `callbacks` may mix Callback objects,
        ids and config mappings (`{"type": "early_stopping", "patience": 3}`). Returns the
        History (also `self.history`)."""
        from trainctl.train.loop import fit

        self.history = self._with_progress(fit, verbose, x, y, **options)
        return self.history

    def fit_dataset(self, dataset, *, verbose: int | None = None, **options):
        """TF.js fitDataset over a stream config or Python batches (see train.datasets.fit_dataset)."""
        from trainctl.train.datasets import fit_dataset

        self.history = self._with_progress(fit_dataset, verbose, dataset, **options)
        return self.history

    def _with_progress(self, run, verbose, *args, **options):
        from trainctl.train.display import progress_display  # the registered display, only when asked for

        display = progress_display(verbose)
        if display is None:
            return run(self, *args, **options)
        with display:
            return run(self, *args, **{**options, "callbacks": [*options.get("callbacks", ()), display]})

    def summary(self, *, weights: bool = False, print_fn=None) -> None:
        """Print the model table of `trainctl summary` (layers, output shapes, parameters,
        compile choices); `print_fn(line)` receives it line by line instead, as in Keras."""
        from trainctl.train.display import print_summary

        print_summary(self, weights=weights, print_fn=print_fn)

    fitDataset = fit_dataset  # the TF.js spelling

    def save(self, path, *, overwrite: bool = True) -> None:
        """Write a run directory at `path`: model.json (architecture and compile settings),
        weights.safetensors, optimizer.safetensors, history.csv after fit. `trainctl.load(path)`
        reads it back, compiled, with the optimizer state."""
        from trainctl.runs.saved import save_model

        save_model(self, path, overwrite=overwrite)

    def evaluate(self, x, y, *, batch_size: int = 32, sample_weight=None) -> dict[str, float]:
        from trainctl.data.source import ArraySource
        from trainctl.train.loop import Trainer

        return Trainer(self).evaluate(ArraySource(x, y, sample_weight), batch_size)

    def predict(self, x: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
        """Outputs for x [n, *input_shape], computed in batches (memory bounded by batch_size)."""
        from trainctl.train.loop import predict

        return predict(self, x, batch_size=batch_size)

    def count_params(self) -> int:
        return self.param_totals().total


def _unreadable_mask(reader: Layer, mask) -> str:
    return (f"{reader.name} reads a mask of one value per step, [{reader.input_shape[0]}], but the mask "
            f"{mask.maker} makes reaches it over [{','.join(map(str, mask.shape))}]")


def weights_nbytes(model: Sequential) -> int:
    return sum(int(w.value.nbytes) for w in model.weights)


def input_size(model: Sequential) -> int:
    return math.prod(model.input_shape)
