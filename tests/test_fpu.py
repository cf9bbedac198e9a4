"""Flush-to-zero / denormals-are-zero on the training thread, and its BLAS workers."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from trainctl.jit import fpu
from trainctl.nn.model import Sequential
from trainctl.train.callbacks import Callback
from trainctl.train.runtime import TrainingEnvironment

pytestmark = pytest.mark.skipif(not fpu.SUPPORTED, reason="MXCSR exists on x86-64 only")

TINY = np.float32(1e-39)  # a float32 denormal


def _denormal_product():
    return (np.full(4, TINY) * np.float32(1.0))[0]


def test_bits_set_inside_and_restored_after():
    control = 0xFFC0  # bits 0-5 are sticky exception flags that arithmetic sets
    before = fpu.get_mxcsr() & control
    assert _denormal_product() == TINY  # IEEE outside
    with TrainingEnvironment(flush_denormals=True):
        assert fpu.get_mxcsr() & (fpu.FTZ | fpu.DAZ) == fpu.FTZ | fpu.DAZ
        assert _denormal_product() == 0.0  # DAZ: the denormal input reads as 0
        assert np.float32(1e-30) * np.float32(1e-9) == 0.0  # FTZ: a denormal result is 0
    assert fpu.get_mxcsr() & control == before
    assert _denormal_product() == TINY


def test_keep_denormals_option_leaves_ieee_arithmetic():
    with TrainingEnvironment(flush_denormals=False):
        assert fpu.get_mxcsr() & (fpu.FTZ | fpu.DAZ) == 0
        assert np.float32(1e-30) * np.float32(1e-9) != 0.0


def test_blas_worker_threads_flush_too():
    # Every product is ~1e-40 (denormal): with FTZ on every thread that computes a block of
    # the result, all of it is exactly 0; a worker left with IEEE bits leaves nonzero blocks.
    rng = np.random.default_rng(0)
    a = (np.abs(rng.standard_normal((512, 256))) * 1e-20 + 1e-21).astype(np.float32)
    b = (np.abs(rng.standard_normal((256, 512))) * 1e-20 + 1e-21).astype(np.float32)
    with TrainingEnvironment(threads=2, flush_denormals=True):
        assert not np.any(a @ b)
    with TrainingEnvironment(threads=2, flush_denormals=False):
        assert np.all(a @ b > 0)
    assert np.all(a @ b > 0)  # workers restarted with the caller's IEEE bits


class _ReadControlWord(Callback):
    def __init__(self):
        self.seen: set[int] = set()

    def on_batch_end(self, batch, logs=None):
        self.seen.add(fpu.get_mxcsr() & (fpu.FTZ | fpu.DAZ))


def _fit(flush: bool):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 8)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 256)]
    model = Sequential([{"type": "dense", "units": 16, "activation": "relu", "input_shape": [8]},
                        {"type": "dense", "units": 3, "activation": "softmax"}], seed=1)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    probe = _ReadControlWord()
    history = model.fit(x, y, epochs=2, batch_size=32, callbacks=[probe], flush_denormals=flush)
    return model, history, probe


def test_fit_flushes_by_default_and_keeps_ieee_when_asked():
    before = fpu.get_mxcsr() & fpu.CONTROL
    flushed, history_on, probe_on = _fit(True)
    kept, history_off, probe_off = _fit(False)
    assert probe_on.seen == {fpu.FTZ | fpu.DAZ} and probe_off.seen == {0}
    assert fpu.get_mxcsr() & fpu.CONTROL == before  # restored after fit
    # a run that never meets a denormal is bit-identical either way
    assert history_on.history == history_off.history
    for a, b in zip(flushed.weights, kept.weights):
        assert np.array_equal(a.value, b.value)


def test_cli_keep_denormals_sets_the_config_option(tmp_path):
    from typer.testing import CliRunner

    from trainctl.cli import app

    config = Path(__file__).resolve().parents[1] / "configs" / "linear_regression.yaml"
    for flag, expected in (([], True), (["--keep-denormals"], False)):
        out = tmp_path / f"run{len(flag)}"
        result = CliRunner().invoke(app, ["train", str(config), "--out", str(out), "-q", "--threads", "1", *flag])
        assert result.exit_code == 0, result.output
        saved = yaml.safe_load((out / "config.yaml").read_text())
        assert saved["fit"]["flush_denormals"] is expected
