"""The layer contract: every hook a layer may implement is declared here with its default,
so no caller needs `hasattr` or `isinstance` over concrete layers.

Lifecycle: __init__(params) → build(input_shape, context) (weights through `add_weight`) →
allocate(batch_size) (buffers) → forward(x, training) / backward(dy, need_dx) → get_config().

Shapes are tuples *without* the batch axis (`(784,)`, `(28, 28, 1)`); summaries print them
with a leading null (`[null,784]`). Nothing here assumes 2-D activations.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from trainctl.config.base import Size, StrictModel
from trainctl.errors import TrainctlError
from trainctl.registry import Registry

Shape = tuple[int, ...]


class LayerParams(StrictModel):
    """Keys every layer accepts."""

    name: str | None = None  # default: TF.js style `dense_Dense1`
    input_shape: list[Size] | None = None  # only meaningful on the first layer
    batch_input_shape: list[Size | None] | None = None  # TF.js alias of input_shape with a batch axis
    trainable: bool = True


@dataclass
class Weight:
    """A named parameter with its gradient buffer (same shape, same dtype)."""

    name: str  # "dense_Dense1/kernel"
    value: np.ndarray
    grad: np.ndarray
    trainable: bool = True
    regularizer: Any = None  # a Regularizer or None


@dataclass(frozen=True)
class ProductPlan:
    """What the compiled loop needs of a layer that is a product plus a fused bias and
    activation (Dense, the convolutions): y = act(product + bias); backward fills both grads.
    Arrays are the layer's full-capacity buffers (rows = allocated batch). With an activity
    regularizer, `activity_grad` is the layer's buffer for dLoss/dy plus its gradient."""

    kernel: np.ndarray
    bias: np.ndarray  # zeros when the layer has no bias
    kernel_grad: np.ndarray
    bias_grad: np.ndarray  # scratch when the layer has no bias
    z: np.ndarray
    y: np.ndarray
    dz: np.ndarray
    dx: np.ndarray
    activation_code: int
    activity_regularizer: Any = field(default=None, kw_only=True)
    activity_grad: np.ndarray | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class DensePlan(ProductPlan):
    """A Dense step: z = x @ kernel over [rows, units] buffers (rows of the last axis)."""


def with_activity_grad(regularizer, y: np.ndarray, dy: np.ndarray, total: np.ndarray, n: int) -> np.ndarray:
    """dLoss/dy plus the grad of regularizer.penalty(y) / n, in `total` (a buffer of y's shape
    and dtype; the caller's dy stays intact): Keras's activity regularization, which TF.js
    declares but does not run. The compiled loop calls the same kernel."""
    from trainctl.kernels.layers import add_activity_grad

    dtype = total.dtype.type
    add_activity_grad(np.ascontiguousarray(dy).reshape(-1), y.reshape(-1), total.reshape(-1), dtype(regularizer.l1),
                      dtype(2.0 * regularizer.l2), dtype(1.0 / n))
    return total


@dataclass(frozen=True)
class DropoutPlan:
    """Dropout as the compiled loop runs it: `rng` draws each step's uniforms (the same
    stream `forward` draws from), `mask`, `y` and `dx` are the layer's 1-D buffers."""

    rate: float
    rng: Any
    mask: np.ndarray
    y: np.ndarray
    dx: np.ndarray
    features: int


