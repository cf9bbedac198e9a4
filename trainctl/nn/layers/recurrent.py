"""Recurrent layers: SimpleRNN, LSTM, GRU (TF.js semantics and defaults), and Masking.

Input [n, steps, features]. Per batch: one matmul projects every step's input
(`x @ kernel + bias`), one compiled loop (trainctl/kernels/recurrent.py) runs the steps,
and the weight gradients are matmuls over the stacked per-step values after the loop.
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

import math
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import model_validator

from trainctl.config.base import PositiveInt, UnitInterval, bounded_int, registry_id, typed_spec
from trainctl.errors import ExportRefused, TrainctlError
from trainctl.nn.activations import ACTIVATIONS
from trainctl.nn.initializers import INITIALIZERS, Initializer
from trainctl.nn.layers.base import LAYERS, BuildContext, Layer, LayerParams, Shape
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


def _kernels():
    from trainctl.kernels import layers, recurrent

    return recurrent, layers


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


class _Recurrent(Layer):
    """The shared body: weights, buffers, dropout masks, carried state; subclasses name the
    number of gates and call their kernels."""

    n_gates: ClassVar[int]
    Params: ClassVar[type[RecurrentParams]] = RecurrentParams

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
        self._carried = False  # stateful: whether `_carry` holds the last batch's final states
        return self.output_shape

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
        self._x_dropped = np.empty((n, steps, features), dtype)
        self._xw = np.empty((n * steps, gates), dtype)
        self._mask = np.ones((n, steps), dtype)
        self._input_mask_scale = np.ones((n, features), dtype)
        self._rmask = np.ones((n, units), dtype)
        self._states = [TimeMajor(steps + 1, n, units, dtype) for _ in range(self.n_states)]
        self._hd = TimeMajor(steps, n, units, dtype)
        self._pre = TimeMajor(steps, n, gates, dtype)
        self._y = np.empty((n, steps, units) if self.params.return_sequences else (n, units), dtype)
        self._dz = TimeMajor(steps, n, gates, dtype)
        self._dxw = np.empty((n * steps, gates), dtype)
        self._dx = np.empty((n * steps, features), dtype)
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
        self._kernels, self._layer_kernels = _kernels()
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
        per_sequence = n * steps * (2 * features + 4 * gates + units + 1) + states * (steps + 1) * n * units
        per_row = n * (features + units * (2 + 2 * states) + wide)  # masks, dh, dprev, carry, ones
        values = per_sequence + per_row + y + gates * units + self.cell_buffer_values(n, steps)
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
        if self._dropped_inputs:
            scale = self._draw_mask(self._input_mask_scale[:n], p.dropout)
            x_dropped = self._x_dropped[:n]
            np.multiply(x, scale[:, None, :], out=x_dropped)
            x = x_dropped
        self._x = x
        xw = self._xw[: n * steps]
        np.matmul(x.reshape(n * steps, -1), self.kernel.value, out=xw)
        if self.bias is not None:
            xw += self.input_bias()
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
        self.run_forward(xw.reshape(n, steps, -1), mask, rmask, n)
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

    def input_bias(self) -> np.ndarray:
        return self.bias.value

    def run_forward(self, xw: np.ndarray, mask: np.ndarray, rmask: np.ndarray, n: int) -> None:
        raise NotImplementedError

    # -- backward ---------------------------------------------------------------------------
    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        n, steps = self._n, self.input_shape[0]
        sequences = self.params.return_sequences
        np.copyto(self._kernel_t, self.recurrent_kernel.value.T)
        dz = self._dz[n]
        self.run_backward(dy, sequences, n)
        dxw = self._dxw[: n * steps].reshape(n, steps, -1)
        # dz is in processing order; the input projection is in time order
        dxw[...] = (dz[::-1] if self.params.go_backwards else dz).transpose(1, 0, 2)
        dxw2d = dxw.reshape(n * steps, -1)
        np.matmul(self._x.reshape(n * steps, -1).T, dxw2d, out=self.kernel.grad)
        self.recurrent_grads(n)
        if self.bias is not None:
            self.bias_grads(dxw2d, n)
        if not need_dx:
            return None
        dx = self._dx[: n * steps]
        np.matmul(dxw2d, self.kernel.value.T, out=dx)
        dx3 = dx.reshape(n, steps, -1)
        if self._dropped_inputs:
            dx3 *= self._input_mask_scale[:n][:, None, :]
        return dx3

    def run_backward(self, dy: np.ndarray, sequences: bool, n: int) -> None:
        raise NotImplementedError

    def _split_dy(self, dy: np.ndarray, sequences: bool) -> tuple[np.ndarray, np.ndarray]:
        """(dy_seq, dy_last) for the kernels: the gradient in its slot, an empty array in the other."""
        return (dy, self._no_dy_last) if sequences else (self._no_dy_seq, dy)

    def recurrent_grads(self, n: int) -> None:
        """dU = H_dropped^T @ dZ over every step, one matmul."""
        steps, units = self.input_shape[0], self.params.units
        hd = self._hd[n].reshape(steps * n, units)
        np.matmul(hd.T, self._dz[n].reshape(steps * n, -1), out=self.recurrent_kernel.grad)

    def bias_grads(self, dxw2d: np.ndarray, n: int) -> None:
        np.sum(dxw2d, axis=0, out=self.bias.grad)

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


@LAYERS.register("simple_rnn")
class SimpleRNN(_Recurrent):
    """h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)."""

    type_id = "simple_rnn"
    class_name = "SimpleRNN"
    n_gates = 1

    def allocate_cell(self, n: int, steps: int) -> None:
        self._rec = np.empty((n, self.params.units), self.dtype)

    def cell_buffer_values(self, n: int, steps: int) -> int:
        return n * self.params.units

    def run_forward(self, xw, mask, rmask, n):
        self._kernels.simple_rnn_forward(xw, self.recurrent_kernel.value, mask, rmask, self._states[0][n],
                                         self._hd[n], self._pre[n], self._rec[:n],
                                         self.params.go_backwards, self.activation.code, self._fast)

    def run_backward(self, dy, sequences, n):
        self._kernels.simple_rnn_backward(*self._split_dy(dy, sequences), sequences, self._kernel_t, self._mask[:n], self._rmask[:n],
                                          self._states[0][n], self._pre[n], self._dz[n], self._dh[0][:n],
                                          self._dprev[:n], self.params.go_backwards, self.activation.code)


@LAYERS.register("lstm")
class LSTM(_Recurrent):
    """Gates i, f, c, o: c_t = f*c_{t-1} + i*activation(z_c), h_t = o*activation(c_t)."""

    type_id = "lstm"
    class_name = "LSTM"
    n_gates = 4

    class Params(GatedParams):
        unit_forget_bias: bool = False  # TF.js reads args.unitForgetBias bare: off unless given (Keras: on)

    @property
    def n_states(self) -> int:
        return 2

    def bias_initializer(self) -> Any:
        if not self.params.unit_forget_bias:
            return self.params.bias_initializer
        from trainctl.nn.initializers import build_initializer

        return _UnitForgetBias(build_initializer(self.params.bias_initializer), self.params.units)

    def allocate_cell(self, n: int, steps: int) -> None:
        units = self.params.units
        self._gates = TimeMajor(steps, n, 4 * units, self.dtype)
        self._act_c = TimeMajor(steps, n, units, self.dtype)
        self._rec = np.empty((n, 4 * units), self.dtype)

    def cell_buffer_values(self, n: int, steps: int) -> int:
        units = self.params.units
        return steps * n * 5 * units + n * 4 * units  # gates, act_c; rec

    def run_forward(self, xw, mask, rmask, n):
        h, c = (states[n] for states in self._states)
        self._kernels.lstm_forward(xw, self.recurrent_kernel.value, mask, rmask, h, c, self._hd[n],
                                   self._pre[n], self._gates[n], self._act_c[n], self._rec[:n],
                                   self.params.go_backwards, self.activation.code, self.recurrent_activation.code,
                                   self._fast)

    def run_backward(self, dy, sequences, n):
        self._kernels.lstm_backward(*self._split_dy(dy, sequences), sequences, self._kernel_t, self._mask[:n], self._rmask[:n],
                                    self._states[1][n], self._pre[n], self._gates[n], self._act_c[n],
                                    self._dz[n], self._dh[0][:n], self._dh[1][:n], self._dprev[:n],
                                    self.params.go_backwards, self.activation.code, self.recurrent_activation.code)


class _UnitForgetBias(Initializer):
    """TF.js's LSTM bias with unit_forget_bias: [init(units), ones(units), init(2*units)]."""

    type_id = "unit_forget_bias"
    class_name = "CustomInit"  # what TF.js names it

    def __init__(self, base: Initializer, units: int):
        super().__init__()
        self.base, self.units = base, units

    def __call__(self, shape, rng, dtype=np.float32):
        u = self.units
        return np.concatenate([self.base((u,), rng, dtype), np.ones(u, dtype), self.base((2 * u,), rng, dtype)])


