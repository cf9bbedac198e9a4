"""Real TensorFlow.js 4.22 in Node as a test peer (see tests/peers/README.md).

TF.js is found in `$TRAINCTL_TFJS_DIR` (a node_modules folder, or a folder holding one),
else `<repo>/.peers/tfjs/node_modules` (what `.ci/run` installs). Tests use the `tfjs`
fixture (or `requires_tfjs`), which skips cleanly when node or the module is absent.

Models go to TF.js through trainctl's own TF.js export (`trainctl.runs.formats.tfjs`) and
are loaded there with `tf.loadLayersModel`, so every parity test also checks the export.
Arrays travel as little-endian float32 in base64.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("tfjs_runner.js")
TIMEOUT_S = 120


def tfjs_dir() -> Path | None:
    """The node_modules folder holding @tensorflow/tfjs, or None."""
    candidates = []
    if os.environ.get("TRAINCTL_TFJS_DIR"):
        root = Path(os.environ["TRAINCTL_TFJS_DIR"])
        candidates += [root, root / "node_modules"]
    candidates.append(REPO / ".peers" / "tfjs" / "node_modules")
    for candidate in candidates:
        if (candidate / "@tensorflow" / "tfjs" / "package.json").is_file():
            return candidate
    return None


@functools.cache
def tfjs_available() -> bool:
    return shutil.which("node") is not None and tfjs_dir() is not None


def tfjs_version() -> str | None:
    folder = tfjs_dir()
    if folder is None:
        return None
    return json.loads((folder / "@tensorflow" / "tfjs" / "package.json").read_text())["version"]


_SKIP_REASON = "TF.js peer absent: needs node and @tensorflow/tfjs in $TRAINCTL_TFJS_DIR or .peers/tfjs"
requires_tfjs = pytest.mark.skipif(not tfjs_available(), reason=_SKIP_REASON)


@pytest.fixture
def tfjs():
    """Skips the test when TF.js is absent; otherwise the module (call its functions)."""
    if not tfjs_available():
        pytest.skip(_SKIP_REASON)
    import tests.peers.tfjs as module

    return module


# -- arrays ---------------------------------------------------------------------------------
def encode(array: np.ndarray) -> dict[str, Any]:
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.integer):
        data, dtype = np.ascontiguousarray(array, "<i4"), "int32"
    else:
        data, dtype = np.ascontiguousarray(array, "<f4"), "float32"
    return {"dtype": dtype, "shape": list(array.shape), "b64": base64.b64encode(data.tobytes()).decode()}


def decode(item: dict[str, Any]) -> np.ndarray:
    dtype = "<i4" if item["dtype"] == "int32" else "<f4"
    return np.frombuffer(base64.b64decode(item["b64"]), dtype).reshape(item["shape"]).copy()


# -- the runner ------------------------------------------------------------------------------
class TfjsRunError(RuntimeError):
    pass


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Send one request to tfjs_runner.js (see its header for the keys); returns its result
    with arrays still encoded. Raises TfjsRunError with TF.js's message on failure."""
    folder = tfjs_dir()
    if folder is None or shutil.which("node") is None:
        raise TfjsRunError(_SKIP_REASON)
    with tempfile.TemporaryDirectory(prefix="trainctl-tfjs-") as tmp:
        out = Path(tmp) / "result.json"
        proc = subprocess.run(["node", str(RUNNER), str(out)], input=json.dumps({"tfjs_dir": str(folder), **request}),
                              capture_output=True, text=True, timeout=TIMEOUT_S)
        if proc.returncode != 0:
            raise TfjsRunError(proc.stderr.strip() or f"node exited with {proc.returncode}")
        return json.loads(out.read_text())


def run_batch(requests: list[dict[str, Any]]) -> list[dict[str, Any] | TfjsRunError]:
    """Several requests in one node process (saves ~0.7 s of start-up each); a failed one
    comes back as a TfjsRunError instance in its place."""
    raw = run({"requests": requests})["results"]
    return [TfjsRunError(r["error"]) if "error" in r else r for r in raw]


