"""The layer contract: every hook a layer may implement is declared here with its default,
so no caller needs `hasattr` or `isinstance` over concrete layers.

Lifecycle: __init__(params) → build(input_shape, context) (weights through `add_weight`) →
allocate(batch_size) (buffers) → forward(x, training) / backward(dy, need_dx) → get_config().

Shapes are tuples *without* the batch axis (`(784,)`, `(28, 28, 1)`); summaries print them
with a leading null (`[null,784]`). Nothing here assumes 2-D activations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from trainctl.config.base import StrictModel
from trainctl.errors import TrainctlError
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
    # The activation applied last inside the layer, which a loss may fuse with (softmax with
    # cross-entropy): such a layer also implements `backward_from_preactivation`. None: no
    # activation of its own (the loss then sees the layer's output as it is).
    output_activation: Any = None

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
        """dy: dLoss/dy [n, *output_shape] → dLoss/dx [n, *input_shape] (None when not
        `need_dx`, which the first layer is told); fills the grads of the layer's weights."""
        raise NotImplementedError

    def backward_from_preactivation(self, dz: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        """Backward when the loss already gave dLoss/d(pre-activation) for `output_activation`
        (softmax or sigmoid fused with cross-entropy). Only layers with an output activation."""
        raise TrainctlError(f"{self.name}: {self.class_name} has no output activation to fuse with the loss")

    # -- weights ----------------------------------------------------------------------
    def add_weight(self, name: str, shape: Shape, initializer: Any, context: "BuildContext", *,
                   regularizer: Any = None, trainable: bool = True) -> Weight:
        """Create, initialise and register the weight `<layer name>/<name>` of `shape`.

        initializer: an id, a `{type: ...}` spec or an Initializer, seeded from the model's
        seed and the weight's full name (so adding a layer does not move another's values);
        regularizer: a spec, a Regularizer or None. Non-trainable weights (moving statistics)
        are saved and restored like the others but stay out of the optimizer."""
        from trainctl.nn.initializers import build_initializer
        from trainctl.nn.regularizers import build_regularizer
        from trainctl.seeding import rng_for

        full_name = f"{self.name}/{name}"
        shape = tuple(int(d) for d in shape)
        value = build_initializer(initializer)(shape, rng_for(context.seed, "init", full_name), context.dtype)
        weight = Weight(full_name, np.ascontiguousarray(value, dtype=context.dtype), np.zeros(shape, context.dtype),
                        self.trainable and trainable, build_regularizer(regularizer))
        self.weights.append(weight)
        return weight

    # -- non-weight state ---------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """JSON-able state that is not a weight but must survive a resume (an RNG's position,
        a stateful RNN's carried state). Empty for most layers."""
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what `get_state` returned."""

    def reset_states(self) -> None:
        """Forget carried state (stateful recurrent layers); nothing for the others."""

    # -- masks (Keras semantics: embedding(mask_zero) and masking make one, RNNs consume it) --
    # `input_mask` is set by the model before each forward: a bool array [n, steps] marking the
    # time steps that hold data, or None. A layer that keeps the time axis passes it on
    # unchanged (the default); one that makes or ends a mask overrides `compute_mask`.
    input_mask: np.ndarray | None = None

    def compute_mask(self, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
        """The mask of this layer's output, from its input `x` and the input's mask."""
        if mask is None or len(self.output_shape) < 2 or self.output_shape[0] != self.input_shape[0]:
            return None  # no time axis left (flatten, pooling over time, an RNN's last step)
        return mask

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

    @property
    def has_activity_regularizer(self) -> bool:
        return False

    def activity_loss(self, n: int) -> float:
        """Penalty on the layer's last output over a batch of `n` samples (0 when none)."""
        return 0.0

    def regularization_loss(self) -> float:
        """Weight-regularizer penalty added to the loss (0 when there is none)."""
        return float(sum(w.regularizer.penalty(w.value) for w in self.weights if w.regularizer))

    def add_regularization_grads(self) -> None:
        for w in self.weights:
            if w.regularizer is not None:
                w.regularizer.add_grad(w.value, w.grad)

    # -- interop (trainctl.runs.formats): TF.js layers-model and Keras 3 configs -----------
    # A wrapper (bidirectional, time_distributed) names the built layer it wraps, so its
    # `layer` option exports as that layer's own {class_name, config}.
    wrapped_layer: "Layer | None" = None

    def to_keras_config(self, config: dict[str, Any], fmt: str) -> dict[str, Any]:
        """Adjust the generic translation of this layer's Params (snake_case keys as TF.js
        serialises them, initializers/regularizers as {class_name, config}, None left out)
        for `fmt` ("tfjs" or "keras"). Raise runs.formats.ExportRefused for an option the
        format cannot express. Default: the generic translation is right."""
        return config

    @classmethod
    def from_keras_config(cls, config: dict[str, Any], fmt: str) -> dict[str, Any]:
        """The inverse: adjust a TF.js/Keras layer config (keys already snake_case) before
        it is validated as this layer's Params. Default: nothing to adjust."""
        return config


LAYERS: Registry[type[Layer]] = Registry("layer type")


def auto_name(layer: Layer, context: BuildContext) -> str:
    """TF.js naming: the first Dense is `dense_Dense1`, the second `dense_Dense2`, ..."""
    count = context.name_counts.get(layer.class_name, 0) + 1
    context.name_counts[layer.class_name] = count
    return f"{layer.type_id}_{layer.class_name}{count}"
