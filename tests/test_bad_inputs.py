"""Malformed configs, data files and model files through the real CLI: each gives a one-line
error naming the place (file:line:col, file and row, or expected vs actual shape), exit
code 1 and no traceback."""

from __future__ import annotations

import json
import pickle
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trainctl.cli import app
from tests.fixtures import teacher_config

GOOD = teacher_config(name="bad-inputs", n_samples=60)
LOC = r"cfg\.yaml:\d+:\d+"  # every config problem is located in the file

# (id, config text, regex the single error line must match)
CONFIGS = [
    ("misspelled top key", GOOD.replace("metrics:", "metrix:"), LOC + r": metrix: unknown key.*metrics"),
    ("misspelled fit key", GOOD.replace("batch_size", "batchsize"), LOC + r": fit\.batchsize"),
    ("misspelled layer key", GOOD.replace("units: 8", "unit: 8"), LOC + r": model\.layers\.0\.unit"),
    ("misspelled layer type", GOOD.replace("type: dense, units: 8", "type: dense2, units: 8"), LOC + r".*dense2.*dense"),
    ("misspelled activation", GOOD.replace("activation: relu", "activation: rleu"), LOC + r".*rleu.*relu"),
    ("misspelled optimizer", GOOD.replace("type: adam", "type: adma"), LOC + r": optimizer.*adma.*adam"),
    ("misspelled loss", GOOD.replace("loss: categorical_crossentropy", "loss: categorical_crossentrop"), LOC + r": loss.*categorical_crossentropy"),
    ("misspelled metric", GOOD.replace("[accuracy]", "[acuracy]"), LOC + r": metrics.*acuracy"),
    ("misspelled generator", GOOD.replace("generator: teacher", "generator: teachr"), LOC + r".*teachr.*teacher"),
    ("misspelled callback", GOOD + "callbacks: [{type: early_stoping}]\n", LOC + r": callbacks\.0.*early_stopping"),
    ("callback bad key", GOOD + "callbacks: [{type: early_stopping, patince: 3}]\n", LOC + r": callbacks\.0\.patince"),
    ("epochs a string", GOOD.replace("epochs: 1", "epochs: many"), LOC + r": fit\.epochs"),
    ("epochs a float", GOOD.replace("epochs: 1", "epochs: 1.5"), LOC + r": fit\.epochs"),
    ("epochs zero", GOOD.replace("epochs: 1", "epochs: 0"), LOC + r": fit\.epochs"),
    ("epochs negative", GOOD.replace("epochs: 1", "epochs: -3"), LOC + r": fit\.epochs"),
    ("batch size zero", GOOD.replace("batch_size: 16", "batch_size: 0"), LOC + r": fit\.batch_size"),
    ("units zero", GOOD.replace("units: 8", "units: 0"), LOC + r": model\.layers\.0\.units"),
    ("units negative", GOOD.replace("units: 8", "units: -8"), LOC + r": model\.layers\.0\.units"),
    ("units a list", GOOD.replace("units: 8", "units: [8]"), LOC + r": model\.layers\.0\.units"),
    ("input shape zero", GOOD.replace("input_shape: [4]", "input_shape: [0]"), LOC + r": model\.layers\.0\.input_shape"),
    ("input shape text", GOOD.replace("input_shape: [4]", "input_shape: four"), LOC + r": model\.layers\.0\.input_shape"),
    ("learning rate inf", GOOD.replace("learning_rate: 0.01", "learning_rate: .inf"), LOC + r": optimizer\.learning_rate"),
    ("learning rate nan", GOOD.replace("learning_rate: 0.01", "learning_rate: .nan"), LOC + r": optimizer\.learning_rate"),
    ("learning rate negative", GOOD.replace("learning_rate: 0.01", "learning_rate: -0.01"), LOC + r": optimizer\.learning_rate"),
    ("learning rate a string", GOOD.replace("learning_rate: 0.01", "learning_rate: fast"), LOC + r": optimizer\.learning_rate"),
    ("validation split one", GOOD.replace("batch_size: 16", "batch_size: 16, validation_split: 1.5"), LOC + r": fit\.validation_split"),
    ("dropout rate two", GOOD.replace("    - {type: dense, units: 3", "    - {type: dropout, rate: 2}\n    - {type: dense, units: 3"), LOC + r": model\.layers\.1\.rate"),
    ("seed negative", GOOD.replace("seed: 0", "seed: -1"), LOC + r": seed"),
    ("name with slash", GOOD.replace("name: bad-inputs", "name: a/b"), LOC + r": name"),
    ("duplicate key", GOOD.replace("seed: 0\n", "seed: 0\nseed: 1\n"), LOC + r".*seed.*duplicate|" + LOC + r".*duplicate.*seed"),
    ("tab indentation", GOOD.replace("  layers:", "\tlayers:"), LOC + r".*tab"),
    ("python object tag", GOOD.replace("seed: 0", "seed: !!python/object:os.system 0"), LOC),
    ("python apply tag", GOOD + "extra: !!python/object/apply:os.system ['true']\n", LOC),
    ("empty file", "", r"cfg\.yaml(:\d+:\d+)?: .*empty"),
    ("only comments", "# nothing here\n", r"cfg\.yaml(:\d+:\d+)?: .*empty"),
    ("a list not a mapping", "- 1\n- 2\n", LOC + r".*mapping"),
    ("unclosed bracket", GOOD.replace("[accuracy]", "[accuracy"), LOC),
    ("bad indentation", GOOD.replace("    - {type: dense, units: 3", "   - {type: dense, units: 3"), LOC + r": YAML syntax error"),
    ("missing model", GOOD.replace("model:\n  layers:\n    - {type: dense, units: 8, activation: relu, input_shape: [4]}\n    - {type: dense, units: 3, activation: softmax}\n", ""), LOC + r".*model"),
    ("no layers", GOOD.replace("  layers:\n    - {type: dense, units: 8, activation: relu, input_shape: [4]}\n    - {type: dense, units: 3, activation: softmax}\n", "  layers: []\n"), LOC + r": model\.layers"),
    ("loss vs output width", GOOD.replace("units: 3, activation: softmax", "units: 1, activation: sigmoid"), r"cfg\.yaml.*loss|loss: categorical_crossentropy needs"),
    ("monitor never logged", GOOD + "callbacks: [{type: early_stopping, monitor: val_loss}]\n", r"callbacks\.early_stopping\.monitor: 'val_loss' needs validation data"),
    ("monitor misspelled", GOOD + "callbacks: [{type: reduce_lr_on_plateau, monitor: acuracy}]\n", r"callbacks\.reduce_lr_on_plateau\.monitor: 'acuracy' is not logged"),
    ("class weight negative", GOOD.replace("batch_size: 16", "batch_size: 16, class_weight: {0: -1}"), LOC + r": fit\.class_weight"),
]

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8))


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300", "TERM": "dumb"})