@dataclass(frozen=True)
class ShapeOnly:
    """Stands in for a weight's value and grad when a model is built from shapes alone
    (`validate`, `summary`, the memory estimate before training): it answers `shape`, `size`,
    `nbytes`, `ndim` and `dtype` with Python ints (no overflow, nothing allocated)."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclass(frozen=True)
class MaskSpec:
    """A mask as the layers' shapes tell it (Layer.output_mask_spec): its shape per sample and
    the layer that made it."""

    shape: Shape
    maker: str


@dataclass
class BuildContext:
    """What build() may use: the model's seed and dtype, and a counter for automatic names.

    With `shapes_only`, `add_weight` records each weight's shape and dtype (a `ShapeOnly`) and
    initialises nothing: build() must then allocate nothing itself either (buffers belong in
    `allocate`, which a shapes-only model never calls)."""

    seed: int
    dtype: np.dtype
    name_counts: dict[str, int] = field(default_factory=dict)
    shapes_only: bool = False


class Layer:
    type_id: ClassVar[str]  # registry id, snake_case: "dense" (set by LAYERS.register_type)
    class_name: ClassVar[str]  # TF.js class name: "Dense", the Python class's unless it says otherwise
    in_tfjs: ClassVar[bool] = True  # TF.js 4.22 has this layer (a tfjs export refuses it otherwise)
    Params: ClassVar[type[LayerParams]] = LayerParams
    # The activation applied last inside the layer, which a loss may fuse with (softmax with
    # cross-entropy): such a layer also implements `backward_from_preactivation`. None: no
    # activation of its own (the loss then sees the layer's output as it is).
    output_activation: Any = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "class_name" not in cls.__dict__:  # as Keras serialises type(layer).__name__
            cls.class_name = cls.__name__

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

    def compiled_plan(self) -> "DensePlan | DropoutPlan | None":
        """What the compiled training loop (trainctl/train/compiled.py) needs to run this layer's
        steps without Python: its buffers and codes, valid after `allocate`. None (the default):
        the loop cannot run this layer, and fit runs every step from Python (same results)."""
        return None

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
        if context.shapes_only:  # validate / summary / the memory estimate: nothing allocated
            build_initializer(initializer)  # still checks the spec
            placeholder = ShapeOnly(shape, np.dtype(context.dtype))
            weight = Weight(full_name, placeholder, placeholder, self.trainable and trainable, build_regularizer(regularizer))
            self.weights.append(weight)
            return weight
        value = build_initializer(initializer)(shape, rng_for(context.seed, "init", full_name), context.dtype)
        weight = Weight(full_name, np.ascontiguousarray(value, dtype=context.dtype), np.zeros(shape, context.dtype),
                        self.trainable and trainable, build_regularizer(regularizer))
        self.weights.append(weight)
        return weight

    def check_input(self, x: np.ndarray, where: str) -> None:
        """Check the model's input values x [n, *model input shape] before any work, when this
        layer reads them (the first layer, or one after layers that pass values on; `where`
        names the data, e.g. "training data"); any float is fine by default."""

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
    # `input_mask` is set by the model before each forward: a bool array [n, *mask shape]
    # marking the positions that hold data, or None. A layer that keeps the time axis passes
    # it on unchanged (the default); one that makes or ends a mask overrides `compute_mask`,
    # and `output_mask_spec` with it (the same rule told from shapes, before any data).
    input_mask: np.ndarray | None = None
    # forward reads input_mask as one value per step, [n, steps] (the recurrent layers,
    # Bidirectional): the model refuses at build a mask over more axes reaching it
    reads_step_mask: ClassVar[bool] = False

    def compute_mask(self, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
        """The mask of this layer's output, from its input `x` and the input's mask."""
        return mask if self._keeps_steps() else None

    def output_mask_spec(self, mask: "MaskSpec | None") -> "MaskSpec | None":
        """What `compute_mask` returns, from shapes alone: the mask's per-sample shape and the
        layer that made it, given the input's (None: no mask)."""
        return mask if self._keeps_steps() else None

    def _keeps_steps(self) -> bool:
        # the default passing rule: no time axis left ends the mask (flatten, pooling over
        # time, an RNN's last step)
        return len(self.output_shape) >= 2 and self.output_shape[0] == self.input_shape[0]

    # -- input values -------------------------------------------------------------------
    # The output holds the input's values in their order, only reshaped (Flatten, Reshape):
    # the model's input checks (check_input) reach the layer after it.
    passes_values: ClassVar[bool] = False

    @property
    def checks_input(self) -> bool:
        """Whether `check_input` checks anything (an Embedding's indices): the compiled loop
        trusts such values, so it runs the layer only where they are the checked input's."""
        return False

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

    def buffer_nbytes(self, batch_size: int, itemsize: int) -> int:
        """Bytes `allocate(batch_size)` will take, from the shapes alone (the memory estimate
        before training reads it). The default assumes an output, a dx and two scratch
        arrays of the activation's size; layers that know better say so."""
        return 2 * batch_size * (math.prod(self.input_shape) + math.prod(self.output_shape)) * itemsize

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


def declare_layer(type_id: str, class_name: str, base: type[Layer], **attributes: Any) -> type[Layer]:
    """A registered layer that is `base` with these class attributes: the thin per-rank or
    per-mode declarations (MaxPooling1D is _Pooling at rank 1, max), written as one line
    each instead of one class statement each. Made in `base`'s module, under its own name."""
    namespace = {"__module__": base.__module__, "__qualname__": class_name, **attributes}
    return LAYERS.register_type(type_id)(type(class_name, (base,), namespace))


def tfjs_snake_case(class_name: str) -> str:
    """TF.js generic_utils.toSnakeCase: `Dense` → `dense`, `PReLU` → `p_re_lu`, `UpSampling2D` → `up_sampling2d`."""
    intermediate = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", intermediate).lower()


class RandomLayer(Layer):
    """A layer with its own seeded Generator, rng_for(seed, "dropout", name) with `seed` from
    its params (else the config seed), whose state is the layer's resumable state."""

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        from trainctl.seeding import rng_for

        seed = self.params.seed if self.params.seed is not None else context.seed
        self.rng = rng_for(seed, "dropout", self.name)
        self.dtype = context.dtype
        return super().build(input_shape, context)

    def get_state(self) -> dict[str, Any]:
        return self.rng.bit_generator.state

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state


def auto_name(layer: Layer, context: BuildContext) -> str:
    """TF.js naming: the first Dense is `dense_Dense1`, the second `dense_Dense2`, ...; the prefix
    is TF.js's snake case of the class name, which is not always the id (`prelu` → `p_re_lu_PReLU1`)."""
    count = context.name_counts.get(layer.class_name, 0) + 1
    context.name_counts[layer.class_name] = count
    return f"{tfjs_snake_case(layer.class_name)}_{layer.class_name}{count}"
