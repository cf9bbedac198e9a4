"""The live display as a person sees it: `trainctl train` in a real terminal (a tmux pane of
80 x 40), the screen read back with capture-pane once the run has finished."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid

import pytest

from tests.test_cli import SMALL
from tests.test_cli_subprocess import CONSOLE_SCRIPT

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def run_in_tmux(tmp_path, command: str, *, width=80, height=40, timeout=120.0) -> list[str]:
    session = f"trainctl-test-{uuid.uuid4().hex[:8]}"
    # a tmux server of its own (-L): on the shared default server, another run's last session
    # ending stops the server under this one's new-session ("server exited unexpectedly")
    tmux = ["tmux", "-L", session]
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "TMUX")}
    subprocess.run([*tmux, "new-session", "-d", "-s", session, "-x", str(width), "-y", str(height),
                    f"cd {tmp_path} && {command}; echo __DONE__ $?; sleep 600"], check=True, env=env)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = subprocess.run([*tmux, "capture-pane", "-t", session, "-p"], capture_output=True,
                                    text=True, check=True).stdout
            if "__DONE__" in screen:
                return screen.rstrip("\n").splitlines()
            time.sleep(0.2)
        raise AssertionError(f"trainctl did not finish in {timeout} s:\n{screen}")
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def test_the_screen_after_training_in_an_80_column_terminal(tmp_path):
    (tmp_path / "small.yaml").write_text(SMALL.replace("metrics: [accuracy]", "metrics: [accuracy, mae]"))
    screen = run_in_tmux(tmp_path, f"{CONSOLE_SCRIPT} train small.yaml --out run")
    text = "\n".join(screen)
    assert "__DONE__ 0" in text, text
    starts = [i for i, line in enumerate(screen) if line.startswith("Epoch ")]
    assert [screen[i].split()[1] for i in starts] == ["1/3", "2/3", "3/3"], text  # each epoch once, in order
    steps = "8/8"  # 240 training rows in batches of 32
    for i in starts:
        # the epoch's full bar, Keras's step counter and time per step ...
        assert re.fullmatch(rf"Epoch \d/3  {steps} ━{{20}} \d+\.\d+s \d+(us|ms)/step", screen[i]), screen[i]
        # ... then the values on indented lines, each whole, none past column 80
        values = screen[i + 1] + " " + screen[i + 2]
        assert screen[i + 1].startswith("    loss ") and "val_mae " in values  # the metric as the config names it (issue 14 item 4), text
    assert all(len(line) <= 80 for line in screen)
    assert not re.search(r"batch \d+/8", text), "no live bar is left on the screen"
    summary = next(i for i, line in enumerate(screen) if line.startswith("trained 3 epochs in "))
    assert screen[summary + 1].startswith("    loss ")
    assert "run: run" in screen[summary + 2:summary + 4], text


def test_fit_from_python_in_a_terminal_shows_the_cli_progress_by_default(tmp_path):
    import sys

    (tmp_path / "fit.py").write_text(
        "import numpy as np, trainctl\n"
        "x = np.random.default_rng(0).standard_normal((320, 4)).astype(np.float32)\n"
        "y = np.eye(2, dtype=np.float32)[(x[:, 0] > 0).astype(int)]\n"
        "m = trainctl.Sequential([{'type': 'dense', 'units': 2, 'activation': 'softmax', 'input_shape': [4]}])\n"
        "m.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])\n"
        "m.fit(x, y, epochs=2, validation_split=0.2)\n"  # no verbose: on, because this is a terminal
        "m.summary()\n")
    screen = run_in_tmux(tmp_path, f"{sys.executable} fit.py")
    text = "\n".join(screen)
    assert "__DONE__ 0" in text, text
    finished = [line for line in screen if line.startswith("Epoch ")]
    assert len(finished) == 2, text  # each epoch once
    assert all(re.match(r"Epoch \d/2  8/8 ━{20} ", line) for line in finished), text
    assert "Total params: 10" in text and "Layer (type)" in text  # summary(): the CLI's table
