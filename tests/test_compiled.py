"""The compiled training loop (many steps per call) against step-by-step Python execution:
bit-identical weights, optimizer state, histories and checkpoints over the option grid, a
clean fallback for what it does not cover, and exact resume from a mid-epoch checkpoint."""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from trainctl.nn.model import Sequential
from trainctl.train.callbacks import Callback

N, FEATURES, CLASSES = 203, 12, 4  # 203: the last batch is partial at every batch size used


def _data(kind: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, FEATURES)).astype(np.float32)
    labels = (x[:, :CLASSES].argmax(axis=1) + (rng.random(N) < 0.2)) % CLASSES
    if kind == "sparse":
        return x, labels.astype(np.float32)[:, None]
    if kind == "binary":
        return x, (labels % 2).astype(np.float32)[:, None]
    if kind == "regression":
        return x, x[:, :3] @ rng.standard_normal((3, 2)).astype(np.float32)
    return x, np.eye(CLASSES, dtype=np.float32)[labels]


LOSSES = {  # loss: (target kind, output units, last activation, metrics)
    "categorical_crossentropy": ("onehot", CLASSES, "softmax", ["accuracy", "crossentropy"]),
    "sparse_categorical_crossentropy": ("sparse", CLASSES, "softmax", ["accuracy"]),
    # precision/recall threshold at 0.5 (Keras) in their own kernels, outside the compiled step: see the fallback test
    "binary_crossentropy": ("binary", 1, "sigmoid", ["accuracy", "binary_crossentropy"]),
    "mean_squared_error": ("regression", 2, "linear", ["mae", "mse"]),
    "categorical_hinge": ("onehot", CLASSES, "softmax", ["categorical_accuracy"]),  # not fused
    "huber_or_logcosh": ("regression", 2, "tanh", ["mape"]),
}
OPTIMIZERS = [
    "sgd", "adam", "adagrad", "adadelta", "rmsprop", "adamax",
    {"type": "momentum", "momentum": 0.9, "use_nesterov": True},
    {"type": "momentum", "momentum": 0.5},
    {"type": "rmsprop", "centered": True, "momentum": 0.3},
    {"type": "adamax", "decay": 0.01},
    {"type": "adam", "learning_rate": 0.01, "clipvalue": 0.05},
]


def _model(loss: str, optimizer, *, use_bias=True, dtype=np.float32, hidden=("relu", "tanh")):
    kind, units, activation, metrics = LOSSES[loss]
    layers = [{"type": "dense", "units": 9, "activation": hidden[0], "input_shape": [FEATURES], "use_bias": use_bias}]
    layers += [{"type": "dense", "units": 7, "activation": act} for act in hidden[1:]]
    layers += [{"type": "dense", "units": units, "activation": activation}]
    model = Sequential(layers, seed=5, dtype=dtype)
    model.compile(optimizer=optimizer, loss="logcosh" if loss == "huber_or_logcosh" else loss, metrics=metrics)
    return model, kind


def _train(jit: bool, loss: str, optimizer, *, spe=3, fit_options=None, **model_options):
    model, kind = _model(loss, optimizer, **model_options)
    x, y = _data(kind)
    history = model.fit(x, y, epochs=3, batch_size=16, jit_compile=jit, steps_per_execution=spe,
                        **(fit_options or {}))
    return model, history


def _assert_identical(a, b):
    (model_a, history_a), (model_b, history_b) = a, b
    assert history_a.history.keys() == history_b.history.keys()
    for key in history_a.history:  # bytes: NaN-safe and exact
        assert np.array(history_a.history[key]).tobytes() == np.array(history_b.history[key]).tobytes(), key
    for wa, wb in zip(model_a.weights, model_b.weights):
        assert wa.value.tobytes() == wb.value.tobytes(), wa.name
    state_a, state_b = model_a.optimizer.state(), model_b.optimizer.state()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert state_a[key].tobytes() == state_b[key].tobytes(), key


@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=lambda o: o if isinstance(o, str) else "-".join(map(str, o.values())))
@pytest.mark.parametrize("loss", list(LOSSES))
def test_compiled_steps_match_python_steps_bit_for_bit(loss, optimizer):
    compiled = _train(True, loss, optimizer)
    assert compiled[0].compiled_fallback is None  # it really ran compiled
    _assert_identical(compiled, _train(False, loss, optimizer))


@pytest.mark.parametrize("case", ["no_bias", "sample_weight", "class_weight", "no_shuffle", "validation",
                                  "steps_per_epoch", "float64", "auto_chunks", "chunk_of_one", "big_chunks"])