@dataclass
class TfjsResult:
    predictions: list[np.ndarray] = field(default_factory=list)  # before training
    losses: list[list[float]] = field(default_factory=list)  # per trainOnBatch: [loss, *metrics]
    predictions_after: list[np.ndarray] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # after training
    summary_rows: list[tuple[str, str, tuple, int]] = field(default_factory=list)
    summary_lines: list[str] = field(default_factory=list)
    trainable_counts: tuple[int, int] = (0, 0)
    metrics_names: list[str] | None = None
    training_config: dict[str, Any] | None = None
    fit_history: dict[str, list[float]] | None = None
    losses_more: list[list[float]] = field(default_factory=list)  # train_more steps, after saving
    weights_more: dict[str, np.ndarray] = field(default_factory=dict)


def result_of(raw: dict[str, Any] | TfjsRunError) -> TfjsResult:
    """A raw runner answer (from `run` / `run_batch`) with its arrays decoded."""
    if isinstance(raw, TfjsRunError):
        raise raw
    return _result(raw)


def _result(raw: dict[str, Any]) -> TfjsResult:
    return TfjsResult(
        predictions=[decode(a) for a in raw.get("predictions") or []],
        losses=raw.get("losses") or [],
        predictions_after=[decode(a) for a in raw.get("predictions_after") or []],
        weights={k: decode(v) for k, v in (raw.get("weights") or {}).items()},
        summary_rows=[(n, c, tuple(s), int(p)) for n, c, s, p in raw.get("summary_rows") or []],
        summary_lines=raw.get("summary_lines") or [],
        trainable_counts=tuple(raw.get("trainable_counts") or (0, 0)),
        metrics_names=raw.get("metrics_names"),
        training_config=raw.get("training_config"),
        fit_history=raw.get("fit_history"),
        losses_more=raw.get("losses_more") or [],
        weights_more={k: decode(v) for k, v in (raw.get("weights_more") or {}).items()},
    )


