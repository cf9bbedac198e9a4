"""Embedding: integer indices [null, ...] → rows of a trainable table [null, ..., output_dim]
(TF.js Embedding: defaults, weight name `embeddings`, randomUniform(-0.05, 0.05) init)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import numpy as np

from trainctl.config.base import PositiveInt, typed_spec
from trainctl.errors import DataError, TrainctlError
from trainctl.nn.initializers import INITIALIZERS
from trainctl.nn.layers.base import LAYERS, BuildContext, Layer, LayerParams, MaskSpec, Shape
from trainctl.nn.regularizers import REGULARIZERS


@dataclass(frozen=True)
class EmbeddingPlan:
    """Embedding as the compiled loop runs it (kernels/recurrent_steps.py): the table and its
    gradient, y [positions, output_dim], dx the zeros the indices get; with mask_zero `keep`
    [positions] (one per index, over every axis of the input, as compute_mask), the mask as
    1.0 / 0.0 (the recurrent layers after it read it; over more than one axis none can: the
    model's build refuses one reaching them)."""

    embeddings: np.ndarray
    embeddings_grad: np.ndarray
    y: np.ndarray
    dx: np.ndarray
    output_dim: int
    keep: np.ndarray | None = None


def _kernels():
    from trainctl.kernels import resampling

    return resampling


@LAYERS.register_type("embedding")
class Embedding(Layer):
    """Looks up each index's row. Indices arrive as floats holding whole numbers in
    [0, input_dim); any other value is an error naming its row. `mask_zero` is carried in
    the config for the recurrent layers (index 0 then means padding)."""

    class Params(LayerParams):
        input_dim: PositiveInt  # vocabulary size: indices are 0..input_dim-1
        output_dim: PositiveInt
        embeddings_initializer: typed_spec(INITIALIZERS) = "random_uniform"  # TF.js DEFAULT_EMBEDDINGS_INITIALIZER
        embeddings_regularizer: typed_spec(REGULARIZERS, allow_null=True) = None
        input_length: Union[PositiveInt, list[PositiveInt], None] = None  # TF.js: also gives the input shape
        mask_zero: bool = False

    def __init__(self, params):
        super().__init__(params)
        # TF.js: inputLength alone gives the layer its input shape ([null, input_length])
        if params.input_shape is None and params.batch_input_shape is None and params.input_length is not None:
            length = params.input_length
            params.input_shape = [length] if isinstance(length, int) else list(length)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        length = self.params.input_length
        if length is not None:
            expected = (length,) if isinstance(length, int) else tuple(length)
            if tuple(input_shape) != expected:
                raise TrainctlError(f"{self.name}: input_length is {self.params.input_length}, but the input "
                                    f"has shape [null,{','.join(map(str, input_shape))}]")
        return (*input_shape, self.params.output_dim)

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        super().build(input_shape, context)
        p = self.params
        self.embeddings = self.add_weight("embeddings", (p.input_dim, p.output_dim), p.embeddings_initializer,
                                          context, regularizer=p.embeddings_regularizer)
        self.mask_zero = p.mask_zero
        self.dtype = context.dtype
        return self.output_shape

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        positions = batch_size * math.prod(self.input_shape)
        self._y = np.empty((positions, self.params.output_dim), self.dtype)
        self._dx = np.zeros((batch_size, *self.input_shape), self.dtype)  # indices get no gradient
        self._mask = np.empty((batch_size, *self.input_shape), np.bool_)
        self._keep = np.empty(positions if self.mask_zero else 0, self.dtype)  # the mask as the compiled loop holds it
        self._kernel = _kernels()

    def _bad_index(self, indices: np.ndarray, position: int, per_sample: int, where: str) -> TrainctlError:
        row, within = divmod(position, per_sample)
        value = indices.reshape(-1)[position]
        return DataError(f"{where}: row {row + 1}: {self.name} index {float(value):g} (position {within}) "
                         f"is not an integer in [0, {self.params.input_dim})")

    @property
    def checks_input(self) -> bool:
        return True

    def check_input(self, x: np.ndarray, where: str) -> None:
        """Every value a whole number in [0, input_dim); the message names the data row of x
        (1-based; x's rows are the data's, whatever this layer's own input shape: inside a
        TimeDistributed, or after a Reshape)."""
        x = np.asarray(x)
        flat = x.reshape(-1)
        for start in range(0, flat.size, 1 << 20):
            block = flat[start:start + (1 << 20)]
            bad = np.flatnonzero(~((block == np.floor(block)) & (block >= 0) & (block < self.params.input_dim)))
            if bad.size:
                raise self._bad_index(flat, start + int(bad[0]), math.prod(x.shape[1:]), where)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        self._indices = x.reshape(-1)
        y = self._y[: self._indices.size]
        bad = self._kernel.embedding_forward(self._indices, self.embeddings.value, y)
        if bad >= 0:
            raise self._bad_index(self._indices, bad, math.prod(self.input_shape), "batch")
        return y.reshape(*x.shape, self.params.output_dim)

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        self._kernel.embedding_backward(self._indices, dy.reshape(-1, self.params.output_dim), self.embeddings.grad)
        return self._dx[: dy.shape[0]] if need_dx else None

    def compiled_plan(self) -> EmbeddingPlan:
        return EmbeddingPlan(self.embeddings.value, self.embeddings.grad, self._y, self._dx, self.params.output_dim,
                             self._keep if self.mask_zero else None)

    def compute_mask(self, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
        """TF.js computeMask: x != 0 when mask_zero (for the recurrent layers), else None."""
        if not self.mask_zero:
            return None
        mask = self._mask[: x.shape[0]]
        np.not_equal(x, 0, out=mask)
        return mask

    def output_mask_spec(self, mask: MaskSpec | None) -> MaskSpec | None:
        return MaskSpec(self.input_shape, self.name) if self.mask_zero else None
