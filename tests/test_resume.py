"""Exact resume: SIGKILL at chosen moments (inside file writes and checkpoint saves, between
checkpoints: tests/kill_points.py), SIGINT/SIGTERM,
a damaged newest checkpoint, a changed config. The final weights must be bit-identical to
an uninterrupted run's, and history.csv identical; a negative control shows that resuming
without the optimizer state or the data position gives different weights."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.kill_points import kill_loop
from tests.fixtures import teacher_config

CONFIG = teacher_config(name="killloop", seed=3, units=32, n_features=16, n_classes=4, hidden=8, n_samples=4000,
                        layers=("{type: dropout, rate: 0.2}",), optimizer="{type: adam, learning_rate: 0.002}",
                        fit="{epochs: 20, batch_size: 16, shuffle: true, validation_split: 0.2}", tail="""\
callbacks:
  - {type: reduce_lr_on_plateau, monitor: val_loss, patience: 2, factor: 0.5}
  - {type: early_stopping, monitor: val_loss, patience: 50, restore_best_weights: true}
  - {type: csv_logger, filename: log.csv}
""")
CHECKPOINT_EVERY = "25"  # steps; 200 steps per epoch
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "NUMBA_NUM_THREADS": "1", "COLUMNS": "200", "TERM": "dumb"}
# Where each kill of the kill loop lands (tests/kill_points.py): (phase, occurrence in that
# process). The first write of a fresh run (before its directory is set up), inside
# checkpoint files and other atomic writes, between a checkpoint's writes and its rename, and
# between checkpoints with training done since the last one.
SCHEDULE = [("write", 1), ("save", 3), ("publish", 2), ("write", 7), ("save", 9), ("publish", 5),
            ("write", 23), ("write", 2)]


def trainctl(*args: str) -> list[str]:
    return [sys.executable, "-m", "trainctl", *args]



def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(args: list[str], env=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=env or ENV, timeout=timeout)


def fresh(config: Path, out: Path) -> list[str]:
    return trainctl("train", str(config), "--out", str(out), "-q", "--threads", "1", "--checkpoint-every", CHECKPOINT_EVERY)


def resume(out: Path) -> list[str]:
    return trainctl("train", "--resume", str(out), "-q", "--threads", "1")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    config = root / "killloop.yaml"
    config.write_text(CONFIG)
    reference = root / "reference"
    done = run(fresh(config, reference))
    assert done.returncode == 0, done.stderr
    return config, reference


def interrupted_run(config: Path, out: Path, signum: int) -> subprocess.CompletedProcess:
    """Start training, wait until it is under way (a step checkpoint exists), send `signum`."""
    process = subprocess.Popen(fresh(config, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        checkpoints = out / "checkpoints"
        if checkpoints.is_dir() and any("-step-" in name for name in os.listdir(checkpoints)):
            break
        time.sleep(0.005)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=30)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def assert_same_as_reference(out: Path, reference: Path) -> None:
    assert sha256(out / "weights.safetensors") == sha256(reference / "weights.safetensors")
    assert (out / "history.csv").read_bytes() == (reference / "history.csv").read_bytes()
    assert (out / "log.csv").read_bytes() == (reference / "log.csv").read_bytes()


def test_kill_loop_gives_bit_identical_weights(setup, tmp_path):
    config, reference = setup
    out = tmp_path / "run"
    landed = kill_loop(SCHEDULE, fresh(config, out)[3:], resume(out)[3:], out, ENV)
    assert landed == [phase for phase, _ in SCHEDULE]  # every kill landed where it was scheduled
    assert_same_as_reference(out, reference)
    assert not list((out / "checkpoints").glob(".tmp-*"))  # leftovers of killed saves are cleaned


def test_sigint_checkpoints_prints_resume_command_and_resumes_exactly(setup, tmp_path):
    config, reference = setup
    out = tmp_path / "run"
    stopped = interrupted_run(config, out, signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr
    assert f"resume with: trainctl train --resume {out} --threads 1" in stopped.stderr
    assert "stopped by SIGINT at epoch" in stopped.stderr and "Traceback" not in stopped.stderr
    assert not (out / "weights.safetensors").exists()
    resumed = run(resume(out))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_as_reference(out, reference)
    again = run(resume(out))  # a finished run has nothing to resume
    assert again.returncode == 0 and "already finished" in again.stderr


SABOTAGE = """
import sys
from trainctl.train import resume
from trainctl.nn.optimizers import Optimizer
what = sys.argv[1]
if what == "optimizer":
    Optimizer.load_state = lambda self, state: None
