"""Streamed data (`data: train: stream:`, fitDataset) on the compiled loop: each chunk is the
stream's own next batches, so weights, optimizer state, histories and checkpoints are
bit-identical to the Python path for every stream stage (shuffle buffer, repeat with a short
batch mid-epoch, take, drop_remainder, weights, unknown length), and a streamed run resumes
exactly from a mid-epoch step checkpoint. One dense float32 model: the loop other tests compile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.test_compiled import _assert_identical, _checkpoint_digests, _digest, _dropout_state, _model, _SignalAt
from trainctl.train.callbacks import Callback

N, FEATURES, CLASSES = 203, 12, 4  # 203 rows in batches of 16: every pass ends with a short batch


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """x.npy, y.npy (class indices), r.npy (regression targets), w.npy and the same rows as d.csv (a stream of unknown length)."""
    root = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, FEATURES)).astype(np.float32)
    labels = (x[:, :CLASSES].argmax(axis=1) + (rng.random(N) < 0.2)) % CLASSES
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", labels)
    np.save(root / "r.npy", 3 * x[:, :2])  # regression targets for the 2-unit linear model
    np.save(root / "w.npy", (rng.random(N) * 2).astype(np.float32))
    header = ",".join(f"f{i}" for i in range(FEATURES)) + ",label"
    rows = [",".join(repr(float(v)) for v in row) + f",{label}" for row, label in zip(x, labels)]
    (root / "d.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


NPY = {"npy": "x.npy", "targets": "y.npy", "labels": "one_hot"}
CASES = {  # id: (the stream, fit_dataset options)
    "npy_shuffled": ({"source": NPY, "shuffle": 64}, {}),
    "csv_unknown_length": ({"source": {"csv": "d.csv", "target": "label", "labels": "one_hot"}, "shuffle": 50}, {}),
    "repeat_short_batch_mid_epoch": ({"source": NPY, "shuffle": 100, "repeat": 2}, {}),
    "take": ({"source": NPY, "shuffle": 64, "take": 9}, {}),
    "drop_remainder": ({"source": NPY, "drop_remainder": True}, {}),
    "sample_weight": ({"source": {**NPY, "sample_weight": "w.npy"}, "shuffle": 64}, {}),
    "class_weight": ({"source": NPY, "shuffle": 64}, {"class_weight": {0: 0.5, 1: 2.0, 3: 1.5}}),
    "generator": ({"source": {"generator": "teacher", "n_samples": 150, "n_features": FEATURES,
                              "n_classes": CLASSES, "hidden": 6}, "shuffle": 40}, {}),
    "steps_per_epoch_validation": ({"source": NPY, "shuffle": 64},
                                   {"batches_per_epoch": 7, "validation_data": {"source": NPY}}),
    "auto_chunks": ({"source": NPY, "shuffle": 64, "repeat": 2}, {"steps_per_execution": "auto"}),
}


def _fit(files: Path, jit: bool, stream: dict, options: dict, *, loss="categorical_crossentropy",
         optimizer="adam", epochs=3, callbacks=()):
    model, _ = _model(loss, optimizer)
    options = {"steps_per_execution": 5, **options}
    history = model.fit_dataset(stream, epochs=epochs, batch_size=16, base_dir=files, jit_compile=jit,
                                callbacks=list(callbacks), **options)
    return model, history


@pytest.mark.parametrize("case", list(CASES))
def test_a_streamed_fit_runs_compiled_bit_for_bit(files, case, monkeypatch):
    from trainctl.train import compiled as compiled_module

    stream, options = CASES[case]
    chunks = []
    launch = compiled_module.CompiledSteps._launch_dense

    def recording(self, *args):  # the chunk arrays are of the type the loop is compiled for
        chunks.append([(a.dtype, a.flags.c_contiguous, a.flags.writeable)
                       for a in (self.x_source, self.y_source, self.weight_source)])
        return launch(self, *args)

    monkeypatch.setattr(compiled_module.CompiledSteps, "_launch_dense", recording)
    if options.get("steps_per_execution") == "auto":  # auto's chunk sizes, whatever this process has loaded
        monkeypatch.setattr(compiled_module, "compile_decision", lambda *args: "loop")
    compiled = _fit(files, True, stream, options)
    assert compiled[0].compiled_fallback is None and chunks  # it really ran compiled
    assert all(flags == [(np.dtype(np.float32), True, True)] * 3 for flags in chunks)
    _assert_identical(compiled, _fit(files, False, stream, options))


@pytest.fixture
def chunks(monkeypatch) -> list[tuple[int, list[int]]]:
    """(first batch, the batch sizes it trained) of every compiled chunk run (a spy: the real chunk runs)."""
    from trainctl.train.compiled import CompiledSteps

    ran = []
    run = CompiledSteps.run

    def spying(self, order, first_batch, n_steps, totals):
        values = run(self, order, first_batch, n_steps, totals)
        ran.append((first_batch, list(self.stream.last_sizes)))
        return values

    monkeypatch.setattr(CompiledSteps, "run", spying)
    return ran


def test_a_chunk_of_a_stream_ends_at_its_short_batch(files, chunks):
    """repeat 2 over 203 rows: batch 12 of 26 holds 11 rows; the chunk holding it ends there."""
    _fit(files, True, {"source": NPY, "repeat": 2}, {}, epochs=1)
    assert chunks[:4] == [(0, [16] * 5), (5, [16] * 5), (10, [16, 16, 11]), (13, [16] * 5)]
    assert sum(len(sizes) for _, sizes in chunks) == 26 and sum(sum(sizes) for _, sizes in chunks) == 2 * N


class _EveryBatch(Callback):
    """A user callback on every batch end: chunks of one step, each batch's logs seen."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_batch_end(self, batch, logs=None):
        self.seen.append((batch, logs["size"], logs["loss"]))