def assert_one_line(result, pattern: str) -> str:
    output = result.output
    assert result.exit_code == 1, (result.exit_code, output, result.exception)
    assert "Traceback" not in output
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: ") and re.search(pattern, lines[0]), lines[0]
    return lines[0]


@pytest.mark.parametrize("text,pattern", [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_malformed_config(tmp_path, text, pattern):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    assert_one_line(invoke("validate", path), pattern)


def test_malformed_config_bytes(tmp_path):
    cases = {
        "non-utf8": (GOOD.encode().replace(b"name: bad-inputs", b"name: bad-\xff\xfe"), LOC + r".*UTF-8|cfg\.yaml.*UTF-8"),
        "nul byte": (GOOD.encode().replace(b"seed: 0", b"seed: \x000"), LOC),
        "very large": (GOOD.encode() + b"# " + b"x" * 80 + b"\n" + b"padding: [" + b"1, " * 2_000_000 + b"1]\n", r"cfg\.yaml"),
        "alias bomb": (GOOD.encode() + ALIAS_BOMB.encode(), LOC + r".*alias"),
    }
    for name, (data, pattern) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}" / "cfg.yaml"
        path.parent.mkdir()
        path.write_bytes(data)
        assert_one_line(invoke("validate", path), pattern)
    path = tmp_path / "missing" / "cfg.yaml"
    assert_one_line(invoke("train", path), r"cfg\.yaml.*not found|No such file")


def test_bad_set_override(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(GOOD)
    assert_one_line(invoke("validate", path, "--set", "fit.epochs=-2"), r"--set fit\.epochs")
    assert_one_line(invoke("validate", path, "--set", "fit.epoch=2"), r"--set fit\.epoch")


# -- data files ------------------------------------------------------------------------------
CSV_CONFIG = """\
name: csv-data
model:
  layers:
    - {type: dense, units: 3, activation: softmax, input_shape: [2]}
optimizer: sgd
loss: sparse_categorical_crossentropy
data:
  train: {csv: data.csv, target: label, labels: none}
fit: {epochs: 1, batch_size: 4}
"""


def train_on_csv(tmp_path, text: str, config: str = CSV_CONFIG):
    (tmp_path / "data.csv").write_text(text)
    (tmp_path / "cfg.yaml").write_text(config)
    return invoke("train", tmp_path / "cfg.yaml", "--out", tmp_path / "run", "-q")


DATA_CASES = [
    ("ragged row", "a,b,label\n1,2,0\n3,4\n5,6,1\n", r"data\.csv:3: row 2: has 2 columns, expected 3"),
    ("nan value", "a,b,label\n1,2,0\n3,nan,1\n5,6,1\n", r"data\.csv.*row 2.*(NaN|nan)"),
    ("inf value", "a,b,label\n1,2,0\n3,4,1\n5,inf,1\n", r"data\.csv.*row 3.*(inf|infinite)"),
    ("text in a number column", "a,b,label\n1,2,0\n3,abc,1\n", r"data\.csv.*(line|row) (2|3).*abc"),
    ("label out of range", "a,b,label\n1,2,0\n3,4,7\n", r"data\.csv: row 2: labels must be integers in \[0, 2\] for a 3-unit output, found 7$"),
    ("negative label", "a,b,label\n1,2,0\n3,4,-1\n", r"data\.csv: row 2: labels must be .*found -1$"),
    ("zero rows", "a,b,label\n", r"data\.csv.*(no (data )?rows|no samples|empty)"),
    ("empty file", "", r"data\.csv.*(empty|no header|no rows)"),
    ("missing target column", "a,b,klass\n1,2,0\n", r"data\.csv.*label"),
    ("wrong feature count", "a,b,c,label\n1,2,3,0\n4,5,6,1\n", r"data\.csv.*\[n,3\].*\[n,2\]"),
]


@pytest.mark.parametrize("text,pattern", [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES])
def test_malformed_data(tmp_path, text, pattern):
    assert_one_line(train_on_csv(tmp_path, text), pattern)
    assert not (tmp_path / "run").exists()  # refused before the run directory is created


def test_non_finite_npy_names_file_and_row(tmp_path):
    x = np.ones((6, 2), np.float32)
    x[4, 1] = np.nan
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.zeros((6, 1), np.float32))
    config = CSV_CONFIG.replace("{csv: data.csv, target: label, labels: none}", "{npy: x.npy, y_npy: y.npy}")
    (tmp_path / "cfg.yaml").write_text(config)
    result = invoke("validate", tmp_path / "cfg.yaml")
    if result.exit_code != 0:  # this data form is spelled differently: use npz
        np.savez(tmp_path / "d.npz", x=x, y=np.zeros((6, 1), np.float32))
        config = CSV_CONFIG.replace("{csv: data.csv, target: label, labels: none}", "{npz: d.npz}")
        (tmp_path / "cfg.yaml").write_text(config)
        name = "d.npz"
    else:
        name = "x.npy"
    line = assert_one_line(invoke("train", tmp_path / "cfg.yaml", "--out", tmp_path / "run", "-q"),
                           re.escape(name) + r".*row 5")
    assert "finite" in line or "NaN" in line or "nan" in line


# -- model files -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("model_files")
    (root / "cfg.yaml").write_text(GOOD)
    result = invoke("train", root / "cfg.yaml", "--out", root / "run", "-q")
    assert result.exit_code == 0, result.output
    np.save(root / "inputs.npy", np.ones((3, 4), np.float32))
    return root


def damaged_copy(trained_run: Path, tmp_path: Path) -> Path:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run / "run", run)
    return run


