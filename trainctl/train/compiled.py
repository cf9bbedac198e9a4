"""Many training steps per compiled call (Keras `steps_per_execution`), for the models the
compiled loop covers: in-memory data (ArraySource), a stack of layers that all give a
`compiled_plan()` (Dense, Dropout, Flatten, Reshape, Activation, Conv1D/2D, Max/AveragePooling1D/2D,
GlobalMax/AveragePooling1D/2D, BatchNormalization, channels_last; weight regularizers on their kernels, biases, gammas, betas),
no activity regularizers, metrics that declare `compiled_ok`, an optimizer on the flat buffer
without clipnorm. Anything else trains step by step from Python — same results, the fit simply
does not use this module (`CompiledSteps.unsupported` says why, in `model.compiled_fallback`).

The loop returns to Python only where something needs it: the epoch's end (validation), a
step a callback saves at (`next_step_boundary`), a callback that must see every batch (a
learning-rate schedule's on_batch_begin, any user callback handling batch events: chunks of
one step), a non-finite loss, and the display's refresh (auto chunks last about CHUNK_SECONDS).
Models of Dense and Dropout over 2-D activations run kernels/plan_steps.train_plan_steps; any
other covered stack the general plan (train_spatial_plan_steps: every buffer flat, reshaped in
the kernel), a second compiled function so dense models do not pay its compile time.
Results are bit-identical to the Python path whatever the chunk sizes: the same kernels run
in the same order, and the optimizer's per-step constants are computed by the optimizer's own
Python code before the chunk (then rewound if the chunk stops early).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

CHUNK_SECONDS = 0.05  # auto chunks: short enough for a live display and a prompt Ctrl-C
MAX_CHUNK = 1 << 16
# steps_per_execution "auto": once the compiled loop is in the kernel cache, fits of at least
# AUTO_MIN_STEPS steps use it (loading it costs ~0.4-0.8 s of CPU, which a fit of a few hundred
# small steps never wins back), as does every fit once this process has loaded it. Compiling it
# costs 30-60 s of CPU, once per machine and version of trainctl, and saves ~20-40% of each small
# step: a fit that has not compiled it trains from Python and switches to the loop at an
# epoch's end only when the epochs left would take long enough from Python for the saving to pay
# for the compile (worth_switching). The results are bit-identical on either path, so the switch
# changes nothing but time. An explicit steps_per_execution always uses the loop.
AUTO_MIN_STEPS = 5000
LOOP_COMPILE_SECONDS = 40.0  # CPU-s to compile a loop (fresh cache, 2-core machine: 28-55 s)
SAVED_FRACTION = 0.25  # a conservative share of a Python step the loop saves (conv b32 ~23%, dense more)
_loaded = False


def compile_decision(total_steps: int | None, steps_per_execution, kernel_key: str) -> str:
    """'loop': train on the compiled loop from the first step; 'measure': train from Python
    and ask worth_switching at each epoch's end; 'python': train from Python."""
    from trainctl.kernels.jit import is_marked_compiled

    if steps_per_execution != "auto" or _loaded:
        return "loop"
    if total_steps is None:
        return "python"
    if is_marked_compiled(kernel_key):
        return "loop" if total_steps >= AUTO_MIN_STEPS else "python"
    return "measure"


def worth_switching(python_seconds_per_step: float, steps_left: int) -> bool:
    """Whether compiling the loop now pays for itself within this fit."""
    return python_seconds_per_step * steps_left * SAVED_FRACTION > LOOP_COMPILE_SECONDS


UNIFORM_BUDGET = 1 << 21  # dropout uniforms drawn per chunk (float64: 16 MB); longer chunks are cut


