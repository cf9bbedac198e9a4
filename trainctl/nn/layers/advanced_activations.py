"""Activation layers (TF.js advanced_activations): LeakyReLU, PReLU, ELU, ReLU, ThresholdedReLU,
Softmax. Ids are TF.js's factory names in snake case (`leaky_re_lu`, `prelu`, `re_lu`, ...);
automatic names are TF.js's (`p_re_lu_PReLU1`)."""

from __future__ import annotations

import math
from typing import ClassVar, Union

import numpy as np

from trainctl.config.base import FiniteFloat, NonNegativeFloat, typed_spec
from trainctl.errors import ExportRefused, TrainctlError
from trainctl.nn.activations import ACTIVATIONS
from trainctl.nn.initializers import INITIALIZERS
from trainctl.nn.layers.base import LAYERS, BuildContext, Layer, LayerParams, Shape
from trainctl.nn.layers.plans import ElementwisePlan, PReLUPlan, SoftmaxPlan
from trainctl.nn.regularizers import REGULARIZERS


def _kernels():
    from trainctl.kernels import advanced_activations

    return advanced_activations


class _SameShape(Layer):
    """An activation layer: output and input gradient shaped as the input, in buffers sized here."""

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        self.dtype = context.dtype
        return super().build(input_shape, context)

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        size = batch_size * math.prod(self.input_shape)
        self._y, self._dx = np.empty(size, self.dtype), np.empty(size, self.dtype)
        self._kernel = _kernels()


class _ElementWise(_SameShape):
    """y = f(x) element by element with the kernels `<kernel_name>_forward(x, *options, y)`
    and `<kernel_name>_backward(x, dy, *options, dx)`; forward keeps x for backward."""

    kernel_name: ClassVar[str]
    kernel_options: ClassVar[tuple[str, ...]] = ()  # the params passed to the kernels, in order

    def _options(self) -> tuple:
        """The kernels' scalar options, from the params."""
        return tuple(getattr(self.params, name) for name in self.kernel_options)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        self._x = x.reshape(-1)
        y = self._y[: x.size]
        getattr(self._kernel, f"{self.kernel_name}_forward")(self._x, *self._options(), y)
        return y.reshape(x.shape)

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        if not need_dx:
            return None
        dx = self._dx[: dy.size]
        getattr(self._kernel, f"{self.kernel_name}_backward")(self._x, dy.reshape(-1), *self._options(), dx)
        return dx.reshape(dy.shape)

    def compiled_plan(self) -> ElementwisePlan:
        options = tuple(float(option) for option in self._options())  # ReLU's has_max as 1.0 / 0.0
        return ElementwisePlan(self._kernel.ELEMENTWISE_OPS[self.kernel_name], options, self._y, self._dx)


@LAYERS.register_type("leaky_re_lu", "leaky_relu")
class LeakyReLU(_ElementWise):
    kernel_name = "leaky_relu"
    kernel_options = ("alpha",)

    class Params(LayerParams):
        alpha: FiniteFloat = 0.3  # TF.js DEFAULT_ALPHA


@LAYERS.register_type("elu")
class ELU(_ElementWise):
    """x > 0 → x, else alpha·(eˣ − 1). TF.js accepts alpha 1.0 only; any alpha works here (Keras)."""

    kernel_name = "elu"
    kernel_options = ("alpha",)

    class Params(LayerParams):
        alpha: FiniteFloat = 1.0  # TF.js DEFAULT_ALPHA

    def to_keras_config(self, config, fmt):
        if fmt == "tfjs" and self.params.alpha != 1.0:
            raise ExportRefused(f"{self.name}: TF.js ELU supports alpha 1.0 only (tfjs export)")
        return config


@LAYERS.register_type("re_lu", "relu_layer")
class ReLU(_ElementWise):
    """TF.js ReLU (max_value) with Keras's threshold and negative_slope."""

    kernel_name = "relu"

    class Params(LayerParams):
        max_value: NonNegativeFloat | None = None  # TF.js: no cap
        threshold: FiniteFloat = 0.0  # Keras: values at or below it are "negative"
        negative_slope: FiniteFloat = 0.0  # Keras: slope below the threshold

    def to_keras_config(self, config, fmt):
        if fmt == "tfjs":  # TF.js ReLU has maxValue only
            for key in ("threshold", "negative_slope"):
                if config.pop(key, 0.0) != 0.0:
                    raise ExportRefused(f"{self.name}: TF.js ReLU has no {key} (tfjs export)")
        return config

    def _options(self):
        p = self.params
        return p.max_value is not None, float(p.max_value or 0.0), p.threshold, p.negative_slope


@LAYERS.register_type("thresholded_re_lu", "thresholded_relu")
class ThresholdedReLU(_ElementWise):
    kernel_name = "thresholded_relu"
    kernel_options = ("theta",)

    class Params(LayerParams):
        theta: FiniteFloat = 1.0  # TF.js DEFAULT_THETA


