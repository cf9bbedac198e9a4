"""Issue 15, the size sweep: every integer key of the config schema (found by walking the
models, so a new key is swept without editing this file) at 10^7, 10^12, 2^63 and 10^30.

validate runs in-process for each (it builds from shapes alone, so RSS is not the point
there); whatever validate accepts is then trained in a subprocess with --max-memory 1GiB,
watched for a traceback and its peak RSS (< 1 GiB), and stopped after a few seconds if it
is still training (a 10^7-epoch run is a legitimate, bounded-memory run)."""

from __future__ import annotations

import re
import types
import typing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Union

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from tests.test_hostile.common import BASE, MB, TRAINCTL, write
from tests.test_hostile.fuzz import run_process

VALUES = [10**7, 10**12, 2**63, 10**30]
GIB = 1 << 30


def _has_int(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is int:
        return True
    if origin is Annotated:
        return _has_int(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, tuple, dict):
        return any(_has_int(arg) for arg in typing.get_args(annotation))
    return False


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _is_list(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return all(_is_list(a) or a is type(None) for a in typing.get_args(annotation))
    return origin is list


def _is_dict(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_is_dict(a) for a in typing.get_args(annotation))
    return origin is dict


def _models(annotation: Any) -> list[type[BaseModel]]:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _models(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, tuple, dict):
        return [m for a in typing.get_args(annotation) for m in _models(a)]
    return [annotation] if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []


SEQUENCE = """\
name: sweep-seq
model:
  layers:
    - LAYER
    - {type: dense, units: 1}
optimizer: adam
loss: mean_squared_error
data:
  train: {generator: time_series, window: 6, n_samples: 64}
fit: {epochs: 1, batch_size: 16}
"""
# Images [8, 8, 2] and sequences [6, 4] for the layer zoo: LAYER first (it holds input_shape).
SHAPED = """\
name: sweep-shaped
model:
  layers:
    - LAYER
    - {type: flatten}
    - {type: dense, units: 1}
optimizer: adam
loss: mean_squared_error
data:
  train: {generator: random_normal, n_samples: 32, shape: SHAPE, target_shape: [1]}
  preprocessing: STEPS
fit: {epochs: 1, batch_size: 16}
"""
GEN = "{generator: teacher, n_samples: 64, n_features: 4, n_classes: 3, hidden: 4}"


def templates(root: Path) -> dict[str, tuple[str, str]]:
    """model class name → (config text holding it, dotted path of the mapping it validates)."""
    (root / "data.csv").write_text("a,b,c,d,label\n" + "".join(f"{i},{i},{i},{i},{i % 3}\n" for i in range(20)))
    layers = lambda extra: BASE.replace("    - {type: dense, units: 3, activation: softmax}",
                                        f"    - {extra}\n    - {{type: dense, units: 3, activation: softmax}}")
    data = lambda source: BASE.replace(GEN, source)
    found = {
        "Config": (BASE, ""), "FitConfig": (BASE, "fit"),
        "dense": (BASE, "model.layers.0"), "dropout": (BASE, "model.layers.1"),
        "flatten": (layers("{type: flatten}"), "model.layers.2"),
        "reshape": (layers("{type: reshape, target_shape: [8]}"), "model.layers.2"),
        "activation": (layers("{type: activation, activation: relu}"), "model.layers.2"),
        "initializer": (BASE.replace("units: 8,", "units: 8, kernel_initializer: {type: glorot_uniform},"),
                        "model.layers.0.kernel_initializer"),
        "TeacherGenerator": (BASE, "data.train"),
        "CsvSource": (data(f"{{csv: {root}/data.csv, target: label}}"), "data.train"),
        "StreamConfig": (data(f"{{stream: {{source: {GEN}, shuffle: {{buffer_size: 8}}}}}}"), "data.train.stream"),
        "ShuffleConfig": (data(f"{{stream: {{source: {GEN}, shuffle: {{buffer_size: 8}}}}}}"), "data.train.stream.shuffle"),
        "OneHot": (BASE.replace("  validation_split: 0.25", "  validation_split: 0.25\n  preprocessing: [{type: one_hot}]"),
                   "data.preprocessing.0"),
        "Reshape": (BASE.replace("  validation_split: 0.25", "  validation_split: 0.25\n  preprocessing: [{type: reshape, target_shape: [4]}]"),
                    "data.preprocessing.0"),
    }
    seq = lambda first: SEQUENCE.replace("LAYER", first)
    found.update({
        "lstm": (seq("{type: lstm, units: 8, input_shape: [6, 1]}"), "model.layers.0"),
        "gru": (seq("{type: gru, units: 8, input_shape: [6, 1]}"), "model.layers.0"),
        "simple_rnn": (seq("{type: simple_rnn, units: 8, input_shape: [6, 1]}"), "model.layers.0"),
        "bidirectional": (seq("{type: bidirectional, layer: {type: lstm, units: 4}, input_shape: [6, 1]}"), "model.layers.0"),
        "time_distributed": (seq("{type: time_distributed, layer: {type: dense, units: 4}, input_shape: [6, 1]}\n    - {type: flatten}"),
                             "model.layers.0"),
        "masking": (seq("{type: masking, input_shape: [6, 1]}\n    - {type: lstm, units: 4}"), "model.layers.0"),
    })
    def shaped(layer: str, shape: str = "[8, 8, 2]", steps: str = "[]") -> tuple[str, str]:
        return (SHAPED.replace("LAYER", layer.replace("}", f", input_shape: {shape}}}", 1) if "input_shape" not in layer
                               else layer).replace("SHAPE", shape).replace("STEPS", steps), "model.layers.0")

    image = {"conv2d": "{type: conv2d, filters: 2, kernel_size: 3}",
             "conv2d_transpose": "{type: conv2d_transpose, filters: 2, kernel_size: 3}",
             "depthwise_conv2d": "{type: depthwise_conv2d, kernel_size: 3}",
             "separable_conv2d": "{type: separable_conv2d, filters: 2, kernel_size: 3}",
             "max_pooling2d": "{type: max_pooling2d}", "average_pooling2d": "{type: average_pooling2d}",
             "global_average_pooling2d": "{type: global_average_pooling2d}",
             "global_max_pooling2d": "{type: global_max_pooling2d}", "cropping2d": "{type: cropping2d, cropping: 1}",
             "zero_padding2d": "{type: zero_padding2d, padding: 1}", "up_sampling2d": "{type: up_sampling2d, size: 2}",
             "spatial_dropout2d": "{type: spatial_dropout2d, rate: 0.1}",
             "batch_normalization": "{type: batch_normalization}", "layer_normalization": "{type: layer_normalization}",
             "elu": "{type: elu}", "leaky_re_lu": "{type: leaky_re_lu}", "prelu": "{type: prelu}", "re_lu": "{type: re_lu}",
             "softmax": "{type: softmax}", "thresholded_re_lu": "{type: thresholded_re_lu}",
             "gaussian_noise": "{type: gaussian_noise, stddev: 0.1}", "gaussian_dropout": "{type: gaussian_dropout, rate: 0.1}",
             "alpha_dropout": "{type: alpha_dropout, rate: 0.1}", "permute": "{type: permute, dims: [2, 1, 3]}"}
    sequence = {"conv1d": "{type: conv1d, filters: 2, kernel_size: 3}", "max_pooling1d": "{type: max_pooling1d}",
                "average_pooling1d": "{type: average_pooling1d}",
                "global_average_pooling1d": "{type: global_average_pooling1d}",
                "global_max_pooling1d": "{type: global_max_pooling1d}", "cropping1d": "{type: cropping1d, cropping: 1}",
                "zero_padding1d": "{type: zero_padding1d, padding: 1}", "up_sampling1d": "{type: up_sampling1d, size: 2}",
                "spatial_dropout1d": "{type: spatial_dropout1d, rate: 0.1}"}
    found.update({name: shaped(layer) for name, layer in image.items()})
    found.update({name: shaped(layer, "[6, 4]") for name, layer in sequence.items()})
    found["repeat_vector"] = shaped("{type: repeat_vector, n: 2}", "[4]")
    found["embedding"] = (seq("{type: embedding, input_dim: 10, output_dim: 4, input_shape: [6]}\n    - {type: flatten}")
                          .replace("{generator: time_series, window: 6, n_samples: 64}",
                                   "{generator: token_sequences, vocab_size: 10, length: 6, n_samples: 64}"), "model.layers.0")
    for step in ("random_flip", "random_translation", "random_rotation", "random_zoom"):
        options = {"random_flip": "", "random_translation": ", height_factor: 0.1, width_factor: 0.1",
                   "random_rotation": ", factor: 0.1", "random_zoom": ", height_factor: 0.1"}[step]
        text, _ = shaped("{type: conv2d, filters: 2, kernel_size: 3}", steps=f"[{{type: {step}{options}}}]")
        found["".join(part.capitalize() for part in step.split("_"))] = (text, "data.preprocessing.0")
    from trainctl.data.config import GENERATOR_CONFIGS

    for name, cls in GENERATOR_CONFIGS.items():
        found.setdefault(cls.__name__, (data(f"{{generator: {name}}}"), "data.train"))
    from trainctl.train.callbacks import CALLBACKS

    for name in CALLBACKS.names():
        params = CALLBACKS.get(name).Params
        required = {key: ("log.csv" if field.annotation is str else 0.5 if field.annotation is float else 2)
                    for key, field in params.model_fields.items() if field.is_required()}
        extra = "".join(f", {k}: {v}" for k, v in required.items())
        found[f"callback:{name}"] = (BASE + f"callbacks: [{{type: {name}{extra}}}]\n", "callbacks.0")
    return found


def integer_keys(root: Path) -> list[tuple[str, str, bool, bool]]:
    """(config text, dotted key, is a list, is a dict key) for every integer field reachable."""
    from trainctl.config.schema import Config, FitConfig
    from trainctl.data.config import GENERATOR_CONFIGS, PREPROCESSING_CONFIGS, ShuffleConfig, StreamConfig, CsvSource
    from trainctl.nn.initializers import INITIALIZERS
    from trainctl.nn.layers import LAYERS
    from trainctl.train.callbacks import CALLBACKS

    table = templates(root)
    roots: list[tuple[str, type[BaseModel]]] = [("Config", Config), ("FitConfig", FitConfig)]
    roots += [(name, LAYERS.get(name).Params) for name in LAYERS.names()]
    roots += [(f"callback:{name}", CALLBACKS.get(name).Params) for name in CALLBACKS.names()]
    roots += [(cls.__name__, cls) for cls in GENERATOR_CONFIGS.values()]
    roots += [(cls.__name__, cls) for cls in PREPROCESSING_CONFIGS.values()]
    roots += [("StreamConfig", StreamConfig), ("ShuffleConfig", ShuffleConfig), ("CsvSource", CsvSource)]
    roots += [("initializer", INITIALIZERS.get(name).Params) for name in INITIALIZERS.names()
              if getattr(INITIALIZERS.get(name), "Params", None) is not None]
    keys, missing = [], []
    for name, model in roots:
        for field_name, field in model.model_fields.items():
            if not _has_int(field.annotation):
                continue
            if name not in table:
                missing.append(f"{name}.{field_name}")
                continue
            text, prefix = table[name]
            key = f"{prefix}.{field_name}" if prefix else field_name
            keys.append((text, key, _is_list(field.annotation), _is_dict(field.annotation)))
    assert not missing, f"integer keys without a sweep template (add one to templates()): {missing}"
    return sorted(set(keys), key=lambda item: item[1])


def test_every_integer_key_at_every_size(tmp_path):
    from trainctl.cli import app

    runner = CliRunner()
    keys = integer_keys(tmp_path)
    assert len(keys) >= 40, len(keys)
    accepted, problems, configs = [], [], {}
    for text, key, is_list, is_dict in keys:
        path = configs.setdefault(text, write(tmp_path, f"c{len(configs)}.yaml", text))
        for value in VALUES:
            shown = f"[{value}]" if is_list else f"{{{value}: 1.0}}" if is_dict else str(value)
            result = runner.invoke(app, ["validate", str(path), "--set", f"{key}={shown}", "--max-memory", "1GiB"])
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                problems.append(f"{key}={value}: {type(result.exception).__name__}: {result.exception}")
                continue
            output = result.output.strip().splitlines()
            if result.exit_code == 0:
                if value >= 2**31:
                    problems.append(f"{key}={value}: accepted by validate")
                accepted.append((path, key, shown))
            elif result.exit_code != 1 or not output or not all(re.match(r"error: ", line) for line in output):
                problems.append(f"{key}={value}: exit {result.exit_code}: {result.output[-300:]}")
    assert not problems, "\n".join(problems)

    def train(case):
        path, key, shown = case
        out = tmp_path / "runs" / re.sub(r"\W", "_", f"{key}{shown}")
        code, _, err, rss = run_process([*TRAINCTL, "train", str(path), "-q", "--out", str(out), "--set",
                                         f"{key}={shown}", "--max-memory", "1GiB", "--threads", "1"],
                                        tmp_path, timeout=6, env={"OMP_NUM_THREADS": "1"})
        bad = []
        if "Traceback" in err or (code not in (0, 1, None)):
            bad.append(f"train {key}={shown}: exit {code}: {err[-400:]}")
        if rss >= GIB:
            bad.append(f"train {key}={shown}: peak RSS {rss / MB:.0f} MB")
        return bad

    with ThreadPoolExecutor(4) as pool:
        problems = [p for found in pool.map(train, accepted) for p in found]
    assert not problems, "\n".join(problems)
