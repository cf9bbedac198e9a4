"""Many training steps per compiled call (Keras `steps_per_execution`), for the models the
compiled loop covers: in-memory data (ArraySource), a stack of layers that all give a
`compiled_plan()` (Dense today), no weight or activity regularizers, an optimizer on the flat
buffer without clipnorm. Anything else trains step by step from Python — same results, the
fit simply does not use this module (`CompiledSteps.build` returns None and says why).

The loop returns to Python only where something needs it: the epoch's end (validation), a
step a callback saves at (`next_step_boundary`), a callback that must see every batch (a
learning-rate schedule's on_batch_begin, any user callback handling batch events: chunks of
one step), a non-finite loss, and the display's refresh (auto chunks last about CHUNK_SECONDS).
Results are bit-identical to the Python path whatever the chunk sizes: the same kernels run
in the same order, and the optimizer's per-step constants are computed by the optimizer's own
Python code before the chunk (then rewound if the chunk stops early).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

CHUNK_SECONDS = 0.05  # auto chunks: short enough for a live display and a prompt Ctrl-C
MAX_CHUNK = 1 << 16
# steps_per_execution "auto" uses the compiled loop for fits of at least this many steps, or
# once this process has loaded it: loading the cached loop costs ~0.4-0.8 s of CPU (compiling it
# the first time, ~17 s), which a fit of a few hundred small steps never wins back.
AUTO_MIN_STEPS = 5000
_loaded = False


def worth_compiling(total_steps: int | None, steps_per_execution) -> bool:
    """Whether fit should use the compiled loop (results are the same either way)."""
    if steps_per_execution != "auto":
        return True
    return _loaded or (total_steps is not None and total_steps >= AUTO_MIN_STEPS)


@dataclass
class _Plan:
    kernels: Any
    biases: Any
    kernel_grads: Any
    bias_grads: Any
    zs: Any
    ys: Any
    dzs: Any
    dxs: Any
    codes: np.ndarray


class CompiledSteps:
    """Runs chunks of an epoch's steps for one (trainer, source, batch size)."""

    def __init__(self, trainer, source, batch_size: int, reason_out: list[str] | None = None):
        from numba.typed import List

        from trainctl.kernels import steps
        from trainctl.nn.activations import ACTIVATIONS

        self.trainer, self.source, self.batch_size = trainer, source, batch_size
        model = trainer.model
        trainer._ensure(batch_size)
        plans = [layer.compiled_plan() for layer in model.layers]
        dtype = model.dtype
        self.dtype = dtype

        def typed(items):
            out = List()
            for item in items:
                out.append(item)
            return out

        self.plan = _Plan(typed([p.kernel for p in plans]), typed([p.bias for p in plans]),
                          typed([p.kernel_grad for p in plans]), typed([p.bias_grad for p in plans]),
                          typed([p.z for p in plans]), typed([p.y for p in plans]),
                          typed([p.dz for p in plans]), typed([p.dx for p in plans]),
                          np.array([p.activation_code for p in plans], np.int64))
        self.linear_code = int(ACTIVATIONS.get("linear").code)
        if not trainer.fused:
            self.loss_mode = steps.LOSS_GENERIC
        elif trainer.loss.fused_activation == "softmax":
            self.loss_mode = steps.LOSS_SOFTMAX_FUSED
        else:
            self.loss_mode = steps.LOSS_SIGMOID_FUSED
        self.loss_code = int(trainer.loss.code)
        self.metric_codes = np.array([m.metric.code for m in trainer.metrics], np.int64)
        optimizer = model.optimizer
        if optimizer._kernel is None:
            optimizer._kernel = optimizer.kernel()
        self.optimizer = optimizer
        self.opt_code = steps.OPTIMIZER_CODES[optimizer._kernel.__name__]
        _, self.flat_value, self.flat_grad, slots = optimizer._flat
        empty = np.zeros(0, dtype)
        self.slots = tuple(slots) + (empty,) * (3 - len(slots))
        self.clipvalue = dtype.type(optimizer.params.clipvalue or 0.0)
        self.x_source, self.y_source = source._x2d, source._y2d
        weights = source.sample_weight
        self.has_weights = weights is not None
        self.weight_source = np.ascontiguousarray(weights, dtype) if weights is not None else np.zeros(1, dtype)
        self.x_buf = np.empty((batch_size, self.x_source.shape[1]), dtype)
        self.y_buf = np.empty((batch_size, self.y_source.shape[1]), dtype)
        self.unit = np.array([0, 1], dtype)
        self.values = np.empty((0, 1 + len(trainer.metrics)), np.float64)
        self._kernel = steps.train_steps
        self.seconds_per_step: float | None = None

    # -- eligibility -------------------------------------------------------------------
    @staticmethod
    def unsupported(trainer, source, batch_size: int) -> str | None:
        """Why this fit cannot use the compiled loop (None: it can)."""
        from trainctl.data.source import ArraySource
        from trainctl.kernels.steps import OPTIMIZER_CODES

        model = trainer.model
        if type(source) is not ArraySource:
            return "the data are streamed (compiled steps cover in-memory arrays)"
        if trainer.positions != 1 or len(model.input_shape) != 1:
            return "the model's activations are not 2-D [batch, features]"
        trainer._ensure(batch_size)  # plans hold the allocated buffers
        uncovered = [layer.name for layer in model.layers if not _covered(layer)]
        if uncovered:
            return f"layer {uncovered[0]} has no compiled step yet"
        if trainer.regularized or trainer.activity_regularized:
            return "regularizers run in Python"
        optimizer = model.optimizer
        if optimizer._flat is None or optimizer.params.clipnorm is not None:
            return "clipnorm (per weight) runs in Python"
        if (optimizer._kernel or optimizer.kernel()).__name__ not in OPTIMIZER_CODES:
            return f"optimizer {optimizer.type_id} has no compiled update"
        if model.dtype not in (np.float32, np.float64):
            return f"dtype {model.dtype}"
        own = [m.metric.name for m in trainer.metrics if m.metric.code < 0]
        if own:  # thresholded precision/recall, auc, f1, ... have kernels of their own
            return f"metric {own[0]} is computed outside the compiled step"
        return None

    # -- running -----------------------------------------------------------------------
    def chunk_size(self, remaining: int, callbacks, every_batch: bool, limit: int | str) -> int:
        if every_batch:
            return 1
        size = remaining
        step = self.optimizer.iterations
        boundary = callbacks.next_step_boundary(step)
        if boundary is not None:
            size = min(size, boundary - step)
        if limit == "auto":
            if self.seconds_per_step is None:
                size = min(size, 8)
            else:
                size = min(size, max(1, int(CHUNK_SECONDS / max(self.seconds_per_step, 1e-9))), MAX_CHUNK)
        else:
            size = min(size, int(limit))
        return max(1, size)

    def _constants(self, n_steps: int) -> tuple[np.ndarray, bool]:
        """The optimizer's per-step constants for the next n_steps (its own Python code runs
        them, advancing its scalars and iterations as apply() would); the bool flag apart."""
        optimizer, dtype = self.optimizer, self.dtype.type
        rows, flag = [], False
        for _ in range(n_steps):
            constants = optimizer.constants(dtype)
            numeric = [c for c in constants if not isinstance(c, (bool, np.bool_))]
            flag = any(bool(c) for c in constants if isinstance(c, (bool, np.bool_)))
            rows.append(numeric)
            optimizer.end_step()
            optimizer.iterations += 1
        table = np.array(rows, self.dtype) if rows and rows[0] else np.zeros((n_steps, 1), self.dtype)
        return np.ascontiguousarray(table), flag

    def _snapshot(self):
        optimizer = self.optimizer
        return optimizer.iterations, {k: v.copy() for k, v in optimizer._scalars.items()}

    def _rewind(self, snapshot, n_steps: int) -> None:
        optimizer = self.optimizer
        optimizer.iterations = snapshot[0]
        for key, value in snapshot[1].items():
            optimizer._scalars[key][...] = value
        self._constants(n_steps)

    def run(self, order: np.ndarray, first_batch: int, n_steps: int, totals: np.ndarray) -> np.ndarray:
        """Run up to n_steps from batch `first_batch` of the epoch with row order `order`;
        returns values [steps run, 1 + metrics]; `totals` gets the size-weighted sums."""
        if self.values.shape[0] < n_steps:
            self.values = np.empty((max(n_steps, 2 * self.values.shape[0]), self.values.shape[1]), np.float64)
        snapshot = self._snapshot()
        constants, flag = self._constants(n_steps)
        trainer, plan = self.trainer, self.plan
        started = time.perf_counter()
        done = self._kernel(
            self.x_source, self.y_source, self.weight_source, order, self.has_weights,
            first_batch * self.batch_size, self.x_source.shape[0], self.batch_size, n_steps,
            self.x_buf, self.y_buf, trainer._scale, trainer._per_row, trainer._grad, self.unit,
            plan.kernels, plan.biases, plan.kernel_grads, plan.bias_grads, plan.zs, plan.ys, plan.dzs, plan.dxs,
            plan.codes, self.linear_code, self.loss_mode, self.loss_code, self.metric_codes, self.values, totals,
            self.opt_code, self.flat_value, self.flat_grad, *self.slots, constants, flag, self.clipvalue)
        elapsed = time.perf_counter() - started
        global _loaded
        _loaded = True
        if done:
            self.seconds_per_step = elapsed / done
        if done < n_steps:
            self._rewind(snapshot, done)
        return self.values[:done]


def _covered(layer) -> bool:
    return layer.compiled_plan() is not None
