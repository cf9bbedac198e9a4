"""The layer lifecycle every layer follows: __init__(params) → build(input_shape) →
allocate(batch_size) → forward(x, training) / backward(dy) → get_config().

Shapes are tuples *without* the batch axis (`(784,)`, `(28, 28, 1)`); summaries print them
with a leading null (`[null,784]`). Nothing here assumes 2-D activations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from trainctl.config.base import StrictModel
from trainctl.registry import Registry

Shape = tuple[int, ...]


class LayerParams(StrictModel):
    """Keys every layer accepts."""

    name: str | None = None  # default: TF.js style `dense_Dense1`
    input_shape: list[int] | None = None  # only meaningful on the first layer
    batch_input_shape: list[int | None] | None = None  # TF.js alias of input_shape with a batch axis
    trainable: bool = True


@dataclass
class Weight:
    """A named parameter with its gradient buffer (same shape, same dtype)."""

    name: str  # "dense_Dense1/kernel"
    value: np.ndarray
    grad: np.ndarray
    trainable: bool = True
    regularizer: Any = None  # a Regularizer or None


@dataclass
class BuildContext:
    """What build() may use: the model's seed and dtype, and a counter for automatic names."""

    seed: int
    dtype: np.dtype
    name_counts: dict[str, int] = field(default_factory=dict)


class Layer:
    type_id: ClassVar[str]  # registry id, snake_case: "dense"
    class_name: ClassVar[str]  # TF.js class name: "Dense"
    Params: ClassVar[type[LayerParams]] = LayerParams

    def __init__(self, params: LayerParams):
        self.params = params
        self.name: str = params.name or ""
        self.trainable = params.trainable
        self.input_shape: Shape = ()
        self.output_shape: Shape = ()
        self.weights: list[Weight] = []
        self.batch_size = 0  # rows the buffers were allocated for

    # -- lifecycle -------------------------------------------------------------------
    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        """Check the input shape, create and initialise weights, return the output shape."""
        self.input_shape = tuple(input_shape)
        self.output_shape = self.compute_output_shape(self.input_shape)
        return self.output_shape

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def allocate(self, batch_size: int) -> None:
        """Size the layer's buffers for `batch_size` rows; forward/backward never allocate."""
        self.batch_size = batch_size

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """x: [n, *input_shape] with n <= allocated batch size → y: [n, *output_shape]."""
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy: dLoss/dy [n, *output_shape] → dLoss/dx [n, *input_shape]; fills weight grads."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        config = self.params.to_dict()
        config["name"] = self.name
        return {"type": self.type_id, **{k: v for k, v in config.items() if v is not None}}

    # -- facts for the summary and the loss ---------------------------------------------
    def count_params(self) -> int:
        return sum(int(w.value.size) for w in self.weights)

    def flops_per_sample(self) -> int:
        """Forward floating-point operations per sample (multiply-add counts as 2)."""
        return 0

    def regularization_loss(self) -> float:
        """Weight-regularizer penalty added to the loss (0 when there is none)."""
        return float(sum(w.regularizer.penalty(w.value) for w in self.weights if w.regularizer))

    def add_regularization_grads(self) -> None:
        for w in self.weights:
            if w.regularizer is not None:
                w.regularizer.add_grad(w.value, w.grad)


LAYERS: Registry[type[Layer]] = Registry("layer type")


def auto_name(layer: Layer, context: BuildContext) -> str:
    """TF.js naming: the first Dense is `dense_Dense1`, the second `dense_Dense2`, ..."""
    count = context.name_counts.get(layer.class_name, 0) + 1
    context.name_counts[layer.class_name] = count
    return f"{layer.type_id}_{layer.class_name}{count}"