@dataclass
class _Plan:
    kinds: np.ndarray
    kernels: Any
    biases: Any
    kernel_grads: Any
    bias_grads: Any
    zs: Any
    ys: Any
    dzs: Any
    dxs: Any
    codes: np.ndarray
    ys_flat: Any
    dxs_flat: Any
    masks: Any
    uniforms: Any
    rates: np.ndarray
    features: np.ndarray
    offsets: np.ndarray
    dropouts: list  # (layer index, DropoutPlan) in forward order
    regularized: bool
    reg_which: np.ndarray
    reg_rates: np.ndarray
    reg_grad_rates: np.ndarray


def _typed(items):
    from numba.typed import List

    out = List()
    for item in items:
        out.append(item)
    return out


def _regularizer_rows(model, plans, dtype):
    """Per layer, its regularized weights in weight order (as Layer.regularization_loss sums
    them): which (kernel/bias), the penalty's float64 rates and the gradient's rates in the
    model's dtype (as Regularizer.add_grad rounds them). None: a regularized weight the plan
    does not hold."""
    from trainctl.kernels.plan_steps import REG_BIAS, REG_KERNEL, REG_NONE

    n = len(plans)
    which = np.full((n, 2), REG_NONE, np.int64)
    rates = np.zeros((n, 2, 2), np.float64)
    grad_rates = np.zeros((n, 2, 2), dtype)
    for index, (layer, plan) in enumerate(zip(model.layers, plans)):
        pairs = _regularized_pairs(layer, plan)
        if pairs is None:
            return None
        for row, (regularizer, (value, _)) in enumerate(pairs):
            which[index, row] = REG_KERNEL if value is plan.kernel else REG_BIAS
            rates[index, row] = (regularizer.l1, regularizer.l2)
            grad_rates[index, row] = (dtype.type(regularizer.l1), dtype.type(2.0 * regularizer.l2))
    return which, rates, grad_rates