def safetensors_bytes(header: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


MODEL_CASES = {
    "pickle renamed": lambda run: (run / "weights.safetensors").write_bytes(pickle.dumps({"w": [1.0, 2.0]})),
    "truncated": lambda run: (run / "weights.safetensors").write_bytes((run / "weights.safetensors").read_bytes()[:-10]),
    "header length 1e12": lambda run: (run / "weights.safetensors").write_bytes(struct.pack("<Q", 10**12) + b"{}"),
    "empty weights": lambda run: (run / "weights.safetensors").write_bytes(b""),
    "header not json": lambda run: (run / "weights.safetensors").write_bytes(struct.pack("<Q", 6) + b"{nope}"),
    "wrong shapes": lambda run: (run / "weights.safetensors").write_bytes(safetensors_bytes(
        {"dense_Dense1/kernel": {"dtype": "F32", "shape": [5, 8], "data_offsets": [0, 160]},
         "dense_Dense1/bias": {"dtype": "F32", "shape": [8], "data_offsets": [160, 192]},
         "dense_Dense2/kernel": {"dtype": "F32", "shape": [8, 3], "data_offsets": [192, 288]},
         "dense_Dense2/bias": {"dtype": "F32", "shape": [3], "data_offsets": [288, 300]}}, bytes(300))),
    "unknown layer type": lambda run: (run / "model.json").write_text(
        (run / "model.json").read_text().replace('"dense"', '"densse"', 1).replace('"Dense"', '"Densse"', 1)),
    "model.json not json": lambda run: (run / "model.json").write_text('{"layers": [1, 2,'),
    "model.json units changed": lambda run: (run / "model.json").write_text(
        (run / "model.json").read_text().replace('"units": 8', '"units": 9', 1)),
    "missing weights": lambda run: (run / "weights.safetensors").unlink(),
}
MODEL_PATTERNS = {
    "pickle renamed": r"weights\.safetensors: not a safetensors file",
    "truncated": r"weights\.safetensors: .*truncated",
    "header length 1e12": r"weights\.safetensors: .*header length field says 1000000000000",
    "empty weights": r"weights\.safetensors: .*empty",
    "header not json": r"weights\.safetensors: invalid safetensors header",
    "wrong shapes": r"weights\.safetensors: .*expected shape \[4,8\], file has \[5,8\]",
    "unknown layer type": r"model\.json: .*densse",
    "model.json not json": r"model\.json:1:\d+: invalid JSON",
    "model.json units changed": r"weights\.safetensors: .*expected shape \[4,9\], file has \[4,8\]",
    "missing weights": r"run.*(missing weights\.safetensors|weights\.safetensors: file not found)",
}


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_damaged_model_files(trained_run, tmp_path, case):
    run = damaged_copy(trained_run, tmp_path)
    MODEL_CASES[case](run)
    assert_one_line(invoke("predict", run, "--input", trained_run / "inputs.npy"), MODEL_PATTERNS[case])


def test_init_from_pickle_and_truncated(trained_run, tmp_path):
    pickled = tmp_path / "w.safetensors"
    pickled.write_bytes(pickle.dumps([1, 2, 3]))
    config = trained_run / "cfg.yaml"
    assert_one_line(invoke("train", config, "--init-from", pickled, "--out", tmp_path / "a", "-q"),
                    r"--init-from .*w\.safetensors: not a safetensors file")
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes((trained_run / "run" / "weights.safetensors").read_bytes()[:40])
    assert_one_line(invoke("train", config, "--init-from", truncated, "--out", tmp_path / "b", "-q"),
                    r"t\.safetensors: .*(truncated|not a safetensors)")
    assert_one_line(invoke("train", config, "--init-from", tmp_path / "nope.safetensors", "--out", tmp_path / "c", "-q"),
                    r"nope\.safetensors: file not found")


def test_predict_input_shape_mismatch(trained_run):
    np.save(trained_run / "wide.npy", np.ones((3, 5), np.float32))
    assert_one_line(invoke("predict", trained_run / "run", "--input", trained_run / "wide.npy"),
                    r"wide\.npy: inputs have shape \[n,5\], the model expects \[n,4\]")


@pytest.mark.parametrize("runner", ["console_script", "module"])
def test_real_subprocesses(trained_run, tmp_path, runner):
    """A few cases as real processes: stderr has one line, exit code 1, no traceback."""
    bad = tmp_path / "cfg.yaml"
    bad.write_text(GOOD.replace("units: 8", "units: -8"))
    run = damaged_copy(trained_run, tmp_path)
    (run / "weights.safetensors").write_bytes(pickle.dumps(object.__name__))
    command = [str(Path(sys.executable).with_name("trainctl"))] if runner == "console_script" else [sys.executable, "-m", "trainctl"]
    for args, pattern in [(["validate", str(bad)], LOC + r": model\.layers\.0\.units"),
                          (["predict", str(run), "--input", str(trained_run / "inputs.npy")], r"not a safetensors file"),
                          (["train", "--resume", str(tmp_path / "absent")], r"absent: run directory not found")]:
        done = subprocess.run(command + args, capture_output=True, text=True, timeout=60, env={"COLUMNS": "300", "PATH": "/usr/bin:/bin"})
        assert done.returncode == 1, (args, done.stderr)
        assert "Traceback" not in done.stderr + done.stdout
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and re.search(pattern, lines[0]), done.stderr
