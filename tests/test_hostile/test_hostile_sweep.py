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
