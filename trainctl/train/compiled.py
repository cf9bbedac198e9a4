"""Many training steps per compiled call (Keras `steps_per_execution`), for the models the
compiled loop covers: in-memory data (ArraySource) or a stream, fitDataset's Python batches or
an augmentation (each chunk the source's own next batches, train/stream_chunks.py), a stack of
layers that all give a `compiled_plan()` (each layer's module decides, per option: Dense, the
convolutions and pooling in either data format, normalization, the reshaping, padding, noise
and activation layers, Embedding, Masking, SimpleRNN/LSTM/GRU, Bidirectional, TimeDistributed;
the README's "Compiled steps" lists what is left out), weight regularizers, activity regularizers
on Dense and conv layers, metrics that declare `compiled_ok`, an optimizer on the flat buffer
(clipnorm per weight, as Optimizer.apply). Anything else trains step by step from Python —
same results, the fit simply does not use this module (`CompiledSteps.unsupported` says why,
in `model.compiled_fallback`).

The loop returns to Python only where something needs it: the epoch's end (validation), a
step a callback saves at (`next_step_boundary`), a callback that must see every batch (a
learning-rate schedule's on_batch_begin, any user callback handling batch events: chunks of
one step), a non-finite loss, and the display's refresh (auto chunks last about CHUNK_SECONDS).
Models of Dense and Dropout over 2-D activations run kernels/plan_steps.train_plan_steps; any
other covered stack the general plan (kernels/general_plan_steps.py: every buffer flat, reshaped in
the kernel), a second compiled function so dense models do not pay its compile time. The
noise layers' draws, like Dropout's uniforms, come per chunk from each layer's own generator.
Results are bit-identical to the Python path whatever the chunk sizes: the same kernels run
in the same order, and the optimizer's per-step constants are computed by the optimizer's own
Python code before the chunk (then rewound if the chunk stops early).
"""

from __future__ import annotations

import math
import time

import numpy as np

from trainctl.nn.layers.plans import NoisePlan
from trainctl.train.compiled_zoo import unchecked_values
from trainctl.train.stream_chunks import loop_batch_size, stream_chunks, streamed
from trainctl.train.compiled_plans import (
    activity_held,
    dense_plan,
    regularized_weights_held,
    spatial_plan,
    weight_bounds,
)

CHUNK_SECONDS = 0.05  # auto chunks: short enough for a live display and a prompt Ctrl-C
MAX_CHUNK = 1 << 16
# steps_per_execution "auto": once the compiled loop is in the kernel cache, fits of at least
# AUTO_MIN_STEPS steps use it (loading it costs ~0.4-0.8 s of CPU, which a fit of a few hundred
# small steps never wins back), as does every fit once this process has loaded it. Compiling it
# costs 30-200 s of CPU (by loop), once per machine and version of trainctl, and saves ~20-40% of each small
# step: a fit that has not compiled it trains from Python and switches to the loop at an
# epoch's end only when the epochs left would take long enough from Python for the saving to pay
# for the compile (worth_switching). The results are bit-identical on either path, so the switch
# changes nothing but time. An explicit steps_per_execution always uses the loop.
AUTO_MIN_STEPS = 5000
# CPU-s to compile each loop, fresh cache, this 2-core machine (measured: dense 28-55; general
# 85-109, sequence 162-204, both at load 3-15): what worth_switching weighs against the saving
LOOP_COMPILE_SECONDS = {"train_plan_steps": 40.0, "train_spatial_plan_steps": 90.0,
                        "train_sequence_plan_steps": 170.0}
SAVED_FRACTION = 0.25  # a conservative share of a Python step the loop saves (conv b32 ~23%, dense more)
_loaded: set[str] = set()  # the kernel keys (loop and dtype) this process has run: loaded or compiled


def _loop_of(kernel_key: str) -> str:
    return kernel_key.rsplit("-", 1)[0]  # CompiledSteps.kernel_key: "<loop>-<dtype>"


def compile_decision(total_steps: int | None, steps_per_execution, kernel_key: str) -> str:
    """'loop': train on the compiled loop from the first step; 'measure': train from Python
    and ask worth_switching at each epoch's end; 'python': train from Python."""
    from trainctl.jit.cache import is_marked_compiled

    if steps_per_execution != "auto" or kernel_key in _loaded:
        return "loop"
    if total_steps is None:
        return "measure"  # a stream of unknown length: its first epoch from Python tells how long it is
    if is_marked_compiled(kernel_key):
        return "loop" if total_steps >= AUTO_MIN_STEPS else "python"
    return "measure"