@LAYERS.register_type("prelu", "p_re_lu")
class PReLU(_SameShape):
    """x < 0 → alpha·x with a trainable alpha per input element; `shared_axes` (1-based, the
    batch axis is 0) share one alpha along those axes (TF.js PReLU)."""

    class Params(LayerParams):
        alpha_initializer: typed_spec(INITIALIZERS) = "zeros"  # TF.js DEFAULT_ALPHA_INITIALIZER
        alpha_regularizer: typed_spec(REGULARIZERS, allow_null=True) = None
        shared_axes: Union[int, list[int], None] = None

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        super().build(input_shape, context)
        shared = self.params.shared_axes
        shared = [] if shared is None else [shared] if isinstance(shared, int) else list(shared)
        for axis in shared:
            if not 1 <= axis <= len(input_shape):
                raise TrainctlError(f"{self.name}: shared_axes {shared} must be in 1..{len(input_shape)} "
                                    f"for an input of shape [null,{','.join(map(str, input_shape))}]")
        param_shape = [1 if i + 1 in shared else d for i, d in enumerate(input_shape)]
        self.alpha = self.add_weight("alpha", param_shape, self.params.alpha_initializer, context,
                                     regularizer=self.params.alpha_regularizer)
        # position → alpha index, by broadcasting the alpha indices over the input shape
        # writable (the compiled loop's typed list takes no read-only array) and no second copy of
        # a large index: the flat broadcast is a new array, the unbroadcast arange is its own
        index = np.arange(self.alpha.value.size, dtype=np.int64).reshape(param_shape)
        if index.shape != tuple(input_shape):
            index = np.broadcast_to(index, input_shape)
        self._index = np.ascontiguousarray(index.reshape(-1))
        self._acc = np.zeros(self.alpha.value.size, np.float64)
        return self.output_shape

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        n = x.shape[0]
        self._x = x.reshape(n, -1)
        y = self._y[: x.size].reshape(n, -1)
        self._kernel.prelu_forward(self._x, self.alpha.value.reshape(-1), self._index, y)
        return y.reshape(x.shape)

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        n = dy.shape[0]
        dx = self._dx[: dy.size].reshape(n, -1)
        self._kernel.prelu_backward(self._x, dy.reshape(n, -1), self.alpha.value.reshape(-1), self._index,
                                    need_dx, self._acc, self.alpha.grad.reshape(-1), dx)
        return dx.reshape(dy.shape) if need_dx else None

    def compiled_plan(self) -> PReLUPlan:
        return PReLUPlan(self.alpha.value.reshape(-1), self.alpha.grad.reshape(-1), self._index, self._acc,
                         self._y, self._dx, math.prod(self.input_shape))


@LAYERS.register_type("softmax")
class Softmax(_SameShape):
    """Softmax over `axis` (counting the batch axis; a list of adjacent axes normalises over
    them jointly). TF.js's default is axis 1, the last axis of a [null, k] input."""

    class Params(LayerParams):
        axis: Union[int, list[int]] = 1  # TF.js DEFAULT_AXIS

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        super().build(input_shape, context)
        axes = self.params.axis if isinstance(self.params.axis, list) else [self.params.axis]
        rank = len(input_shape) + 1
        resolved = sorted((a + rank if a < 0 else a) - 1 for a in axes)
        if any(not 0 <= a < len(input_shape) for a in resolved) or resolved != list(range(resolved[0], resolved[-1] + 1)):
            raise TrainctlError(f"{self.name}: axis {self.params.axis} must name adjacent feature axes of "
                                f"[null,{','.join(map(str, input_shape))}]")
        first, last = resolved[0], resolved[-1]
        if first == last == len(input_shape) - 1:  # over the last axis: a loss may fuse with it
            self.output_activation = ACTIVATIONS.get("softmax")
        self._pre = math.prod(input_shape[:first])
        self._k = math.prod(input_shape[first:last + 1])
        self._post = math.prod(input_shape[last + 1:])
        return self.output_shape

    def _view(self, a: np.ndarray, n: int) -> np.ndarray:
        return a.reshape(n * self._pre, self._k, self._post)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        n = x.shape[0]
        y = self._y[: x.size]
        self._n = n
        self._kernel.softmax_forward(self._view(np.ascontiguousarray(x), n), self._view(y, n))
        return y.reshape(x.shape)

    def backward_from_preactivation(self, dz: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        """The loss gave dLoss/d(input) already (softmax fused with cross-entropy)."""
        return dz if need_dx else None

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        if not need_dx:
            return None
        n = dy.shape[0]
        dx = self._dx[: dy.size]
        self._kernel.softmax_backward(self._view(self._y[: dy.size], n), self._view(np.ascontiguousarray(dy), n), self._view(dx, n))
        return dx.reshape(dy.shape)

    def compiled_plan(self) -> SoftmaxPlan:
        return SoftmaxPlan(self._y, self._dx, self._pre, self._k, self._post)
