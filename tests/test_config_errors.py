"""Bad configs: each gives a ConfigError whose lines are exactly the located messages below
(`{f}` is the config file's path). Never a traceback, never a half-read config."""

from __future__ import annotations

import textwrap

import pytest

from trainctl.config import load_config, load_config_text
from trainctl.config.loader import MAX_ALIAS_EXPANSION, MAX_FILE_BYTES
from trainctl.errors import ConfigError, TrainctlError
from tests.test_config import GOOD, fake_registries

ALIAS_BOMB = """\
a: &a [x, x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
"""


def good(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new)


# (id, file content (str or bytes), --set options, expected ConfigError lines)
CASES = [
    ("misspelled_key", good("units: 32", "unts: 32"), [],
     ["{f}:6:21: model.layers.0.unts: unknown key 'unts'; did you mean 'units'?"]),
    ("misspelled_layer_type", good("{type: dense, units: 10", "{type: dens, units: 10"), [],
     ["{f}:7:14: model.layers.1.type: unknown layer type 'dens'; did you mean 'dense'?"]),
    ("misspelled_activation", good("activation: relu", "activation: rleu"), [],
     ["{f}:6:44: model.layers.0.activation: unknown activation 'rleu'; did you mean 'relu'?"]),
    ("misspelled_loss", good("loss: categorical_crossentropy", "loss: categoricalCrossentropyy"), [],
     ["{f}:9:7: loss: unknown loss 'categoricalCrossentropyy'; did you mean 'categorical_crossentropy'?"]),
    ("misspelled_optimizer_id", good("optimizer: {type: adam, learning_rate: 1e-3}", "optimizer: adamm"), [],
     ["{f}:8:12: optimizer: unknown optimizer 'adamm'; did you mean 'adam'?"]),
    ("misspelled_top_key", good("optimizer:", "optimiser:"), [],
     ["{f}:8:1: optimiser: unknown key 'optimiser'; did you mean 'optimizer'?"]),
    ("unknown_key_nothing_close", GOOD + "colour: red\n", [],
     ["{f}:15:1: colour: unknown key 'colour'; valid keys: callbacks, data, fit, loss, metrics, "
      "model, name, optimizer, seed"]),
    ("wrong_type_string_for_int", good("batch_size: 64", "batch_size: abc"), [],
     ["{f}:13:30: fit.batch_size: must be an integer, got 'abc'"]),
    ("wrong_type_for_bool", good("units: 10,", "units: 10, use_bias: maybe,"), [],
     ["{f}:7:42: model.layers.1.use_bias: must be true or false, got 'maybe'"]),
    ("wrong_type_mapping_for_list", good("metrics: [accuracy]", "metrics: {a: 1}"), [],
     ["{f}:10:10: metrics: must be a list, got a mapping"]),
    ("negative_units", good("units: 32", "units: -3"), [],
     ["{f}:6:28: model.layers.0.units: must be > 0, got -3"]),
    ("zero_epochs", good("epochs: 5", "epochs: 0"), [],
     ["{f}:13:15: fit.epochs: must be > 0, got 0"]),
    ("validation_split_one", good("validation_split: 0.2", "validation_split: 1"), [],
     ["{f}:13:52: fit.validation_split: must be < 1.0, got 1"]),
    ("inf_learning_rate", good("learning_rate: 1e-3", "learning_rate: .inf"), [],
     ["{f}:8:40: optimizer.learning_rate: must be a finite number, not .inf or .nan"]),
    ("missing_required_key", good("{type: dense, units: 10, ", "{type: dense, "), [],
     ["{f}:7:7: model.layers.1: missing required key 'units'"]),
    ("missing_top_level_section", good("loss: categorical_crossentropy\n", ""), [],
     ["{f}:2:1: missing required key 'loss'"]),
    ("missing_type", good("{type: early_stopping, patience: 3}", "{patience: 3}"), [],
     ["{f}:14:13: callbacks.0: missing required key 'type' (the callback)"]),
    ("no_layers", good("layers:\n    - {type: dense, units: 32, activation: relu, input_shape: [784]}\n"
                       "    - {type: dense, units: 10, activation: softmax}", "layers: []"), [],
     ["{f}:5:11: model.layers: must have at least 1 item, got 0"]),
    ("bad_run_name", good("name: tfjs-mlp", "name: ../escape"), [],
     ["{f}:2:7: name: must be a simple name (letters, digits, '.', '_', '-'; it names the run "
      "directory), got '../escape'"]),
    ("data_union_best_branch", good("{generator: blobs, n_samples: 1000}", "{csv: a.csv}"), [],
     ["{f}:12:10: data.train: missing required key 'target'"]),
    ("initial_epoch_past_epochs", good("epochs: 5,", "epochs: 5, initial_epoch: 5,"), [],
     ["{f}:13:33: fit.initial_epoch: must be less than epochs (5), got 5; epochs counts from 0, "
      "not from initial_epoch"]),
    ("keras_and_tfjs_names_together", good("epochs: 5,", "epochs: 5, steps_per_epoch: 2, batchesPerEpoch: 3,"), [],
     ["{f}:13:55: fit.batchesPerEpoch: set either steps_per_epoch or batches_per_epoch (the TF.js "
      "name for the same thing), not both"]),
    ("duplicate_key", good("seed: 3\n", "seed: 3\nseed: 4\n"), [],
     ["{f}:4:1: seed: duplicate key 'seed' (first defined at line 3, column 1)"]),
    ("tab_indentation", good("  layers:", "\tlayers:"), [],
     ["{f}:5:1: tab character; YAML indents with spaces, not tabs"]),
    ("python_object_tag", good("seed: 3", "seed: !!python/object/apply:os.system [ls]"), [],
     ["{f}:3:7: seed: tag !!python/object/apply:os.system is not allowed; a config holds only "
      "plain strings, numbers, booleans, lists and mappings"]),
    ("custom_tag", good("loss: categorical_crossentropy", "loss: !env LOSS"), [],
     ["{f}:9:7: loss: tag !env is not allowed; a config holds only plain strings, numbers, "
      "booleans, lists and mappings"]),
    ("empty_file", "", [],
     ["{f}:1:1: the file is empty; expected a mapping with the config sections"]),
    ("only_comments", "# nothing yet\n\n", [],
     ["{f}:1:1: the file is empty; expected a mapping with the config sections"]),
    ("top_level_list", "- a\n- b\n", [],
     ["{f}:1:1: the config must be a mapping of sections (name, model, optimizer, ...), got a list"]),
    ("non_utf8_bytes", GOOD.encode().replace(b"tfjs-mlp", b"tfjs-ml\xe9"), [],
     ["{f}:2:14: not valid UTF-8 (byte 0xe9); save the config as UTF-8 text"]),
    ("nul_byte", GOOD.replace("seed: 3", "seed: 3\0"), [],
     ["{f}:3:8: contains a NUL byte; a config is a text file"]),
    ("control_character", GOOD.replace("tfjs-mlp", "tfjs\x07mlp"), [],
     ["{f}:2:11: control character U+0007 is not allowed in YAML text"]),
    ("section_not_a_mapping", good("fit: {epochs: 5, batch_size: 64, validation_split: 0.2}", "fit: 5"), [],
     ["{f}:13:6: fit: must be a mapping, got 5"]),
    ("data_null", good("data:\n  train: {generator: blobs, n_samples: 1000}", "data:"), [],
     ["{f}:11:6: data: must be a mapping, got null"]),
    ("layers_not_a_list", good("layers:\n    - {type: dense, units: 32, activation: relu, input_shape: [784]}\n"
                               "    - {type: dense, units: 10, activation: softmax}", "layers: {type: dense}"), [],
     ["{f}:5:11: model.layers: must be a list, got a mapping"]),
    ("yaml_syntax_error", good("metrics: [accuracy]", "metrics: [accuracy"), [],
     ["{f}:11:5: YAML syntax error: expected ',' or ']', but got ':' (while parsing a flow sequence)"]),
    ("alias_bomb", ALIAS_BOMB, [],
     [f"{{f}}:5:36: e.7: aliases here expand to more than {MAX_ALIAS_EXPANSION} values; write the "
      "values out instead"]),
    ("recursive_alias", "a: &a [1, *a]\n", [],
     ["{f}:1:11: a.1: an alias refers to the mapping or list that contains it"]),
    ("undefined_alias", "a: *nowhere\n", [],
     ["{f}:1:4: YAML syntax error: found undefined alias 'nowhere'"]),
    ("too_large", "# " + "x" * MAX_FILE_BYTES + "\n", [],
     [f"{{f}}:1:1: the file is too large ({MAX_FILE_BYTES + 3:,} bytes); a config may have at most "
      f"{MAX_FILE_BYTES:,} bytes"]),
    ("set_bad_path_into_scalar", GOOD, ["fit.epochs.max=3"],
     ["--set fit.epochs.max: cannot set 'max' inside fit.epochs, which is 5, not a mapping or a list"]),
    ("set_index_out_of_range", GOOD, ["model.layers.2.units=64"],
     ["--set model.layers.2.units: index 2 is out of range; model.layers has 2 items (indices 0 to 1)"]),
    ("set_index_not_a_number", GOOD, ["model.layers.last.units=64"],
     ["--set model.layers.last.units: model.layers is a list; 'last' is not an index (0, 1, ...)"]),
    ("set_without_equals", GOOD, ["fit.epochs"],
     ["--set fit.epochs: expected PATH=VALUE, e.g. --set fit.epochs=10"]),
    ("set_empty_segment", GOOD, ["fit..epochs=3"],
     ["--set fit..epochs: empty key in the path; keys are separated by single dots"]),
    ("set_bad_value", GOOD, ["model.layers.0.units=-3"],
     ["--set model.layers.0.units (overrides {f}:6:21): must be > 0, got -3"]),
    ("set_unknown_new_key", GOOD, ["fit.epoch=3"],
     ["--set fit.epoch: unknown key 'epoch'; did you mean 'epochs'?"]),
    ("set_problem_inside_value", GOOD, ["model.layers.1={type: dense, unts: 3}"],
     ["--set model.layers.1 (overrides {f}:7:7): model.layers.1.unts: unknown key 'unts'; did you mean 'units'?"]),
    ("set_misspelled_section", GOOD, ["fitt.epochs=3"],
     ["--set fitt.epochs: fitt: unknown key 'fitt'; did you mean 'fit'?"]),
    ("set_python_tag", GOOD, ["seed=!!python/object:os.system {}"],
     ["--set seed: tag !!python/object:os.system is not allowed; a config holds only plain "
      "strings, numbers, booleans, lists and mappings (in the value '!!python/object:os.system {{}}')"]),
]


