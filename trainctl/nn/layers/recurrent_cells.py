"""The recurrent cells: SimpleRNN, LSTM, GRU — each states its gates, its bias and its
kernels (kernels/recurrent.py) over the shared body in recurrent.py (TF.js facts there)."""

from __future__ import annotations

from typing import Any

import numpy as np

from trainctl.errors import ExportRefused
from trainctl.nn.initializers import Initializer
from trainctl.nn.layers.base import LAYERS
from trainctl.nn.layers.recurrent import GatedParams, Recurrent, TimeMajor


@LAYERS.register_type("simple_rnn")
class SimpleRNN(Recurrent):
    """h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)."""

    n_gates = 1
    compiled_cell = 0  # kernels/recurrent_steps.py CELL_SIMPLE

    def allocate_cell(self, n: int, steps: int) -> None:
        self._rec = np.empty((n, self.params.units), self.dtype)

    def cell_buffer_values(self, n: int, steps: int) -> int:
        return n * self.params.units

    def compiled_buffers(self):
        return {"rec": self._rec}

    def run_forward(self, pre, mask, rmask, n):
        self._kernels.simple_rnn_forward(pre, self.recurrent_kernel.value, self.bias_value(), mask, rmask,
                                         self._states[0][n], self._hd[n], self._rec[:n],
                                         self.params.go_backwards, self.activation.code, self._fast)

    def run_backward(self, dy, sequences, n):
        self._kernels.simple_rnn_backward(*self._split_dy(dy, sequences), sequences, self._kernel_t, self._mask[:n], self._rmask[:n],
                                          self._states[0][n], self._pre[n], self._dz[n], self.bias_grad(),
                                          self._dh[0][:n], self._dprev[:n], self.params.go_backwards, self.activation.code)


@LAYERS.register_type("lstm")
class LSTM(Recurrent):
    """Gates i, f, c, o: c_t = f*c_{t-1} + i*activation(z_c), h_t = o*activation(c_t)."""

    n_gates = 4
    compiled_cell = 1  # CELL_LSTM

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

    def compiled_buffers(self):
        return {"c": self._states[1].flat, "dc": self._dh[1], "gates": self._gates.flat, "act_c": self._act_c.flat,
                "rec": self._rec}

    def run_forward(self, pre, mask, rmask, n):
        h, c = (states[n] for states in self._states)
        self._kernels.lstm_forward(pre, self.recurrent_kernel.value, self.bias_value(), mask, rmask, h, c, self._hd[n],
                                   self._gates[n], self._act_c[n], self._rec[:n],
                                   self.params.go_backwards, self.activation.code, self.recurrent_activation.code,
                                   self._fast)

    def run_backward(self, dy, sequences, n):
        self._kernels.lstm_backward(*self._split_dy(dy, sequences), sequences, self._kernel_t, self._mask[:n], self._rmask[:n],
                                    self._states[1][n], self._pre[n], self._gates[n], self._act_c[n],
                                    self._dz[n], self.bias_grad(), self._dh[0][:n], self._dh[1][:n], self._dprev[:n],
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


@LAYERS.register_type("gru")
class GRU(Recurrent):
    """Gates z, r, h: h_t = z*h_{t-1} + (1-z)*activation(x_h + (r*h_{t-1}) @ U_h) (reset_after
    false, TF.js), or activation(x_h + r*(h_{t-1} @ U_h + b_rh)) (reset_after true, Keras 3)."""

    n_gates = 3

    @property
    def compiled_cell(self) -> int:
        return 3 if self.params.reset_after else 2  # CELL_GRU_RESET_AFTER, CELL_GRU

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

    def allocate_cell(self, n: int, steps: int) -> None:
        units, dtype = self.params.units, self.dtype
        self._gates = TimeMajor(steps, n, 3 * units, dtype)
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
        shared = steps * n * 3 * units  # gates
        if self.params.reset_after:
            return shared + 2 * steps * n * 3 * units + n * 3 * units  # rec_raw, drec; rec
        return shared + steps * n * units + 6 * units * units + 7 * n * units  # rh; split kernels; row scratch

    def compiled_buffers(self):
        if self.params.reset_after:
            return {"gates": self._gates.flat, "rec_raw": self._rec_raw.flat, "drec": self._drec.flat,
                    "rec": self._rec}
        return {"gates": self._gates.flat, "rh": self._rh.flat, "rec": self._rec_zr, "kernel_zr": self._kernel_zr,
                "kernel_h": self._kernel_h, "kernel_zr_t": self._kernel_zr_t, "kernel_h_t": self._kernel_h_t,
                "rec_h": self._rec_h, "dzr": self._dzr, "dzh": self._dzh, "drh": self._drh}

    def run_forward(self, pre, mask, rmask, n):
        p, k = self.params, self._kernels
        h = self._states[0][n]
        if p.reset_after:
            bias = self.bias_value()  # [2, 3u]: the input and recurrent halves
            k.gru_reset_after_forward(pre, self.recurrent_kernel.value, bias[0], bias[1], mask, rmask, h,
                                      self._hd[n], self._gates[n], self._rec_raw[n],
                                      self._rec[:n], p.go_backwards, self.activation.code,
                                      self.recurrent_activation.code, self._fast)
            return
        units = p.units
        np.copyto(self._kernel_zr, self.recurrent_kernel.value[:, : 2 * units])
        np.copyto(self._kernel_h, self.recurrent_kernel.value[:, 2 * units:])
        k.gru_forward(pre, self._kernel_zr, self._kernel_h, self.bias_value(), mask, rmask, h, self._hd[n],
                      self._gates[n], self._rh[n], self._rec_zr[:n], self._rec_h[:n], p.go_backwards,
                      self.activation.code, self.recurrent_activation.code, self._fast)

    def run_backward(self, dy, sequences, n):
        p, k = self.params, self._kernels
        if p.reset_after:
            db = self.bias_grad()
            k.gru_reset_after_backward(*self._split_dy(dy, sequences), sequences, self._kernel_t, self._mask[:n], self._rmask[:n],
                                       self._hd[n], self._pre[n], self._gates[n], self._rec_raw[n],
                                       self._dz[n], self._drec[n], db[0], db[1], self._dh[0][:n], self._dprev[:n],
                                       p.go_backwards, self.activation.code, self.recurrent_activation.code)
            return
        np.copyto(self._kernel_zr_t, self._kernel_zr.T)
        np.copyto(self._kernel_h_t, self._kernel_h.T)
        k.gru_backward(*self._split_dy(dy, sequences), sequences, self._kernel_zr_t, self._kernel_h_t, self._mask[:n], self._rmask[:n],
                       self._hd[n], self._pre[n], self._gates[n], self._dz[n], self.bias_grad(), self._dh[0][:n],
                       self._dzr[:n], self._dzh[:n], self._dprev[:n], self._drh[:n], p.go_backwards,
                       self.activation.code, self.recurrent_activation.code)

    def recurrent_grads(self, n: int) -> None:
        hd, grad = self._stacked(self._hd, n), self.recurrent_kernel.grad
        if self.params.reset_after:
            self._matmul(hd, self._stacked(self._drec, n), grad, True, False)
            return
        units = self.params.units  # the two column blocks of the gradient, written in place
        dz, rh = self._stacked(self._dz, n), self._stacked(self._rh, n)
        self._matmul(hd, dz[:, : 2 * units], grad[:, : 2 * units], True, False)
        self._matmul(rh, dz[:, 2 * units:], grad[:, 2 * units:], True, False)