@LAYERS.register("gru")
class GRU(_Recurrent):
    """Gates z, r, h: h_t = z*h_{t-1} + (1-z)*activation(x_h + (r*h_{t-1}) @ U_h) (reset_after
    false, TF.js), or activation(x_h + r*(h_{t-1} @ U_h + b_rh)) (reset_after true, Keras 3)."""

    type_id = "gru"
    class_name = "GRU"
    n_gates = 3

    class Params(GatedParams):
        reset_after: bool = False  # TF.js has only this convention (Keras 3 defaults to true)

    def bias_shape(self) -> tuple[int, ...]:
        gates = 3 * self.params.units
        return (2, gates) if self.params.reset_after else (gates,)

    def to_keras_config(self, config: dict[str, Any], fmt: str) -> dict[str, Any]:
        if fmt == "tfjs" and self.params.reset_after:
            raise ExportRefused(f"{self.name} (GRU): reset_after: true has no TF.js form (TF.js's GRU applies the "
                                "reset gate before the recurrent product only) (tfjs export)")
        return config

    def input_bias(self) -> np.ndarray:
        return self.bias.value[0] if self.params.reset_after else self.bias.value

    def allocate_cell(self, n: int, steps: int) -> None:
        units, dtype = self.params.units, self.dtype
        self._gates = TimeMajor(steps, n, 3 * units, dtype)
        self._zero_bias = np.zeros(3 * units, dtype)
        if self.params.reset_after:
            self._rec_raw = TimeMajor(steps, n, 3 * units, dtype)
            self._drec = TimeMajor(steps, n, 3 * units, dtype)
            self._rec = np.empty((n, 3 * units), dtype)
        else:
            self._rh = TimeMajor(steps, n, units, dtype)
            self._kernel_zr = np.empty((units, 2 * units), dtype)
            self._kernel_h = np.empty((units, units), dtype)
            self._kernel_zr_t = np.empty((2 * units, units), dtype)
            self._kernel_h_t = np.empty((units, units), dtype)
            self._rec_zr = np.empty((n, 2 * units), dtype)
            self._rec_h = np.empty((n, units), dtype)
            self._dzr = np.empty((n, 2 * units), dtype)
            self._dzh = np.empty((n, units), dtype)
            self._drh = np.empty((n, units), dtype)

    def cell_buffer_values(self, n: int, steps: int) -> int:
        units = self.params.units
        shared = steps * n * 3 * units + 3 * units  # gates, zero bias
        if self.params.reset_after:
            return shared + 2 * steps * n * 3 * units + n * 3 * units  # rec_raw, drec; rec
        return shared + steps * n * units + 6 * units * units + 7 * n * units  # rh; split kernels; row scratch

    def run_forward(self, xw, mask, rmask, n):
        p, k = self.params, self._kernels
        h = self._states[0][n]
        if p.reset_after:
            recurrent_bias = self.bias.value[1] if self.bias is not None else self._zero_bias
            k.gru_reset_after_forward(xw, self.recurrent_kernel.value, recurrent_bias, mask, rmask, h,
                                      self._hd[n], self._pre[n], self._gates[n], self._rec_raw[n],
                                      self._rec[:n], p.go_backwards, self.activation.code,
                                      self.recurrent_activation.code, self._fast)
            return
        units = p.units
        np.copyto(self._kernel_zr, self.recurrent_kernel.value[:, : 2 * units])
        np.copyto(self._kernel_h, self.recurrent_kernel.value[:, 2 * units:])
        k.gru_forward(xw, self._kernel_zr, self._kernel_h, mask, rmask, h, self._hd[n], self._pre[n],
                      self._gates[n], self._rh[n], self._rec_zr[:n], self._rec_h[:n], p.go_backwards,
                      self.activation.code, self.recurrent_activation.code, self._fast)

    def run_backward(self, dy, sequences, n):
        p, k = self.params, self._kernels
        if p.reset_after:
            k.gru_reset_after_backward(*self._split_dy(dy, sequences), sequences, self._kernel_t, self._mask[:n], self._rmask[:n],
                                       self._hd[n], self._pre[n], self._gates[n], self._rec_raw[n],
                                       self._dz[n], self._drec[n], self._dh[0][:n], self._dprev[:n],
                                       p.go_backwards, self.activation.code, self.recurrent_activation.code)
            return
        np.copyto(self._kernel_zr_t, self._kernel_zr.T)
        np.copyto(self._kernel_h_t, self._kernel_h.T)
        k.gru_backward(*self._split_dy(dy, sequences), sequences, self._kernel_zr_t, self._kernel_h_t, self._mask[:n], self._rmask[:n],
                       self._hd[n], self._pre[n], self._gates[n], self._dz[n], self._dh[0][:n],
                       self._dzr[:n], self._dzh[:n], self._dprev[:n], self._drh[:n], p.go_backwards,
                       self.activation.code, self.recurrent_activation.code)

    def recurrent_grads(self, n: int) -> None:
        if self.params.reset_after:
            steps, units = self.input_shape[0], self.params.units
            hd = self._hd[n].reshape(steps * n, units)
            np.matmul(hd.T, self._drec[n].reshape(steps * n, -1), out=self.recurrent_kernel.grad)
            return
        steps, units = self.input_shape[0], self.params.units
        dz = self._dz[n].reshape(steps * n, 3 * units)
        hd = self._hd[n].reshape(steps * n, units)
        rh = self._rh[n].reshape(steps * n, units)
        grad = self.recurrent_kernel.grad
        grad[:, : 2 * units] = hd.T @ dz[:, : 2 * units]
        grad[:, 2 * units:] = rh.T @ dz[:, 2 * units:]

    def bias_grads(self, dxw2d: np.ndarray, n: int) -> None:
        if not self.params.reset_after:
            np.sum(dxw2d, axis=0, out=self.bias.grad)
            return
        steps = self.input_shape[0]
        np.sum(dxw2d, axis=0, out=self.bias.grad[0])
        np.sum(self._drec[n].reshape(steps * n, -1), axis=0, out=self.bias.grad[1])


