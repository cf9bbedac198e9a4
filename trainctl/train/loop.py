"""The fit / evaluate / predict loops. They emit events to callbacks and never print.

One training step = forward ► loss (+ its gradient) ► metrics ► backward ► optimizer update,
on buffers allocated once per batch size. Logged values follow TF.js: a batch's loss and
metrics are computed before that batch's update, an epoch's are the size-weighted means of
its batches, validation runs after the epoch's last update.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Iterable

import numpy as np

from trainctl.train.callbacks import Callback, CallbackList, History
from trainctl.train.epoch import EpochAccumulator
from trainctl.data.source import ArraySource, BatchSource, split_validation
from trainctl.errors import ConfigValueError, DataError, TrainctlError
from trainctl.train.class_weights import ClassWeightedSource, class_weight_to_sample_weight  # noqa: F401 - re-exported
from trainctl.train.compile import (CompileError, check_inputs, check_loss_applicable, last_activation,  # noqa: F401
                                    check_targets, compile_model)
from trainctl.train.trainer import Trainer  # noqa: F401 - re-exported (the step lives there)


# -- fit -------------------------------------------------------------------------------
class CompileNotice:
    """Sends on_compile_begin/end only when the first step is slow enough to be compiling
    kernels (a cold cache): a warm cache loads in well under `delay` and shows nothing."""

    def __init__(self, callbacks: Callback, delay: float = 0.4):
        self.callbacks, self.delay = callbacks, delay
        self.done = False
        self._fired = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(delay, self._fire)
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if not self.done:
                self._fired = True
                self.callbacks.on_compile_begin({"elapsed": self.delay})  # compiling since the step began

    def finish(self) -> None:
        self._timer.cancel()
        with self._lock:
            if not self.done and self._fired:
                self.callbacks.on_compile_end({})
            self.done = True


def fit(model, x: np.ndarray | None = None, y: np.ndarray | None = None, *, epochs: int = 1,
        batch_size: int = 32, shuffle: bool = True, validation_split: float = 0.0,
        validation_data: Any = None, initial_epoch: int = 0, class_weight: dict | None = None,
        sample_weight: np.ndarray | None = None, callbacks: Iterable[Callback] = (),
        source: BatchSource | None = None, steps_per_epoch: int | None = None,
        validation_batch_size: int | None = None, validation_freq: int = 1,
        validation_steps: int | None = None, seed: int | None = None,
        start_batch: int = 0, epoch_totals: EpochAccumulator | None = None, augmentation: Any = None,
        flush_denormals: bool = True, threads: int | None = None, steps_per_execution: int | str = "auto",
        jit_compile: bool = True) -> History:
    """Train `model` (compiled) on arrays x, y or on a BatchSource; returns the History.

    TF.js semantics: validation_split takes the LAST fraction of x/y before shuffling;
    shuffling is per epoch after the split, seeded by `seed` (default: the model's seed).
    `start_batch` skips the first batches of `initial_epoch` (exact resume); `epoch_totals`
    is the epoch accumulator to use, and with `start_batch` its sums so far continue.
    `augmentation` (data/augmentation.py) transforms the training batches only.
    `flush_denormals` sets FTZ/DAZ on the training thread for the fit (False: IEEE denormals);
    `threads` is the most BLAS threads for the fit (None: the process's set_threads, else the
    pools as they are); the fit keeps whichever of 1 and N runs its steps faster
    (train/thread_governor.py). Both are restored after.
    `steps_per_execution` (Keras): steps per compiled call, "auto" sizes them to ~50 ms;
    `jit_compile=False` runs every step from Python (the reference path; same results).
    """
    seed = model.seed if seed is None else seed
    callbacks = resolve_callbacks(callbacks)
    if source is None:
        if x is None or y is None:
            raise TrainctlError("fit needs x and y, or a source")
        x, y = np.asarray(x) if not isinstance(x, np.memmap) else x, np.asarray(y)
        if y.ndim == 1 and tuple(model.output_shape) == (1,):
            y = y[:, None]  # one target per sample for a one-unit output, as Keras accepts
        check_inputs(model, x, "training data")
        check_targets(model, y, "training data")
        if class_weight:
            class_sw = class_weight_to_sample_weight(y, class_weight)
            sample_weight = class_sw if sample_weight is None else np.asarray(sample_weight) * class_sw
        if validation_split:
            if validation_data is not None:
                raise TrainctlError("give validation_split or validation_data, not both")
            if not 0 < validation_split < 1:
                raise TrainctlError(f"validation_split must be in (0, 1), got {validation_split}")
            (x, y, sample_weight), (xv, yv, _) = split_validation(x, y, sample_weight, validation_split)
            if xv.shape[0] == 0 or x.shape[0] == 0:
                raise DataError(f"validation_split {validation_split} leaves no training or no validation samples")
            validation_data = (xv, yv)
        if x.shape[0] == 0:
            raise DataError("training data has no samples")
        source = ArraySource(x, y, sample_weight, shuffle=shuffle, seed=seed, dtype=model.dtype)
    elif class_weight:
        source = ClassWeightedSource(source, class_weight)  # fitDataset's classWeight
    if augmentation is not None:  # data.preprocessing's random_* steps: training batches only
        source = augmentation.wrap(source)
    val_source = _validation_source(model, validation_data)

    trainer = Trainer(model)
    history = History()
    callback_list = CallbackList([history, *callbacks])
    callback_list.set_model(model)
    steps = source.n_batches(batch_size)
    if steps_per_epoch is not None:
        steps = steps_per_epoch if steps is None else min(steps, steps_per_epoch)
    callback_list.set_params({
        "epochs": epochs, "initial_epoch": initial_epoch, "steps": steps, "batch_size": batch_size,
        "samples": getattr(source, "n_samples", None), "metrics": trainer.log_keys,
        "do_validation": val_source is not None,
    })
    from trainctl.train.runtime import TrainingEnvironment, most_threads
    from trainctl.train.thread_governor import governor_for

    if model.dtype == np.float64:
        # OpenBLAS's threaded dgemm rounds differently from one thread beyond the depth blocks
        # kernels/blas.py fixes for float32: over 300 random shapes, 2 threads gave other bits
        # on 210 whole and still on 73 called per one-thread depth block (384, halves rounded
        # to 16; OpenBLAS 0.3.31 SkylakeX), so a float64 fit keeps its products on one thread
        # and its bits whatever --threads says (tests/test_thread_governor.py).
        threads = 1
    with TrainingEnvironment(threads=threads, flush_denormals=flush_denormals):
        governor = governor_for(most_threads(threads))
        try:
            epoch_logs = _train_epochs(model, trainer, source, val_source, callback_list, epochs=epochs,
                                       batch_size=batch_size, initial_epoch=initial_epoch, start_batch=start_batch,
                                       steps_per_epoch=steps_per_epoch, validation_batch_size=validation_batch_size,
                                       validation_freq=validation_freq, validation_steps=validation_steps,
                                       steps_per_execution=steps_per_execution, jit_compile=jit_compile,
                                       epoch_totals=epoch_totals, governor=governor)
        finally:
            governor.finish()
    callback_list.on_train_end(epoch_logs)
    return history


def _train_epochs(model, trainer, source, val_source, callback_list, *, epochs, batch_size, initial_epoch,
                  start_batch, steps_per_epoch, validation_batch_size, validation_freq, validation_steps,
                  steps_per_execution, jit_compile, epoch_totals, governor):
    """The epochs of a fit, on the training thread's environment; returns the last epoch's logs.
    `governor` (train/thread_governor.py) times the steps and picks the BLAS thread count."""
    from trainctl.train.compiled import CompiledSteps, compile_decision, worth_switching

    compiled = None
    per_epoch = source.n_batches(batch_size)
    if per_epoch is not None and steps_per_epoch is not None:
        per_epoch = min(per_epoch, steps_per_epoch)
    total_steps = None if per_epoch is None else per_epoch * (epochs - initial_epoch) - start_batch
    model.compiled_fallback = "jit_compile is off"
    decision = "python"
    if jit_compile:
        model.compiled_fallback = CompiledSteps.unsupported(trainer, source, batch_size)
        if model.compiled_fallback is None:
            kernel_key = CompiledSteps.kernel_key(trainer)
            decision = compile_decision(total_steps, steps_per_execution, kernel_key)
            if decision == "python":
                model.compiled_fallback = (f"a fit of {total_steps} steps: faster from Python than loading the "
                                           f"compiled loop (steps_per_execution: N uses it anyway)")
            elif decision == "measure" and total_steps is None:
                model.compiled_fallback = ("a stream of unknown length: from Python until an epoch shows the compiled "
                                           "loop pays (steps_per_execution: N uses it)")
            elif decision == "measure":
                model.compiled_fallback = ("the compiled loop is not compiled on this machine yet, and this fit is "
                                           "too short to pay for compiling it (steps_per_execution: N compiles it)")

    def use_the_loop():
        nonlocal compiled
        compiled = CompiledSteps(trainer, source, batch_size)
        trainer._bind_loss_kernels(generic=True)  # the compiled loop's loss kernel, not a second one
        model.compiled_fallback = None
        governor.reset()  # its first chunk compiles or loads the loop: not a step rate

    if decision == "loop":
        use_the_loop()
    model.stop_training = False
    wants_batch_begin = callback_list.wants_batch_begin
    callback_list.on_train_begin({})
    compile_notice = CompileNotice(callback_list)
    compile_notice.start()
    epoch_logs: dict[str, float] = {}
    totals = epoch_totals if epoch_totals is not None else EpochAccumulator()
    for epoch in range(initial_epoch, epochs):
        callback_list.on_epoch_begin(epoch, {})
        first_batch = start_batch if epoch == initial_epoch else 0
        epoch_started, python_steps = time.perf_counter(), 0
        if first_batch == 0 or epoch_totals is None:
            totals.reset(trainer.log_keys)
        elif len(totals.totals) != len(trainer.log_keys):
            raise TrainctlError(f"the saved epoch sums hold {len(totals.totals)} values, training logs "
                                f"{len(trainer.log_keys)}")
        if compiled is not None:
            _compiled_epoch(compiled, source, epoch, first_batch, batch_size, steps_per_epoch,
                            steps_per_execution, callback_list, trainer.log_keys, totals, compile_notice, governor)
        for index, (xb, yb, wb) in enumerate(() if compiled is not None else
                                             source.batches(epoch, batch_size, first_batch), start=first_batch):
            if steps_per_epoch is not None and index >= steps_per_epoch:
                break
            n = xb.shape[0]
            if wants_batch_begin:
                callback_list.on_batch_begin(index, {"batch": index, "size": n})
            governor.start()
            values = trainer.train_batch(xb, yb, wb)
            governor.stop(n)
            python_steps += 1
            if not compile_notice.done:
                compile_notice.finish()
            totals.add(values, n)  # before on_batch_end: a checkpoint taken there includes this batch
            logs = dict(zip(trainer.log_keys, values))
            logs["batch"], logs["size"] = index, n
            callback_list.on_batch_end(index, logs)
            if model.stop_training:
                break
        python_seconds = time.perf_counter() - epoch_started  # the steps only, not validation
        epoch_logs = totals.means()
        if val_source is not None and (epoch + 1) % validation_freq == 0 and not _nonfinite(epoch_logs):
            val = trainer.evaluate(val_source, validation_batch_size or batch_size, validation_steps)
            epoch_logs.update({f"val_{key}": value for key, value in val.items()})
        callback_list.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
        if decision == "measure" and compiled is None and python_steps and epoch + 1 < epochs:
            epoch_steps = python_steps if per_epoch is None else per_epoch  # an unknown length: this epoch's
            if worth_switching(python_seconds / python_steps, epoch_steps * (epochs - epoch - 1), kernel_key):
                use_the_loop()  # from the next epoch: the same results, sooner
                compile_notice = CompileNotice(callback_list)  # the display says it is compiling
                compile_notice.start()
    compile_notice.finish()
    return epoch_logs


def _compiled_epoch(compiled, source, epoch, first_batch, batch_size, steps_per_epoch, steps_per_execution,
                    callback_list, keys, totals, compile_notice, governor) -> int:
    """One epoch's steps in compiled chunks; callbacks as fit's loop calls them (see
    CallbackList.on_chunk_end). `totals` (the EpochAccumulator) holds every batch of a chunk
    before any callback sees it, as the step-by-step loop adds a batch before on_batch_end;
    the kernel sums in float64 in batch order, as EpochAccumulator.add does."""
    from trainctl.train.compiled import MAX_CHUNK

    model = compiled.trainer.model
    sums = np.array(totals.totals, np.float64)
    n_samples = source.n_samples
    n_batches = source.n_batches(batch_size)  # None: a stream of unknown length, run until it ends
    if steps_per_epoch is not None:
        n_batches = steps_per_epoch if n_batches is None else min(n_batches, steps_per_epoch)
    stream = compiled.stream  # None: in-memory arrays, read in the epoch's order
    if stream is None:
        order = source.order(epoch)
    else:
        order = None
        stream.begin_epoch(epoch, first_batch)
    seen = 0
    index = first_batch
    while n_batches is None or index < n_batches:
        every = callback_list.needs_every_batch
        count = compiled.chunk_size(MAX_CHUNK if n_batches is None else n_batches - index, callback_list, every,
                                    steps_per_execution)
        if stream is not None:
            wanted, count = count, stream.fill(count)
            if count == 0 and stream.wider:  # Python batches: one longer than the loop's so far
                compiled.widen(stream.wider)
                count = stream.fill(wanted)
            if count == 0:
                break
        if callback_list.wants_batch_begin:
            first_size = min(batch_size, n_samples - index * batch_size) if stream is None else stream.size_ahead()
            callback_list.on_batch_begin(index, {"batch": index, "size": first_size})
        governor.start()
        values = compiled.run(order, index, count, sums)
        done = values.shape[0]
        if stream is None:
            size = min(n_samples, (index + done) * batch_size) - index * batch_size  # the chunk's samples
        else:
            size = sum(stream.last_sizes)
        governor.stop(size)
        if not compile_notice.done:
            compile_notice.finish()
        # the earlier batches' logs only when a callback replays them (1.6 µs a batch of Python)
        first = 0 if callback_list.replays_batches else done - 1
        batches = []
        for offset, row in enumerate(values[first:].tolist(), index + first):
            logs = dict(zip(keys, row))
            logs["batch"] = offset
            logs["size"] = (min(batch_size, n_samples - offset * batch_size) if stream is None
                            else stream.last_sizes[offset - index])
            batches.append((offset, logs))
        seen += size
        index += done
        totals.totals, totals.seen = sums.tolist(), totals.seen + size
        callback_list.on_chunk_end(batches)
        if model.stop_training:
            break
    return seen


def resolve_callbacks(callbacks: Iterable[Any]) -> list[Callback]:
    """Callbacks as objects, ids (`"terminate_on_nan"`) or config mappings
    (`{"type": "early_stopping", "monitor": "val_loss", "patience": 3}`), as in a config's
    `callbacks:` list; a bad one is a ConfigValueError at `callbacks.<index>`."""
    from trainctl.config.schema import dispatch_by_type
    from trainctl.train.callbacks import CALLBACKS

    resolved: list[Callback] = []
    for index, spec in enumerate(callbacks or ()):
        if isinstance(spec, Callback):
            resolved.append(spec)
            continue
        if isinstance(spec, str):
            spec = {"type": spec}
        if not isinstance(spec, dict) or "type" not in spec:
            raise ConfigValueError([(f"callbacks.{index}", "a callback is a Callback object, an id such as "
                                     f"'early_stopping', or a mapping with 'type'; got {spec!r}")])
        typed, problems = dispatch_by_type(CALLBACKS, spec, ("callbacks", index))
        if problems:
            raise ConfigValueError([(".".join(map(str, p.path)), p.message) for p in problems])
        cls = CALLBACKS.get(typed.type)
        params = typed.params
        resolved.append(cls(**params.model_dump()))
    return resolved


def _nonfinite(logs: dict[str, float]) -> bool:
    return not all(math.isfinite(v) for v in logs.values())


def _validation_source(model, validation_data: Any) -> BatchSource | None:
    if validation_data is None:
        return None
    if hasattr(validation_data, "batches"):
        return validation_data
    xv, yv = validation_data[0], validation_data[1]
    weights = validation_data[2] if len(validation_data) > 2 else None
    check_inputs(model, np.asarray(xv), "validation data")
    check_targets(model, np.asarray(yv), "validation data")
    return ArraySource(np.asarray(xv), np.asarray(yv), weights, shuffle=False, dtype=model.dtype)


# -- predict --------------------------------------------------------------------------
def predict(model, x: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
    """Outputs for x [n, *input_shape] in batches of `batch_size`; returns [n, *output_shape]."""
    check_inputs(model, x, "predict input")
    n = x.shape[0]
    out = np.empty((n, *model.output_shape), model.dtype)
    model.allocate(max(1, min(batch_size, n)))
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        chunk = np.ascontiguousarray(x[start:stop], dtype=model.dtype)
        out[start:stop] = model.forward(chunk, training=False)
    return out
