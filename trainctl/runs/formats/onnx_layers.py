"""ONNX graph pieces per layer type: `CONVERTERS` maps a layer's type id to the function
that appends its nodes (`convert(graph, layer, x) -> y`, tensor names), over GraphBuilder."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from trainctl.runs.formats import ExportRefused


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


# -- spatial layers: ONNX convolutions and pools are channels_first ------------------------------
def _to_channels_first(g: GraphBuilder, layer, x: str) -> str:
    if layer.channels_first:
        return x
    rank = len(layer.input_shape)
    return g.node("Transpose", [x], layer.name, perm=[0, rank, *range(1, rank)])


def _to_layer_format(g: GraphBuilder, layer, y: str) -> str:
    if layer.channels_first:
        return y
    rank = len(layer.output_shape)
    return g.node("Transpose", [y], layer.name, perm=[0, *range(2, rank + 1), 1])


def _same_pads(in_spatial, out_spatial, kernel, strides, dilation) -> list[int]:
    """TF.js padding as ONNX pads [begins..., ends...]: the overhang, the odd pixel after."""
    totals = [max((o - 1) * s + (k - 1) * d + 1 - i, 0)
              for i, o, k, s, d in zip(in_spatial, out_spatial, kernel, strides, dilation)]
    return [t // 2 for t in totals] + [t - t // 2 for t in totals]


def _conv_attrs(layer) -> dict[str, Any]:
    rank = len(layer.kernel_size)
    dilation = tuple(layer.dilation_rate) if getattr(layer, "uses_dilation", True) else (1,) * rank
    return {"kernel_shape": list(layer.kernel_size), "strides": list(layer.strides), "dilations": list(dilation),
            "pads": _same_pads(layer.in_spatial, layer.out_spatial, layer.kernel_size, layer.strides, dilation)}


def _conv_epilogue(g: GraphBuilder, layer, y: str) -> str:
    return activation(g, layer.activation.name, _to_layer_format(g, layer, y), layer.name)


def _conv(g: GraphBuilder, layer, x: str) -> str:
    """Conv1D / Conv2D: kernel [*k, in, out] → ONNX W [out, in, *k]."""
    rank = len(layer.kernel_size)
    weight = np.transpose(layer.kernel.value, (rank + 1, rank, *range(rank)))
    inputs = [_to_channels_first(g, layer, x), g.const(f"{layer.name}_W", _f32(weight))]
    if layer.bias is not None:
        inputs.append(g.const(f"{layer.name}_B", _f32(layer.bias.value)))
    return _conv_epilogue(g, layer, g.node("Conv", inputs, layer.name, **_conv_attrs(layer)))


def _depthwise(g: GraphBuilder, layer, x: str) -> str:
    """DepthwiseConv2D: kernel [kh, kw, in, mult] → grouped Conv W [in·mult, 1, kh, kw]."""
    k = layer.depthwise_kernel.value
    kh, kw, channels, mult = k.shape
    weight = np.transpose(k, (2, 3, 0, 1)).reshape(channels * mult, 1, kh, kw)
    inputs = [_to_channels_first(g, layer, x), g.const(f"{layer.name}_W", _f32(weight))]
    if layer.bias is not None:
        inputs.append(g.const(f"{layer.name}_B", _f32(layer.bias.value)))
    return _conv_epilogue(g, layer, g.node("Conv", inputs, layer.name, group=channels, **_conv_attrs(layer)))


def _separable(g: GraphBuilder, layer, x: str) -> str:
    """SeparableConv2D: the depthwise Conv, then a 1×1 pointwise Conv with the bias."""
    k = layer.depthwise_kernel.value
    kh, kw, channels, mult = k.shape
    depthwise = np.transpose(k, (2, 3, 0, 1)).reshape(channels * mult, 1, kh, kw)
    mid = g.node("Conv", [_to_channels_first(g, layer, x), g.const(f"{layer.name}_dW", _f32(depthwise))], layer.name,
                 group=channels, **_conv_attrs(layer))
    pointwise = np.transpose(layer.pointwise_kernel.value, (3, 2, 0, 1))
    inputs = [mid, g.const(f"{layer.name}_pW", _f32(pointwise))]
    if layer.bias is not None:
        inputs.append(g.const(f"{layer.name}_B", _f32(layer.bias.value)))
    return _conv_epilogue(g, layer, g.node("Conv", inputs, layer.name, kernel_shape=[1, 1]))


def _conv_transpose(g: GraphBuilder, layer, x: str) -> str:
    """Conv2DTranspose: kernel [kh, kw, out, in] → ONNX W [in, out, kh, kw]; TF.js's output
    length (deconvLength) as ONNX pads (cropped from the full s·(i−1)+k) or output padding."""
    weight = np.transpose(layer.kernel.value, (3, 2, 0, 1))
    begins, ends, extra = [], [], []
    for i, o, k, st in zip(layer.in_spatial, layer.out_spatial, layer.kernel_size, layer.strides):
        full = st * (i - 1) + k
        crop = max(full - o, 0)
        begins.append(crop // 2)
        ends.append(crop - crop // 2)
        extra.append(max(o - full, 0))
    inputs = [_to_channels_first(g, layer, x), g.const(f"{layer.name}_W", _f32(weight))]
    if layer.bias is not None:
        inputs.append(g.const(f"{layer.name}_B", _f32(layer.bias.value)))
    y = g.node("ConvTranspose", inputs, layer.name, kernel_shape=list(layer.kernel_size),
               strides=list(layer.strides), pads=begins + ends, output_padding=extra)
    return _conv_epilogue(g, layer, y)


def _pooling(op: str) -> Callable:
    def convert(g: GraphBuilder, layer, x: str) -> str:
        rank = len(layer.pool_size)
        pads = _same_pads(layer.in_spatial, layer.out_spatial, layer.pool_size, layer.strides, (1,) * rank)
        y = g.node(op, [_to_channels_first(g, layer, x)], layer.name, kernel_shape=list(layer.pool_size),
                   strides=list(layer.strides), pads=pads)  # AveragePool leaves the padding out, as TF.js
        return _to_layer_format(g, layer, y)

    return convert


def _global_pooling(op: str) -> Callable:
    def convert(g: GraphBuilder, layer, x: str) -> str:
        rank = len(layer.input_shape)
        axes = list(range(2, rank + 1)) if layer.channels_first else list(range(1, rank))
        return g.node(op, [x], layer.name, axes=axes, keepdims=0)

    return convert


def _batch_normalization(g: GraphBuilder, layer, x: str) -> str:
    """Inference: (x − moving_mean) / sqrt(moving_variance + ε) · γ + β as one Mul and one Add."""
    if layer.feature_axis != len(layer.input_shape) - 1:
        raise ExportRefused(f"{layer.name}: BatchNormalization over axis {layer.params.axis} (not the last) "
                            "has no ONNX export here (onnx export)")
    scale = 1.0 / np.sqrt(layer.moving_variance.value.astype(np.float64) + layer.params.epsilon)
    if layer.gamma is not None:
        scale = scale * layer.gamma.value
    shift = -layer.moving_mean.value * scale
    if layer.beta is not None:
        shift = shift + layer.beta.value
    y = g.node("Mul", [x, g.const(f"{layer.name}_scale", _f32(scale))], layer.name)
    return g.node("Add", [y, g.const(f"{layer.name}_shift", _f32(shift))], layer.name)


def _layer_normalization(g: GraphBuilder, layer, x: str) -> str:
    first = len(layer.input_shape) - len(layer.gamma.value.shape if layer.gamma is not None else
                                         layer.beta.value.shape if layer.beta is not None else (1,))
    axes = layer.params.axis if isinstance(layer.params.axis, list) else [layer.params.axis]
    resolved = sorted(a % len(layer.input_shape) for a in axes)
    if resolved[-1] != len(layer.input_shape) - 1:
        raise ExportRefused(f"{layer.name}: LayerNormalization over axes {axes} that do not end at the last "
                            "has no ONNX export (onnx export)")
    first = resolved[0] + 1  # ONNX axis counts the batch axis
    normalized = tuple(layer.input_shape[resolved[0]:])
    gamma = layer.gamma.value if layer.gamma is not None else np.ones(normalized)
    beta = layer.beta.value if layer.beta is not None else np.zeros(normalized)
    return g.node("LayerNormalization", [x, g.const(f"{layer.name}_gamma", _f32(gamma).reshape(normalized)),
                                         g.const(f"{layer.name}_beta", _f32(beta).reshape(normalized))],
                  layer.name, axis=first, epsilon=float(layer.params.epsilon))


def _embedding(g: GraphBuilder, layer, x: str) -> str:
    from onnx import TensorProto

    indices = g.node("Cast", [x], layer.name, to=TensorProto.INT64)
    return g.node("Gather", [g.const(f"{layer.name}_embeddings", _f32(layer.embeddings.value)), indices],
                  layer.name, axis=0)


def _slicing(g: GraphBuilder, layer, x: str) -> str:
    """ZeroPadding (positive pads) and Cropping (negative) as Pad and Slice."""
    pads = list(layer.pads)
    if all(a >= 0 and b >= 0 for a, b in pads):
        begins, ends = [0] + [a for a, _ in pads], [0] + [b for _, b in pads]
        return g.node("Pad", [x, g.const(f"{layer.name}_pads", np.array(begins + ends, np.int64))], layer.name)
    starts = [-a for a, _ in pads]
    stops = [d + b for d, (_, b) in zip(layer.input_shape, pads)]
    axes = list(range(1, len(pads) + 1))
    return g.node("Slice", [x, g.const(f"{layer.name}_starts", np.array(starts, np.int64)),
                            g.const(f"{layer.name}_ends", np.array(stops, np.int64)),
                            g.const(f"{layer.name}_axes", np.array(axes, np.int64))], layer.name)


def _up_sampling(g: GraphBuilder, layer, x: str) -> str:
    if getattr(layer.params, "interpolation", "nearest") != "nearest":
        raise ExportRefused(f"{layer.name}: UpSampling2D interpolation {layer.params.interpolation!r} "
                            "has no matching ONNX Resize here; nearest exports (onnx export)")
    scales = [1.0] + [o / i for o, i in zip(layer.output_shape, layer.input_shape)]
    return g.node("Resize", [x, "", g.const(f"{layer.name}_scales", np.array(scales, np.float32))], layer.name,
                  mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")


def _permute(g: GraphBuilder, layer, x: str) -> str:
    return g.node("Transpose", [x], layer.name, perm=[0, *layer.params.dims])


def _repeat_vector(g: GraphBuilder, layer, x: str) -> str:
    y = g.node("Unsqueeze", [x, g.const(f"{layer.name}_axis", np.array([1], np.int64))], layer.name)
    shape = np.array([1, layer.params.n, layer.input_shape[-1]], np.int64)
    return g.node("Expand", [y, g.const(f"{layer.name}_shape", shape)], layer.name)


def _leaky_relu(g: GraphBuilder, layer, x: str) -> str:
    return g.node("LeakyRelu", [x], layer.name, alpha=float(layer.params.alpha))


def _elu_layer(g: GraphBuilder, layer, x: str) -> str:
    return g.node("Elu", [x], layer.name, alpha=float(layer.params.alpha))


def _relu_layer(g: GraphBuilder, layer, x: str) -> str:
    p = layer.params
    if p.threshold != 0:
        raise ExportRefused(f"{layer.name}: ReLU threshold {p.threshold} has no ONNX export here (onnx export)")
    y = g.node("LeakyRelu", [x], layer.name, alpha=float(p.negative_slope)) if p.negative_slope else \
        g.node("Relu", [x], layer.name)
    if p.max_value is not None:
        y = g.node("Min", [y, g.const(f"{layer.name}_max", _f32(p.max_value))], layer.name)
    return y


def _thresholded_relu(g: GraphBuilder, layer, x: str) -> str:
    return g.node("ThresholdedRelu", [x], layer.name, alpha=float(layer.params.theta))


def _prelu(g: GraphBuilder, layer, x: str) -> str:
    return g.node("PRelu", [x, g.const(f"{layer.name}_alpha", _f32(layer.alpha.value))], layer.name)


def _softmax_layer(g: GraphBuilder, layer, x: str) -> str:
    axes = layer.params.axis if isinstance(layer.params.axis, list) else [layer.params.axis]
    if len(axes) != 1:
        raise ExportRefused(f"{layer.name}: Softmax over several axes {axes} has no ONNX export (onnx export)")
    axis = axes[0] if axes[0] < 0 else axes[0]  # Keras axes count the batch axis too
    return g.node("Softmax", [x], layer.name, axis=axis)


CONVERTERS: dict[str, Callable[[GraphBuilder, Any, str], str]] = {
    "dense": _dense,
    "activation": _activation,
    "dropout": _identity,
    "flatten": _flatten,
    "reshape": _reshape,
    # (entries for layer types that are not registered are never used)
    "conv1d": _conv,
    "conv2d": _conv,
    "conv2d_transpose": _conv_transpose,
    "depthwise_conv2d": _depthwise,
    "separable_conv2d": _separable,
    "max_pooling1d": _pooling("MaxPool"),
    "max_pooling2d": _pooling("MaxPool"),
    "average_pooling1d": _pooling("AveragePool"),
    "average_pooling2d": _pooling("AveragePool"),
    "global_max_pooling1d": _global_pooling("ReduceMax"),
    "global_max_pooling2d": _global_pooling("ReduceMax"),
    "global_average_pooling1d": _global_pooling("ReduceMean"),
    "global_average_pooling2d": _global_pooling("ReduceMean"),
    "batch_normalization": _batch_normalization,
    "layer_normalization": _layer_normalization,
    "embedding": _embedding,
    "zero_padding1d": _slicing,
    "zero_padding2d": _slicing,
    "cropping1d": _slicing,
    "cropping2d": _slicing,
    "up_sampling1d": _up_sampling,
    "up_sampling2d": _up_sampling,
    "permute": _permute,
    "repeat_vector": _repeat_vector,
    "spatial_dropout1d": _identity,
    "spatial_dropout2d": _identity,
    "gaussian_noise": _identity,
    "gaussian_dropout": _identity,
    "alpha_dropout": _identity,
    "leaky_re_lu": _leaky_relu,
    "elu": _elu_layer,
    "re_lu": _relu_layer,
    "thresholded_re_lu": _thresholded_relu,
    "prelu": _prelu,
    "softmax": _softmax_layer,
}
