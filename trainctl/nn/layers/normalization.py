"""BatchNormalization and LayerNormalization (TF.js names, defaults and update rule).

`axis` counts the batch axis as TF.js does: -1 (the default) is the last axis, 1 the channel
axis of channels_first images. The moving statistics are non-trainable weights, updated in
forward(training=True) only, exactly as TF.js's doMovingAverage.
"""

from __future__ import annotations

import math
from typing import Union

import numpy as np

from trainctl.config.base import PositiveFloat, typed_spec
from trainctl.errors import TrainctlError
from trainctl.nn.initializers import INITIALIZERS
from trainctl.nn.layers.base import LAYERS, BuildContext, Layer, LayerParams, Shape
from trainctl.nn.layers.plans import BatchNormPlan, LayerNormPlan
from trainctl.nn.regularizers import REGULARIZERS
from trainctl.config.base import FiniteFloat


def _kernels():
    from trainctl.kernels import normalization

    return normalization


def _feature_axis(axis: int, input_shape: Shape, name: str) -> int:
    """A TF.js axis (counting the batch axis, negatives from the end) → index into input_shape."""
    rank = len(input_shape) + 1
    full = axis + rank if axis < 0 else axis
    if not 1 <= full < rank:
        raise TrainctlError(f"{name}: axis {axis} is not a feature axis of an input of shape "
                            f"[null,{','.join(map(str, input_shape))}]")
    return full - 1


def _three_d(shape: Shape, first: int, last: int) -> tuple[int, int, int]:
    """(pre, k, post) sizes per sample for axes first..last (inclusive) of `shape`."""
    return math.prod(shape[:first]), math.prod(shape[first:last + 1]), math.prod(shape[last + 1:])


class _Normalization(Layer):
    """What both normalizations share: gamma/beta (either may be off), the [pre, k, post]
    view of a batch, the xhat/y/dx buffers."""

    def _affine_weights(self, shape: tuple[int, ...], k: int, context: BuildContext) -> None:
        p, dtype = self.params, context.dtype
        self.gamma = self.add_weight("gamma", shape, p.gamma_initializer, context, regularizer=p.gamma_regularizer) if p.scale else None
        self.beta = self.add_weight("beta", shape, p.beta_initializer, context, regularizer=p.beta_regularizer) if p.center else None
        self._ones, self._zeros = np.ones(k, dtype), np.zeros(k, dtype)
        self._scratch_grads = (np.zeros(k, dtype), np.zeros(k, dtype))

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        size = batch_size * math.prod(self.input_shape)
        dtype = self._ones.dtype
        self._xhat, self._y, self._dx = (np.empty(size, dtype) for _ in range(3))
        self._kernel = _kernels()

    def _view(self, buffer: np.ndarray, n: int) -> np.ndarray:
        return buffer[: n * self._pre * self._k * self._post].reshape(n * self._pre, self._k, self._post)

    def _three_d(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a).reshape(a.shape[0] * self._pre, self._k, self._post)

    def _gamma_beta(self) -> tuple[np.ndarray, np.ndarray]:
        """gamma and beta as [k] (ones / zeros when off)."""
        gamma = self.gamma.value.reshape(-1) if self.gamma is not None else self._ones
        beta = self.beta.value.reshape(-1) if self.beta is not None else self._zeros
        return gamma, beta

    def _affine_grads(self) -> tuple[np.ndarray, np.ndarray]:
        """Where dgamma and dbeta go, as [k] (scratch when off)."""
        dgamma = self.gamma.grad.reshape(-1) if self.gamma is not None else self._scratch_grads[0]
        dbeta = self.beta.grad.reshape(-1) if self.beta is not None else self._scratch_grads[1]
        return dgamma, dbeta


