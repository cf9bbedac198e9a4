"""Noise and dropout layers that act in training only (identity at inference), TF.js formulas:
SpatialDropout1D/2D, GaussianNoise, GaussianDropout, AlphaDropout.

Each draws from its own stream rng_for(seed, "dropout", layer name) (`seed` option, else the
config seed); the stream's state is the layer's get_state(), so a resumed run draws the
same numbers.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import BeforeValidator

from trainctl.config.base import NonNegativeFloat, Seed, UnitInterval
from trainctl.errors import ExportRefused, TrainctlError
from trainctl.nn.layers.base import LAYERS, BuildContext, LayerParams, RandomLayer, Shape
from trainctl.nn.layers.plans import NoisePlan, ViewPlan
from trainctl.registry import snake_case

DataFormat = Annotated[Literal["channels_last", "channels_first"],
                       BeforeValidator(lambda v: snake_case(v) if isinstance(v, str) else v)]

# SELU's constants (TF.js AlphaDropout)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _kernels():
    from trainctl.kernels import noise

    return noise


class _RandomLayer(RandomLayer):
    """A noise layer: mask, output and input-gradient buffers; backward multiplies by the mask."""

    class Params(LayerParams):
        seed: Seed | None = None  # default: derived from the config seed and the layer name

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        size = batch_size * math.prod(self.input_shape)
        self._y, self._dx, self._mask = (np.empty(size, self.dtype) for _ in range(3))
        self._kernel = _kernels()
        self._active = False

    def _drops(self, training: bool) -> bool:
        """Whether this forward draws a mask: in training, for 0 < rate < 1 (TF.js passes the
        input through at rate 0 or 1); backward multiplies by the mask only then."""
        self._active = training and self._active_rate()
        return self._active

    def _active_rate(self) -> bool:
        return 0 < self.params.rate < 1

    def compiled_plan(self) -> NoisePlan | ViewPlan:
        """The training step (the compiled loop only trains): inactive, x passes through."""
        if not self._active_rate():
            return ViewPlan()
        op, normal, options = self._noise_kernel()
        return NoisePlan(getattr(self._kernel, op), self.rng, math.prod(self.input_shape), normal, options,
                         self._mask, self._y, self._dx)

    def _noise_kernel(self) -> tuple[str, bool, tuple[float, ...]]:
        """(kernels/noise op name, whether it draws standard normals, its float options)."""
        raise NotImplementedError

    def _normal(self, buffer: np.ndarray, size: int) -> np.ndarray:
        """`size` standard-normal draws in the layer's dtype, into the head of `buffer`."""
        draws = buffer[:size]
        self.rng.standard_normal(out=draws, dtype=self.dtype)
        return draws

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        if not self._active or not need_dx:
            return dy if need_dx else None
        size = dy.size
        dx = self._dx[:size]
        self._kernel.multiply(dy.reshape(-1), self._mask[:size], dx)
        return dx.reshape(dy.shape)


class _SpatialDropout(_RandomLayer):
    """Drops whole channels (one draw per sample and channel), scaling the kept by 1/(1-rate)."""

    rank: int

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        if len(input_shape) != self.rank:
            raise TrainctlError(f"{self.name}: {self.class_name} expects inputs of rank {self.rank + 1} "
                                f"([null,{'d,' * (self.rank - 1)}channels]), got [null,{','.join(map(str, input_shape))}]")
        super().build(input_shape, context)
        self.channels_last = getattr(self.params, "data_format", "channels_last") == "channels_last"
        self.channels = input_shape[-1] if self.channels_last else input_shape[0]
        self.positions = math.prod(input_shape) // self.channels
        return self.output_shape

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        self._uniform = np.empty((batch_size, self.channels), np.float64)
        self._channel_mask = np.empty((batch_size, self.channels), self.dtype)

    def _three_d(self, a: np.ndarray, n: int) -> np.ndarray:
        shape = (n, self.positions, self.channels) if self.channels_last else (n, self.channels, self.positions)
        return a.reshape(shape)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        if not self._drops(training):
            return x
        n = x.shape[0]
        uniform, mask = self._uniform[:n], self._channel_mask[:n]
        self.rng.random(out=uniform)
        y = self._y[: x.size]
        self._kernel.spatial_dropout_forward(self._three_d(x, n), uniform, self.params.rate, self.channels_last, mask,
                                             self._three_d(y, n))
        return y.reshape(x.shape)

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        if not self._active or not need_dx:
            return dy if need_dx else None
        n = dy.shape[0]
        dx = self._dx[: dy.size]
        self._kernel.spatial_dropout_backward(self._three_d(dy, n), self._channel_mask[:n], self.channels_last, self._three_d(dx, n))
        return dx.reshape(dy.shape)

    def compiled_plan(self) -> NoisePlan | ViewPlan:
        if not self._active_rate():
            return ViewPlan()
        return NoisePlan(self._kernel.NOISE_SPATIAL_DROPOUT, self.rng, self.channels, False, (float(self.params.rate),),
                         self._channel_mask.reshape(-1), self._y, self._dx, self.channels, self.channels_last)