def worth_switching(python_seconds_per_step: float, steps_left: int, kernel_key: str) -> bool:
    """Whether compiling the model's loop now (or loading it, when cached) pays for itself within this fit."""
    from trainctl.jit.cache import is_marked_compiled

    if is_marked_compiled(kernel_key):  # as compile_decision decides a fit of known length
        return steps_left >= AUTO_MIN_STEPS
    return python_seconds_per_step * steps_left * SAVED_FRACTION > LOOP_COMPILE_SECONDS[_loop_of(kernel_key)]


UNIFORM_BUDGET = 1 << 21  # dropout uniforms drawn per chunk (float64: 16 MB); longer chunks are cut
GATHER_BUDGET = 1 << 24  # bytes of x gathered per chunk (inputs not of the loop's type); longer chunks are cut


class CompiledSteps:
    """Runs chunks of an epoch's steps for one (trainer, source, batch size)."""

    def __init__(self, trainer, source, batch_size: int):
        from trainctl.kernels import steps
        from trainctl.nn.activations import ACTIVATIONS

        batch_size = loop_batch_size(source, batch_size)
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
        self.stream = stream_chunks(source, batch_size, dtype)  # None: in-memory arrays
        # Each loop is compiled for writable C-contiguous arrays of the model's float type (and
        # numba compiles it again for any other array type, minutes for the sequence loop). Any
        # other x or y (overlapping windows: a read-only strided view, or none 2-D without a
        # copy; another dtype; a read-only memmap) has each chunk's rows gathered into reused
        # arrays of that type first, in the order the chunk takes them.
        if self.stream is None:
            self.x_source, self.y_source = source._x2d, source._y2d
            self.gathered = not (_loop_typed(source._x2d, dtype) and _loop_typed(source._y2d, dtype))
        else:  # a stream's chunk arrays are of that type, filled before each chunk (StreamChunks)
            self.x_source = self.y_source = None
            self.gathered = True
        self._gathered_arrays: tuple[np.ndarray, ...] | None = None
        self._allocate_batch(batch_size)
        self._lay_out_plan()
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
        self.clipnorm = float(optimizer.params.clipnorm or 0.0)  # 0: off; else per weight (Keras)
        self.clip_bounds = weight_bounds(trainer.trainable, self.flat_value)
        self.clip_scale = np.ones(1, dtype)
        weights = None if self.stream is not None else source.sample_weight  # a stream's: per chunk
        self.has_weights = weights is not None
        self.weight_source = np.ascontiguousarray(weights, dtype) if weights is not None else np.zeros(1, dtype)
        self.unit = np.array([0, 1], dtype)
        self.values = np.empty((0, 1 + len(trainer.metrics)), np.float64)
        self.seconds_per_step: float | None = None

    def widen(self, batch_size: int) -> None:
        """Train batches of up to `batch_size` rows from the next chunk on: a Python producer's
        batch longer than its first (StreamChunks.wider). Only buffers grow: a step's numbers
        depend on its batch's rows, not on the room around them."""
        self.batch_size = self.stream.batch_size = batch_size
        self.trainer._ensure(batch_size)
        self._allocate_batch(batch_size)
        self._lay_out_plan()

    def _allocate_batch(self, batch_size: int) -> None:
        """The loop's own batch buffers (x and y rows as it trains them)."""
        source, dtype = self.source, self.dtype
        self.x_buf = np.empty((batch_size, math.prod(source.x_shape)), dtype)
        self.y_buf = np.empty((batch_size, math.prod(source.y_shape)), dtype)

    def _lay_out_plan(self) -> None:
        """The plan over the layers' buffers as allocated now."""
        trainer = self.trainer
        model = trainer.model
        plans = [layer.compiled_plan() for layer in model.layers]
        if _dense_only(model, trainer, plans):
            self.plan = dense_plan(self, plans)
            self._launch = self._launch_dense
        else:
            self.plan = spatial_plan(self, plans)
            self._launch = self._launch_spatial
        self.key = _kernel_key(model, trainer, plans)
        self.uniforms_per_step = self.batch_size * sum(per_sample for _, _, per_sample in self.plan.dropouts)
        self._capacity = trainer._capacity

    # -- eligibility -------------------------------------------------------------------
    @staticmethod
    def unsupported(trainer, source, batch_size: int) -> str | None:
        """Why this fit cannot use the compiled loop (None: it can)."""
        from trainctl.data.source import ArraySource
        from trainctl.kernels.steps import OPTIMIZER_CODES

        model = trainer.model
        if type(source) is not ArraySource and not streamed(source):
            return f"the loop does not read a {type(source).__name__}'s batches"
        trainer._ensure(batch_size)  # plans hold the allocated buffers
        plans = [layer.compiled_plan() for layer in model.layers]
        uncovered = [layer.name for layer, plan in zip(model.layers, plans) if plan is None]
        if uncovered:
            return f"layer {uncovered[0]} has no compiled step yet"
        unchecked = unchecked_values(model)
        if unchecked:
            return unchecked
        if trainer.activity_regularized and not all(activity_held(layer) for layer in model.layers):
            return "activity regularizers run in Python"
        if trainer.regularized and regularized_weights_held(model) is False:
            return "a regularized weight the compiled step does not hold"
        optimizer = model.optimizer
        if optimizer._flat is None or weight_bounds(trainer.trainable, optimizer._flat[1]) is None:
            return "the trainable weights are not one flat buffer"
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
        if self.gathered:
            size = min(size, max(1, GATHER_BUDGET // (self.batch_size * self.x_buf.shape[1] * self.x_buf.itemsize)))
        return max(1, size)

    def _constants(self, n_steps: int) -> tuple[np.ndarray, bool]:
        """The optimizer's per-step constants for the next n_steps (its own Python code computes
        them, advancing its scalars and iterations as apply() would); the bool flag apart."""
        return self.optimizer.constants_table(self.dtype.type, n_steps)

    def _draw_uniforms(self, first_sample: int, n_steps: int) -> None:
        """Each active Dropout's uniforms for the chunk from its own generator, as its forward
        draws them step by step (a generator's doubles drawn at once are the same stream): its
        draws per sample for each of the chunk's samples (inside a TimeDistributed, per step of
        each, as the layer draws over the n * steps rows it runs on)."""
        plan = self.plan
        if not plan.dropouts:
            return
        if self.stream is not None:
            rows = self.stream.rows_ahead(n_steps)
        else:
            rows = max(0, min(n_steps * self.batch_size, self.source.n_samples - first_sample))
        for index, random, per_sample in plan.dropouts:
            if isinstance(random, NoisePlan) and random.normal:  # as _RandomLayer._normal draws them
                plan.normals[index] = random.rng.standard_normal(rows * per_sample, dtype=self.dtype)
            elif isinstance(random, NoisePlan) or random.rate > 0:
                plan.uniforms[index] = random.rng.random(rows * per_sample)
        plan.offsets[:] = 0

    def _snapshot(self):
        optimizer = self.optimizer
        rngs = [plan.rng.bit_generator.state for _, plan, _ in self.plan.dropouts]
        return optimizer.iterations, {k: v.copy() for k, v in optimizer._scalars.items()}, rngs

    def _rewind(self, snapshot, first_sample: int, n_steps: int) -> None:
        optimizer = self.optimizer
        optimizer.iterations = snapshot[0]
        for key, value in snapshot[1].items():
            optimizer._scalars[key][...] = value
        self._constants(n_steps)
        for (_, plan, _), state in zip(self.plan.dropouts, snapshot[2]):
            plan.rng.bit_generator.state = state
        self._draw_uniforms(first_sample, n_steps)

    def run(self, order: np.ndarray, first_batch: int, n_steps: int, totals: np.ndarray) -> np.ndarray:
        """Run up to n_steps from batch `first_batch` of the epoch with row order `order`;
        returns values [steps run, 1 + metrics]; `totals` gets the size-weighted sums."""
        if self.trainer._capacity != self._capacity:
            # a Python evaluation of larger batches (validation_batch_size) reallocated the
            # layers' buffers, a stateful layer's carried states among them
            self._lay_out_plan()
        if self.values.shape[0] < n_steps:
            self.values = np.empty((max(n_steps, 2 * self.values.shape[0]), self.values.shape[1]), np.float64)
        snapshot = self._snapshot()
        constants, flag = self._constants(n_steps)
        first_sample = first_batch * self.batch_size
        self._draw_uniforms(first_sample, n_steps)
        started = time.perf_counter()
        if self.stream is not None:
            self.x_source, self.y_source, self.weight_source, order, first_sample = self.stream.arrays()
            self.has_weights = self.stream.has_weights
        elif self.gathered:
            order, first_sample = self._gather_rows(order, first_sample, n_steps), 0
        done = self._launch(order, first_sample, n_steps, constants, flag, totals)
        self.trainer._scale_key = None  # the kernel wrote the row scales: Trainer._row_scale must refill
        elapsed = time.perf_counter() - started
        if self.key not in _loaded:  # once per loop and dtype, not per chunk
            from trainctl.jit.cache import mark_compiled

            mark_compiled(self.key)  # in the cache now: later auto fits load it
            _loaded.add(self.key)
        if done:
            self.seconds_per_step = elapsed / done
        if done < n_steps:
            self._rewind(snapshot, first_batch * self.batch_size, done)
        if self.stream is not None:
            self.stream.trained(done)
        return self.values[:done]

    def _gather_rows(self, order: np.ndarray, first_sample: int, n_steps: int) -> np.ndarray:
        """The chunk's inputs, targets and weights in its row order, into reused arrays of the
        loop's type that it then reads in order (as ArraySource._windowed_batches gathers them);
        returns that order (0, 1, ...)."""
        source, dtype = self.source, self.dtype
        rows = order[first_sample:first_sample + n_steps * self.batch_size]
        k = rows.shape[0]
        if self._gathered_arrays is None or self._gathered_arrays[0].shape[0] < k:
            self._gathered_arrays = (np.empty((k, self.x_buf.shape[1]), dtype),
                                   np.empty((k, self.y_buf.shape[1]), dtype), np.empty(k, dtype),
                                   np.arange(k, dtype=np.int64))
        x_all, y_all, w_all, in_order = self._gathered_arrays
        for values, out in ((source.x, x_all[:k].reshape(k, *source.x_shape)), (source._y2d, y_all[:k])):
            if values.dtype == dtype:
                np.take(values, rows, axis=0, out=out)
            else:
                out[...] = values[rows]
        self.x_source, self.y_source = x_all[:k], y_all[:k]
        if self.has_weights:
            w_all[:k] = source.sample_weight[rows]
            self.weight_source = w_all[:k]
        return in_order[:k]

    @staticmethod
    def kernel_key(trainer) -> str:
        """Which compiled loop runs this model, and its float type: the cache mark's name."""
        model = trainer.model
        return _kernel_key(model, trainer, [layer.compiled_plan() for layer in model.layers])

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
            self.opt_code, self.flat_value, self.flat_grad, *self.slots, constants, flag, self.clipvalue,
            self.clipnorm, self.clip_bounds, self.clip_scale)

    def _launch_spatial(self, order, first_sample, n_steps, constants, flag, totals) -> int:
        from trainctl.kernels import general_plan_steps as general

        trainer, plan = self.trainer, self.plan
        steps = general.train_sequence_plan_steps if plan.sequences else general.train_spatial_plan_steps
        return steps(
            self.x_source, self.y_source, self.weight_source, order, self.has_weights,
            first_sample, self.x_source.shape[0], self.batch_size, n_steps,
            self.x_buf, self.y_buf, trainer._scale, trainer._per_row, trainer._grad, self.unit, trainer.positions,
            plan.kinds, plan.geo, plan.fparams, plan.codes, plan.back_codes, plan.x_slots, plan.dy_slots, plan.need_dx,
            plan.out_slot, plan.bufs, plan.slots, plan.wide, plan.wide_slots, plan.ints, plan.int_slots,
            plan.uniforms, plan.normals, plan.offsets, plan.regularized, plan.reg_slots, plan.reg_grad_slots, plan.reg_rates,
            plan.reg_grad_rates, plan.activity, plan.act_slots, plan.act_rates, plan.act_grad_rates, self.loss_mode, self.loss_code, self.metric_codes, self.values, totals,
            self.opt_code, self.flat_value, self.flat_grad, *self.slots, constants, flag, self.clipvalue,
            self.clipnorm, self.clip_bounds, self.clip_scale)


def _loop_typed(values: np.ndarray | None, dtype) -> bool:
    """Whether the compiled loops take `values` as they are: writable, C-contiguous, `dtype`."""
    return (values is not None and values.dtype == dtype and values.flags.c_contiguous
            and values.flags.writeable)


def _kernel_key(model, trainer, plans) -> str:
    """"<loop>-<dtype>": the compiled loop that runs this model and its float type (_loop_of reads it)."""
    return f"{_loop_name(model, trainer, plans)}-{np.dtype(model.dtype).name}"


def _loop_name(model, trainer, plans) -> str:
    """The plan_steps function that runs this model (each one compiled only when a model needs it)."""
    from trainctl.train.compiled_plans import has_sequence_layers

    if _dense_only(model, trainer, plans):
        return "train_plan_steps"
    return "train_sequence_plan_steps" if has_sequence_layers(plans) else "train_spatial_plan_steps"


def _dense_only(model, trainer, plans) -> bool:
    """Whether train_plan_steps (Dense and Dropout over [batch, features]) runs this model."""
    from trainctl.nn.layers.base import DensePlan, DropoutPlan

    return (len(model.input_shape) == 1 and trainer.positions == 1 and not trainer.activity_regularized
            and all(isinstance(plan, (DensePlan, DropoutPlan)) for plan in plans))


