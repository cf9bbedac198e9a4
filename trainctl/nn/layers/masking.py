"""Masking: marks absent positions (time steps) for the recurrent layers after it."""

from __future__ import annotations

import math

import numpy as np

from trainctl.errors import TrainctlError
from trainctl.nn.layers.base import LAYERS, BuildContext, Layer, LayerParams, MaskSpec, Shape
from trainctl.nn.layers.plans import MaskingPlan


@LAYERS.register_type("masking")
class Masking(Layer):
    """Marks the positions whose features (the last axis) all equal `mask_value` as absent and
    outputs x * mask (TF.js 4.22 / Keras Masking). The mask is over every axis but the last:
    [n, steps] for inputs [n, steps, features], [n, steps, a] for [n, steps, a, features]. It is
    made from the input alone: a mask the layer receives (an Embedding's mask_zero) is dropped,
    as TF.js's and Keras's computeMask ignore it."""

    class Params(LayerParams):
        mask_value: float = 0.0  # TF.js default

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        if len(input_shape) < 2:
            raise TrainctlError(f"{self.name}: Masking needs inputs [steps, features], got {list(input_shape)}")
        self.dtype = context.dtype
        return super().build(input_shape, context)

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        self._mask = np.empty((batch_size, *self.input_shape[:-1]), bool)
        self._y = np.empty((batch_size, *self.input_shape), self.dtype)
        self._dx = np.empty((batch_size, *self.input_shape), self.dtype)
        self._keep = np.empty(batch_size * self._positions(), self.dtype)  # the mask as the compiled loop holds it

    def _positions(self) -> int:
        """Mask values per sample: one per position of every axis but the last."""
        return math.prod(self.input_shape[:-1])

    def buffer_nbytes(self, batch_size: int, itemsize: int) -> int:
        masks = batch_size * self._positions() * (1 + itemsize)
        return masks + batch_size * 2 * math.prod(self.input_shape) * itemsize  # masks, y, dx

    def compute_mask(self, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        out = self._mask[:x.shape[0]]
        np.any(x != self.params.mask_value, axis=-1, out=out)
        return out

    def output_mask_spec(self, mask: MaskSpec | None) -> MaskSpec:
        return MaskSpec(self.input_shape[:-1], self.name)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        n = x.shape[0]
        y = self._y[:n]
        np.multiply(x, self._mask[:n, ..., None], out=y)
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        if not need_dx:
            return None
        n = dy.shape[0]
        dx = self._dx[:n]
        np.multiply(dy, self._mask[:n, ..., None], out=dx)
        return dx

    def compiled_plan(self) -> MaskingPlan:
        return MaskingPlan(self._y, self._dx, self._keep, float(self.dtype.type(self.params.mask_value)),
                           self._positions(), self.input_shape[-1])
