"""Issue 15, item 10 for `--set`: a problem with a value given on the command line names the
--set argument, the config key path, and the file's line:col of the key it overrides (when the
file has that key) — also for problems found after validation (the memory budget, the data's
shape, a monitored value). Through the real CLI: exit 1, one stderr line, no traceback."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.test_hostile.common import BASE, cli, write

CONFIG = BASE + "callbacks: [{type: early_stopping, monitor: val_loss}]\n"


def mark(line_start: str, token: str) -> str:
    """`cfg.yaml:LINE:COL` (1-based) of `token` on the line of CONFIG beginning with `line_start`."""
    for number, line in enumerate(CONFIG.splitlines(), 1):
        if line.startswith(line_start):
            return f"cfg.yaml:{number}:{line.index(token) + 1}"
    raise AssertionError(f"no line starting {line_start!r}")


DENSE = "    - {type: dense, units: 8"
UNITS, INPUT, LAYER0 = mark(DENSE, "units:"), mark(DENSE, "input_shape:"), mark(DENSE, "{type")  # an item: its own place
BATCH, MONITOR = mark("fit:", "batch_size:"), mark("callbacks:", "monitor:")

CASES = [  # (command, --set arguments, the one line expected, as a regular expression)
    ("validate", ["model.layers.0.units=abc"],
     rf"--set model\.layers\.0\.units \(overrides {UNITS}\): must be an integer, got 'abc'"),
    ("validate", ["fit.batchSize=0"],  # the other spelling: the key path is printed as the config has it
     rf"--set fit\.batchSize \(overrides {BATCH}\): fit\.batch_size: must be > 0, got 0"),
    ("validate", ["model.layers.0={type: dense, units: 0, input_shape: [4]}"],
     rf"--set model\.layers\.0 \(overrides {LAYER0}\): model\.layers\.0\.units: must be > 0, got 0"),
    ("train", ["model.layers.0.units=3000000", "--max-memory", "64MiB"],  # the budget, before allocation
     rf"--set model\.layers\.0\.units \(overrides {UNITS}\): training needs about .* more than the 64\.0 MiB --max-memory"),
    ("train", ["fit.validation_batch_size=50000000", "--max-memory", "1GiB"],  # a key the file does not have
     r"--set fit\.validation_batch_size: training needs about .* GiB .*more than the 1\.0 GiB --max-memory"),
    ("validate", ["model.layers.0.input_shape=[5]"],  # the data's shape, found after validation
     rf"--set model\.layers\.0\.input_shape \(overrides {INPUT}\): the data \(generator teacher\) has inputs "
     r"of shape \[n,4\] but the model expects \[n,5\]"),
    ("validate", ["callbacks.0.monitor=val_los"],  # a monitored value, found after validation
     rf"--set callbacks\.0\.monitor \(overrides {MONITOR}\): callbacks\.early_stopping\.monitor: .*val_los"),
    ("validate", ["fit.batch_size=8", "--set", "fit.batch_size=-1"],  # the last --set of a key owns it
     rf"--set fit\.batch_size \(overrides {BATCH}\): must be > 0, got -1"),
]


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return write(tmp_path_factory.mktemp("overrides"), "cfg.yaml", CONFIG)


def test_the_marks_are_the_keys_of_the_file():
    assert (UNITS, BATCH, LAYER0) == ("cfg.yaml:5:21", "cfg.yaml:14:18", "cfg.yaml:5:7")


def test_set_problems_name_the_argument_the_key_and_the_overridden_place(config, tmp_path):
    def run(case):
        command, settings, pattern = case
        out = ["-q", "--out", tmp_path / re.sub(r"\W", "_", settings[0])] if command == "train" else []
        result = cli(command, "cfg.yaml", "--set", *settings, *out, cwd=config.parent)
        try:
            line = result.clean_error()
        except AssertionError as error:
            return f"{settings}: {error}"
        if not re.fullmatch("error: " + pattern + r".*", line):
            return f"{settings}: {line}"
        if out and out[-1].exists():
            return f"{settings}: the run directory was created"
        return None

    with ThreadPoolExecutor(3) as pool:
        problems = [p for p in pool.map(run, CASES) if p]
    assert not problems, "\n".join(problems)