@LAYERS.register_type("spatial_dropout1d")
class SpatialDropout1D(_SpatialDropout):
    """Input [null, steps, channels]; TF.js noise shape [n, 1, channels]."""

    rank = 2

    class Params(_RandomLayer.Params):
        rate: UnitInterval


@LAYERS.register_type("spatial_dropout2d")
class SpatialDropout2D(_SpatialDropout):
    """Input [null, rows, cols, channels] (or channels_first); Keras SpatialDropout2D (TF.js has none)."""

    rank = 3

    def to_keras_config(self, config, fmt):
        if fmt == "tfjs":
            raise ExportRefused(f"{self.name}: TF.js has no SpatialDropout2D layer (tfjs export)")
        return config

    class Params(_RandomLayer.Params):
        rate: UnitInterval
        data_format: DataFormat = "channels_last"


@LAYERS.register_type("gaussian_noise")
class GaussianNoise(_RandomLayer):
    """y = x + N(0, stddev) in training (TF.js GaussianNoise)."""

    class Params(_RandomLayer.Params):
        stddev: NonNegativeFloat

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        self._active = False  # additive noise: dx = dy, no mask
        if not training:
            return x
        y = self._y[: x.size]
        self._kernel.gaussian_noise_forward(x.reshape(-1), self._normal(self._mask, x.size), self.params.stddev, y)
        return y.reshape(x.shape)

    def _active_rate(self) -> bool:
        return True  # additive noise in every training step

    def _noise_kernel(self):
        return "NOISE_GAUSSIAN", True, (float(self.params.stddev),)


@LAYERS.register_type("gaussian_dropout")
class GaussianDropout(_RandomLayer):
    """y = x · N(1, √(rate/(1−rate))) in training, for 0 < rate < 1 (TF.js GaussianDropout)."""

    class Params(_RandomLayer.Params):
        rate: UnitInterval

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        if not self._drops(training):
            return x
        rate, size = self.params.rate, x.size
        normal = self._normal(self._dx, size)  # dx's buffer holds the draws until backward
        y = self._y[:size]
        self._kernel.gaussian_dropout_forward(x.reshape(-1), normal, self._stddev(), self._mask[:size], y)
        return y.reshape(x.shape)

    def _stddev(self) -> float:
        rate = self.params.rate
        return math.sqrt(rate / (1 - rate))

    def _noise_kernel(self):
        return "NOISE_GAUSSIAN_DROPOUT", True, (self._stddev(),)


@LAYERS.register_type("alpha_dropout")
class AlphaDropout(_RandomLayer):
    """TF.js AlphaDropout in training, for 0 < rate < 1: kept = u >= rate,
    y = a·(x·kept + (kept − 1)·alpha_p) + b, alpha_p = −SELU α·λ,
    a = ((1−rate)(1 + rate·alpha_p²))^−½, b = −a·alpha_p·rate. (TF.js writes (kept − 1)·alpha_p
    where Keras writes alpha_p·(1 − kept): dropped units take −alpha_p here, as in TF.js 4.22.)"""

    class Params(_RandomLayer.Params):
        rate: UnitInterval
        noise_shape: list[int] | None = None  # TF.js option; only the full input shape is supported

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        shape = self.params.noise_shape
        if shape is not None and tuple(shape[1:]) != tuple(input_shape):
            raise TrainctlError(f"{self.name}: noise_shape {shape} is not supported (only the input's own shape)")
        return super().build(input_shape, context)

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        self._uniform = np.empty(batch_size * math.prod(self.input_shape), np.float64)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        if not self._drops(training):
            return x
        size = x.size
        uniform, y = self._uniform[:size], self._y[:size]
        self.rng.random(out=uniform)
        self._kernel.alpha_dropout_forward(x.reshape(-1), uniform, *self._coefficients(), self._mask[:size], y)
        return y.reshape(x.shape)

    def _coefficients(self) -> tuple[float, float, float, float]:
        """(rate, a, b, alpha_p) of the TF.js formula above."""
        rate = self.params.rate
        alpha_p = -SELU_ALPHA * SELU_SCALE
        a = ((1 - rate) * (1 + rate * alpha_p ** 2)) ** -0.5
        b = -a * alpha_p * rate
        return rate, a, b, alpha_p

    def _noise_kernel(self):
        return "NOISE_ALPHA_DROPOUT", False, tuple(float(c) for c in self._coefficients())
