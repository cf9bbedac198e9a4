"""`trainctl` as real processes: the installed console script and `python -m trainctl`.
Exit codes (0, 1 for expected failures with one stderr line and no traceback, 2 for usage),
plain output through a pipe, and what `--help` and `summary` must not import (numba) or read
(data)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.test_cli import ANSI, SMALL, numpy_forward, write
from tests.fixtures import teacher_source

ROOT = Path(__file__).resolve().parent.parent
TFJS_MLP = ROOT / "configs" / "tfjs_mlp.yaml"
CONSOLE_SCRIPT = Path(sys.executable).parent / "trainctl"
if not CONSOLE_SCRIPT.exists():  # an installation whose scripts live elsewhere
    CONSOLE_SCRIPT = Path(shutil.which("trainctl") or CONSOLE_SCRIPT)

ENTRY_POINTS = {
    "console_script": [str(CONSOLE_SCRIPT)],
    "python_m": [sys.executable, "-m", "trainctl"],
}


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR")}
    clean["COLUMNS"] = "120"
    return clean


def run(command: list[str], *args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, env=env(),
                          cwd=cwd, timeout=120)


@pytest.fixture(params=sorted(ENTRY_POINTS), ids=sorted(ENTRY_POINTS))
def entry(request) -> list[str]:
    if request.param == "console_script":
        assert CONSOLE_SCRIPT.exists(), f"the console script is not installed at {CONSOLE_SCRIPT}"
    return ENTRY_POINTS[request.param]


def test_help_exits_0_and_lists_the_commands(entry):
    result = run(entry, "--help")
    assert result.returncode == 0, result.stderr
    for command in ("train", "summary", "validate", "predict", "evaluate", "plot"):
        assert re.search(rf"\b{command}\b", result.stdout), command


def test_expected_failure_is_one_stderr_line_exit_1_no_traceback(entry, tmp_path):
    bad = write(tmp_path / "bad.yaml", SMALL.replace("units: 8", "unts: 8"))
    result = run(entry, "validate", bad)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"error: {bad}:6:21: model.layers.0.unts: unknown key 'unts'; did you mean 'units'?"]
    missing = run(entry, "predict", tmp_path / "no-run", "--input", tmp_path / "x.npy")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert len(missing.stderr.splitlines()) == 1 and "no-run" in missing.stderr


def test_usage_error_exits_2(entry, tmp_path):
    config = write(tmp_path / "small.yaml", SMALL)
    result = run(entry, "train", config, "--no-such-option")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "--no-such-option" in result.stderr
    assert run(entry, "no-such-command").returncode == 2


def test_train_through_a_pipe_then_predict_and_summary(tmp_path):
    """The console script trains (stdout is a pipe: plain lines); `python -m trainctl`
    predicts from the run; predictions equal a numpy forward pass."""
    config = write(tmp_path / "small.yaml", SMALL)
    run_dir = tmp_path / "run"
    result = run(ENTRY_POINTS["console_script"], "train", config, "--out", run_dir)
    assert result.returncode == 0, result.stderr
    assert not ANSI.search(result.stdout) and not ANSI.search(result.stderr)
    lines = result.stdout.rstrip("\n").split("\n")
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["1/3", "2/3", "3/3"]
    assert lines[-2].startswith("trained 3 epochs in ") and lines[-1] == f"run: {run_dir}"

    x = np.random.default_rng(3).normal(size=(5, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "p.npy"
    predicted = run(ENTRY_POINTS["python_m"], "predict", run_dir, "--input", tmp_path / "x.npy",
                    "--output", out)
    assert predicted.returncode == 0, predicted.stderr
    np.testing.assert_allclose(np.load(out), numpy_forward(run_dir, x), atol=1e-5)

    jsonl = run(ENTRY_POINTS["python_m"], "train", config, "--out", tmp_path / "jsonl",
                "--log-format", "jsonl")
    assert jsonl.returncode == 0, jsonl.stderr
    events = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [e["epoch"] for e in events if e["event"] == "epoch_end"] == [1, 2, 3]


# Runs the CLI in-process inside a fresh interpreter, then reports what was imported / opened.
PROBE = textwrap.dedent("""\
    import json, sys, time
    opened = []
    sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" else None)
    start = time.process_time()
    from trainctl.cli import app
    try:
        app(sys.argv[1:], prog_name="trainctl")
    except SystemExit as exit:
        code = exit.code
    else:
        code = 0
    seconds = time.process_time() - start  # CPU time: wall time on a shared machine is noise
    print(json.dumps({"code": code, "numba": "numba" in sys.modules, "seconds": seconds,
                      "opened": opened}), file=sys.stderr)
    """)


def probe(*args) -> tuple[dict, str]:
    result = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True,
                            text=True, env=env(), timeout=120)
    report = json.loads(result.stderr.strip().splitlines()[-1])
    return report, result.stdout


def test_help_does_not_import_numba_and_is_quick():
    report, stdout = probe("--help")
    assert report["code"] == 0 and "summary" in stdout
    assert report["numba"] is False
    # Target 0.3 s (measured in the report); asserted only loosely, timing is not a test here.
    # CPU seconds of the process: two test workers beside other load stretch its wall time.
    assert report["seconds"] < 2.0, report["seconds"]


def test_summary_does_not_import_numba_or_read_data(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("a,b,c,d,e,f,y\n" + "0,0,0,0,0,0,1\n" * 10)
    config = write(tmp_path / "csv.yaml", SMALL.replace(
        teacher_source(300, 6),
        f"{{csv: {data}, target: y}}"))
    report, stdout = probe("summary", config, "--weights")
    assert report["code"] == 0, stdout
    assert "dense_Dense1 (Dense)" in stdout and "dense_Dense1/kernel" in stdout
    assert report["numba"] is False
    assert str(config) in report["opened"], "the probe sees files opened"
    assert str(data) not in report["opened"], "summary reads no data"
    # A data file that does not exist is no obstacle either.
    missing = write(tmp_path / "missing.yaml", SMALL.replace(
        teacher_source(300, 6),
        "{csv: nowhere.csv, target: y}"))
    report, stdout = probe("summary", missing)
    assert report["code"] == 0 and "Total params: 83" in stdout and report["numba"] is False

    report, stdout = probe("summary", TFJS_MLP)
    assert report["code"] == 0 and "Total params: 25450" in stdout and report["numba"] is False


def test_summary_of_a_run_directory_does_not_import_numba(tmp_path):
    config = write(tmp_path / "small.yaml", SMALL)
    run_dir = tmp_path / "run"
    assert run(ENTRY_POINTS["python_m"], "train", config, "--out", run_dir, "--quiet").returncode == 0
    report, stdout = probe("summary", run_dir)
    assert report["code"] == 0 and "Total params: 83" in stdout
    assert report["numba"] is False