@LAYERS.register("masking")
class Masking(Layer):
    """Marks the time steps whose features all equal `mask_value` as absent, for the
    recurrent layers after it; outputs x * mask (TF.js/Keras Masking)."""

    type_id = "masking"
    class_name = "Masking"

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

    def buffer_nbytes(self, batch_size: int, itemsize: int) -> int:
        return batch_size * (self.input_shape[0] + 2 * math.prod(self.input_shape) * itemsize)  # mask, y, dx

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


_MERGE_MODES = Literal["concat", "sum", "mul", "ave"]


@LAYERS.register("bidirectional")
class Bidirectional(Layer):
    """Runs a recurrent layer forwards and a copy backwards and merges their outputs (TF.js
    Bidirectional: the copy's go_backwards flipped, its sequence output reversed back)."""

    type_id = "bidirectional"
    class_name = "Bidirectional"

    class Params(LayerParams):
        layer: dict[str, Any]  # the recurrent layer, as in model.layers: {type: lstm, units: 16}
        merge_mode: _MERGE_MODES = "concat"  # TF.js default; null (separate outputs) needs a functional model

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        from trainctl.nn.layers.base import auto_name
        from trainctl.nn.model import layer_from_spec

        self.input_shape = tuple(input_shape)
        spec = dict(self.params.layer)
        inner_type = LAYERS.get(spec.get("type", ""))
        if not issubclass(inner_type, _Recurrent):
            raise TrainctlError(f"{self.name}: Bidirectional wraps a recurrent layer (simple_rnn, lstm, gru), "
                                f"got {spec.get('type')!r}")
        self.forward_layer = layer_from_spec(spec, 0)
        backward_spec = {**spec, "go_backwards": not spec.get("go_backwards", spec.get("goBackwards", False))}
        backward_spec.pop("goBackwards", None)
        self.backward_layer = layer_from_spec(backward_spec, 0)
        inner_name = spec.get("name") or auto_name(self.forward_layer, context)
        self.forward_layer.name = f"forward_{inner_name}"
        self.backward_layer.name = f"backward_{inner_name}"
        self.inner_name = inner_name
        self.weights = []
        for layer in (self.forward_layer, self.backward_layer):
            layer.trainable = layer.trainable and self.trainable
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

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["layer"] = dict(self.params.layer)
        return config

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