@pytest.mark.parametrize("content, overrides, expected", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_bad_config_gives_exact_located_messages(tmp_path, content, overrides, expected):
    path = tmp_path / "bad.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides, registries=fake_registries())
    assert caught.value.problems == [line.format(f=path) for line in expected]
    assert isinstance(caught.value, TrainctlError)


def test_case_ids_are_unique():
    assert len({case[0] for case in CASES}) == len(CASES)


def test_every_problem_is_reported_at_once_sorted_by_position(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent("""\
        name: many
        seed: -1
        model:
          layers:
            - {type: dense, unts: 32, activation: rleu}
            - {type: dens, units: 10}
            - type: dropout
        optimizer: {type: adam, learning_rate: .inf}
        loss: mse
        loss: mae
        metrics: [acc, 3]
        data: {train: {generator: blobs, n_samples: 0}}
        fit: {epochs: 0, batch_size: abc, yield_every: sometimes}
        callbacks: [{type: early_stopping, patiense: 3}, 5]
        """), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, ["fit.shuffle=perhaps", "model.layers.9.units=1"], registries=fake_registries())
    f = str(path)
    assert caught.value.problems == [
        f"{f}:2:7: seed: must be >= 0, got -1",
        f"{f}:5:21: model.layers.0.unts: unknown key 'unts'; did you mean 'units'?",
        f"{f}:5:43: model.layers.0.activation: unknown activation 'rleu'; did you mean 'relu'?",
        f"{f}:6:14: model.layers.1.type: unknown layer type 'dens'; did you mean 'dense'?",
        f"{f}:7:7: model.layers.2: missing required key 'rate'",
        f"{f}:8:40: optimizer.learning_rate: must be a finite number, not .inf or .nan",
        f"{f}:10:1: loss: duplicate key 'loss' (first defined at line 9, column 1)",
        f"{f}:11:16: metrics.1: must be a metric id (a string), got 3",
        f"{f}:12:45: data.train.n_samples: must be > 0, got 0",
        f"{f}:13:15: fit.epochs: must be > 0, got 0",
        f"{f}:13:30: fit.batch_size: must be an integer, got 'abc'",
        f"{f}:13:48: fit.yield_every: must be 'auto', 'batch', 'epoch', 'never' or a number of "
        "milliseconds >= 0, got 'sometimes'",
        f"{f}:14:36: callbacks.0.patiense: unknown key 'patiense'; did you mean 'patience'?",
        f"{f}:14:50: callbacks.1: must be a callback id or a mapping with 'type', got 5",
        "--set fit.shuffle: must be true or false, got 'perhaps'",
        "--set model.layers.9.units: index 9 is out of range; model.layers has 3 items (indices 0 to 2)",
    ]


def test_unreadable_file_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "missing.yaml", registries=fake_registries())
    assert caught.value.problems == [f"{tmp_path / 'missing.yaml'}: cannot read the config: "
                                     "No such file or directory"]
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, registries=fake_registries())
    assert caught.value.problems == [f"{tmp_path}: cannot read the config: Is a directory"]


def test_saved_config_text_problems_name_the_source():
    with pytest.raises(ConfigError) as caught:
        load_config_text(GOOD.replace("units: 32", "units: 0"), "runs/x/config.yaml",
                         registries=fake_registries())
    assert caught.value.problems == ["runs/x/config.yaml:6:28: model.layers.0.units: must be > 0, got 0"]
