"""Issue 15, items 1-2: sizes are checked from shapes before anything is allocated.

Each case runs the real CLI as a subprocess: exit code 1, one located stderr line, no
traceback, and a small peak RSS however large the config claims to be."""

from __future__ import annotations

import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.test_hostile.common import BASE, MB, cli, write

LOC = r"cfg\.yaml:\d+:\d+: "


def SET(path: str) -> str:
    """A problem of `--set PATH=...`, naming the file's place of the key it overrides."""
    return rf"--set {re.escape(path)} \(overrides (?:.*/)?{LOC[:-2]}\): "


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    config = write(root, "cfg.yaml", BASE)
    done = cli("train", config, "-q", "--out", root / "run")
    assert done.code == 0, done.stderr
    return root


CASES = [  # (what, command, override or None, config text change, pattern of the one line)
    ("units true", "validate", None, ("units: 8", "units: true"), LOC + r"model\.layers\.0\.units: must be an integer, got true"),
    ("units '16'", "validate", None, ("units: 8", "units: '16'"), LOC + r"model\.layers\.0\.units: must be an integer, got '16'"),
    ("units 10^12", "validate", None, ("units: 8", "units: 1000000000000"), LOC + r"model\.layers\.0\.units: must be <= 2147483647"),
    ("units 10^1000", "validate", None, ("units: 8", "units: 1" + "0" * 1000), LOC + r"model\.layers\.0\.units: an integer of 1001 digits is far too large"),
    ("--set units 10^1000", "validate", "model.layers.0.units=1" + "0" * 1000, None, r"--set model\.layers\.0\.units: an integer of 1001 digits"),
    ("--set units 10^12", "train", "model.layers.0.units=1000000000000", None, SET("model.layers.0.units") + r"must be <= 2147483647"),
    ("validate 50M units", "validate", "model.layers.0.units=50000000", None,
     SET("model.layers.0.units") + r"training needs about .* GiB \(weights .*\), more than the 2\.0 GiB --max-memory"),
    ("summary 50M units", "summary", "model.layers.0.units=50000000", None, None),
    ("train 2e9 units", "train", "model.layers.2.units=2000000000", None,
     SET("model.layers.2.units") + r"training needs about .* TiB"),
    ("train n_samples", "train", "data.train.n_samples=2000000000", None, SET("data.train.n_samples") + "training needs"),
    ("train n_features", "train", "data.train.n_features=100000000", ("input_shape: [4]", "input_shape: [100000000]"),
     SET("data.train.n_features") + "training needs"),
    ("train hidden", "train", "data.train.hidden=2000000000", None, SET("data.train.hidden") + "training needs"),
    ("train n_classes", "train", "data.train.n_classes=1000000000", None, SET("data.train.n_classes") + "training needs"),
    ("train batch_size", "train", "fit.batch_size=2000000000", None, SET("fit.batch_size") + "training needs"),
    ("train input_shape", "train", "model.layers.0.input_shape=[2000000000]", None, SET("model.layers.0.input_shape") + r"the data .* the model expects \[n,2000000000\]"),
]


def run_case(tmp_path, case):
    import re

    what, command, override, change, pattern = case
    root = tmp_path / what.replace(" ", "_").replace("'", "")
    root.mkdir()
    text = BASE if change is None else BASE.replace(*change)
    config = write(root, "cfg.yaml", text)
    args = [command, config] + (["--set", override] if override else [])
    if command == "train":
        args += ["-q", "--out", root / "run"]
    args += ["--max-memory", "2GiB"] if command != "summary" else []
    result = cli(*args)
    problems = []
    if command == "summary":  # a summary of any size is a table, computed from shapes alone
        if result.code != 0 or "Total params: 400000003" not in result.stdout:
            problems.append(f"{what}: {result.code} {result.stderr[-300:]} {result.stdout[-300:]}")
    else:
        try:
            line = result.clean_error()
            if not re.search(pattern, line):
                problems.append(f"{what}: {line}")
        except AssertionError as error:
            problems.append(f"{what}: {error}")
    if (root / "run").exists():
        problems.append(f"{what}: the run directory was created")
    if result.rss >= 300 * MB:
        problems.append(f"{what}: peak RSS {result.rss / MB:.0f} MB")
    return problems


def test_sizes_are_refused_from_shapes_with_one_located_line(tmp_path):
    """Every case in CASES (run 3 at a time): one located line, nothing created, RSS < 300 MB."""
    with ThreadPoolExecutor(3) as pool:
        problems = [p for found in pool.map(lambda case: run_case(tmp_path, case), CASES) for p in found]
    assert not problems, "\n".join(problems)


def test_the_same_limits_without_max_memory_use_the_memory_available(tmp_path):
    config = write(tmp_path, "cfg.yaml", BASE)
    line = cli("validate", config, "--set", "model.layers.0.units=2000000000").clean_error()
    assert "available" in line and "model.layers.0.units" in line


def test_a_model_json_claiming_huge_layers_is_refused_by_every_reader(trained, tmp_path):
    run = tmp_path / "lying"
    shutil.copytree(trained / "run", run)
    model = json.loads((run / "model.json").read_text())
    model["layers"][0]["units"] = 10 ** 12
    (run / "model.json").write_text(json.dumps(model))
    x = tmp_path / "x.npy"
    import numpy as np

    np.save(x, np.zeros((4, 4), np.float32))
    commands = [("summary", run), ("predict", run, "--input", x), ("evaluate", run)]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda args: cli(*args), commands))
    for result in results:
        line = result.clean_error()
        assert "model.json" in line and "units" in line and "2147483647" in line, line
        assert result.rss < 300 * MB
    # a model.json within the bounds but beyond the memory: refused before allocating
    model["layers"][0]["units"] = 1_500_000_000
    (run / "model.json").write_text(json.dumps(model))
    result = cli("predict", run, "--input", x, "--max-memory", "1GiB")
    line = result.clean_error()
    assert "model.json" in line and "loading this model needs about" in line, line
    assert result.rss < 300 * MB