else:
    restore = resume.CheckpointWriter.restore
    def restore_without_position(self, checkpoint, source):
        state = restore(self, checkpoint, source)
        return {**state, "batch": 0}
    resume.CheckpointWriter.restore = restore_without_position
from trainctl.cli import app
app(["train", "--resume", sys.argv[2], "-q"], prog_name="trainctl")
"""


def test_sigterm_resume_exact_and_negative_controls(setup, tmp_path):
    """The same interrupted run resumed three ways: properly (identical weights), without
    restoring the optimizer slots, and from the start of the epoch instead of its position
    (both different): the comparison can fail."""
    config, reference = setup
    out = tmp_path / "run"
    stopped = interrupted_run(config, out, signal.SIGTERM)
    assert stopped.returncode == 143, stopped.stderr
    assert "resume with: trainctl train --resume" in stopped.stderr
    state = (sorted((out / "checkpoints").iterdir())[-1] / "state.json").read_text()
    assert '"batch": 0,' not in state  # stopped inside an epoch, so the position matters
    copies = {name: tmp_path / name for name in ("optimizer", "position")}
    for copy in copies.values():
        shutil.copytree(out, copy)
    resumed = run(resume(out))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_as_reference(out, reference)
    for what, copy in copies.items():
        sabotaged = run([sys.executable, "-c", SABOTAGE, what, str(copy)])
        assert sabotaged.returncode == 0, sabotaged.stderr
        assert sha256(copy / "weights.safetensors") != sha256(reference / "weights.safetensors"), what


def test_damaged_newest_checkpoint_falls_back_with_a_warning(setup, tmp_path):
    config, reference = setup
    out = tmp_path / "run"
    assert interrupted_run(config, out, signal.SIGTERM).returncode == 143
    newest = sorted((out / "checkpoints").iterdir())[-1]
    weights = newest / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    resumed = run(resume(out))
    assert resumed.returncode == 0, resumed.stderr
    warnings = [line for line in resumed.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "skipping damaged checkpoint" in warnings[0] and newest.name in warnings[0]
    assert "sha256" in warnings[0] and "Traceback" not in resumed.stderr
    assert_same_as_reference(out, reference)


def test_changed_config_is_refused_unless_forced(setup, tmp_path):
    config, _ = setup
    out = tmp_path / "run"
    assert interrupted_run(config, out, signal.SIGTERM).returncode == 143
    before = {p: sha256(p) for p in out.rglob("*") if p.is_file()}
    refused = run(trainctl("train", "--resume", str(out), "-q", "--set", "fit.epochs=3", "--set", "seed=4"))
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "--force" in lines[0] and "fit.epochs (20 -> 3)" in lines[0] and "seed (3 -> 4)" in lines[0]
    assert {p: sha256(p) for p in out.rglob("*") if p.is_file()} == before
    edited = tmp_path / "edited.yaml"
    edited.write_text(CONFIG.replace("epochs: 20", "epochs: 3"))
    assert run(trainctl("train", str(edited), "--resume", str(out), "-q")).returncode == 1
    forced = run(trainctl("train", str(edited), "--resume", str(out), "-q", "--force", "--threads", "1"))
    assert forced.returncode == 0, forced.stderr
    assert "epochs: 3" in (out / "config.yaml").read_text()
