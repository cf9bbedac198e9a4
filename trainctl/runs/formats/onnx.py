"""ONNX export (inference only): opset 17, a dynamic batch axis, float32.

The graph's input `input` takes samples of the model's input shape before the run's value
preprocessing: standardize, min_max and rescale (with the statistics fitted on the
training split) are folded in ahead of the layers. flatten/reshape steps are C-order
reshapes that commute with those, so the graph takes their result: feed
`x_raw.reshape(n, *model_input_shape)`, and `session.run(None, {"input": ...})` equals
`trainctl predict` on x_raw. The output is `output`.
Layers convert through `CONVERTERS` (type id → function); a layer without one is refused.
Needs the `onnx` package (extra `[onnx]`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from trainctl.runs.formats import ExportRefused

OPSET = 17


class GraphBuilder:
    """Nodes and initializers of one graph; `tensor_name = builder.node(op, inputs, **attrs)`."""

    def __init__(self, helper, numpy_helper):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, name: str, value: np.ndarray) -> str:
        tensor_name = self.fresh(name)
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value), tensor_name))
        return tensor_name

    def node(self, op: str, inputs: list[str], stem: str, **attrs) -> str:
        out = self.fresh(stem)
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _f32(value) -> np.ndarray:
    return np.asarray(value, np.float32)


# -- activations ----------------------------------------------------------------------------
def activation(g: GraphBuilder, name: str, x: str, stem: str) -> str:
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus",
              "softsign": "Softsign", "selu": "Selu"}
    if name == "linear":
        return x
    if name in simple:
        return g.node(simple[name], [x], stem)
    if name == "softmax":
        return g.node("Softmax", [x], stem, axis=-1)
    if name == "log_softmax":
        return g.node("LogSoftmax", [x], stem, axis=-1)
    if name == "elu":
        return g.node("Elu", [x], stem, alpha=1.0)
    if name == "relu6":
        return g.node("Clip", [x, g.const("zero", _f32(0)), g.const("six", _f32(6))], stem)
    if name == "hard_sigmoid":  # TF.js: clip(0.2 x + 0.5, 0, 1)
        return g.node("HardSigmoid", [x], stem, alpha=0.2, beta=0.5)
    if name == "swish":
        return g.node("Mul", [x, g.node("Sigmoid", [x], stem)], stem)
    if name == "mish":
        return g.node("Mul", [x, g.node("Tanh", [g.node("Softplus", [x], stem)], stem)], stem)
    if name == "gelu":  # 0.5 x (1 + erf(x / sqrt 2))
        erf = g.node("Erf", [g.node("Mul", [x, g.const("inv_sqrt2", _f32(1 / math.sqrt(2)))], stem)], stem)
        half_x = g.node("Mul", [x, g.const("half", _f32(0.5))], stem)
        return g.node("Mul", [half_x, g.node("Add", [erf, g.const("one", _f32(1))], stem)], stem)
    if name == "gelu_new":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = g.node("Mul", [g.node("Mul", [x, x], stem), x], stem)
        inner = g.node("Add", [x, g.node("Mul", [cube, g.const("c", _f32(0.044715))], stem)], stem)
        t = g.node("Tanh", [g.node("Mul", [inner, g.const("k", _f32(math.sqrt(2 / math.pi)))], stem)], stem)
        half_x = g.node("Mul", [x, g.const("half", _f32(0.5))], stem)
        return g.node("Mul", [half_x, g.node("Add", [t, g.const("one", _f32(1))], stem)], stem)
    raise ExportRefused(f"activation {name!r} has no ONNX form (onnx export)")


# -- layers ---------------------------------------------------------------------------------
def _dense(g: GraphBuilder, layer, x: str) -> str:
    stem = layer.name.replace("/", "_")
    y = g.node("MatMul", [x, g.const(f"{stem}_kernel", _f32(layer.kernel.value))], stem)
    if layer.bias is not None:
        y = g.node("Add", [y, g.const(f"{stem}_bias", _f32(layer.bias.value))], stem)
    return activation(g, layer.activation.name, y, stem)


def _activation(g: GraphBuilder, layer, x: str) -> str:
    return activation(g, layer.activation.name, x, layer.name)


def _identity(g: GraphBuilder, layer, x: str) -> str:
    return x  # Dropout: inference is the identity


def _reshape_to(g: GraphBuilder, x: str, shape: tuple[int, ...], stem: str) -> str:
    target = np.array([0, *shape], np.int64)  # 0: keep the (dynamic) batch size
    return g.node("Reshape", [x, g.const(f"{stem}_shape", target)], stem)


def _flatten(g: GraphBuilder, layer, x: str) -> str:
    return g.node("Flatten", [x], layer.name, axis=1)


def _reshape(g: GraphBuilder, layer, x: str) -> str:
    return _reshape_to(g, x, layer.output_shape, layer.name)


CONVERTERS: dict[str, Callable[[GraphBuilder, Any, str], str]] = {
    "dense": _dense,
    "activation": _activation,
    "dropout": _identity,
    "flatten": _flatten,
    "reshape": _reshape,
}


def check_exportable(model) -> None:
    for layer in model.layers:
        if layer.type_id not in CONVERTERS:
            raise ExportRefused(f"{layer.name} ({layer.class_name}): no ONNX converter for this layer type (onnx export)")


# -- preprocessing --------------------------------------------------------------------------
def _preprocessing(g: GraphBuilder, state, x: str, input_shape: tuple[int, ...]) -> str:
    """Fold the run's value preprocessing steps into the graph (statistics reshaped, in C
    order, to the model's input shape); returns the preprocessed tensor."""
    from trainctl.data.config import MinMax, Rescale, Standardize

    size = math.prod(input_shape)

    def _f32(value):  # a per-sample statistic laid out as the graph's input sample
        value = np.asarray(value, np.float32)
        return value.reshape(input_shape) if value.size == size and value.ndim > 0 else value

    for index, (step, stats) in enumerate(zip(state.steps, state.stats)):
        stem = f"preprocessing_{index}"
        if isinstance(step, Standardize):
            x = g.node("Sub", [x, g.const(f"{stem}_mean", _f32(stats["mean"]))], stem)
            x = g.node("Div", [x, g.const(f"{stem}_std", _f32(stats["std"]))], stem)
        elif isinstance(step, MinMax):
            span = stats["max"] - stats["min"]
            span = np.where(span > 0, span, 1).astype(np.float32)
            low, high = step.feature_range
            x = g.node("Sub", [x, g.const(f"{stem}_min", _f32(stats["min"]))], stem)
            x = g.node("Div", [x, g.const(f"{stem}_span", _f32(span))], stem)
            x = g.node("Mul", [x, g.const(f"{stem}_scale", _f32(high - low))], stem)
            x = g.node("Add", [x, g.const(f"{stem}_low", _f32(low))], stem)
        elif isinstance(step, Rescale):
            x = g.node("Mul", [x, g.const(f"{stem}_scale", _f32(step.scale))], stem)
            x = g.node("Add", [x, g.const(f"{stem}_offset", _f32(step.offset))], stem)
    return x