def test_a_callback_on_every_batch_sees_every_streamed_batch(files):
    runs = []
    for jit in (True, False):
        seen = _EveryBatch()
        runs.append((_fit(files, jit, {"source": NPY, "shuffle": 64, "repeat": 2}, {}, epochs=1, callbacks=[seen]),
                     seen.seen))
    assert runs[0][0][0].compiled_fallback is None and len(runs[0][1]) == 26
    assert runs[0][1] == runs[1][1]
    _assert_identical(runs[0][0], runs[1][0])


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("terminate", [True, False], ids=["terminate_on_nan", "trains_on"])
def test_a_nonfinite_loss_ends_a_streamed_chunk_where_python_does(files, terminate):
    """With terminate_on_nan nothing after the batch is trained; without it the loop goes on
    with the batches the chunk had read but not trained, as the Python loop does."""
    from trainctl.train.callbacks import TerminateOnNaN

    runs = []
    for jit in (True, False):
        stop = TerminateOnNaN()
        regression = {"npy": "x.npy", "targets": "r.npy", "labels": "none"}
        result = _fit(files, jit, {"source": regression, "shuffle": 64}, {"steps_per_execution": 50},
                      loss="mean_squared_error", optimizer={"type": "sgd", "learning_rate": 1e3},
                      callbacks=[stop] if terminate else [])
        runs.append((result, stop.stopped_at, result[0].optimizer.iterations))
    assert runs[0][0][0].compiled_fallback is None
    assert runs[0][1:] == runs[1][1:]
    if terminate:  # stopped after the batch: nothing after it trained
        epoch, batch = runs[0][1]
        assert runs[0][2] == epoch * 13 + batch + 1 < 13
    else:  # every step after the first non-finite one ends its chunk; all 3 epochs of 13 batches train
        assert runs[0][1] is None and runs[0][2] == 3 * 13
        assert not np.isfinite(runs[0][0][1].history["loss"][-1])
    _assert_identical(runs[0][0], runs[1][0])


def test_a_class_weighted_array_source_runs_its_own_batches_compiled():
    from tests.test_compiled import _data
    from trainctl.data.source import ArraySource

    x, y = _data("onehot")
    runs = []
    for jit in (True, False):
        model, _ = _model("categorical_crossentropy", "adam")
        source = ArraySource(x, y, shuffle=True, seed=2)
        runs.append((model, model.fit(source=source, class_weight={0: 0.5, 2: 3.0}, epochs=2, batch_size=16,
                                      jit_compile=jit, steps_per_execution=5)))
    assert runs[0][0].compiled_fallback is None
    _assert_identical(*runs)


