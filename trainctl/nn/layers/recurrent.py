"""Recurrent layers: the shared body `Recurrent` (weights, buffers, dropout masks, carried
state) here; the cells SimpleRNN, LSTM, GRU (TF.js semantics and defaults) in
recurrent_cells.py; Masking in masking.py; Bidirectional and TimeDistributed in wrappers.py.

Input [n, steps, features]. Per batch: the inputs are copied time-major in processing order
(dropout applied in the same pass), one matmul projects every step's input (`x @ kernel`)
into the time-major pre-activation buffer, one compiled loop (trainctl/kernels/recurrent.py)
runs the steps (bias, recurrent product, gates), and the weight gradients are one matmul each
over the stacked per-step values after the loop (the bias gradient is summed in the loop).
Buffers are sized in `allocate`; nothing is allocated per step or per batch.

TF.js facts followed here (tfjs-layers/src/layers/recurrent.ts, 4.22):
- every cell's kernel defaults to glorot_normal, the recurrent kernel to orthogonal;
- LSTM and GRU default `recurrent_activation` to hard_sigmoid (Keras: sigmoid);
- LSTM's `unit_forget_bias` is off unless given (TF.js reads `args.unitForgetBias` bare;
  Keras defaults it on);
- GRU applies the reset gate before the recurrent product (`reset_after: false`, the only
  convention TF.js has); `reset_after: true` is Keras 3's default and PyTorch's GRU, with a
  [2, 3*units] bias (input and recurrent halves);
- dropout masks are drawn once per batch and shared by every step; with recurrent dropout
  TF.js's GRU also carries the dropped previous state (`h = z*h_drop + (1-z)*hh`);
- `go_backwards` returns the sequence in processing (reversed) order;
- a masked step keeps the previous state and outputs it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import model_validator

from trainctl.config.base import PositiveInt, UnitInterval, bounded_int, registry_id, typed_spec
from trainctl.errors import TrainctlError
from trainctl.nn.activations import ACTIVATIONS
from trainctl.nn.initializers import INITIALIZERS
from trainctl.nn.layers.base import BuildContext, Layer, LayerParams, Shape
from trainctl.nn.layers.plans import DrawsPlan
from trainctl.nn.regularizers import REGULARIZERS
from trainctl.seeding import rng_for


class TimeMajor:
    """A [lead, rows, width] buffer whose view for n <= rows rows is C-contiguous, as the
    kernels' `np.dot` on one step's rows needs: the storage is flat and `buffer[n]` is its
    first lead*n*width values, reshaped (views made once per n)."""

    def __init__(self, lead: int, rows: int, width: int, dtype):
        self.lead, self.width = lead, width
        self.flat = np.zeros(lead * rows * width, dtype)
        self._views: dict[int, np.ndarray] = {}

    def __getitem__(self, n: int) -> np.ndarray:
        view = self._views.get(n)
        if view is None:
            view = self._views[n] = self.flat[: self.lead * n * self.width].reshape(self.lead, n, self.width)
        return view


@dataclass(frozen=True)
class RecurrentPlan:
    """A recurrent layer as the compiled loop runs it (kernels/recurrent_steps.py): `cell` one
    of its CELL_* kinds, `buffers` the layer's own arrays under the names of its BLOCK (time-
    major buffers as their flat storage), `weights` the (value, grad) pairs in weight order."""

    cell: int
    steps: int
    features: int
    units: int
    return_sequences: bool
    go_backwards: bool
    buffers: dict
    weights: tuple
    y: np.ndarray
    dx: np.ndarray
    activations: tuple[int, int]  # the activation's and recurrent activation's kernels/codes.py codes
    rates: tuple[float, float] = (0.0, 0.0)  # dropout, recurrent_dropout
    draws: DrawsPlan | None = None  # the dropout masks' uniforms, when a rate is > 0


def _kernels():
    from trainctl.kernels import blas, layers, recurrent

    return recurrent, layers, blas.matmul


class RecurrentParams(LayerParams):
    """Options every recurrent layer takes (TF.js SimpleRNNLayerArgs + BaseRNNLayerArgs)."""

    units: PositiveInt
    activation: registry_id(ACTIVATIONS) = "tanh"  # TF.js default
    use_bias: bool = True
    kernel_initializer: typed_spec(INITIALIZERS) = "glorot_normal"  # TF.js's cells (Keras: glorot_uniform)
    recurrent_initializer: typed_spec(INITIALIZERS) = "orthogonal"
    bias_initializer: typed_spec(INITIALIZERS) = "zeros"
    kernel_regularizer: typed_spec(REGULARIZERS, allow_null=True) = None
    recurrent_regularizer: typed_spec(REGULARIZERS, allow_null=True) = None
    bias_regularizer: typed_spec(REGULARIZERS, allow_null=True) = None
    dropout: UnitInterval = 0.0  # on the inputs, one mask per batch
    recurrent_dropout: UnitInterval = 0.0  # on the previous state, one mask per batch
    return_sequences: bool = False
    return_state: bool = False
    go_backwards: bool = False
    stateful: bool = False
    unroll: bool = False  # accepted as TF.js does, which ignores it
    implementation: bounded_int(ge=1, le=2) | None = None  # accepted as TF.js does, which always uses mode 2

    @model_validator(mode="after")
    def _one_output(self):
        if self.return_state:
            raise ValueError("return_state gives the layer several outputs, and a Sequential model passes one "
                             "tensor from layer to layer; remove it (the states are the last step's output: "
                             "use return_sequences: false)")
        return self


class GatedParams(RecurrentParams):
    recurrent_activation: registry_id(ACTIVATIONS) = "hard_sigmoid"  # TF.js default (Keras: sigmoid)


class Recurrent(Layer):
    """The shared body: weights, buffers, dropout masks, carried state; subclasses name the
    number of gates and call their kernels."""

    n_gates: ClassVar[int]
    Params: ClassVar[type[RecurrentParams]] = RecurrentParams
    reads_step_mask = True  # forward keeps the state over masked steps

    # -- building ---------------------------------------------------------------------------
    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        if len(input_shape) != 2:
            raise TrainctlError(f"{self.name}: {self.class_name} needs inputs [steps, features], got "
                                f"{list(input_shape)} (add a reshape, or an embedding for token ids)")
        super().build(input_shape, context)
        p = self.params
        self.activation = ACTIVATIONS.get(p.activation)
        # SimpleRNN has no gates: its "recurrent activation" is never used
        self.recurrent_activation = ACTIVATIONS.get(p.recurrent_activation if isinstance(p, GatedParams) else "linear")
        for role, activation in (("activation", self.activation), ("recurrent_activation", self.recurrent_activation)):
            if activation.rowwise:
                raise TrainctlError(f"{self.name}: {role} {activation.name} works over a whole row; "
                                    "recurrent layers take element-wise activations")
        self.dtype = context.dtype
        units, features = p.units, input_shape[-1]
        gates = self.n_gates * units
        self.weights = []
        self.kernel = self.add_weight("kernel", (features, gates), p.kernel_initializer, context,
                                      regularizer=p.kernel_regularizer)
        self.recurrent_kernel = self.add_weight("recurrent_kernel", (units, gates), p.recurrent_initializer, context,
                                                regularizer=p.recurrent_regularizer)
        self.bias = None
        if p.use_bias:
            self.bias = self.add_weight("bias", self.bias_shape(), self.bias_initializer(), context,
                                        regularizer=p.bias_regularizer)
        self.rng = rng_for(context.seed, "dropout", self.name)
        # stateful: whether `_carry` holds the last batch's final states, as 1.0 / 0.0 in an
        # array the compiled loop shares (kernels/recurrent_steps.py BLOCK's "carried")
        self._carried_flag = np.zeros(1, self.dtype)
        return self.output_shape

    @property
    def _carried(self) -> bool:
        return bool(self._carried_flag[0])

    @_carried.setter
    def _carried(self, value: bool) -> None:
        self._carried_flag[0] = 1.0 if value else 0.0

    def bias_shape(self) -> tuple[int, ...]:
        return (self.n_gates * self.params.units,)

    def bias_initializer(self) -> Any:
        return self.params.bias_initializer

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        steps = input_shape[0]
        return (steps, self.params.units) if self.params.return_sequences else (self.params.units,)

    @property
    def n_states(self) -> int:
        return 1

    # -- buffers ----------------------------------------------------------------------------
    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        n, (steps, features) = batch_size, self.input_shape
        units, dtype = self.params.units, self.dtype
        gates = self.n_gates * units
        self._x_tm = TimeMajor(steps, n, features, dtype)  # inputs, processing order, dropout applied
        self._mask = np.ones((n, steps), dtype)
        self._input_mask_scale = np.ones((n, features), dtype)
        self._rmask = np.ones((n, units), dtype)
        self._states = [TimeMajor(steps + 1, n, units, dtype) for _ in range(self.n_states)]
        self._hd = TimeMajor(steps, n, units, dtype)
        self._pre = TimeMajor(steps, n, gates, dtype)
        self._y = np.empty((n, steps, units) if self.params.return_sequences else (n, units), dtype)
        self._dz = TimeMajor(steps, n, gates, dtype)
        self._dx_tm = TimeMajor(steps, n, features, dtype)
        self._dx = np.empty((n, steps, features), dtype)
        self._zero_bias = np.zeros(self.bias_shape(), dtype)  # the bias when use_bias is off
        self._unused_bias_grad = np.zeros(self.bias_shape(), dtype)  # the kernels' sum, then dropped
        self._dh = [np.empty((n, units), dtype) for _ in range(self.n_states)]
        self._dprev = np.empty((n, units), dtype)
        self._kernel_t = np.empty((gates, units), dtype)
        self._uniform = np.empty(n * max(features, units), np.float64)
        self._ones = np.ones(n * max(features, units), dtype)
        previous = getattr(self, "_carry", None)  # a restored state outlives a larger allocation
        self._carry = [np.zeros((n, units), dtype) for _ in range(self.n_states)]
        for carry, old in zip(self._carry, previous or []):
            rows = min(len(carry), len(old))
            carry[:rows] = old[:rows]
        self._no_dy_seq, self._no_dy_last = np.empty((0, 0, 0), dtype), np.empty((0, 0), dtype)
        self._kernels, self._layer_kernels, self._matmul = _kernels()
        self._fast = dtype == np.float32  # vectorising tanh/sigmoid (kernels/recurrent.py); float64 stays exact
        self._dropped_inputs = False
        self.allocate_cell(n, steps)

    def allocate_cell(self, n: int, steps: int) -> None:
        """Cell-specific buffers."""

    def buffer_nbytes(self, batch_size: int, itemsize: int) -> int:
        """What `allocate` takes (pinned to it by tests/test_hostile/test_hostile_budget.py):
        per step of the sequence and per row, the input projections, pre-activations, gate
        gradients, hidden states and inputs kept for backpropagation through time."""
        n, (steps, features) = batch_size, self.input_shape
        units = self.params.units
        gates, states, wide = self.n_gates * units, self.n_states, max(features, units)
        y = n * steps * units if self.params.return_sequences else n * units
        per_sequence = n * steps * (3 * features + 2 * gates + units + 1) + states * (steps + 1) * n * units
        per_row = n * (features + units * (2 + 2 * states) + wide)  # masks, dh, dprev, carry, ones
        bias = 2 * int(np.prod(self.bias_shape()))  # zero bias, unused bias gradient
        values = per_sequence + per_row + y + gates * units + bias + 1 + self.cell_buffer_values(n, steps)  # 1: carried flag
        return values * itemsize + n * wide * 8  # + the float64 uniforms for dropout masks

    def cell_buffer_values(self, n: int, steps: int) -> int:
        """Values in the buffers `allocate_cell` adds."""
        return 0

    # -- forward ----------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        n, steps = x.shape[0], self.input_shape[0]
        p = self.params
        self._n = n
        self._dropped_inputs = training and p.dropout > 0
        x_tm = self._x_tm[n]
        source = x.transpose(1, 0, 2)[::-1] if p.go_backwards else x.transpose(1, 0, 2)
        if self._dropped_inputs:
            scale = self._draw_mask(self._input_mask_scale[:n], p.dropout)
            np.multiply(source, scale[None], out=x_tm)
        else:
            np.copyto(x_tm, source)
        pre = self._pre[n]  # x @ kernel here; the loop adds the bias and the recurrent product
        self._matmul(x_tm.reshape(steps * n, -1), self.kernel.value, pre.reshape(steps * n, -1), False, False)
        rmask = self._rmask[:n]
        if training and p.recurrent_dropout > 0:
            self._draw_mask(rmask, p.recurrent_dropout)
        else:
            rmask.fill(1)
        mask = self._mask[:n]
        if self.input_mask is None:
            mask.fill(1)
        else:
            mask[...] = self.input_mask
        for states, carry in zip(self._states, self._carry):
            if p.stateful and self._carried:
                states[n][0] = carry[:n]
            else:
                states[n][0] = 0
        self.run_forward(pre, mask, rmask, n)
        last = [states[n][steps] for states in self._states]
        if p.stateful:
            for state, carry in zip(last, self._carry):
                carry[:n] = state
            self._carried = True
        if p.return_sequences:
            y = self._y[:n]
            y[...] = self._states[0][n][1:].transpose(1, 0, 2)
            return y
        y = self._y[:n]
        y[...] = last[0]
        return y

    def _draw_mask(self, out: np.ndarray, rate: float) -> np.ndarray:
        """A TF.js dropout mask (0 or 1/(1-rate), keep where uniform >= rate) into `out`."""
        flat = out.reshape(-1)
        uniform = self._uniform[: flat.size]
        self.rng.random(out=uniform)
        self._layer_kernels.dropout_forward(self._ones[: flat.size], uniform, rate, flat, flat)
        return out

    def bias_value(self) -> np.ndarray:
        """The bias as the kernels take it (zeros when use_bias is off)."""
        return self._zero_bias if self.bias is None else self.bias.value

    def bias_grad(self) -> np.ndarray:
        """Where the kernels sum the bias gradient."""
        return self._unused_bias_grad if self.bias is None else self.bias.grad

    def run_forward(self, pre: np.ndarray, mask: np.ndarray, rmask: np.ndarray, n: int) -> None:
        """pre [steps, n, gates*units] holds x @ kernel in processing order; the cell's loop
        turns it into the pre-activations and fills the states."""
        raise NotImplementedError

    # -- backward ---------------------------------------------------------------------------
    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        n, steps = self._n, self.input_shape[0]
        sequences = self.params.return_sequences
        np.copyto(self._kernel_t, self.recurrent_kernel.value.T)
        self.run_backward(dy, sequences, n)  # dz (processing order, as x_tm) and the bias gradient
        dz = self._stacked(self._dz, n)
        self._matmul(self._stacked(self._x_tm, n), dz, self.kernel.grad, True, False)
        self.recurrent_grads(n)
        if not need_dx:
            return None
        dx_tm = self._dx_tm[n]
        self._matmul(dz, self.kernel.value, dx_tm.reshape(steps * n, -1), False, True)
        dx = self._dx[:n]
        target = dx.transpose(1, 0, 2)[::-1] if self.params.go_backwards else dx.transpose(1, 0, 2)
        if self._dropped_inputs:
            np.multiply(dx_tm, self._input_mask_scale[:n][None], out=target)
        else:
            np.copyto(target, dx_tm)
        return dx

    def run_backward(self, dy: np.ndarray, sequences: bool, n: int) -> None:
        raise NotImplementedError

    def _split_dy(self, dy: np.ndarray, sequences: bool) -> tuple[np.ndarray, np.ndarray]:
        """(dy_seq, dy_last) for the kernels: the gradient in its slot, an empty array in the other."""
        return (dy, self._no_dy_last) if sequences else (self._no_dy_seq, dy)

    def _stacked(self, buffer: TimeMajor, n: int) -> np.ndarray:
        """A time-major buffer's [steps, n, width] view as the [steps*n, width] rows that the
        weight-gradient matmuls take."""
        return buffer[n].reshape(self.input_shape[0] * n, -1)

    def recurrent_grads(self, n: int) -> None:
        """dU = H_dropped^T @ dZ over every step, one matmul."""
        self._matmul(self._stacked(self._hd, n), self._stacked(self._dz, n), self.recurrent_kernel.grad, True, False)

    # -- the compiled loop ------------------------------------------------------------------
    compiled_cell: ClassVar[int]  # the cell's kernels/recurrent_steps.py CELL_* kind

    def compiled_plan(self) -> RecurrentPlan:
        """The plan of kernels/recurrent_steps.py, for any element-wise activation pair (the loop
        calls the pair's time loops, kernels/recurrent_calls.py). A stateful layer's carried
        states and their flag are buffers of its block."""
        p = self.params
        carried = {}
        if p.stateful:
            carried = {"carry_h": self._carry[0], "carried": self._carried_flag}
            if self.n_states == 2:
                carried["carry_c"] = self._carry[1]
        buffers = {"x_tm": self._x_tm.flat, "pre": self._pre.flat, "hd": self._hd.flat, "dz": self._dz.flat,
                   "dx_tm": self._dx_tm.flat, "h": self._states[0].flat, "mask": self._mask, "rmask": self._rmask,
                   "kernel": self.kernel.value, "kernel_grad": self.kernel.grad,
                   "recurrent_kernel": self.recurrent_kernel.value, "recurrent_kernel_grad": self.recurrent_kernel.grad,
                   "bias": self.bias_value(), "bias_grad": self.bias_grad(), "kernel_t": self._kernel_t,
                   "dh": self._dh[0], "dprev": self._dprev, "y": self._y, "dx": self._dx,
                   "input_scale": self._input_mask_scale, "ones": self._ones, **carried, **self.compiled_buffers()}
        weights = tuple((w.value, w.grad) for w in self.weights)
        steps, features = self.input_shape
        # per sample and step: the input mask's uniforms, then the state's (as forward draws them)
        drawn = features * (p.dropout > 0) + p.units * (p.recurrent_dropout > 0)
        draws = DrawsPlan(self.rng, drawn, max(p.dropout, p.recurrent_dropout)) if drawn else None
        pair = (self.activation.code, self.recurrent_activation.code)
        return RecurrentPlan(self.compiled_cell, steps, features, p.units, p.return_sequences, p.go_backwards,
                             buffers, weights, self._y, self._dx, pair, (p.dropout, p.recurrent_dropout), draws)

    def compiled_buffers(self) -> dict[str, np.ndarray]:
        """The cell's own buffers under their BLOCK names."""
        return {}

    # -- state ------------------------------------------------------------------------------
    def reset_states(self) -> None:
        self._carried = False

    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"rng": self.rng.bit_generator.state}
        if self._carried:  # float32 values round-trip exactly through JSON's float64 text
            state["states"] = [carry.tolist() for carry in self._carry]
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        carried = state.get("states")
        self._carried = carried is not None
        if carried is not None:
            if self.batch_size == 0:
                self.allocate(len(carried[0]))
            for carry, value in zip(self._carry, carried):
                carry[: len(value)] = np.asarray(value, self.dtype)

    def flops_per_sample(self) -> int:
        steps, features = self.input_shape
        gates = self.n_gates * self.params.units
        return steps * 2 * gates * (features + self.params.units)


# the cells, registered here (simple_rnn, lstm, gru, in this order); importable from this module
from trainctl.nn.layers.recurrent_cells import GRU, LSTM, SimpleRNN  # noqa: E402

__all__ = ["GRU", "LSTM", "SimpleRNN", "Recurrent", "RecurrentParams", "GatedParams", "RecurrentPlan", "TimeMajor"]
