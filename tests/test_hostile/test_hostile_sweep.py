"""Issue 15, the size sweep: every integer key of the config schema (found by walking the
models, so a new key is swept without editing this file) at 10^7, 10^12, 2^63 and 10^30.

Each case is validated, and whatever validate accepts is trained with --max-memory 1GiB,
through the CLI's entry point in two long-lived worker processes (sweep_worker.py: no
interpreter start-up per case), watched for an uncaught exception and its own peak RSS
(< 300 MB for validate, < 1 GiB for train), and stopped after a few seconds if it is still
training (a 10^7-epoch run is a legitimate, bounded-memory run)."""

from __future__ import annotations

import re
import time
import types
import typing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel

from tests.fixtures import teacher_source
from tests.test_hostile.common import BASE, MB, write

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
GEN = teacher_source()


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


class Workers:
    """`size` sweep_worker.py processes, each running the cases given to it in turn. A case
    that overruns its limit by far (stuck in one compiled call, where SIGALRM cannot reach
    Python) has its worker killed and replaced; its peak RSS is read first."""

    WORKER = str(Path(__file__).with_name("sweep_worker.py"))

    def __init__(self, size: int, cwd: Path):
        self.size, self.cwd = size, cwd
        self.processes: list = [None] * size

    def _spawn(self):
        import os
        import resource
        import subprocess
        import sys

        def limit():  # protect the machine: a case needing more is a blow-up anyway
            resource.setrlimit(resource.RLIMIT_AS, (6 * GIB, 6 * GIB))

        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "COLUMNS": "200"}
        return subprocess.Popen([sys.executable, self.WORKER], cwd=self.cwd, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                                preexec_fn=limit)

    def _run_one(self, slot: int, args: list[str], limit: float) -> dict:
        import json
        import select

        process = self.processes[slot]
        if process is None or process.poll() is not None:
            process = self.processes[slot] = self._spawn()
        process.stdin.write(json.dumps({"args": args, "limit": limit}) + "\n")
        process.stdin.flush()
        deadline = time.monotonic() + limit + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            line = process.stdout.readline()
            if not line:  # the worker died: a crash of the case (a blow-up past RLIMIT_AS, a segfault)
                return {"code": process.wait(), "timed_out": False, "exception": "worker died", "stderr": "", "rss": 0}
            if line.startswith("@@CASE "):
                return json.loads(line[len("@@CASE "):])
        with open(f"/proc/{process.pid}/status") as status:  # overran: bounded so far, as a timeout
            rss = next(int(line.split()[1]) << 10 for line in status if line.startswith("VmHWM"))
        process.kill()
        process.wait()
        self.processes[slot] = None
        return {"code": None, "timed_out": True, "exception": None, "stderr": "", "rss": rss}

    def map(self, cases: list[list[str]], limit: float) -> list[dict]:
        """Every case's outcome, in order; case i runs on worker i % size."""
        results: list = [None] * len(cases)

        def serve(slot: int) -> None:
            for index in range(slot, len(cases), self.size):
                results[index] = self._run_one(slot, cases[index], limit)

        with ThreadPoolExecutor(self.size) as pool:
            list(pool.map(serve, range(self.size)))
        return results

    def close(self) -> None:
        for process in self.processes:
            if process is not None:
                process.stdin.close()
                process.wait(timeout=30)


def test_every_integer_key_at_every_size(tmp_path):
    """validate, then train whatever validate accepts, each through the CLI's entry point in
    two long-lived worker processes (tests/test_hostile/sweep_worker.py): no uncaught
    exception, exit 0 or 1 with error lines only, peak RSS per case < 300 MB for validate and
    < 1 GiB for train; a train still running at its limit is a legitimate bounded run."""
    keys = integer_keys(tmp_path)
    assert len(keys) >= 40, len(keys)
    cases, configs = [], {}
    for text, key, is_list, is_dict in keys:
        path = configs.setdefault(text, write(tmp_path, f"c{len(configs)}.yaml", text))
        for value in VALUES:
            shown = f"[{value}]" if is_list else f"{{{value}: 1.0}}" if is_dict else str(value)
            cases.append((path, key, value, shown))
    workers = Workers(2, tmp_path)
    try:
        validated = workers.map([["validate", str(path), "--set", f"{key}={shown}", "--max-memory", "1GiB"]
                                 for path, key, _, shown in cases], limit=60)
        accepted, problems = [], []
        for (path, key, value, shown), outcome in zip(cases, validated):
            lines = outcome["stderr"].strip().splitlines()
            if outcome["exception"] or outcome["timed_out"]:
                problems.append(f"validate {key}={value}: {outcome['exception'] or 'still running after 60 s'}")
            elif outcome["rss"] >= 300 * MB:
                problems.append(f"validate {key}={value}: peak RSS {outcome['rss'] / MB:.0f} MB")
            elif outcome["code"] == 0:
                if value >= 2**31:
                    problems.append(f"{key}={value}: accepted by validate")
                accepted.append((path, key, shown))
            elif outcome["code"] != 1 or not lines or not all(re.match(r"error: ", line) for line in lines):
                problems.append(f"validate {key}={value}: exit {outcome['code']}: {outcome['stderr'][-300:]}")
        assert not problems, "\n".join(problems)
        assert len(accepted) >= 20, len(accepted)  # the train stage has cases to run
        trained = workers.map([["train", str(path), "-q", "--out", str(tmp_path / "runs" / re.sub(r"\W", "_", f"{key}{shown}")),
                                "--set", f"{key}={shown}", "--max-memory", "1GiB", "--threads", "1"]
                               for path, key, shown in accepted], limit=1)
    finally:
        workers.close()
    for (path, key, shown), outcome in zip(accepted, trained):
        if outcome["exception"] or outcome["code"] not in (0, 1, None):
            problems.append(f"train {key}={shown}: exit {outcome['code']}: {outcome['exception'] or outcome['stderr']}")
        if outcome["rss"] >= GIB:
            problems.append(f"train {key}={shown}: peak RSS {outcome['rss'] / MB:.0f} MB")
    assert not problems, "\n".join(problems)