def _python_batches(sizes: list[int], *, weighted=False, as_dicts=False, seed=0) -> list:
    """Batches of the given sizes, as a Python producer yields them (fitDataset's generators)."""
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        x = rng.standard_normal((n, FEATURES)).astype(np.float32)
        y = np.eye(CLASSES, dtype=np.float32)[x[:, :CLASSES].argmax(axis=1)]
        if as_dicts:
            out.append({"xs": x, "ys": y})
        else:
            out.append((x, y, (rng.random(n) * 2).astype(np.float32)) if weighted else (x, y))
    return out


PYTHON_CASES = {  # id: (the batches, fit_dataset options, the batch sizes the compiled chunks trained in epoch 1)
    # the fit's batch_size is 16: the loop takes the producer's 24 instead
    "sizes_of_the_producer": (_python_batches([24] * 6 + [7]), {}, [[24] * 5, [24, 7]]),
    # a batch longer than any before widens the loop's batches; each shorter one after ends a chunk
    "a_longer_batch_widens": (_python_batches([8, 8, 8, 20, 8, 8, 3], weighted=True), {},
                              [[8, 8, 8], [20, 8], [8], [3]]),
    "dicts_class_weight": (_python_batches([16] * 4 + [9], as_dicts=True), {"class_weight": {0: 0.5, 2: 2.0}},
                           [[16] * 4 + [9]]),
}


@pytest.mark.parametrize("case", list(PYTHON_CASES))
def test_python_batches_run_compiled_bit_for_bit(case, chunks):
    batches, options, first_epoch_chunks = PYTHON_CASES[case]
    runs = []
    for jit in (True, False):
        model, _ = _model("categorical_crossentropy", "adam")
        history = model.fit_dataset(lambda: iter(batches), epochs=2, batch_size=16, jit_compile=jit,
                                    steps_per_execution=5, **options)
        runs.append((model, history))
    assert runs[0][0].compiled_fallback is None  # it really ran compiled
    assert [sizes for _, sizes in chunks[:len(first_epoch_chunks)]] == first_epoch_chunks
    _assert_identical(*runs)


def test_a_one_shot_generator_runs_compiled_across_epochs_as_python_does(chunks):
    """A generator object is iterated once: each epoch of batches_per_epoch continues it."""
    batches = _python_batches([12] * 9, seed=3)
    runs = []
    for jit in (True, False):
        model, _ = _model("categorical_crossentropy", "adam")
        history = model.fit_dataset((b for b in batches), epochs=3, batches_per_epoch=3, jit_compile=jit,
                                    steps_per_execution=2)
        runs.append((model, history))
    assert runs[0][0].compiled_fallback is None
    assert [sizes for _, sizes in chunks] == [[12, 12], [12]] * 3
    _assert_identical(*runs)


# -- the CLI and exact resume from a streamed compiled run ----------------------------------
def _config(files: Path, tmp_path: Path, name: str, jit: str) -> Path:
    from tests.fixtures import teacher_config

    source = f"{{npy: {files / 'x.npy'}, targets: {files / 'y.npy'}, labels: one_hot}}"
    path = tmp_path / f"{name}.yaml"
    path.write_text(teacher_config(
        name="streamed", seed=4, units=16, n_features=FEATURES, n_classes=CLASSES,
        optimizer="{type: adam, learning_rate: 0.003}", train=f"{{stream: {{source: {source}, shuffle: 64, repeat: 2}}}}",
        data=(f"validation: {{stream: {{source: {source}}}}}",),
        fit=f"{{epochs: 3, batch_size: 32, steps_per_execution: 8, jit_compile: {jit}}}"))
    return path


def test_trainctl_train_of_a_stream_runs_compiled_and_writes_the_python_runs_files(files, tmp_path, chunks):
    from tests.test_cli import ok

    for jit in ("true", "false"):
        ok(["train", _config(files, tmp_path, jit, jit), "--out", tmp_path / jit, "--checkpoint-every", "5",
            "--keep-checkpoints", "100"])
    # 2 passes of 7 batches of 32 per epoch: every step compiled, none from Python
    assert sum(len(sizes) for _, sizes in chunks) == 3 * 14
    for name in ("weights.safetensors", "optimizer.safetensors", "history.csv"):
        assert _digest(tmp_path / "true" / name) == _digest(tmp_path / "false" / name), name
    compiled, python = _checkpoint_digests(tmp_path / "true"), _checkpoint_digests(tmp_path / "false")
    assert compiled == python and any("step" in key for key in compiled)