@LAYERS.register_type("batch_normalization")
class BatchNormalization(_Normalization):
    """y = gamma·(x − μ)/√(σ² + ε) + beta per feature of `axis`; μ, σ² of the batch in
    training (moving statistics updated), the moving statistics otherwise."""

    class Params(LayerParams):
        axis: int = -1  # TF.js default: the last axis (channels_last)
        momentum: FiniteFloat = 0.99  # TF.js default
        epsilon: PositiveFloat = 1e-3  # TF.js default
        center: bool = True  # learn beta
        scale: bool = True  # learn gamma
        beta_initializer: typed_spec(INITIALIZERS) = "zeros"
        gamma_initializer: typed_spec(INITIALIZERS) = "ones"
        moving_mean_initializer: typed_spec(INITIALIZERS) = "zeros"
        moving_variance_initializer: typed_spec(INITIALIZERS) = "ones"
        beta_regularizer: typed_spec(REGULARIZERS, allow_null=True) = None
        gamma_regularizer: typed_spec(REGULARIZERS, allow_null=True) = None

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        super().build(input_shape, context)
        p = self.params
        self.feature_axis = _feature_axis(p.axis, self.input_shape, self.name)
        k = self.input_shape[self.feature_axis]
        dtype = context.dtype
        # TF.js creates gamma, beta, moving_mean, moving_variance in this order
        self._affine_weights((k,), k, context)
        self.moving_mean = self.add_weight("moving_mean", (k,), p.moving_mean_initializer, context, trainable=False)
        self.moving_variance = self.add_weight("moving_variance", (k,), p.moving_variance_initializer, context, trainable=False)
        self._sums, self._squares = np.zeros(k, np.float64), np.zeros(k, np.float64)
        self.batch_mean, self.batch_variance, self._inv_std = np.zeros(k, dtype), np.zeros(k, dtype), np.zeros(k, dtype)
        self._decay = float(dtype.type(1.0 - p.momentum))  # TF.js: decay = 1 - momentum, a float32 scalar
        self._pre, self._k, self._post = _three_d(self.input_shape, self.feature_axis, self.feature_axis)
        return self.output_shape

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        n = x.shape[0]
        x3 = self._three_d(x)
        self._training = bool(training)
        gamma, beta = self._gamma_beta()
        y = self._view(self._y, n)
        self._kernel.batch_norm_forward(
            x3, gamma, beta, self.params.epsilon, self._training, self._decay,
            self.moving_mean.value, self.moving_variance.value, self._sums, self._squares,
            self.batch_mean, self.batch_variance, self._inv_std, self._view(self._xhat, n), y)
        return y.reshape(x.shape)

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        n = dy.shape[0]
        dy3 = self._three_d(dy)
        gamma, _ = self._gamma_beta()
        dgamma, dbeta = self._affine_grads()
        dx = self._view(self._dx, n)
        self._kernel.batch_norm_backward(dy3, self._view(self._xhat, n), gamma, self._inv_std, self._training,
                                         need_dx, self._sums, self._squares, dgamma, dbeta, dx)
        return dx.reshape(dy.shape) if need_dx else None

    def compiled_plan(self) -> BatchNormPlan:
        """The training-mode step (the compiled loop only trains)."""
        gamma, beta = self._gamma_beta()
        dgamma, dbeta = self._affine_grads()
        return BatchNormPlan(gamma, beta, dgamma, dbeta, self.moving_mean.value, self.moving_variance.value,
                             self._sums, self._squares, self.batch_mean, self.batch_variance, self._inv_std,
                             self._xhat, self._y, self._dx, float(self.params.epsilon), self._decay,
                             self._pre, self._k, self._post)

    def flops_per_sample(self) -> int:
        return 4 * math.prod(self.input_shape)


@LAYERS.register_type("layer_normalization")
class LayerNormalization(_Normalization):
    """y = gamma·(x − μ)/√(σ² + ε) + beta with μ, σ² of each sample over `axis` (TF.js
    LayerNormalization; the axes must be adjacent, e.g. -1 or [-2, -1])."""

    class Params(LayerParams):
        axis: Union[int, list[int]] = -1  # TF.js default: the last axis
        epsilon: PositiveFloat = 1e-3  # TF.js default
        center: bool = True
        scale: bool = True
        beta_initializer: typed_spec(INITIALIZERS) = "zeros"
        gamma_initializer: typed_spec(INITIALIZERS) = "ones"
        beta_regularizer: typed_spec(REGULARIZERS, allow_null=True) = None
        gamma_regularizer: typed_spec(REGULARIZERS, allow_null=True) = None

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        super().build(input_shape, context)
        p = self.params
        axes = p.axis if isinstance(p.axis, list) else [p.axis]
        resolved = sorted(_feature_axis(a, self.input_shape, self.name) for a in axes)
        if len(set(resolved)) != len(resolved):
            raise TrainctlError(f"{self.name}: duplicate axes in {axes}")
        if resolved != list(range(resolved[0], resolved[-1] + 1)):
            raise TrainctlError(f"{self.name}: axis {axes} must name adjacent axes (e.g. [-2, -1])")
        shape = tuple(self.input_shape[a] for a in resolved)
        self._pre, self._k, self._post = _three_d(self.input_shape, resolved[0], resolved[-1])
        k = self._k
        self._affine_weights(shape, k, context)
        self._acc = (np.zeros(k, np.float64), np.zeros(k, np.float64))
        return self.output_shape

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        self._inv_std = np.empty(batch_size * self._pre * self._post, self._ones.dtype)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        n = x.shape[0]
        x3 = self._three_d(x)
        gamma, beta = self._gamma_beta()
        y = self._view(self._y, n)
        inv_std = self._inv_std[: n * self._pre * self._post].reshape(n * self._pre, self._post)
        self._kernel.layer_norm_forward(x3, gamma, beta, self.params.epsilon, inv_std, self._view(self._xhat, n), y)
        return y.reshape(x.shape)

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        n = dy.shape[0]
        dy3 = self._three_d(dy)
        gamma, _ = self._gamma_beta()
        dgamma, dbeta = self._affine_grads()
        inv_std = self._inv_std[: n * self._pre * self._post].reshape(n * self._pre, self._post)
        dx = self._view(self._dx, n)
        self._kernel.layer_norm_backward(dy3, self._view(self._xhat, n), gamma, inv_std, need_dx,
                                         self._acc[0], self._acc[1], dgamma, dbeta, dx)
        return dx.reshape(dy.shape) if need_dx else None

    def compiled_plan(self) -> LayerNormPlan:
        (gamma, beta), (dgamma, dbeta) = self._gamma_beta(), self._affine_grads()
        return LayerNormPlan(gamma, beta, dgamma, dbeta, self._inv_std, self._xhat, self._y, self._dx, *self._acc,
                             self.params.epsilon, self._pre, self._k, self._post)

    def flops_per_sample(self) -> int:
        return 5 * math.prod(self.input_shape)
