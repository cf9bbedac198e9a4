"""The layer lifecycle every layer follows: __init__(params) → build(input_shape) →
allocate(batch_size) → forward(x, training) / backward(dy) → get_config().

Shapes are tuples *without* the batch axis (`(784,)`, `(28, 28, 1)`); summaries print them
with a leading null (`[null,784]`). Nothing here assumes 2-D activations.
"""

from __future__ import annotations

import re
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

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        """dy: dLoss/dy [n, *output_shape] → dLoss/dx [n, *input_shape]; fills weight grads."""
        raise NotImplementedError

    def add_weight(self, name: str, shape: Shape, initializer: Any, context: BuildContext, *,
                   regularizer: Any = None, trainable: bool = True) -> Weight:
        """A weight `<layer>/<name>` initialised by `initializer` (an id, a mapping or an
        Initializer) from rng_for(seed, "init", full name); appended to self.weights."""
        from trainctl.initializers import build_initializer
        from trainctl.regularizers import build_regularizer
        from trainctl.seeding import rng_for

        full = f"{self.name}/{name}"
        shape = tuple(int(d) for d in shape)
        value = build_initializer(initializer)(shape, rng_for(context.seed, "init", full), context.dtype)
        weight = Weight(full, np.ascontiguousarray(value, dtype=context.dtype), np.zeros(shape, context.dtype),
                        trainable, build_regularizer(regularizer))
        self.weights.append(weight)
        return weight

    def check_input(self, x: np.ndarray, where: str) -> None:
        """Check input values before training/predicting (`where` names the data); default: any float."""

    def get_state(self) -> dict[str, Any]:
        """Non-weight state to resume from (RNG states), JSON-able; default none."""
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what get_state() returned."""

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


def tfjs_snake_case(class_name: str) -> str:
    """TF.js generic_utils.toSnakeCase: `PReLU` → `p_re_lu`, `UpSampling2D` → `up_sampling2d`."""
    intermediate = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", intermediate).lower()


def auto_name(layer: Layer, context: BuildContext) -> str:
    """TF.js naming: the first Dense is `dense_Dense1`, the second `dense_Dense2`; the prefix is
    TF.js's snake case of the class name (`p_re_lu_PReLU1`), not necessarily the id (`prelu`)."""
    count = context.name_counts.get(layer.class_name, 0) + 1
    context.name_counts[layer.class_name] = count
    return f"{tfjs_snake_case(layer.class_name)}_{layer.class_name}{count}"
