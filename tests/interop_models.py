"""One small model per layer type, for the interop tests (every registered layer type must
appear here: tests/test_interop.py checks it). Each ends in softmax so the same model
trains with categorical cross-entropy in every runtime."""

from __future__ import annotations

import numpy as np

# layer type → (model layers, whether TF.js/Keras training can be compared step for step)
LAYER_MODELS: dict[str, tuple[list[dict], bool]] = {
    "dense": ([{"type": "dense", "units": 8, "activation": "relu", "input_shape": [6]},
               {"type": "dense", "units": 3, "activation": "softmax"}], True),
    "activation": ([{"type": "dense", "units": 8, "input_shape": [6]},
                    {"type": "activation", "activation": "tanh"},
                    {"type": "dense", "units": 3, "activation": "softmax"}], True),
    # Dropout draws its own random masks in each runtime: inference only is compared.
    "dropout": ([{"type": "dense", "units": 8, "activation": "relu", "input_shape": [6]},
                 {"type": "dropout", "rate": 0.3},
                 {"type": "dense", "units": 3, "activation": "softmax"}], False),
    "flatten": ([{"type": "reshape", "target_shape": [2, 3], "input_shape": [6]},
                 {"type": "dense", "units": 4, "activation": "elu"},
                 {"type": "flatten"},
                 {"type": "dense", "units": 3, "activation": "softmax"}], True),
    "reshape": ([{"type": "dense", "units": 8, "activation": "sigmoid", "input_shape": [6]},
                 {"type": "reshape", "target_shape": [2, -1]},
                 {"type": "flatten"},
                 {"type": "dense", "units": 3, "activation": "softmax"}], True),
}


def sample_data(input_shape, n=16, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *input_shape)).astype(np.float32)
    y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]
    return x, y


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def tfjs_layers(layers: list[dict]) -> list[dict]:
    """The same stack as a TF.js user writes it: tf.layers.<camelCase type>({camelCase options})
    (a reshape's -1 written out: TF.js 4.22 cannot build a Flatten after an unresolved -1)."""
    from trainctl.nn.model import Sequential
    from trainctl.runs.formats.keras_objects import activation_to

    built = Sequential(layers)
    out = []
    for spec, layer in zip(layers, built.layers):
        config = {}
        for key, value in spec.items():
            if key == "type":
                continue
            if key == "activation":
                value = activation_to(value, "tfjs", key)
            if key == "target_shape":
                value = list(layer.output_shape)
            config[_camel(key)] = value
        out.append({"type": _camel(spec["type"]), "config": config})
    return out


def keras_layers(keras, layers: list[dict]) -> list:
    """The same stack built with Keras 3 (keras.Input first, then keras.layers.<ClassName>)."""
    from trainctl.nn.layers import LAYERS

    built = [keras.Input(shape=tuple(layers[0]["input_shape"]))]
    for spec in layers:
        cls = LAYERS.get(spec["type"])
        options = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items()
                   if k not in ("type", "input_shape")}
        built.append(getattr(keras.layers, cls.class_name)(**options))
    return built