def onnx_model(model, preprocessing=None):
    """An onnx.ModelProto for the built model (and the run's fitted value preprocessing,
    folded in)."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:  # pragma: no cover - depends on the environment
        from trainctl.errors import TrainctlError

        raise TrainctlError("ONNX export needs the onnx package: pip install 'trainctl[onnx]'") from None
    check_exportable(model)
    g = GraphBuilder(helper, numpy_helper)
    x = "input"
    if preprocessing is not None and preprocessing.steps:
        x = _preprocessing(g, preprocessing, x, tuple(model.input_shape))
    for layer in model.layers:
        x = CONVERTERS[layer.type_id](g, layer, x)
    g.nodes.append(helper.make_node("Identity", [x], ["output"], name="output"))
    in_shape = tuple(model.input_shape)
    graph = helper.make_graph(
        g.nodes, model.name or "trainctl",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *in_shape])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", *model.output_shape])],
        g.initializers)
    from trainctl import __version__

    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="trainctl", producer_version=__version__)
    proto.ir_version = 8  # opset 17's IR version: readable by onnxruntime >= 1.13
    onnx.checker.check_model(proto)
    return proto


def write_onnx(model, out: str | Path, preprocessing=None) -> Path:
    from trainctl.runs.atomic import atomic_write_bytes

    out = Path(out)
    proto = onnx_model(model, preprocessing)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, proto.SerializeToString())
    return out
