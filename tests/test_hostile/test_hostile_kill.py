"""Kill loops beside tests/test_resume.py's: SIGKILL at random moments once training is under
way, resume, repeat; the final weights and history are bit-identical to an uninterrupted
run. One on a streamed config (shuffle buffer), one with dropout, neither using the
slow-checkpoint test hook."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.test_hostile.common import ENV, TRAINCTL, sha256

DROPOUT = """\
name: kill-dropout
seed: 5
model:
  layers:
    - {type: dense, units: 24, activation: relu, input_shape: [12]}
    - {type: dropout, rate: 0.3}
    - {type: dense, units: 3, activation: softmax}
optimizer: {type: adam, learning_rate: 0.003}
loss: categorical_crossentropy
metrics: [accuracy]
data:
  train: {generator: teacher, n_samples: 3000, n_features: 12, n_classes: 3, hidden: 6}
fit: {epochs: 8, batch_size: 16, validation_split: 0.2}
"""
STREAM = """\
name: kill-stream
seed: 7
model:
  layers:
    - {type: dense, units: 16, activation: relu, input_shape: [8]}
    - {type: dropout, rate: 0.2}
    - {type: dense, units: 4, activation: softmax}
optimizer: {type: adam, learning_rate: 0.003}
loss: categorical_crossentropy
metrics: [accuracy]
data:
  train:
    stream:
      source: {npy: x.npy, targets: y.npy}
      shuffle: {buffer_size: 300}
      chunk_rows: 256
  validation_split: 0.2
fit: {epochs: 8, batch_size: 16}
"""
ENVIRONMENT = {**os.environ, **ENV, "NUMBA_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
ENVIRONMENT.pop("TRAINCTL_TEST_SLOW_CHECKPOINT", None)  # no test hook: real timing only


def train_args(config: Path, out: Path) -> list[str]:
    return [*TRAINCTL, "train", str(config), "--out", str(out), "-q", "--threads", "1", "--checkpoint-every", "20"]


def resume_args(out: Path) -> list[str]:
    return [*TRAINCTL, "train", "--resume", str(out), "-q", "--threads", "1"]


def kill_loop(config: Path, out: Path, seed: int, kills_wanted: int = 4) -> int:
    rng = random.Random(seed)
    kills = 0
    for _ in range(kills_wanted + 6):
        if not (out / "config.yaml").exists():
            shutil.rmtree(out, ignore_errors=True)
            args = train_args(config, out)
        else:
            args = resume_args(out)
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENVIRONMENT)
        root = out / "checkpoints"
        before = set(os.listdir(root)) if root.is_dir() else set()
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            if root.is_dir() and set(os.listdir(root)) - before:  # this attempt is training
                break
            time.sleep(0.003)
        time.sleep(rng.uniform(0.0, 0.25))
        if process.poll() is None and kills < kills_wanted:
            process.kill()
            kills += 1
        _, stderr = process.communicate(timeout=300)
        assert "Traceback" not in stderr, stderr
        if process.returncode == 0:
            return kills
    final = subprocess.run(resume_args(out), capture_output=True, text=True, env=ENVIRONMENT, timeout=300)
    assert final.returncode == 0, final.stderr
    return kills


@pytest.mark.parametrize("name", ["dropout", "stream"])
def test_kill_loop_without_the_test_hook_is_bit_identical(tmp_path, name):
    config = tmp_path / f"{name}.yaml"
    config.write_text(DROPOUT if name == "dropout" else STREAM)
    if name == "stream":
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2400, 8)).astype(np.float32)
        np.save(tmp_path / "x.npy", x)
        np.save(tmp_path / "y.npy", (x[:, :4] @ rng.standard_normal(4) > 0).astype(np.int64) + 2 * (x[:, 5] > 0))
    reference = tmp_path / "reference"
    done = subprocess.run(train_args(config, reference), capture_output=True, text=True, env=ENVIRONMENT, timeout=300)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "killed"
    kills = kill_loop(config, out, seed=11 if name == "dropout" else 12)
    assert kills >= 3, kills
    assert sha256(out / "weights.safetensors") == sha256(reference / "weights.safetensors")
    assert (out / "history.csv").read_bytes() == (reference / "history.csv").read_bytes()
    assert sha256(out / "optimizer.safetensors") == sha256(reference / "optimizer.safetensors")
