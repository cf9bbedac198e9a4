"""Wrappers: a layer around another layer given as a spec — Bidirectional (a recurrent layer
run both ways, outputs merged) and TimeDistributed (one layer applied to every time step)."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from trainctl.errors import TrainctlError
from trainctl.nn.layers.base import LAYERS, BuildContext, DensePlan, Layer, LayerParams, MaskSpec, Shape, auto_name
from trainctl.nn.layers.plans import BidirectionalPlan, RepeatedPlan
from trainctl.nn.layers.recurrent import Recurrent

_MERGE_MODES = Literal["concat", "sum", "mul", "ave"]


class _Wrapper(Layer):
    """A layer around an inner layer given as a spec (`layer: {type: lstm, units: 16}`)."""

    class Params(LayerParams):
        layer: dict[str, Any]  # the wrapped layer, as in model.layers: {type: dense, units: 8}

    def _inner_layer(self, spec: dict[str, Any], context: BuildContext | None = None) -> Layer:
        """The inner layer from its spec, trainable only if the wrapper is; named (its own
        name or TF.js's automatic one) when a build context is given."""
        from trainctl.nn.model import layer_from_spec

        layer = layer_from_spec(spec, 0)
        if context is not None:
            layer.name = spec.get("name") or auto_name(layer, context)
        layer.trainable = layer.trainable and self.trainable
        return layer

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["layer"] = dict(self.params.layer)
        return config


@LAYERS.register_type("bidirectional")
class Bidirectional(_Wrapper):
    """Runs a recurrent layer forwards and a copy backwards and merges their outputs (TF.js
    Bidirectional: the copy's go_backwards flipped, its sequence output reversed back)."""

    reads_step_mask = True  # both copies read it

    class Params(_Wrapper.Params):
        layer: dict[str, Any]  # the recurrent layer, as in model.layers: {type: lstm, units: 16}
        merge_mode: _MERGE_MODES = "concat"  # TF.js default; null (separate outputs) needs a functional model

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        self.input_shape = tuple(input_shape)
        spec = dict(self.params.layer)
        inner_type = LAYERS.get(spec.get("type", ""))
        if not issubclass(inner_type, Recurrent):
            raise TrainctlError(f"{self.name}: Bidirectional wraps a recurrent layer (simple_rnn, lstm, gru), "
                                f"got {spec.get('type')!r}")
        self.forward_layer = self._inner_layer(spec, context)
        backward_spec = {**spec, "go_backwards": not spec.get("go_backwards", spec.get("goBackwards", False))}
        backward_spec.pop("goBackwards", None)
        self.backward_layer = self._inner_layer(backward_spec)
        inner_name = self.forward_layer.name
        self.forward_layer.name = f"forward_{inner_name}"
        self.backward_layer.name = f"backward_{inner_name}"
        self.inner_name = inner_name
        self.weights = []
        for layer in (self.forward_layer, self.backward_layer):
            inner_context = BuildContext(seed=context.seed, dtype=context.dtype, name_counts={})
            layer.build(input_shape, inner_context)
            for weight in layer.weights:
                weight.name = f"{self.name}/{weight.name}"
            self.weights.extend(layer.weights)
        self.sequences = self.forward_layer.params.return_sequences
        self.dtype = context.dtype
        self.output_shape = self.compute_output_shape(self.input_shape)
        return self.output_shape

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        inner = self.forward_layer.output_shape
        return (*inner[:-1], 2 * inner[-1]) if self.params.merge_mode == "concat" else inner

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        self.forward_layer.allocate(batch_size)
        self.backward_layer.allocate(batch_size)
        inner = self.forward_layer.output_shape
        self._y = np.empty((batch_size, *self.output_shape), self.dtype)
        self._dy_forward = np.empty((batch_size, *inner), self.dtype)
        self._dy_backward = np.empty((batch_size, *inner), self.dtype)
        self._dx = np.empty((batch_size, *self.input_shape), self.dtype)

    def buffer_nbytes(self, batch_size: int, itemsize: int) -> int:
        inner = math.prod(self.forward_layer.output_shape)
        own = batch_size * (math.prod(self.output_shape) + 2 * inner + math.prod(self.input_shape)) * itemsize
        return own + sum(layer.buffer_nbytes(batch_size, itemsize) for layer in (self.forward_layer, self.backward_layer))

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        for layer in (self.forward_layer, self.backward_layer):
            layer.input_mask = self.input_mask
        y_forward = self.forward_layer.forward(x, training)
        y_backward = self.backward_layer.forward(x, training)
        if self.sequences:
            y_backward = y_backward[:, ::-1]
        self._y_forward, self._y_backward = y_forward, y_backward
        n, units = x.shape[0], y_forward.shape[-1]
        y = self._y[:n]
        mode = self.params.merge_mode
        if mode == "concat":
            y[..., :units] = y_forward
            y[..., units:] = y_backward
        elif mode == "sum":
            np.add(y_forward, y_backward, out=y)
        elif mode == "mul":
            np.multiply(y_forward, y_backward, out=y)
        else:
            np.add(y_forward, y_backward, out=y)
            y *= y.dtype.type(0.5)
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        n = dy.shape[0]
        units = self._y_forward.shape[-1]
        d_forward, d_backward = self._dy_forward[:n], self._dy_backward[:n]
        mode = self.params.merge_mode
        if mode == "concat":
            d_forward[...] = dy[..., :units]
            d_backward[...] = dy[..., units:]
        elif mode == "sum":
            d_forward[...] = dy
            d_backward[...] = dy
        elif mode == "mul":
            np.multiply(dy, self._y_backward, out=d_forward)
            np.multiply(dy, self._y_forward, out=d_backward)
        else:
            np.multiply(dy, dy.dtype.type(0.5), out=d_forward)
            d_backward[...] = d_forward
        if self.sequences:
            d_backward[...] = d_backward[:, ::-1].copy()
        dx_forward = self.forward_layer.backward(d_forward, need_dx)
        dx_backward = self.backward_layer.backward(d_backward, need_dx)
        if not need_dx:
            return None
        dx = self._dx[:n]
        np.add(dx_forward, dx_backward, out=dx)
        return dx

    def compute_mask(self, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
        return mask if self.sequences else None

    def output_mask_spec(self, mask: MaskSpec | None) -> MaskSpec | None:
        return mask if self.sequences else None

    def compiled_plan(self) -> BidirectionalPlan | None:
        """Both copies' recurrent plans, run and merged by the sequence loop as forward and
        backward do here; None when a copy has no plan."""
        forward, backward = self.forward_layer.compiled_plan(), self.backward_layer.compiled_plan()
        if forward is None or backward is None:
            return None
        return BidirectionalPlan(forward, backward, self.params.merge_mode, self._y, self._dx, self._dy_forward,
                                 self._dy_backward, np.full(1, 0.5, self.dtype))

    @property
    def wrapped_layer(self) -> Layer:
        return self.forward_layer

    def to_keras_config(self, config: dict[str, Any], fmt: str) -> dict[str, Any]:
        config["layer"]["config"]["name"] = self.inner_name  # TF.js serialises the inner layer's own name
        return config

    def reset_states(self) -> None:
        self.forward_layer.reset_states()
        self.backward_layer.reset_states()

    def get_state(self) -> dict[str, Any]:
        return {"forward": self.forward_layer.get_state(), "backward": self.backward_layer.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.forward_layer.set_state(state["forward"])
        self.backward_layer.set_state(state["backward"])

    def flops_per_sample(self) -> int:
        return self.forward_layer.flops_per_sample() + self.backward_layer.flops_per_sample()


@LAYERS.register_type("time_distributed")
class TimeDistributed(_Wrapper):
    """Applies one layer to every time step: [n, steps, ...] runs as [n*steps, ...]."""

    class Params(_Wrapper.Params):
        layer: dict[str, Any]  # the layer applied per step, as in model.layers: {type: dense, units: 8}

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        if len(input_shape) < 2:
            raise TrainctlError(f"{self.name}: TimeDistributed needs inputs [steps, ...], got {list(input_shape)}")
        self.input_shape = tuple(input_shape)
        self.inner = self._inner_layer(dict(self.params.layer), context)
        inner_output = self.inner.build(input_shape[1:], context)
        for weight in self.inner.weights:  # TF.js scopes the inner weights by the wrapper: <wrapper>/kernel
            weight.name = f"{self.name}/{weight.name.split('/', 1)[1]}"
        self.weights = self.inner.weights
        self.wrapped_layer = self.inner
        self.output_activation = self.inner.output_activation
        self.output_shape = (input_shape[0], *inner_output)
        return self.output_shape

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return self.output_shape

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        self.inner.allocate(batch_size * self.input_shape[0])

    def buffer_nbytes(self, batch_size: int, itemsize: int) -> int:
        return self.inner.buffer_nbytes(batch_size * self.input_shape[0], itemsize)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        n, steps = x.shape[0], self.input_shape[0]
        inner_x = x.reshape(n * steps, *self.input_shape[1:])
        # the inner layer's own mask first, as Sequential.forward has every layer make it: a
        # Masking layer's forward multiplies by it (unmade, it read an unfilled buffer)
        self.inner.compute_mask(inner_x, None)
        y = self.inner.forward(inner_x, training)
        return y.reshape(n, steps, *self.output_shape[1:])

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        return self._back(self.inner.backward, dy, need_dx)

    def backward_from_preactivation(self, dz: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        return self._back(self.inner.backward_from_preactivation, dz, need_dx)

    def _back(self, step, dy, need_dx):
        n, steps = dy.shape[0], self.input_shape[0]
        dx = step(dy.reshape(n * steps, *self.output_shape[1:]), need_dx)
        return None if dx is None else dx.reshape(n, steps, *self.input_shape[1:])

    @property
    def checks_input(self) -> bool:
        return self.inner.checks_input

    def check_input(self, x: np.ndarray, where: str) -> None:
        self.inner.check_input(x, where)  # the same values, x's rows still the data's

    @property
    def has_activity_regularizer(self) -> bool:
        return self.inner.has_activity_regularizer

    def activity_loss(self, n: int) -> float:
        return self.inner.activity_loss(n * self.input_shape[0])  # the inner layer saw n*steps rows

    def get_state(self) -> dict[str, Any]:
        return self.inner.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self.inner.set_state(state)

    def flops_per_sample(self) -> int:
        return self.input_shape[0] * self.inner.flops_per_sample()

    def compiled_plan(self) -> DensePlan | RepeatedPlan | None:
        """A Dense inner layer's plan as it is: Dense already runs over every row of the last
        axis, so [n * steps, features] is its [n, steps, features]. Any other inner layer's plan
        runs over n * steps inner samples (RepeatedPlan, the loop's rows of steps samples per
        sample), as does a Dense with an activity regularizer: its penalty and gradient divide
        by the n * steps samples the inner layer saw, which is what the loop divides a row's by.
        An inner layer that draws random numbers gets the chunk's draws for those n * steps rows
        per step, as forward draws them here (train/compiled.py); a recurrent layer or
        Bidirectional gets no mask, as forward gives it none. An Embedding looks up the indices
        of all n * steps inner samples (fit checked them with the model's input: check_input);
        a Masking makes its mask over each inner sample's positions and multiplies by it, and
        the TimeDistributed passes on the mask it received, not that one (forward; TF.js and
        Keras do the same)."""
        plan = self.inner.compiled_plan()
        if plan is None:
            return None
        if isinstance(plan, DensePlan) and not self.inner.has_activity_regularizer:
            return plan
        return RepeatedPlan(plan, self.input_shape[0])
