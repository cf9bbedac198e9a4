"""The config package: YAML 1.2 loading with positions, the schema and its registry dispatch,
--set overrides, the resolved config and its hash. Bad configs are in test_config_errors.py.

Small fake registries stand in for layers, optimizers, callbacks, losses, metrics and data,
so these tests pin the mechanism; the integration tests at the end use the real ones.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from typing import Union

import pytest
from pydantic import BaseModel

from tests.fixtures import teacher_config
from trainctl.config import (
    Config,
    TypedSpec,
    apply_overrides,
    config_hash,
    config_to_yaml,
    dispatch_by_type,
    load_config,
    load_config_text,
    load_yaml,
    parse_overrides,
)
from trainctl.config.base import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StrictModel,
    UnitInterval,
    registry_id,
)
from trainctl.config.loader import parse_yaml
from trainctl.config.schema import NoParams, Registries
from trainctl.errors import ConfigError
from trainctl.nn.layers.base import LayerParams
from trainctl.registry import Registry

# -- fake registries --------------------------------------------------------------------

ACTIVATIONS = Registry("activation")
for _name in ("linear", "relu", "sigmoid", "softmax"):
    ACTIVATIONS.register(_name)(_name)


class Dense:
    class Params(LayerParams):
        units: PositiveInt
        activation: registry_id(ACTIVATIONS) = "linear"
        use_bias: bool = True


class Dropout:
    class Params(LayerParams):
        rate: UnitInterval


class SGD:
    class Params(StrictModel):
        learning_rate: PositiveFloat = 0.01
        momentum: NonNegativeFloat = 0.0


class Adam:
    class Params(StrictModel):
        learning_rate: PositiveFloat = 0.001
        beta_1: UnitInterval = 0.9


class EarlyStopping:
    class Params(StrictModel):
        monitor: str = "val_loss"
        patience: NonNegativeInt = 0


class TerminateOnNaN:  # declares no Params: takes no options
    pass


class GeneratorSource(StrictModel):
    generator: str
    n_samples: PositiveInt


class CsvSource(StrictModel):
    csv: str
    target: str


class DataConfig(StrictModel):
    train: Union[GeneratorSource, CsvSource]
    sample_weight: str | None = None


def fake_registries() -> Registries:
    layers, optimizers = Registry("layer type"), Registry("optimizer")
    callbacks, losses, metrics = Registry("callback"), Registry("loss"), Registry("metric")
    layers.register("dense")(Dense)
    layers.register("dropout")(Dropout)
    optimizers.register("sgd")(SGD)
    optimizers.register("adam")(Adam)
    callbacks.register("early_stopping")(EarlyStopping)
    callbacks.register("terminate_on_nan", "terminateOnNaN")(TerminateOnNaN)
    losses.register("categorical_crossentropy")("categorical_crossentropy")
    losses.register("mean_squared_error", "mse")("mean_squared_error")
    metrics.register("accuracy", "acc")("accuracy")
    metrics.register("mean_absolute_error", "mae")("mean_absolute_error")
    return Registries(layers, optimizers, callbacks, losses, metrics, DataConfig)


GOOD = teacher_config(header="# a comment", name="tfjs-mlp", seed=3, units=32, n_features=784, n_classes=10,
                      optimizer="{type: adam, learning_rate: 1e-3}", train="{generator: blobs, n_samples: 1000}",
                      fit="{epochs: 5, batch_size: 64, validation_split: 0.2}",
                      tail="callbacks: [{type: early_stopping, patience: 3}, terminate_on_nan]\n")


def write(tmp_path, text: str, name: str = "config.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path, text: str, overrides=()):
    return load_config(write(tmp_path, text), overrides, registries=fake_registries())


# -- YAML loading --------------------------------------------------------------------------


def test_yaml_1_2_scalars():
    doc = parse_yaml("a: 1e-3\nb: 010\nc: yes\nd: 2024-01-01\ne: 0x1F\nf: ~\ng: 1_000\n"
                     "h: -.inf\ni: .5\nj: True\nk: 0o17\nl: 6e2\n", "x.yaml")
    assert doc.problems == []
    assert doc.data == {"a": 0.001, "b": 10, "c": "yes", "d": "2024-01-01", "e": 31, "f": None,
                        "g": "1_000", "h": -math.inf, "i": 0.5, "j": True, "k": 15, "l": 600.0}
    assert isinstance(doc.data["a"], float) and isinstance(doc.data["l"], float)


def test_positions_of_keys_and_values(tmp_path):
    data, positions = load_yaml(write(tmp_path, GOOD))
    assert data["model"]["layers"][1]["units"] == 10
    assert (positions.key("model.layers.1.units").line, positions.key("model.layers.1.units").col) == (7, 21)
    assert (positions.value("model.layers.1.units").line, positions.value("model.layers.1.units").col) == (7, 28)
    assert (positions.value("model.layers.0").line, positions.value("model.layers.0").col) == (6, 7)
    assert (positions.key("seed").line, positions.key("seed").col) == (3, 1)
    # A path that is not in the file falls back to its nearest ancestor.
    assert positions.value("fit.shuffle") == positions.value("fit")


def test_anchors_and_merge_keys_build_plain_values():
    doc = parse_yaml("base: &b {units: 3, activation: relu}\nlayers:\n  - <<: *b\n    units: 4\n"
                     "  - *b\n", "x.yaml")
    assert doc.problems == []
    assert doc.data["layers"] == [{"units": 4, "activation": "relu"}, {"units": 3, "activation": "relu"}]
    assert doc.positions.value("layers.0.units").line == 4  # the explicit key, not the merged one
    assert doc.positions.value("layers.0.activation").line == 1  # where the merged value is written


def test_loader_problems_are_all_collected():
    doc = parse_yaml("a: 1\na: 2\nb: !!binary aGVsbG8=\nc: {d: 1, d: 2}\n", "x.yaml")
    assert [p.format() for p in doc.problems] == [
        "x.yaml:2:1: a: duplicate key 'a' (first defined at line 1, column 1)",
        "x.yaml:3:4: b: tag !!binary is not allowed; a config holds only plain strings, "
        "numbers, booleans, lists and mappings",
        "x.yaml:4:11: c.d: duplicate key 'd' (first defined at line 4, column 5)",
    ]


def test_plain_tags_are_accepted():
    doc = parse_yaml("a: !!str 123\nb: !!float 1\nc: !!int '7'\n", "x.yaml")
    assert doc.problems == []
    assert doc.data == {"a": "123", "b": 1.0, "c": 7}


# -- the schema and dispatch ----------------------------------------------------------------


def test_good_config_validates(tmp_path):
    loaded = load(tmp_path, GOOD)
    config = loaded.config
    assert isinstance(config, Config)
    assert config.name == "tfjs-mlp" and config.seed == 3
    assert [layer.type for layer in config.model.layers] == ["dense", "dense"]
    assert config.model.layers[0].params.units == 32
    assert config.model.layers[0].params.input_shape == [784]
    assert config.optimizer == TypedSpec(type="adam", params=Adam.Params(learning_rate=0.001))
    assert config.optimizer.params.learning_rate == 0.001
    assert config.callbacks[1] == TypedSpec(type="terminate_on_nan", params=NoParams())
    assert config.fit.epochs == 5 and config.fit.batch_size == 64 and config.fit.shuffle is True
    assert config.data.train == GeneratorSource(generator="blobs", n_samples=1000)
    assert loaded.raw["fit"]["epochs"] == 5
    assert loaded.path.endswith("config.yaml")


def test_camel_case_keys_and_ids_are_accepted(tmp_path):
    loaded = load(tmp_path, """\
        name: camel
        model:
          layers:
            - {type: Dense, units: 4, inputShape: [2], useBias: false}
        optimizer: {type: adam, learningRate: 0.5}
        loss: categoricalCrossentropy
        metrics: [acc, MAE]
        data: {train: {csv: iris.csv, target: species}, sampleWeight: w}
        fit: {batchSize: 8, validationSplit: 0.25, initialEpoch: 1, epochs: 2, classWeight: {0: 1, 1: 2.5}}
        callbacks: [terminateOnNaN]
        """)
    config = loaded.config
    assert config.model.layers[0].params.input_shape == [2]
    assert config.model.layers[0].params.use_bias is False
    assert config.optimizer.params.learning_rate == 0.5
    assert config.loss == "categorical_crossentropy"
    assert config.metrics == ["acc", "MAE"]  # kept as written: they are the log keys (issue 14)
    assert config.fit.batch_size == 8 and config.fit.validation_split == 0.25
    assert config.fit.initial_epoch == 1 and config.fit.class_weight == {0: 1.0, 1: 2.5}
    assert config.data.sample_weight == "w"
    assert config.callbacks[0].type == "terminate_on_nan"


def test_defaults_are_filled(tmp_path):
    config = load(tmp_path, """\
        name: minimal
        model: {layers: [{type: dense, units: 1, input_shape: [3]}]}
        optimizer: sgd
        loss: mse
        data: {train: {generator: line, n_samples: 10}}
        """).config
    assert config.seed == 0 and config.metrics == [] and config.callbacks == []
    assert config.optimizer == TypedSpec(type="sgd", params=SGD.Params())
    assert config.loss == "mean_squared_error"
    fit = config.fit
    assert (fit.epochs, fit.batch_size, fit.shuffle, fit.validation_split) == (1, 32, True, 0.0)
    assert (fit.initial_epoch, fit.validation_freq, fit.verbose, fit.yield_every) == (0, 1, 1, "auto")
    assert fit.validation_batch_size is None and fit.class_weight is None


def test_fit_accepts_every_tfjs_option(tmp_path):
    fit = load(tmp_path, GOOD.replace(
        "fit: {epochs: 5, batch_size: 64, validation_split: 0.2}",
        "fit: {epochs: 5, batchSize: 64, shuffle: false, validationSplit: 0.1, validationBatchSize: 16,"
        " validationFreq: 2, initialEpoch: 1, classWeight: {0: 2}, batchesPerEpoch: 10,"
        " validationBatches: 3, verbose: 0, yieldEvery: epoch}")).config.fit
    assert (fit.shuffle, fit.validation_batch_size, fit.validation_freq) == (False, 16, 2)
    assert (fit.batches_per_epoch, fit.validation_batches, fit.verbose, fit.yield_every) == (10, 3, 0, "epoch")
    assert fit.steps_per_epoch is None and fit.validation_steps is None


def test_dispatch_by_type_collects_located_problems():
    registries = fake_registries()
    spec, problems = dispatch_by_type(registries.layers, {"type": "dense", "units": 2}, ("layers", 0))
    assert problems == [] and spec == TypedSpec(type="dense", params=Dense.Params(units=2))
    spec, problems = dispatch_by_type(registries.layers, {"type": "dense", "unit": 0, "activation": "rel"},
                                      ("layers", 0))
    assert spec is None
    assert sorted((p.dotted, p.at, p.message) for p in problems) == [
        ("layers.0", "parent", "missing required key 'units'"),
        ("layers.0.activation", "value", "unknown activation 'rel'; did you mean 'relu'?"),
        ("layers.0.unit", "key", "unknown key 'unit'; did you mean 'units'?"),
    ]
    spec, problems = dispatch_by_type(registries.optimizers, "Adam", ("optimizer",))
    assert problems == [] and spec.type == "adam" and spec.params.learning_rate == 0.001


def test_importing_the_config_package_does_not_import_numba_or_registries():
    code = ("import sys, trainctl.config; "
            "bad = [m for m in ('numba', 'trainctl.nn.layers', 'trainctl.nn.optimizers', 'trainctl.data') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- overrides ------------------------------------------------------------------------------


def test_parse_overrides_reads_values_as_yaml():
    overrides = parse_overrides(["fit.epochs=10", "optimizer={type: adam, learning_rate: 1e-3}",
                                 "name=my run", "fit.class_weight=", "model.layers.0.input_shape=[4, 2]"])
    assert [o.dotted for o in overrides] == ["fit.epochs", "optimizer", "name", "fit.class_weight",
                                            "model.layers.0.input_shape"]
    assert [o.value for o in overrides] == [10, {"type": "adam", "learning_rate": 0.001}, "my run",
                                           None, [4, 2]]


def test_set_with_list_index_and_new_keys(tmp_path):
    loaded = load(tmp_path, GOOD, ["model.layers.0.units=64", "fit.epochs=7", "fit.shuffle=false",
                                   "model.layers.1.use_bias=false", "seed=9"])
    config = loaded.config
    assert config.model.layers[0].params.units == 64
    assert config.model.layers[1].params.use_bias is False  # a key the file did not have
    assert (config.fit.epochs, config.fit.shuffle, config.seed) == (7, False, 9)
    assert loaded.raw["model"]["layers"][0]["units"] == 64


def test_set_matches_either_spelling_of_an_existing_key(tmp_path):
    loaded = load(tmp_path, GOOD.replace("batch_size: 64", "batchSize: 64"), ["fit.batch_size=16"])
    assert loaded.raw["fit"] == {"epochs": 5, "batchSize": 16, "validation_split": 0.2}
    assert loaded.config.fit.batch_size == 16


def test_set_into_an_id_shorthand_widens_it(tmp_path):
    loaded = load(tmp_path, GOOD.replace("optimizer: {type: adam, learning_rate: 1e-3}", "optimizer: sgd"),
                  ["optimizer.learning_rate=0.5", "callbacks.1.type=early_stopping"])
    assert loaded.config.optimizer == TypedSpec(type="sgd", params=SGD.Params(learning_rate=0.5))
    assert loaded.config.callbacks[1].type == "early_stopping"


def test_set_creates_missing_sections(tmp_path):
    text = GOOD.replace("fit: {epochs: 5, batch_size: 64, validation_split: 0.2}\n", "")
    config = load(tmp_path, text, ["fit.epochs=3", "fit.class_weight.1=4"]).config
    assert config.fit.epochs == 3 and config.fit.class_weight == {1: 4.0}


def test_apply_overrides_leaves_the_input_alone():
    data = {"fit": {"epochs": 1}, "model": {"layers": [{"units": 1}]}}
    result = apply_overrides(data, ["fit.epochs=2", "model.layers.0.units=5"])
    assert result == {"fit": {"epochs": 2}, "model": {"layers": [{"units": 5}]}}
    assert data == {"fit": {"epochs": 1}, "model": {"layers": [{"units": 1}]}}


def test_apply_overrides_reports_every_bad_path():
    data = {"fit": {"epochs": 1}, "model": {"layers": [{"units": 1}]}}
    with pytest.raises(ConfigError) as caught:
        apply_overrides(data, ["fit.epochs.x=2", "model.layers.1.units=5", "model.layers.x=1"])
    assert caught.value.problems == [
        "--set fit.epochs.x: cannot set 'x' inside fit.epochs, which is 1, not a mapping or a list",
        "--set model.layers.1.units: index 1 is out of range; model.layers has 1 item (indices 0 to 0)",
        "--set model.layers.x: model.layers is a list; 'x' is not an index (0, 1, ...)",
    ]


# -- the resolved config ----------------------------------------------------------------------


def test_to_dict_is_canonical_snake_case_with_defaults(tmp_path):
    camel = GOOD.replace("input_shape", "inputShape").replace("learning_rate", "learningRate")
    camel = camel.replace("batch_size", "batchSize").replace("early_stopping", "earlyStopping")
    camel = camel.replace("categorical_crossentropy", "categoricalCrossentropy")
    camel = camel.replace("[accuracy]", "[acc]").replace("type: dense", "type: Dense")
    resolved = load(tmp_path, camel).config.to_dict()
    assert resolved["model"]["layers"][0] == {"type": "dense", "input_shape": [784], "trainable": True,
                                              "units": 32, "activation": "relu", "use_bias": True}
    assert resolved["optimizer"] == {"type": "adam", "learning_rate": 0.001, "beta_1": 0.9}
    assert resolved["loss"] == "categorical_crossentropy" and resolved["metrics"] == ["acc"]  # metric ids as written (log keys)
    assert resolved["callbacks"] == [{"type": "early_stopping", "monitor": "val_loss", "patience": 3},
                                     {"type": "terminate_on_nan"}]
    assert resolved["fit"]["batch_size"] == 64 and resolved["fit"]["shuffle"] is True
    assert resolved["data"] == {"train": {"generator": "blobs", "n_samples": 1000}}
    canonical = load(tmp_path, GOOD).config.to_dict()
    assert canonical == {**resolved, "metrics": ["accuracy"]}  # everything canonical but the metric log keys


def test_yaml_round_trip_gives_an_equal_config(tmp_path):
    config = load(tmp_path, GOOD, ["fit.class_weight={0: 1, 1: 3.5}", "name='1e3'"]).config
    text = config_to_yaml(config)
    again = load_config_text(text, "saved.yaml", registries=fake_registries()).config
    assert again == config
    assert again.name == "1e3"  # a string that looks like a number stays a string
    assert config_hash(again) == config_hash(config)
    assert config_to_yaml(again) == text


def test_config_hash_ignores_spelling_but_not_values(tmp_path):
    base = load(tmp_path, GOOD).config
    spelled = load(tmp_path, GOOD.replace("batch_size", "batchSize").replace("type: dense", "type: Dense")
                   .replace("1e-3", "0.001")).config
    changed = load(tmp_path, GOOD, ["fit.epochs=6"]).config
    assert config_hash(base) == config_hash(spelled)
    assert config_hash(base) != config_hash(changed)
    assert len(config_hash(base)) == 64


# -- integration with the real registries --------------------------------------------------------


def _real_registries_or_skip():
    for module in ("trainctl.nn.layers", "trainctl.nn.optimizers", "trainctl.nn.losses", "trainctl.nn.metrics",
                   "trainctl.data.config"):
        pytest.importorskip(module)


REAL = """\
name: real
model:
  layers:
    - {type: dense, units: 8, activation: relu, inputShape: [4]}
    - {type: dense, units: 3, activation: softmax}