def test_compiled_options_match(case):
    model_options, fit_options, spe = {}, {}, 3
    x, y = _data("onehot")
    if case == "no_bias":
        model_options["use_bias"] = False
    elif case == "sample_weight":
        fit_options["sample_weight"] = np.random.default_rng(1).random(N).astype(np.float64) * 2
    elif case == "class_weight":
        fit_options["class_weight"] = {0: 0.5, 1: 2.0, 3: 1.5}
    elif case == "no_shuffle":
        fit_options["shuffle"] = False
    elif case == "validation":
        fit_options["validation_split"] = 0.25
    elif case == "steps_per_epoch":
        fit_options["steps_per_epoch"] = 5
    elif case == "float64":
        model_options["dtype"] = np.float64
    elif case == "auto_chunks":
        spe = "auto"  # this process has loaded the loop already (the grid above), so auto uses it
    elif case == "chunk_of_one":
        spe = 1
    elif case == "big_chunks":
        spe = 1000
    runs = []
    for jit in (True, False):
        model, _ = _model("categorical_crossentropy", "adam", **model_options)
        xs = x.astype(np.float64) if case == "float64" else x
        history = model.fit(xs, y, epochs=3, batch_size=16, jit_compile=jit, steps_per_execution=spe, **fit_options)
        runs.append((model, history))
    if case != "auto_chunks":
        assert runs[0][0].compiled_fallback is None
    _assert_identical(*runs)


class _EveryBatch(Callback):
    """A user callback handling batch events: it must see the model right after each batch."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_batch_end(self, batch, logs=None):
        self.steps.append(int(self.model.optimizer.iterations))


def test_a_callback_that_needs_every_batch_sees_every_step():
    model, kind = _model("categorical_crossentropy", "adam")
    probe = _EveryBatch()
    model.fit(*_data(kind), epochs=2, batch_size=16, callbacks=[probe], steps_per_execution=8)
    assert model.compiled_fallback is None
    assert probe.steps == list(range(1, 2 * 13 + 1))  # 13 batches of 16 in 203 samples


def _dropout_state(model):
    return [layer.get_state() for layer in model.layers if layer.type_id == "dropout"]


REGULARIZED_STACKS = {  # dropout and weight regularizers, which the compiled loop runs too
    "hidden_dropout_l2": [
        {"type": "dense", "units": 8, "activation": "relu", "input_shape": [FEATURES]},
        {"type": "dropout", "rate": 0.3},
        {"type": "dense", "units": CLASSES, "activation": "softmax", "kernel_regularizer": {"type": "l2", "l2": 0.01}}],
    "input_dropout_l1l2_bias_rate0_last": [
        {"type": "dropout", "rate": 0.2, "input_shape": [FEATURES]},
        {"type": "dense", "units": 8, "activation": "tanh", "kernel_regularizer": {"type": "l1l2", "l1": 0.01},
         "bias_regularizer": "l1"},
        {"type": "dropout", "rate": 0.0},
        {"type": "dense", "units": CLASSES, "activation": "linear", "bias_regularizer": {"type": "l2", "l2": 0.0}},
        {"type": "dropout", "rate": 0.5}],
}


@pytest.mark.parametrize("stack", list(REGULARIZED_STACKS))
def test_dropout_and_regularizers_run_compiled_bit_for_bit(stack):
    x, y = _data("onehot")
    results, states = [], []
    for jit in (True, False):
        model = Sequential(REGULARIZED_STACKS[stack], seed=2)
        loss = "categorical_crossentropy" if stack == "hidden_dropout_l2" else "mean_squared_error"
        model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
        results.append((model, model.fit(x, y, epochs=2, batch_size=16, jit_compile=jit, steps_per_execution=4,
                                         validation_split=0.2)))
        states.append(_dropout_state(model))
    assert results[0][0].compiled_fallback is None
    _assert_identical(*results)
    assert states[0] == states[1]  # each dropout generator drew the same numbers


def test_repeat_vector_of_one_feature_runs_compiled_bit_for_bit():
    """One feature repeated 10 times: np.sum over [n, 10, 1] would add each sample's repeats
    pairwise (8 partial sums from 8 repeats on), the loop adds them in order; RepeatVector's
    backward adds them in order on both paths."""
    x, y = _data("onehot")
    results = []
    for jit in (True, False):
        model = Sequential([{"type": "dense", "units": 1, "activation": "relu", "input_shape": [FEATURES]},
                            {"type": "repeat_vector", "n": 10}, {"type": "flatten"},
                            {"type": "dense", "units": CLASSES, "activation": "softmax"}], seed=2)
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        results.append((model, model.fit(x, y, epochs=2, batch_size=16, jit_compile=jit, steps_per_execution=4)))
    assert results[0][0].compiled_fallback is None
    _assert_identical(*results)


def test_a_nonfinite_loss_ends_the_chunk_where_terminate_on_nan_stops():
    from trainctl.train.callbacks import TerminateOnNaN

    runs = []
    for jit in (True, False):
        model, kind = _model("mean_squared_error", {"type": "sgd", "learning_rate": 1e3})
        stop = TerminateOnNaN()
        history = model.fit(*_data(kind), epochs=3, batch_size=16, callbacks=[stop], jit_compile=jit,
                            steps_per_execution=50)
        runs.append(((model, history), stop.stopped_at, model.optimizer.iterations))
    assert runs[0][1] is not None and runs[0][1:] == runs[1][1:]
    _assert_identical(runs[0][0], runs[1][0])


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_a_chunk_ended_early_rewinds_the_dropout_generators():
    from trainctl.train.callbacks import TerminateOnNaN

    x, y = _data("regression")
    runs = []
    for jit in (True, False):
        model = Sequential([{"type": "dense", "units": 9, "activation": "relu", "input_shape": [FEATURES]},
                            {"type": "dropout", "rate": 0.25},
                            {"type": "dense", "units": 2, "kernel_regularizer": "l2"}], seed=3)
        model.compile(optimizer={"type": "sgd", "learning_rate": 1e3}, loss="mean_squared_error")
        stop = TerminateOnNaN()
        history = model.fit(x, y, epochs=3, batch_size=16, callbacks=[stop], jit_compile=jit, steps_per_execution=50)
        runs.append(((model, history), stop.stopped_at, _dropout_state(model)))
    assert runs[0][0][0].compiled_fallback is None and runs[0][1] is not None
    assert runs[0][1:] == runs[1][1:]
    _assert_identical(runs[0][0], runs[1][0])


# -- checkpoints and resume through the run API --------------------------------------------
CONFIG = """\
name: chunks
seed: 4
model:
  layers:
    - {type: dense, units: 16, activation: relu, input_shape: [10]}
    - {type: dense, units: 3, activation: softmax}