class CompiledSteps:
    """Runs chunks of an epoch's steps for one (trainer, source, batch size)."""

    def __init__(self, trainer, source, batch_size: int):
        from trainctl.kernels import steps
        from trainctl.nn.activations import ACTIVATIONS

        self.trainer, self.source, self.batch_size = trainer, source, batch_size
        model = trainer.model
        trainer._ensure(batch_size)
        dtype = model.dtype
        self.dtype = dtype
        self.linear_code = int(ACTIVATIONS.get("linear").code)
        if not trainer.fused:
            self.loss_mode = steps.LOSS_GENERIC
        elif trainer.loss.fused_activation == "softmax":
            self.loss_mode = steps.LOSS_SOFTMAX_FUSED
        else:
            self.loss_mode = steps.LOSS_SIGMOID_FUSED
        self.x_source, self.y_source = source._x2d, source._y2d
        self.x_buf = np.empty((batch_size, self.x_source.shape[1]), dtype)
        self.y_buf = np.empty((batch_size, self.y_source.shape[1]), dtype)
        plans = [layer.compiled_plan() for layer in model.layers]
        if _dense_only(model, trainer, plans):
            self.plan = self._dense_plan(plans)
            self._launch = self._launch_dense
        else:
            self.plan = _spatial_plan(self, plans)
            self._launch = self._launch_spatial
        self.uniforms_per_step = batch_size * sum(plan.features for _, plan in self.plan.dropouts)
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
        weights = source.sample_weight
        self.has_weights = weights is not None
        self.weight_source = np.ascontiguousarray(weights, dtype) if weights is not None else np.zeros(1, dtype)
        self.unit = np.array([0, 1], dtype)
        self.values = np.empty((0, 1 + len(trainer.metrics)), np.float64)
        self.seconds_per_step: float | None = None

    def _dense_plan(self, plans) -> _Plan:
        """The plan of train_plan_steps: Dense and Dropout layers over [rows, features]."""
        from trainctl.kernels import plan_steps
        from trainctl.nn.layers.base import DensePlan

        trainer, dtype = self.trainer, self.dtype
        model = trainer.model
        none2, none1, none_u = np.zeros((0, 0), dtype), np.zeros(0, dtype), np.zeros(0, np.float64)
        kinds, rows = [], []
        dropouts = []
        for index, plan in enumerate(plans):
            if isinstance(plan, DensePlan):
                kinds.append(plan_steps.KIND_DENSE)
                rows.append({"kernel": plan.kernel, "bias": plan.bias, "kernel_grad": plan.kernel_grad,
                             "bias_grad": plan.bias_grad, "z": plan.z, "y": plan.y, "dz": plan.dz, "dx": plan.dx,
                             "code": plan.activation_code, "y_flat": plan.y.reshape(-1),
                             "dx_flat": plan.dx.reshape(-1), "mask": none1, "rate": 0.0,
                             "features": plan.y.shape[1]})
            else:  # a DropoutPlan: 2-D views of its 1-D buffers for the layers around it
                kinds.append(plan_steps.KIND_DROPOUT)
                dropouts.append((index, plan))
                capacity = plan.y.shape[0] // plan.features
                rows.append({"kernel": none2, "bias": none1, "kernel_grad": none2, "bias_grad": none1,
                             "z": none2, "y": plan.y.reshape(capacity, plan.features), "dz": none2,
                             "dx": plan.dx.reshape(capacity, plan.features), "code": 0, "y_flat": plan.y,
                             "dx_flat": plan.dx, "mask": plan.mask, "rate": plan.rate, "features": plan.features})
        regularizers = _regularizer_rows(model, plans, dtype)
        return _Plan(np.array(kinds, np.int64), *(_typed([r[k] for r in rows]) for k in (
            "kernel", "bias", "kernel_grad", "bias_grad", "z", "y", "dz", "dx")),
            np.array([r["code"] for r in rows], np.int64),
            _typed([r["y_flat"] for r in rows]), _typed([r["dx_flat"] for r in rows]),
            _typed([r["mask"] for r in rows]), _typed([none_u for _ in rows]),
            np.array([r["rate"] for r in rows], np.float64), np.array([r["features"] for r in rows], np.int64),
            np.zeros(len(rows), np.int64), dropouts, trainer.regularized, *regularizers)

    # -- eligibility -------------------------------------------------------------------
    @staticmethod
    def unsupported(trainer, source, batch_size: int) -> str | None:
        """Why this fit cannot use the compiled loop (None: it can)."""
        from trainctl.data.source import ArraySource
        from trainctl.kernels.steps import OPTIMIZER_CODES

        model = trainer.model
        if type(source) is not ArraySource:
            return "the data are streamed (compiled steps cover in-memory arrays)"
        if source._x2d is None:
            return "the inputs are a strided window view (gathered per batch in Python)"
        trainer._ensure(batch_size)  # plans hold the allocated buffers
        uncovered = [layer.name for layer in model.layers if not _covered(layer)]
        if uncovered:
            return f"layer {uncovered[0]} has no compiled step yet"
        if trainer.activity_regularized:
            return "activity regularizers run in Python"
        if trainer.regularized and _regularized_weights_held(model) is False:
            return "a regularized weight the compiled step does not hold"
        optimizer = model.optimizer
        if optimizer._flat is None or optimizer.params.clipnorm is not None:
            return "clipnorm (per weight) runs in Python"
        if (optimizer._kernel or optimizer.kernel()).__name__ not in OPTIMIZER_CODES:
            return f"optimizer {optimizer.type_id} has no compiled update"
        if model.dtype not in (np.float32, np.float64):
            return f"dtype {model.dtype}"
        own = [m.metric.name for m in trainer.metrics if not m.metric.compiled_ok]
        if own:
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
        if self.uniforms_per_step:
            size = min(size, max(1, UNIFORM_BUDGET // self.uniforms_per_step))
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

    def _draw_uniforms(self, first_sample: int, n_steps: int) -> None:
        """Each active Dropout's uniforms for the chunk from its own generator, as its forward
        draws them step by step (a generator's doubles drawn at once are the same stream)."""
        plan = self.plan
        if not plan.dropouts:
            return
        rows = max(0, min(n_steps * self.batch_size, self.x_source.shape[0] - first_sample))
        for index, dropout in plan.dropouts:
            if dropout.rate > 0:
                plan.uniforms[index] = dropout.rng.random(rows * dropout.features)
        plan.offsets[:] = 0

    def _snapshot(self):
        optimizer = self.optimizer
        rngs = [plan.rng.bit_generator.state for _, plan in self.plan.dropouts]
        return optimizer.iterations, {k: v.copy() for k, v in optimizer._scalars.items()}, rngs

    def _rewind(self, snapshot, first_sample: int, n_steps: int) -> None:
        optimizer = self.optimizer
        optimizer.iterations = snapshot[0]
        for key, value in snapshot[1].items():
            optimizer._scalars[key][...] = value
        self._constants(n_steps)
        for (_, plan), state in zip(self.plan.dropouts, snapshot[2]):
            plan.rng.bit_generator.state = state
        self._draw_uniforms(first_sample, n_steps)

    def run(self, order: np.ndarray, first_batch: int, n_steps: int, totals: np.ndarray) -> np.ndarray:
        """Run up to n_steps from batch `first_batch` of the epoch with row order `order`;
        returns values [steps run, 1 + metrics]; `totals` gets the size-weighted sums."""
        if self.values.shape[0] < n_steps:
            self.values = np.empty((max(n_steps, 2 * self.values.shape[0]), self.values.shape[1]), np.float64)
        snapshot = self._snapshot()
        constants, flag = self._constants(n_steps)
        first_sample = first_batch * self.batch_size
        self._draw_uniforms(first_sample, n_steps)
        started = time.perf_counter()
        done = self._launch(order, first_sample, n_steps, constants, flag, totals)
        self.trainer._scale_key = None  # the kernel wrote the row scales: Trainer._row_scale must refill
        elapsed = time.perf_counter() - started
        global _loaded
        if not _loaded:
            from trainctl.kernels.jit import mark_compiled

            mark_compiled(self.kernel_key(self.trainer))  # in the cache now: later auto fits load it
        _loaded = True
        if done:
            self.seconds_per_step = elapsed / done
        if done < n_steps:
            self._rewind(snapshot, first_sample, done)
        return self.values[:done]

    @staticmethod
    def kernel_key(trainer) -> str:
        """Which compiled loop runs this model, and its float type: the cache mark's name."""
        model = trainer.model
        plans = [layer.compiled_plan() for layer in model.layers]
        name = "train_plan_steps" if _dense_only(model, trainer, plans) else "train_spatial_plan_steps"
        return f"{name}-{np.dtype(model.dtype).name}"

    def _launch_dense(self, order, first_sample, n_steps, constants, flag, totals) -> int:
        from trainctl.kernels.plan_steps import train_plan_steps

        trainer, plan = self.trainer, self.plan
        return train_plan_steps(
            self.x_source, self.y_source, self.weight_source, order, self.has_weights,
            first_sample, self.x_source.shape[0], self.batch_size, n_steps,
            self.x_buf, self.x_buf.reshape(-1), self.y_buf, trainer._scale, trainer._per_row, trainer._grad,
            trainer._grad.reshape(-1), self.unit,
            plan.kinds, plan.kernels, plan.biases, plan.kernel_grads, plan.bias_grads, plan.zs, plan.ys, plan.dzs,
            plan.dxs, plan.codes, self.linear_code, plan.ys_flat, plan.dxs_flat, plan.masks, plan.uniforms,
            plan.rates, plan.features, plan.offsets, plan.regularized, plan.reg_which, plan.reg_rates,
            plan.reg_grad_rates, self.loss_mode, self.loss_code, self.metric_codes, self.values, totals,
            self.opt_code, self.flat_value, self.flat_grad, *self.slots, constants, flag, self.clipvalue)

    def _launch_spatial(self, order, first_sample, n_steps, constants, flag, totals) -> int:
        from trainctl.kernels.plan_steps import train_spatial_plan_steps

        trainer, plan = self.trainer, self.plan
        return train_spatial_plan_steps(
            self.x_source, self.y_source, self.weight_source, order, self.has_weights,
            first_sample, self.x_source.shape[0], self.batch_size, n_steps,
            self.x_buf, self.y_buf, trainer._scale, trainer._per_row, trainer._grad, self.unit, trainer.positions,
            plan.kinds, plan.geo, plan.fparams, plan.codes, plan.back_codes, plan.x_slots, plan.dy_slots, plan.need_dx,
            plan.out_slot, plan.bufs, plan.slots, plan.wide, plan.wide_slots, plan.ints, plan.int_slots,
            plan.uniforms, plan.offsets, plan.regularized, plan.reg_slots, plan.reg_grad_slots, plan.reg_rates,
            plan.reg_grad_rates, self.loss_mode, self.loss_code, self.metric_codes, self.values, totals,
            self.opt_code, self.flat_value, self.flat_grad, *self.slots, constants, flag, self.clipvalue)


def _covered(layer) -> bool:
    return layer.compiled_plan() is not None


def _dense_only(model, trainer, plans) -> bool:
    """Whether train_plan_steps (Dense and Dropout over [batch, features]) runs this model."""
    from trainctl.nn.layers.base import DensePlan, DropoutPlan

    return (len(model.input_shape) == 1 and trainer.positions == 1
            and all(isinstance(plan, (DensePlan, DropoutPlan)) for plan in plans))


def _plan_weights(plan) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (value, grad) pairs of the weights a plan holds, in the layer's weight order."""
    from trainctl.nn.layers.base import DensePlan
    from trainctl.nn.layers.plans import BatchNormPlan, ConvPlan

    if isinstance(plan, (DensePlan, ConvPlan)):
        return [(plan.kernel, plan.kernel_grad), (plan.bias, plan.bias_grad)]
    if isinstance(plan, BatchNormPlan):
        return [(plan.gamma, plan.gamma_grad), (plan.beta, plan.beta_grad)]
    return []


def _same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    return a.size == b.size and a.dtype == b.dtype and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]


def _regularized_pairs(layer, plan):
    """Per regularized weight of `layer` (weight order): its regularizer and the plan's (value,
    grad) pair holding it; None when the plan does not hold one of them."""
    pairs = []
    for weight in layer.weights:
        if weight.regularizer is None:
            continue
        held = [pair for pair in _plan_weights(plan) if _same_memory(pair[0], weight.value)]
        if not held:
            return None
        pairs.append((weight.regularizer, held[0]))
    return pairs


def _regularized_weights_held(model) -> bool:
    return all(_regularized_pairs(layer, layer.compiled_plan()) is not None for layer in model.layers)


@dataclass
class _SpatialPlan:
    """The general plan (see kernels/plan_steps.py, train_spatial_plan_steps)."""

    kinds: np.ndarray
    geo: np.ndarray
    fparams: np.ndarray
    codes: np.ndarray  # the activation forward
    back_codes: np.ndarray  # and backward (linear, or -1 for an Activation: fused into the loss)
    x_slots: np.ndarray
    dy_slots: np.ndarray
    need_dx: np.ndarray
    out_slot: int
    bufs: Any
    slots: np.ndarray
    wide: Any
    wide_slots: np.ndarray
    ints: Any
    int_slots: np.ndarray
    uniforms: Any
    offsets: np.ndarray
    dropouts: list  # (layer index, DropoutPlan) in forward order
    regularized: bool
    reg_slots: np.ndarray
    reg_grad_slots: np.ndarray
    reg_rates: np.ndarray
    reg_grad_rates: np.ndarray


def _spatial_plan(steps: CompiledSteps, plans) -> _SpatialPlan:
    """Every layer's buffers as flat views in typed lists, its geometry as int rows."""
    from trainctl.kernels import plan_steps as ps
    from trainctl.kernels.steps import LOSS_GENERIC
    from trainctl.nn.layers.base import DensePlan, DropoutPlan
    from trainctl.nn.layers.plans import ActivationPlan, BatchNormPlan, ConvPlan, GlobalPoolPlan, PoolPlan, ViewPlan

    trainer, dtype = steps.trainer, steps.dtype
    model = trainer.model
    bufs = [steps.x_buf.reshape(-1), trainer._grad.reshape(-1), np.zeros(0, dtype)]  # 0: input, 1: dLoss, 2: none
    wide, ints = [np.zeros(0, np.float64)], [np.zeros(0, np.int64)]
    where: dict[tuple[int, int], int] = {}

    def slot(array: np.ndarray, store=bufs) -> int:
        if not array.flags.c_contiguous:
            raise AssertionError("a plan buffer must be C-contiguous (the loop writes its flat view)")
        key = (array.__array_interface__["data"][0], array.size)
        if store is bufs and key in where:
            return where[key]
        store.append(array.reshape(-1))
        if store is bufs:
            where[key] = len(bufs) - 1
        return len(store) - 1

    n = len(plans)
    kinds = np.full(n, ps.KIND_VIEW, np.int64)
    geo = np.zeros((n, ps.N_GEO), np.int64)
    fparams = np.zeros((n, 2), np.float64)
    codes, back_codes = np.zeros(n, np.int64), np.zeros(n, np.int64)
    slots = np.full((n, ps.N_SLOTS), 2, np.int64)
    wide_slots = np.zeros((n, 2), np.int64)
    int_slots = np.zeros(n, np.int64)
    dropouts = []
    last = n - 1
    fused = steps.loss_mode != LOSS_GENERIC
    for index, (layer, plan) in enumerate(zip(model.layers, plans)):
        row, sl = geo[index], slots[index]
        row[ps.G_IN], row[ps.G_OUT] = math.prod(layer.input_shape), math.prod(layer.output_shape)
        if isinstance(plan, ViewPlan) or (isinstance(plan, DropoutPlan) and plan.rate == 0.0):
            if isinstance(plan, DropoutPlan):  # rate 0: Dropout.forward passes x on, draws nothing
                dropouts.append((index, plan))
            continue
        sl[ps.S_Y], sl[ps.S_DX] = slot(plan.y), slot(plan.dx)
        if isinstance(plan, (DensePlan, ConvPlan)):
            kinds[index] = ps.KIND_DENSE if isinstance(plan, DensePlan) else ps.KIND_CONV
            sl[ps.S_Z], sl[ps.S_DZ] = slot(plan.z), slot(plan.dz)
            sl[ps.S_W0], sl[ps.S_W0_GRAD] = slot(plan.kernel), slot(plan.kernel_grad)
            sl[ps.S_W1], sl[ps.S_W1_GRAD] = slot(plan.bias), slot(plan.bias_grad)
            codes[index] = plan.activation_code
            back_codes[index] = steps.linear_code if (index == last and fused) else plan.activation_code
            if isinstance(plan, DensePlan):
                row[ps.G_A:ps.G_A + 2] = plan.kernel.shape
            else:
                row[ps.G_A:ps.G_A + 4] = (*plan.in4, plan.kernel.shape[-1])
                row[ps.G_A + 4:ps.G_A + 16] = plan.geometry
                sl[ps.S_AUX], sl[ps.S_AUX + 1], sl[ps.S_AUX + 2] = \
                    slot(plan.cols), slot(plan.dcols), slot(plan.kernel_part)
        elif isinstance(plan, DropoutPlan):
            kinds[index] = ps.KIND_DROPOUT
            dropouts.append((index, plan))
            sl[ps.S_AUX] = slot(plan.mask)
            fparams[index, 0] = plan.rate
        elif isinstance(plan, ActivationPlan):
            kinds[index] = ps.KIND_ACTIVATION
            row[ps.G_A] = plan.y.shape[1]
            codes[index] = plan.activation_code
            back_codes[index] = -1 if (index == last and fused) else plan.activation_code
        elif isinstance(plan, PoolPlan):
            kinds[index] = ps.KIND_MAX_POOL if plan.is_max else ps.KIND_AVG_POOL
            row[ps.G_A:ps.G_A + 3] = plan.in4
            row[ps.G_A + 3:ps.G_A + 9] = plan.geometry
            row[ps.G_A + 9:ps.G_A + 11] = plan.y.shape[1:3]
            if plan.is_max:
                int_slots[index] = slot(plan.argmax, ints)
        elif isinstance(plan, GlobalPoolPlan):
            kinds[index] = ps.KIND_GLOBAL_POOL
            row[ps.G_A:ps.G_A + 3] = (plan.positions, plan.channels, int(plan.is_max))
        elif isinstance(plan, BatchNormPlan):
            kinds[index] = ps.KIND_BATCH_NORM
            row[ps.G_A:ps.G_A + 3] = (plan.pre, plan.k, plan.post)
            fparams[index] = (plan.epsilon, plan.decay)
            sl[ps.S_W0], sl[ps.S_W0_GRAD] = slot(plan.gamma), slot(plan.gamma_grad)
            sl[ps.S_W1], sl[ps.S_W1_GRAD] = slot(plan.beta), slot(plan.beta_grad)
            for k, array in enumerate((plan.moving_mean, plan.moving_variance, plan.batch_mean,
                                       plan.batch_variance, plan.inv_std, plan.xhat)):
                sl[ps.S_AUX + k] = slot(array)
            wide_slots[index] = (slot(plan.sums, wide), slot(plan.squares, wide))
        else:
            raise AssertionError(f"{layer.name}: no compiled kind for {type(plan).__name__}")
    # what each layer reads: forward the output of the computing layer before it (or the
    # input), backward the dx of the computing layer after it (or dLoss); views pass through
    x_slots, dy_slots = np.zeros(n, np.int64), np.ones(n, np.int64)
    need_dx = np.zeros(n, np.bool_)
    current, computed = 0, False
    for index in range(n):
        x_slots[index], need_dx[index] = current, computed
        if kinds[index] != ps.KIND_VIEW:
            current, computed = slots[index, ps.S_Y], True
    out_slot = int(current)
    current = 1
    for index in range(n - 1, -1, -1):
        dy_slots[index] = current
        if kinds[index] != ps.KIND_VIEW:
            current = slots[index, ps.S_DX]
    # weight regularizers, per layer in weight order (as Layer.regularization_loss sums them)
    reg_slots = np.full((n, 2), -1, np.int64)
    reg_grad_slots = np.full((n, 2), -1, np.int64)
    reg_rates = np.zeros((n, 2, 2), np.float64)
    reg_grad_rates = np.zeros((n, 2, 2), dtype)
    for index, (layer, plan) in enumerate(zip(model.layers, plans)):
        for r, (regularizer, (value, grad)) in enumerate(_regularized_pairs(layer, plan)):
            reg_slots[index, r], reg_grad_slots[index, r] = slot(value), slot(grad)
            reg_rates[index, r] = (regularizer.l1, regularizer.l2)
            reg_grad_rates[index, r] = (dtype.type(regularizer.l1), dtype.type(2.0 * regularizer.l2))
    none_u = np.zeros(0, np.float64)
    return _SpatialPlan(kinds, geo, fparams, codes, back_codes, x_slots, dy_slots, need_dx, out_slot, _typed(bufs), slots,
                        _typed(wide), wide_slots, _typed(ints), int_slots, _typed([none_u] * n),
                        np.zeros(n, np.int64), dropouts, trainer.regularized, reg_slots, reg_grad_slots,
                        reg_rates, reg_grad_rates)
