"""ONNX export (inference only): opset 17, a dynamic batch axis, float32.

The graph's input `input` takes samples of the model's input shape before the run's value
preprocessing: standardize, min_max and rescale (with the statistics fitted on the
training split) are folded in ahead of the layers. flatten/reshape steps are C-order
reshapes that commute with those, so the graph takes their result: feed
`x_raw.reshape(n, *model_input_shape)`, and `session.run(None, {"input": ...})` equals
`trainctl predict` on x_raw. The output is `output`.
Layers convert through `CONVERTERS` (type id → function, onnx_layers.py); a layer without
one is refused.
Needs the `onnx` package (extra `[onnx]`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from trainctl.runs.formats import ExportRefused
from trainctl.runs.formats.onnx_layers import CONVERTERS, GraphBuilder

OPSET = 17


def check_exportable(model) -> None:
    for layer in model.layers:
        if layer.type_id not in CONVERTERS:
            raise ExportRefused(f"{layer.name}: {layer.class_name} has no ONNX converter (onnx export)")


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