def _batches(batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> list[dict[str, Any]]:
    return [{"x": encode(x), "y": encode(y)} for x, y in batches]


def model_dir_request(model_dir: str | Path, *, predict: Sequence[np.ndarray] = (), compile: dict | None = None,
                      train: Iterable[tuple[np.ndarray, np.ndarray]] = (), predict_after: Sequence[np.ndarray] = (),
                      fit: dict | None = None, save_dir: str | Path | None = None,
                      include_optimizer: bool = False) -> dict[str, Any]:
    """The request `run_model_dir` sends (for `run_batch`)."""
    request: dict[str, Any] = {"model_dir": str(model_dir), "predict": [encode(x) for x in predict],
                               "train": _batches(train), "predict_after": [encode(x) for x in predict_after]}
    if compile is not None:
        request["compile"] = compile
    if fit is not None:
        request["fit"] = {**fit, "x": encode(fit["x"]), "y": encode(fit["y"])}
    if save_dir is not None:
        request["save_dir"] = str(save_dir)
        request["include_optimizer"] = include_optimizer
    return request


def run_model_dir(model_dir: str | Path, *, predict: Sequence[np.ndarray] = (), compile: dict | None = None,
                  train: Iterable[tuple[np.ndarray, np.ndarray]] = (), predict_after: Sequence[np.ndarray] = (),
                  fit: dict | None = None, save_dir: str | Path | None = None,
                  include_optimizer: bool = False) -> TfjsResult:
    """tf.loadLayersModel of a model.json folder (through TF.js's http loader reading files),
    then predict / train / save as asked."""
    return _result(run(model_dir_request(model_dir, predict=predict, compile=compile, train=train,
                                         predict_after=predict_after, fit=fit, save_dir=save_dir,
                                         include_optimizer=include_optimizer)))


def export_model(model, out_dir: str | Path, *, optimizer=None, loss=None, metrics: Sequence[str] = (),
                 include_optimizer_state: bool = False) -> Path:
    """Write a trainctl Sequential as a TF.js layers-model (with trainingConfig when
    optimizer and loss are given); returns the folder."""
    from trainctl.runs.formats.tfjs import TrainingSpec, write_tfjs

    training = TrainingSpec(optimizer, loss, list(metrics)) if loss is not None else None
    state_of = model.optimizer if include_optimizer_state else None
    write_tfjs(model, out_dir, training, optimizer=state_of)
    return Path(out_dir)


def tfjs_predict(model, x: np.ndarray) -> np.ndarray:
    """TF.js's predictions for a trainctl Sequential's weights (exported, then loaded in TF.js)."""
    with tempfile.TemporaryDirectory(prefix="trainctl-tfjs-model-") as tmp:
        export_model(model, tmp)
        return run_model_dir(tmp, predict=[x]).predictions[0]


def tfjs_summary(model) -> TfjsResult:
    """TF.js's summary of the exported model: `.summary_rows` [(name, class, shape, params)]
    and `.summary_lines` as model.summary() prints them."""
    with tempfile.TemporaryDirectory(prefix="trainctl-tfjs-model-") as tmp:
        export_model(model, tmp)
        return run_model_dir(tmp)


def tfjs_train_steps(model, optimizer_spec: Any, loss: str, batches: Iterable[tuple[np.ndarray, np.ndarray]],
                     *, metrics: Sequence[str] = (), predict_after: Sequence[np.ndarray] = ()) -> TfjsResult:
    """Export the model's current weights with trainingConfig (optimizer_spec: a trainctl
    optimizer spec, loss: a trainctl loss id), load in TF.js (which compiles it from the
    trainingConfig), one trainOnBatch per batch. Returns losses and weights after."""
    with tempfile.TemporaryDirectory(prefix="trainctl-tfjs-model-") as tmp:
        export_model(model, tmp, optimizer=optimizer_spec, loss=loss, metrics=metrics)
        return run_model_dir(tmp, train=batches, predict_after=predict_after)


def build_request(js_layers: list[dict[str, Any]], save_dir: str | Path, *, compile: dict | None = None,
                  batches: Iterable[tuple[np.ndarray, np.ndarray]] = (), predict: Sequence[np.ndarray] = (),
                  set_weights: dict[str, np.ndarray] | None = None, include_optimizer: bool = False,
                  train_more: Iterable[tuple[np.ndarray, np.ndarray]] = ()) -> dict[str, Any]:
    """The request `tfjs_build_and_train` sends (for `run_batch`)."""
    request: dict[str, Any] = {"build": {"layers": js_layers}, "train": _batches(batches),
                               "predict_after": [encode(x) for x in predict], "save_dir": str(save_dir),
                               "include_optimizer": include_optimizer, "train_more": _batches(train_more)}
    if compile is not None:
        request["compile"] = compile
    if set_weights:
        request["set_weights"] = {k: encode(v) for k, v in set_weights.items()}
    return request


def tfjs_build_and_train(js_layers: list[dict[str, Any]], save_dir: str | Path, *, compile: dict | None = None,
                         batches: Iterable[tuple[np.ndarray, np.ndarray]] = (), predict: Sequence[np.ndarray] = (),
                         set_weights: dict[str, np.ndarray] | None = None,
                         include_optimizer: bool = False,
                         train_more: Iterable[tuple[np.ndarray, np.ndarray]] = ()) -> TfjsResult:
    """The reverse direction: a model built in TF.js (`[{type: "dense", config: {units: 4,
    inputShape: [3]}}, ...]`, TF.js's own camelCase options), optionally compiled
    (`{optimizer, loss, metrics}` in TF.js terms) and trained one trainOnBatch per batch,
    then saved through an IOHandler to `save_dir` (model.json + weights.bin; with
    include_optimizer, TF.js's optimizer weights too). Predictions are made after training;
    `train_more` batches continue training after the save (`.losses_more`, `.weights_more`)."""
    return _result(run(build_request(js_layers, save_dir, compile=compile, batches=batches, predict=predict,
                                     set_weights=set_weights, include_optimizer=include_optimizer,
                                     train_more=train_more)))


def assert_trains_as_tfjs(model, optimizer_spec: Any, loss: str, batches: Sequence[tuple[np.ndarray, np.ndarray]],
                          x: np.ndarray, atol: float) -> None:
    """TF.js's trainOnBatch over `batches` from the model's current weights against trainctl's
    Trainer.train_batch over the same batches: each step's loss, every weight after, and the
    predictions for x after (model is compiled here with the same optimizer and loss)."""
    from trainctl.train.loop import Trainer

    peer = tfjs_train_steps(model, optimizer_spec, loss, batches, predict_after=[x])
    model.compile(optimizer=optimizer_spec, loss=loss)
    trainer = Trainer(model)
    ours = [trainer.train_batch(xb, yb, None) for xb, yb in batches]
    np.testing.assert_allclose(np.array(peer.losses).reshape(-1), np.array(ours).reshape(-1), atol=atol, rtol=0)
    for name, value in model.get_weights().items():
        np.testing.assert_allclose(peer.weights[name], value, atol=atol, rtol=0, err_msg=name)
    np.testing.assert_allclose(peer.predictions_after[0], model.predict(x), atol=atol, rtol=0)
