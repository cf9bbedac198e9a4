"""The interop matrix: per layer type × format, exported / imported / refused and the largest
absolute difference to trainctl seen in the real runtime (the same checks as
tests/test_interop_peers.py, with the numbers printed).

    TRAINCTL_TFJS_DIR=/tmp/tfjs/node_modules KERAS_BACKEND=torch python -m tests.peers.matrix
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")

from tests.interop_models import LAYER_MODELS, keras_layers, refused, sample_data, tfjs_layers  # noqa: E402
from tests.peers import tfjs  # noqa: E402
from trainctl.nn.model import Sequential  # noqa: E402
from trainctl.runs.formats import ExportRefused  # noqa: E402

ADAM = {"type": "adam", "learning_rate": 0.01}


def _diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _steps(model, batches, optimizer=ADAM, state=None):
    from trainctl.train.loop import Trainer

    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    if state is not None:
        model.optimizer.load_state(state)
    trainer = Trainer(model)
    return [trainer.train_batch(x, y, None) for x, y in batches]


def tfjs_export(layer_type, tmp: Path) -> str:
    layers, trains = LAYER_MODELS[layer_type]
    model = Sequential(layers, seed=1)
    x, y = sample_data(model, n=24)
    batches = [(x[:12], y[:12]), (x[12:], y[12:])] if trains else []
    expected = model.predict(x)  # (training compared with SGD in the reverse column, Adam here)
    tfjs.export_model(model, tmp, optimizer=ADAM, loss="categorical_crossentropy", metrics=["accuracy"])
    peer = tfjs.run_model_dir(tmp, predict=[x], train=batches)
    cell = f"predict {_diff(peer.predictions[0], expected):.1e}"
    if batches:
        ours = _steps(model, batches)
        worst = max([_diff(peer.losses, ours)] + [_diff(peer.weights[n], v) for n, v in model.get_weights().items()])
        cell += f", 2 steps {worst:.1e}"
    return cell


def tfjs_import(layer_type, tmp: Path) -> str:
    from trainctl.runs.formats.tfjs import read_tfjs

    layers, trains = LAYER_MODELS[layer_type]
    x, y = sample_data(layers, n=24, seed=9)
    first = [(x[:12], y[:12])] if trains else []
    more = [(x[12:], y[12:]), (x[:12], y[:12])] if trains else []
    peer = tfjs.tfjs_build_and_train(tfjs_layers(layers), tmp / "saved", batches=first, predict=[x],
                                     include_optimizer=True, train_more=more,
                                     compile={"optimizer": {"factory": "adam", "args": [0.01]},
                                              "loss": "categoricalCrossentropy", "metrics": ["accuracy"]})
    # (one model per process: the Adam slot names TF.js saves are the variables' own)
    imported = read_tfjs(tmp / "saved" / "model.json")
    cell = f"predict {_diff(imported.model.predict(x), peer.predictions_after[0]):.1e}"
    if more:
        ours = _steps(imported.model, more, imported.training.optimizer, imported.optimizer_state)
        worst = max([_diff(ours, peer.losses_more)]
                    + [_diff(v, peer.weights_more[n]) for n, v in imported.model.get_weights().items()])
        cell += f", continued {worst:.1e}"
    return cell


def keras_export(layer_type, tmp: Path) -> str:
    import keras

    from trainctl.runs.formats.keras import write_keras

    model = Sequential(LAYER_MODELS[layer_type][0], seed=2)
    x, _ = sample_data(model)
    write_keras(model, tmp / "m.keras")
    loaded = keras.saving.load_model(tmp / "m.keras")
    return f"predict {_diff(loaded.predict(x, verbose=0), model.predict(x)):.1e}"


def keras_import(layer_type, tmp: Path) -> str:
    import keras

    from trainctl.runs.interop import read_foreign

    layers = LAYER_MODELS[layer_type][0]
    built = keras.Sequential(keras_layers(keras, layers))
    x, _ = sample_data(layers, seed=10)
    built.save(tmp / "built.keras")
    return f"predict {_diff(read_foreign(tmp / 'built.keras').model.predict(x), built.predict(x, verbose=0)):.1e}"


def onnx_export(layer_type, tmp: Path) -> str:
    import onnxruntime as ort

    from trainctl.runs.formats.onnx import write_onnx

    model = Sequential(LAYER_MODELS[layer_type][0], seed=3)
    x, _ = sample_data(model, n=9)
    session = ort.InferenceSession(str(write_onnx(model, tmp / "m.onnx")))
    return f"predict {_diff(session.run(None, {'input': x})[0], model.predict(x)):.1e}"


COLUMNS = {"tfjs export": tfjs_export, "tfjs import": tfjs_import, "keras export": keras_export,
           "keras import": keras_import, "onnx export": onnx_export}
FORMAT = {column: column.split()[0] for column in COLUMNS}


def main() -> int:
    if not tfjs.tfjs_available():
        print("TF.js peer absent (set TRAINCTL_TFJS_DIR)", file=sys.stderr)
        return 1
    print("| layer | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for layer_type in sorted(LAYER_MODELS):
        cells = []
        for column, measure in COLUMNS.items():
            message = refused(layer_type, FORMAT[column])
            if message is not None:  # the other runtime has no such layer: neither direction
                cells.append(f"refused: {message}")
                continue
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    cells.append(measure(layer_type, Path(tmp)))
                except ExportRefused as error:
                    cells.append(f"refused: {error}")
        print(f"| {layer_type} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
