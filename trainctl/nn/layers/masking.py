"""Masking: marks absent time steps for the recurrent layers after it."""

from __future__ import annotations

import math

import numpy as np

from trainctl.errors import TrainctlError
from trainctl.nn.layers.base import LAYERS, BuildContext, Layer, LayerParams, Shape
from trainctl.nn.layers.plans import MaskingPlan


@LAYERS.register_type("masking")
class Masking(Layer):
    """Marks the time steps whose features all equal `mask_value` as absent, for the
    recurrent layers after it; outputs x * mask (TF.js/Keras Masking)."""

    class Params(LayerParams):
        mask_value: float = 0.0  # TF.js default

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        if len(input_shape) < 2:
            raise TrainctlError(f"{self.name}: Masking needs inputs [steps, features], got {list(input_shape)}")
        self.dtype = context.dtype
        return super().build(input_shape, context)

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        steps = self.input_shape[0]
        self._mask = np.empty((batch_size, steps), bool)
        self._y = np.empty((batch_size, *self.input_shape), self.dtype)
        self._dx = np.empty((batch_size, *self.input_shape), self.dtype)
        self._keep = np.empty(batch_size * steps, self.dtype)  # the mask as the compiled loop holds it

    def buffer_nbytes(self, batch_size: int, itemsize: int) -> int:
        steps = self.input_shape[0]
        return batch_size * (steps * (1 + itemsize) + 2 * math.prod(self.input_shape) * itemsize)  # masks, y, dx

    def compute_mask(self, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        n = x.shape[0]
        out = self._mask[:n]
        np.any(x.reshape(n, x.shape[1], -1) != self.params.mask_value, axis=-1, out=out)
        if mask is not None:
            out &= mask
        return out

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        n = x.shape[0]
        keep = self._mask[:n].reshape(n, x.shape[1], *([1] * (x.ndim - 2)))
        y = self._y[:n]
        np.multiply(x, keep, out=y)
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        if not need_dx:
            return None
        n = dy.shape[0]
        keep = self._mask[:n].reshape(n, dy.shape[1], *([1] * (dy.ndim - 2)))
        dx = self._dx[:n]
        np.multiply(dy, keep, out=dx)
        return dx

    def compiled_plan(self) -> MaskingPlan:
        steps = self.input_shape[0]
        return MaskingPlan(self._y, self._dx, self._keep, float(self.dtype.type(self.params.mask_value)), steps,
                           math.prod(self.input_shape) // steps)