def test_a_streamed_compiled_run_resumes_exactly_from_a_mid_epoch_checkpoint(files, tmp_path):
    from trainctl.config import load_config
    from trainctl.runs.train import resume_training, train_from_config
    from trainctl.train.resume import TrainingInterrupted

    def train(name, **options):
        return train_from_config(load_config(_config(files, tmp_path, name, "true")), out=tmp_path / name,
                                 checkpoint_every=5, keep_checkpoints=100, **options)

    reference = train("reference")
    with pytest.raises(TrainingInterrupted) as stopped:
        train("interrupted", callbacks=[_SignalAt(9)], handle_signals=True)
    assert stopped.value.epoch == 1 and 9 <= stopped.value.batch < 13  # mid-epoch, at a chunk end
    resume_training(tmp_path / "interrupted")
    for name in ("weights.safetensors", "optimizer.safetensors", "history.csv"):
        assert _digest(tmp_path / "interrupted" / name) == _digest(reference.run_dir.path / name), name


def test_dropout_draws_per_chunk_match_the_streamed_python_path(files):
    """Dropout's uniforms per chunk are the chunk's rows (a short batch mid-epoch included)."""
    from trainctl.nn.model import Sequential

    runs = []
    for jit in (True, False):
        model = Sequential([{"type": "dense", "units": 9, "activation": "relu", "input_shape": [FEATURES]},
                            {"type": "dropout", "rate": 0.25},
                            {"type": "dense", "units": CLASSES, "activation": "softmax"}], seed=3)
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        history = model.fit_dataset({"source": NPY, "shuffle": 64, "repeat": 2}, epochs=2, batch_size=16,
                                    base_dir=files, jit_compile=jit, steps_per_execution=6)
        runs.append(((model, history), _dropout_state(model)))
    assert runs[0][0][0].compiled_fallback is None
    assert runs[0][1] == runs[1][1]
    _assert_identical(runs[0][0], runs[1][0])


@pytest.mark.parametrize("cached", [False, True], ids=["not_compiled", "cached"])
def test_auto_trains_a_stream_of_unknown_length_from_python_then_switches_when_it_pays(files, monkeypatch, tmp_path,
                                                                                     cached):
    """An auto fit of a CSV stream cannot know its steps ahead: its first epoch runs from Python
    and counts them; the loop takes over when the epochs left pay for compiling it (here free)
    or, cached, when they are at least AUTO_MIN_STEPS."""
    from tests.test_compiled import _trainer_of
    from trainctl.jit import cache as jit
    from trainctl.train import compiled

    monkeypatch.setattr(compiled, "_loaded", set())
    monkeypatch.setattr(jit, "kernel_cache", lambda: tmp_path)
    if cached:
        monkeypatch.setattr(compiled, "AUTO_MIN_STEPS", 2 * 13)  # the two epochs left
        jit.mark_compiled(compiled.CompiledSteps.kernel_key(_trainer_of(_model("categorical_crossentropy", "adam")[0])))
    else:
        monkeypatch.setattr(compiled, "LOOP_COMPILE_SECONDS", dict.fromkeys(compiled.LOOP_COMPILE_SECONDS, 0.0))
    seen = []

    class FallbackAtEpochEnd(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(self.model.compiled_fallback)

    stream, options = CASES["csv_unknown_length"]
    switched = _fit(files, True, stream, {"steps_per_execution": "auto"}, callbacks=[FallbackAtEpochEnd()])
    assert seen[0].startswith("a stream of unknown length") and seen[1:] == [None, None]
    _assert_identical(switched, _fit(files, False, stream, options))


def test_a_float64_model_trains_on_a_float32_stream_as_on_the_same_arrays(files):
    """Stream batches are float32 whatever the model: the step reads them as the model's type
    (fixed: a float64 model's first product read the float32 rows as float64 on the Python path)."""
    x = np.load(files / "x.npy").astype(np.float64)
    y = np.eye(CLASSES)[np.load(files / "y.npy")]
    runs = []
    for streamed in (True, False):
        model, _ = _model("categorical_crossentropy", "adam", dtype=np.float64)
        if streamed:
            history = model.fit_dataset({"source": NPY}, epochs=2, batch_size=16, base_dir=files, jit_compile=False,
                                        validation_data={"source": NPY})
        else:
            history = model.fit(x, y, epochs=2, batch_size=16, shuffle=False, jit_compile=False, validation_data=(x, y))
        runs.append((model, history))
    _assert_identical(*runs)