optimizer: {type: adam, learningRate: 1e-3}
loss: categoricalCrossentropy
metrics: [accuracy]
data:
  train: {generator: teacher, n_samples: 100, n_features: 4, n_classes: 3}
fit: {epochs: 2, batchSize: 16, validationSplit: 0.25}
"""


def test_real_registries_round_trip(tmp_path):
    _real_registries_or_skip()
    loaded = load_config(write(tmp_path, REAL))
    config = loaded.config
    assert config.optimizer.type == "adam" and config.optimizer.params.learning_rate == 0.001
    assert config.loss == "categorical_crossentropy"
    assert [layer.type for layer in config.model.layers] == ["dense", "dense"]
    again = load_config_text(config_to_yaml(config), "saved.yaml").config
    assert again == config and config_hash(again) == config_hash(config)


def test_real_registries_report_located_problems(tmp_path):
    _real_registries_or_skip()
    bad = REAL.replace("units: 8", "unts: 8").replace("type: adam", "type: adamm")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, bad), ["fit.batch_size=0"])
    path = tmp_path / "config.yaml"
    assert caught.value.problems == [
        f"{path}:4:21: model.layers.0.unts: unknown key 'unts'; did you mean 'units'?",
        f"{path}:6:19: optimizer.type: unknown optimizer 'adamm'; did you mean 'adam'?",
        f"--set fit.batch_size (overrides {path}:11:18): fit.batchSize: must be > 0, got 0",  # as the file spells it
    ]


def test_shipped_configs_load_and_round_trip():
    _real_registries_or_skip()
    import pathlib

    configs = sorted((pathlib.Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))
    if not configs:
        pytest.skip("no shipped configs yet")
    for path in configs:
        config = load_config(path).config
        assert load_config_text(config_to_yaml(config), str(path)).config == config, path


def test_typed_spec_params_are_pydantic_models(tmp_path):
    config = load(tmp_path, GOOD).config
    for spec in [*config.model.layers, config.optimizer, *config.callbacks]:
        assert isinstance(spec.params, BaseModel)