@LAYERS.register("time_distributed")
class TimeDistributed(Layer):
    """Applies one layer to every time step: [n, steps, ...] runs as [n*steps, ...]."""

    type_id = "time_distributed"
    class_name = "TimeDistributed"

    class Params(LayerParams):
        layer: dict[str, Any]  # the layer applied per step, as in model.layers: {type: dense, units: 8}

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        from trainctl.nn.layers.base import auto_name
        from trainctl.nn.model import layer_from_spec

        if len(input_shape) < 2:
            raise TrainctlError(f"{self.name}: TimeDistributed needs inputs [steps, ...], got {list(input_shape)}")
        self.input_shape = tuple(input_shape)
        spec = dict(self.params.layer)
        self.inner = layer_from_spec(spec, 0)
        self.inner.name = spec.get("name") or auto_name(self.inner, context)
        self.inner.trainable = self.inner.trainable and self.trainable
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
        y = self.inner.forward(x.reshape(n * steps, *self.input_shape[1:]), training)
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
    def has_activity_regularizer(self) -> bool:
        return self.inner.has_activity_regularizer

    def activity_loss(self, n: int) -> float:
        return self.inner.activity_loss(n * self.input_shape[0])  # the inner layer saw n*steps rows

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["layer"] = dict(self.params.layer)
        return config

    def get_state(self) -> dict[str, Any]:
        return self.inner.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self.inner.set_state(state)

    def flops_per_sample(self) -> int:
        return self.input_shape[0] * self.inner.flops_per_sample()

