"""Core layers: Dense, Activation, Dropout, Flatten, Reshape (TF.js names and semantics)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import model_validator

from trainctl.nn.activations import ACTIVATIONS
from trainctl.config.base import PositiveInt, Seed, Size, UnitInterval, bounded_int, registry_id, typed_spec
from trainctl.errors import TrainctlError
from trainctl.nn.initializers import INITIALIZERS
from trainctl.nn.layers.base import (LAYERS, BuildContext, DensePlan, DropoutPlan, Layer, LayerParams, RandomLayer, Shape,
                                   with_activity_grad)
from trainctl.nn.layers.plans import ActivationPlan, ViewPlan
from trainctl.nn.regularizers import REGULARIZERS, build_regularizer


def _kernels():
    from trainctl.kernels import activations, layers

    return activations, layers


@LAYERS.register_type("dense")
class Dense(Layer):
    """y = activation(x @ kernel + bias) over the last axis; kernel is [in, units]."""

    class Params(LayerParams):
        units: PositiveInt
        activation: registry_id(ACTIVATIONS) = "linear"  # TF.js default: no activation
        use_bias: bool = True
        kernel_initializer: typed_spec(INITIALIZERS) = "glorot_normal"  # TF.js Dense DEFAULT_KERNEL_INITIALIZER (Keras: glorot_uniform)
        bias_initializer: typed_spec(INITIALIZERS) = "zeros"  # TF.js default
        kernel_regularizer: typed_spec(REGULARIZERS, allow_null=True) = None
        bias_regularizer: typed_spec(REGULARIZERS, allow_null=True) = None
        activity_regularizer: typed_spec(REGULARIZERS, allow_null=True) = None

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        if len(input_shape) < 1:
            raise TrainctlError(f"{self.name}: Dense needs an input with at least one feature axis")
        super().build(input_shape, context)
        p = self.params
        n_in = int(input_shape[-1])
        self.activation = self.output_activation = ACTIVATIONS.get(p.activation)
        self.weights = []
        self.kernel = self.add_weight("kernel", (n_in, p.units), p.kernel_initializer, context,
                                      regularizer=p.kernel_regularizer)
        self.bias = None
        if p.use_bias:
            self.bias = self.add_weight("bias", (p.units,), p.bias_initializer, context, regularizer=p.bias_regularizer)
        self.activity_regularizer = build_regularizer(p.activity_regularizer)
        self.dtype = np.dtype(context.dtype)
        return self.output_shape

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (*input_shape[:-1], self.params.units)

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        rows = batch_size * math.prod(self.input_shape[:-1])
        dtype = self.kernel.value.dtype
        units, n_in = self.params.units, self.input_shape[-1]
        self._z = np.empty((rows, units), dtype)  # pre-activation, kept for backward
        self._y = np.empty((rows, units), dtype)
        self._dz = np.empty((rows, units), dtype)
        self._dx = np.empty((rows, n_in), dtype)
        self._activity_grad = np.empty((rows, units), dtype) if self.activity_regularizer is not None else None
        self._zero_bias = np.zeros(units, dtype)  # stands in for a missing bias
        self._scratch_bias_grad = np.zeros(units, dtype)
        self._x2d: np.ndarray | None = None
        self._views: dict[int, tuple[np.ndarray, ...]] = {}
        from trainctl.kernels import steps

        # one compiled call each way (matrix products included), the same instructions the compiled
        # loop runs, compiled for this layer's activation only
        self._activation_code = self.activation.code
        self._forward_kernel, self._backward_kernel = steps.dense_kernels_for(self._activation_code)
        self._linear_code = ACTIVATIONS.get("linear").code
        # the fused softmax + cross-entropy backward starts from dz: the linear one (compiled on first use)
        self._linear_backward_kernel = steps.dense_kernels_for(self._linear_code)[1]

    def _buffers(self, rows: int) -> tuple[np.ndarray, ...]:
        """(z, y, dz, dx) views for `rows` rows, made once per row count (the hot loop reuses them)."""
        views = self._views.get(rows)
        if views is None:
            views = self._views[rows] = (self._z[:rows], self._y[:rows], self._dz[:rows], self._dx[:rows])
        return views

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        flat = x.ndim == 2
        x2d = x if flat else x.reshape(-1, x.shape[-1])
        if not x2d.flags.c_contiguous:
            x2d = np.ascontiguousarray(x2d)
        z, y, _, _ = self._buffers(x2d.shape[0])
        bias = self.bias.value if self.bias is not None else self._zero_bias
        self._forward_kernel(x2d, self.kernel.value, bias, z, y, self._activation_code)
        self._x2d = x2d
        return y if flat else y.reshape(x.shape[0], *self.output_shape)

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        return self._backward(dy, self._activation_code, need_dx)

    def backward_from_preactivation(self, dz: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        """Backward when the loss already gave dLoss/dz (softmax fused with cross-entropy)."""
        return self._backward(dz, self._linear_code, need_dx)

    def _backward(self, dy: np.ndarray, activation_code: int, need_dx: bool) -> np.ndarray | None:
        x2d = self._x2d
        z, y, dz, dx = self._buffers(x2d.shape[0])
        flat = dy.ndim == 2  # Dense keeps the rank, so the input was 2-D too
        dy2d = dy if flat else dy.reshape(z.shape)
        if self.activity_regularizer is not None:
            dy2d = self._add_activity_grad(y, dy2d)
        bias_grad = self.bias.grad if self.bias is not None else self._scratch_bias_grad
        if not dy2d.flags.c_contiguous:
            dy2d = np.ascontiguousarray(dy2d)
        kernel = self._backward_kernel if activation_code == self._activation_code else self._linear_backward_kernel
        kernel(x2d, self.kernel.value, z, y, dy2d, dz, dx, self.kernel.grad, bias_grad, activation_code, need_dx)
        if not need_dx:
            return None
        return dx if flat else dx.reshape(dy.shape[0], *self.input_shape)

    def compiled_plan(self) -> DensePlan | None:
        return DensePlan(self.kernel.value, self.bias.value if self.bias is not None else self._zero_bias,
                         self.kernel.grad, self.bias.grad if self.bias is not None else self._scratch_bias_grad,
                         self._z, self._y, self._dz, self._dx, int(self.activation.code),
                         activity_regularizer=self.activity_regularizer, activity_grad=self._activity_grad)

    @property
    def has_activity_regularizer(self) -> bool:
        return self.activity_regularizer is not None

    # Activity regularization: TF.js declares it but throws "not supported yet" when a layer
    # with one runs on tensors, so Keras defines it: penalty(output) / batch_size joins the loss.
    def activity_loss(self, n: int) -> float:
        if self.activity_regularizer is None:
            return 0.0
        rows = self._x2d.shape[0]
        return self.activity_regularizer.penalty(self._y[:rows]) / n

    def _add_activity_grad(self, y: np.ndarray, dy2d: np.ndarray) -> np.ndarray:
        # grad of penalty(y)/n added to dL/dy, in a buffer of this layer's (the caller's dy is intact)
        n = self._batch_rows_to_samples(y.shape[0])
        return with_activity_grad(self.activity_regularizer, y, dy2d, self._activity_grad[: y.shape[0]], n)

    def _batch_rows_to_samples(self, rows: int) -> int:
        return rows // max(1, math.prod(self.input_shape[:-1]))

    def buffer_nbytes(self, batch_size: int, itemsize: int) -> int:
        rows = batch_size * math.prod(self.input_shape[:-1])
        units, n_in = self.params.units, self.input_shape[-1]
        per_row = (3 + (self.activity_regularizer is not None)) * units + n_in  # z, y, dz (+ activity grad), dx
        return (rows * per_row + 2 * units) * itemsize  # + the zero bias and scratch bias grad

    def flops_per_sample(self) -> int:
        positions = math.prod(self.input_shape[:-1])
        return positions * (2 * self.input_shape[-1] * self.params.units + (self.params.units if self.bias else 0))


@LAYERS.register_type("activation")
class Activation(Layer):
    class Params(LayerParams):
        activation: registry_id(ACTIVATIONS)

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        self.activation = self.output_activation = ACTIVATIONS.get(self.params.activation)
        self.dtype = context.dtype
        return super().build(input_shape, context)

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        rows = batch_size * math.prod(self.input_shape[:-1]) if self.input_shape else batch_size
        last = self.input_shape[-1] if self.input_shape else 1
        self._y = np.empty((rows, last), self.dtype)
        self._dx = np.empty((rows, last), self.dtype)
        self._act_kernels, _ = _kernels()

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        self._x2d = x.reshape(-1, self._y.shape[1])
        y = self._y[: self._x2d.shape[0]]
        self._act_kernels.activation_forward(self._x2d, y, self.activation.code)
        return y.reshape(x.shape)

    def backward_from_preactivation(self, dz: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        return dz

    def buffer_nbytes(self, batch_size: int, itemsize: int) -> int:
        return 2 * batch_size * math.prod(self.input_shape) * itemsize  # y and dx

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        rows = self._x2d.shape[0]
        dx = self._dx[:rows]
        self._act_kernels.activation_backward(self._x2d, self._y[:rows], dy.reshape(rows, -1), dx, self.activation.code)
        return dx.reshape(dy.shape)

    def compiled_plan(self) -> ActivationPlan:
        return ActivationPlan(self._y, self._dx, int(self.activation.code))


@LAYERS.register_type("dropout")
class Dropout(RandomLayer):
    """Zeroes a `rate` fraction of inputs in training and scales the rest by 1/(1-rate)
    (TF.js: keep where uniform >= rate); identity at inference."""

    class Params(LayerParams):
        rate: UnitInterval
        seed: Seed | None = None  # default: derived from the config seed and the layer name
        noise_shape: list[Size] | None = None

        @model_validator(mode="after")
        def _no_noise_shape(self):
            if self.noise_shape is not None:
                raise ValueError("noise_shape is not supported yet; remove it")
            return self

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        size = batch_size * math.prod(self.input_shape)
        self._uniform = np.empty(size, np.float64)
        self._mask = np.empty(size, self.dtype)
        self._y = np.empty(size, self.dtype)
        self._dx = np.empty(size, self.dtype)
        _, self._layer_kernels = _kernels()
        self._active = False

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        self._active = training and self.params.rate > 0
        if not self._active:
            return x
        size = x.size
        self.rng.random(out=self._uniform[:size])
        y = self._y[:size]
        self._layer_kernels.dropout_forward(x.reshape(-1), self._uniform[:size], self.params.rate, self._mask[:size], y)
        return y.reshape(x.shape)

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        if not self._active:
            return dy
        size = dy.size
        dx = self._dx[:size]
        np.multiply(dy.reshape(-1), self._mask[:size], out=dx)
        return dx.reshape(dy.shape)

    def buffer_nbytes(self, batch_size: int, itemsize: int) -> int:
        return batch_size * math.prod(self.input_shape) * (8 + 3 * itemsize)  # uniforms (float64), mask, y, dx

    def compiled_plan(self) -> DropoutPlan:
        return DropoutPlan(float(self.params.rate), self.rng, self._mask, self._y, self._dx, math.prod(self.input_shape))


@LAYERS.register_type("flatten")
class Flatten(Layer):
    passes_values = True

    class Params(LayerParams):
        data_format: str | None = None  # accepted for TF.js compatibility; channels_last only

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (math.prod(input_shape),)

    def buffer_nbytes(self, batch_size: int, itemsize: int) -> int:
        return 0  # views only

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        return dy.reshape(dy.shape[0], *self.input_shape)

    def compiled_plan(self) -> ViewPlan:
        return ViewPlan()


@LAYERS.register_type("reshape")
class Reshape(Layer):
    passes_values = True

    class Params(LayerParams):
        target_shape: list[bounded_int(ge=-1)]  # one -1 may stand for the rest

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        target = list(self.params.target_shape)
        size = math.prod(input_shape)
        unknown = [i for i, d in enumerate(target) if d == -1]
        if len(unknown) > 1 or any(d == 0 or d < -1 for d in target):
            raise TrainctlError(f"{self.name}: target_shape {target} may hold one -1 and positive sizes only")
        if unknown:
            known = math.prod(d for d in target if d != -1)
            if size % known:
                raise TrainctlError(f"{self.name}: cannot reshape {list(input_shape)} ({size} values) to {target}")
            target[unknown[0]] = size // known
        if math.prod(target) != size:
            raise TrainctlError(f"{self.name}: cannot reshape {list(input_shape)} ({size} values) to {target}")
        return tuple(target)

    def buffer_nbytes(self, batch_size: int, itemsize: int) -> int:
        return 0  # views only

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        return x.reshape(x.shape[0], *self.output_shape)

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        return dy.reshape(dy.shape[0], *self.input_shape)

    def compiled_plan(self) -> ViewPlan:
        return ViewPlan()

    def to_keras_config(self, config: dict[str, Any], fmt: str) -> dict[str, Any]:
        # tfjs-layers 4.22 leaves a -1 unresolved in its output shape ([null,2,null]), so a
        # Flatten or Dense after it fails to build there: write the size it stands for.
        if fmt == "tfjs":
            config["target_shape"] = list(self.output_shape)
        return config