optimizer: {type: adam, learning_rate: 0.003}
loss: categorical_crossentropy
metrics: [accuracy]
data:
  train: {generator: teacher, n_samples: 900, n_features: 10, n_classes: 3, hidden: 6}
fit: {epochs: 3, batch_size: 32, validation_split: 0.2, steps_per_execution: STEPS, jit_compile: JIT}
"""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(tmp_path: Path, name: str, steps: str, jit: str, callbacks=(), handle_signals=False):
    from trainctl.config import load_config
    from trainctl.runs.train import train_from_config

    config = tmp_path / f"{name}.yaml"
    config.write_text(CONFIG.replace("STEPS", steps).replace("JIT", jit))
    return train_from_config(load_config(config), out=tmp_path / name, checkpoint_every=5, keep_checkpoints=100,
                             callbacks=callbacks, handle_signals=handle_signals)


def _checkpoint_digests(run: Path) -> dict[str, str]:
    root = run / "checkpoints"
    return {f"{d.name}/{f.name}": _digest(f) for d in sorted(root.iterdir()) if d.is_dir()
            for f in sorted(d.iterdir()) if f.suffix == ".safetensors"}


def test_checkpoints_and_history_match_the_python_path(tmp_path):
    _run(tmp_path, "compiled", "7", "true")
    _run(tmp_path, "python", "7", "false")
    for name in ("weights.safetensors", "optimizer.safetensors", "history.csv"):
        assert _digest(tmp_path / "compiled" / name) == _digest(tmp_path / "python" / name), name
    compiled, python = _checkpoint_digests(tmp_path / "compiled"), _checkpoint_digests(tmp_path / "python")
    assert compiled == python and any("step" in key for key in compiled)


class _SignalAt(Callback):
    """Sends SIGINT to this process after batch `batch` of epoch 1 (read from the replayed logs)."""

    batch_end_mode = "replay"

    def __init__(self, batch: int):
        super().__init__()
        self.batch, self.epoch, self.sent = batch, 0, False

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        if self.epoch == 1 and batch >= self.batch and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)


def test_resume_from_a_mid_epoch_checkpoint_is_exact(tmp_path):
    from trainctl.runs.train import resume_training
    from trainctl.train.resume import TrainingInterrupted

    reference = _run(tmp_path, "reference", "4", "true")
    with pytest.raises(TrainingInterrupted) as stopped:
        _run(tmp_path, "interrupted", "4", "true", callbacks=[_SignalAt(9)], handle_signals=True)
    assert stopped.value.epoch == 1 and stopped.value.batch >= 9  # mid-epoch, at a chunk end
    resume_training(tmp_path / "interrupted")
    for name in ("weights.safetensors", "optimizer.safetensors", "history.csv"):
        assert _digest(tmp_path / "interrupted" / name) == _digest(reference.run_dir.path / name), name


def test_thresholded_metrics_fall_back_and_say_why():
    from trainctl.nn.model import Sequential

    rng = np.random.default_rng(0)
    x = rng.standard_normal((6000, 4)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    model = Sequential([{"type": "dense", "units": 1, "activation": "sigmoid", "input_shape": [4]}], seed=0)
    model.compile("sgd", "binary_crossentropy", metrics=["precision"])
    model.fit(x, y, epochs=1, batch_size=1, steps_per_execution=100)
    assert model.compiled_fallback == "metric precision is computed outside the compiled step"


def _auto_fit(monkeypatch, tmp_path, *, marked: bool, compile_seconds: float | None = None):
    """An auto fit of 3 epochs x 13 steps in a process that has not loaded the loop, with the
    loop in the kernel cache (`marked`) or not."""
    from trainctl.jit import cache as jit
    from trainctl.train import compiled

    monkeypatch.setattr(compiled, "_loaded", set())
    monkeypatch.setattr(compiled, "AUTO_MIN_STEPS", 20)
    monkeypatch.setattr(jit, "kernel_cache", lambda: tmp_path)
    if compile_seconds is not None:
        monkeypatch.setattr(compiled, "LOOP_COMPILE_SECONDS", dict.fromkeys(compiled.LOOP_COMPILE_SECONDS, compile_seconds))
    model, kind = _model("categorical_crossentropy", "adam")
    if marked:
        jit.mark_compiled(compiled.CompiledSteps.kernel_key(_trainer_of(model)))
    seen = []

    class Path(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(model.compiled_fallback is None)

    x, y = _data(kind)
    history = model.fit(x, y, epochs=3, batch_size=16, callbacks=[Path()])
    return (model, history), seen


def _trainer_of(model):
    from trainctl.train.loop import Trainer

    trainer = Trainer(model)
    trainer._ensure(16)  # the plans hold the allocated buffers
    return trainer


def test_auto_uses_a_cached_loop_and_does_not_compile_one_for_a_short_fit(monkeypatch, tmp_path):
    python = _train(False, "categorical_crossentropy", "adam")
    cached, seen = _auto_fit(monkeypatch, tmp_path, marked=True)
    assert seen == [True, True, True]  # 39 steps >= AUTO_MIN_STEPS, and the loop is cached: compiled
    _assert_identical(cached, python)
    uncached, seen = _auto_fit(monkeypatch, tmp_path / "fresh", marked=False)
    assert seen == [False, False, False]  # compiling would cost far more than 39 steps from Python
    assert "not compiled on this machine yet" in uncached[0].compiled_fallback
    _assert_identical(uncached, python)


def test_auto_switches_to_the_loop_when_the_fit_left_pays_for_compiling(monkeypatch, tmp_path):
    switched, seen = _auto_fit(monkeypatch, tmp_path, marked=False, compile_seconds=0.0)
    assert seen == [False, True, True]  # measured one epoch from Python, then switched
    _assert_identical(switched, _train(False, "categorical_crossentropy", "adam"))
    from trainctl.jit import cache as jit
    from trainctl.train import compiled

    assert jit.is_marked_compiled(compiled.CompiledSteps.kernel_key(_trainer_of(switched[0])))  # cached for next time


@pytest.mark.parametrize("layout", ["float64", "read_only", "fortran", "strided"])
def test_inputs_not_of_the_loops_type_are_gathered_per_chunk_not_compiled_again(layout, monkeypatch):
    """Each loop is compiled once for writable C-contiguous arrays of the model's dtype: an x
    or y of another dtype, layout or writability reaches the kernel as such arrays (numba
    would otherwise compile the whole loop again for its type), and trains the same bits."""
    from trainctl.train import compiled as compiled_module

    x, y = _data("onehot")
    if layout == "float64":
        x, y = x.astype(np.float64), y.astype(np.float64)
    elif layout == "read_only":
        x.flags.writeable = y.flags.writeable = False
    elif layout == "fortran":
        x = np.asfortranarray(x)
    else:  # every other column of a wider array
        x = np.repeat(x, 2, axis=1)[:, ::2]
    seen = []
    launch = compiled_module.CompiledSteps._launch_dense

    def recording(self, *args):
        seen.append([(a.dtype, a.flags.c_contiguous, a.flags.writeable) for a in (self.x_source, self.y_source)])
        return launch(self, *args)

    monkeypatch.setattr(compiled_module.CompiledSteps, "_launch_dense", recording)
    runs = []
    for jit in (True, False):
        model, _ = _model("categorical_crossentropy", "adam")
        runs.append((model, model.fit(x, y, epochs=2, batch_size=16, shuffle=True, jit_compile=jit,
                                      steps_per_execution=5)))
        assert (model.compiled_fallback is None) == jit
    assert seen and all(flags == [(np.dtype(np.float32), True, True)] * 2 for flags in seen)
    _assert_identical(*runs)
