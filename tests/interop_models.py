"""One small model per layer type, for the interop tests (every registered layer type must
appear here: tests/test_interop.py checks it). Each ends in softmax so the same model
trains with categorical cross-entropy in every runtime."""

from __future__ import annotations

import numpy as np

# layer type → (model layers, whether TF.js/Keras training can be compared step for step).
# Entries for layer types not registered (yet) are inactive: LAYER_MODELS keeps the
# registered ones, and tests/test_interop.py checks every registered type has one.
ALL_LAYER_MODELS: dict[str, tuple[list[dict], bool]] = {
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

_HEAD = [{"type": "flatten"}, {"type": "dense", "units": 3, "activation": "softmax"}]
_IMAGE = [5, 5, 2]
_SEQ = [6, 3]
_GAMMA = {"type": "random_uniform", "minval": 0.5, "maxval": 1.5}


def _image(*layers, shape=_IMAGE, trains=True):
    first, *rest = layers
    return ([{**first, "input_shape": list(shape)}, *rest, *_HEAD], trains)


def _seq(*layers, trains=True):
    return _image(*layers, shape=_SEQ, trains=trains)


def _last(first, *rest, trains=True):
    """A sequence model whose last recurrent layer returns its last step ([n, units]: TF.js's
    Flatten refuses 2-D inputs, so no flatten)."""
    return ([{**first, "input_shape": list(_SEQ)}, *rest, {"type": "dense", "units": 3, "activation": "softmax"}],
            trains)


def _vector(*layers, trains=True):
    return ([{"type": "dense", "units": 6, "input_shape": [6]}, *layers,
             {"type": "dense", "units": 3, "activation": "softmax"}], trains)


ALL_LAYER_MODELS.update({
    "conv2d": _image({"type": "conv2d", "filters": 3, "kernel_size": 3, "padding": "same", "activation": "relu"},
                     {"type": "conv2d", "filters": 2, "kernel_size": [2, 3], "strides": 2}),
    # (TF.js 4.22 has no gradient for dilated convolutions: dilation is checked at inference)
    "conv1d": _seq({"type": "conv1d", "filters": 4, "kernel_size": 3, "padding": "same", "activation": "tanh"},
                   {"type": "conv1d", "filters": 2, "kernel_size": 2, "strides": 2}),
    "conv1d_dilated": _seq({"type": "conv1d", "filters": 2, "kernel_size": 2, "dilation_rate": 2}, trains=False),
    "conv2d_transpose": _image({"type": "conv2d_transpose", "filters": 2, "kernel_size": 3, "strides": 2,
                                "padding": "same"}),
    "depthwise_conv2d": _image({"type": "depthwise_conv2d", "kernel_size": 3, "depth_multiplier": 2}),
    "separable_conv2d": _image({"type": "separable_conv2d", "filters": 3, "kernel_size": 3, "padding": "same",
                                "depthwise_initializer": "glorot_uniform", "pointwise_initializer": "glorot_uniform"}),
    "max_pooling2d": _image({"type": "max_pooling2d", "pool_size": 2, "strides": 1, "padding": "same"}),
    "average_pooling2d": _image({"type": "average_pooling2d", "pool_size": 3, "strides": 2, "padding": "same"}),
    "max_pooling1d": _seq({"type": "max_pooling1d", "pool_size": 2}),
    "average_pooling1d": _seq({"type": "average_pooling1d", "pool_size": 2, "strides": 1}),
    "global_max_pooling2d": ([{"type": "global_max_pooling2d", "input_shape": _IMAGE},
                              {"type": "dense", "units": 3, "activation": "softmax"}], True),
    "global_average_pooling2d": ([{"type": "global_average_pooling2d", "input_shape": _IMAGE},
                                  {"type": "dense", "units": 3, "activation": "softmax"}], True),
    "global_max_pooling1d": ([{"type": "global_max_pooling1d", "input_shape": _SEQ},
                              {"type": "dense", "units": 3, "activation": "softmax"}], True),
    "global_average_pooling1d": ([{"type": "global_average_pooling1d", "input_shape": _SEQ},
                                  {"type": "dense", "units": 3, "activation": "softmax"}], True),
    # (a bias before batch norm has a zero gradient up to rounding, which Adam amplifies)
    "batch_normalization": ([{"type": "dense", "units": 6, "use_bias": False, "input_shape": [6]},
                             {"type": "batch_normalization", "momentum": 0.8, "gamma_initializer": _GAMMA,
                              "moving_variance_initializer": {"type": "constant", "value": 2.0}},
                             {"type": "dense", "units": 3, "activation": "softmax"}], True),
    "layer_normalization": _vector({"type": "layer_normalization", "gamma_initializer": _GAMMA}),
    "embedding": ([{"type": "embedding", "input_dim": 7, "output_dim": 3, "input_length": 4},
                   {"type": "flatten"}, {"type": "dense", "units": 3, "activation": "softmax"}], True),
    "zero_padding2d": _image({"type": "zero_padding2d", "padding": [[1, 0], [2, 1]]}),
    "zero_padding1d": _seq({"type": "zero_padding1d", "padding": [1, 2]}),
    "cropping2d": _image({"type": "cropping2d", "cropping": [[0, 1], [1, 1]]}),
    "cropping1d": _seq({"type": "cropping1d", "cropping": [1, 2]}),
    "up_sampling2d": _image({"type": "up_sampling2d", "size": [2, 3]}),
    "up_sampling1d": _seq({"type": "up_sampling1d", "size": 2}),
    "permute": _image({"type": "permute", "dims": [3, 1, 2]}),
    "repeat_vector": _vector({"type": "repeat_vector", "n": 3}, {"type": "flatten"}),
    "spatial_dropout1d": _seq({"type": "spatial_dropout1d", "rate": 0.3}, trains=False),
    "spatial_dropout2d": _image({"type": "spatial_dropout2d", "rate": 0.3}, trains=False),
    "gaussian_noise": _vector({"type": "gaussian_noise", "stddev": 0.5}, trains=False),
    "gaussian_dropout": _vector({"type": "gaussian_dropout", "rate": 0.3}, trains=False),
    "alpha_dropout": _vector({"type": "alpha_dropout", "rate": 0.3}, trains=False),
    "leaky_re_lu": _vector({"type": "leaky_re_lu", "alpha": 0.2}),
    "elu": _vector({"type": "elu"}),  # (TF.js's ELU layer takes alpha 1 only)
    "re_lu": _vector({"type": "re_lu", "max_value": 0.5}),
    # (TF.js 4.22 has no gradient for its Greater op: inference only)
    "thresholded_re_lu": _vector({"type": "thresholded_re_lu", "theta": 0.1}, trains=False),
    "prelu": _vector({"type": "prelu", "alpha_initializer": {"type": "constant", "value": 0.25}}),
    "softmax": ([{"type": "dense", "units": 3, "input_shape": [6]}, {"type": "softmax", "axis": -1}], True),
    "simple_rnn": _seq({"type": "simple_rnn", "units": 4, "return_sequences": True}),
    "lstm": _last({"type": "lstm", "units": 4, "recurrent_activation": "sigmoid", "unit_forget_bias": True}),
    "gru": _last({"type": "gru", "units": 4, "go_backwards": True}),
    "gru_reset_after": _last({"type": "gru", "units": 3, "reset_after": True, "recurrent_activation": "sigmoid"}),
    "masking": _last({"type": "masking", "mask_value": 0.0}, {"type": "simple_rnn", "units": 3}),
    "bidirectional": _last({"type": "bidirectional",
                            "layer": {"type": "lstm", "units": 3, "recurrent_activation": "sigmoid"}}),
    "time_distributed": _seq({"type": "time_distributed", "layer": {"type": "dense", "units": 2, "activation": "tanh"}}),
})

KERAS_CELLS = "trainctl does not write Keras 3's nested recurrent/wrapper variables yet (keras export)"

# (layer type, format) → (part of) the refusal's message, for layers a format cannot express.
ALL_REFUSED: dict[tuple[str, str], str] = {
    ("cropping1d", "tfjs"): "TF.js has no Cropping1D layer (tfjs export)",
    ("zero_padding1d", "tfjs"): "TF.js has no ZeroPadding1D layer (tfjs export)",
    ("up_sampling1d", "tfjs"): "TF.js has no UpSampling1D layer (tfjs export)",
    ("spatial_dropout2d", "tfjs"): "TF.js has no SpatialDropout2D layer (tfjs export)",
    ("thresholded_re_lu", "keras"): "Keras 3 removed ThresholdedReLU (keras export)",
    ("gru_reset_after", "tfjs"): "reset_after: true has no TF.js form",
    **{(t, "onnx"): "has no ONNX converter (onnx export)"
       for t in ("simple_rnn", "lstm", "gru", "gru_reset_after", "masking", "bidirectional", "time_distributed")},
    ("simple_rnn", "keras"): KERAS_CELLS,
    ("lstm", "keras"): KERAS_CELLS,
    ("gru", "keras"): KERAS_CELLS,
    ("gru_reset_after", "keras"): KERAS_CELLS,
    ("masking", "keras"): KERAS_CELLS,
    ("bidirectional", "keras"): KERAS_CELLS,
    ("time_distributed", "keras"): KERAS_CELLS,
}


def _registered():
    from trainctl.nn.layers import LAYERS

    return set(LAYERS.names())


def _layer_type(key: str) -> str:
    return {"conv1d_dilated": "conv1d", "gru_reset_after": "gru"}.get(key, key)


LAYER_MODELS = {k: v for k, v in ALL_LAYER_MODELS.items() if _layer_type(k) in _registered()}
REFUSED = {k: v for k, v in ALL_REFUSED.items() if k[0] in LAYER_MODELS}


def refused(layer_type: str, fmt: str) -> str | None:
    """The expected refusal message of a layer type in a format, or None (it exports)."""
    return REFUSED.get((layer_type, fmt))


def sample_data(model, n=16, classes=3, seed=0):
    """(x, one-hot y) for a model (a Sequential, its layer list, or an input shape): token
    indices for an embedding, normal samples otherwise."""
    from trainctl.nn.model import Sequential

    if isinstance(model, list):
        model = Sequential(model)
    rng = np.random.default_rng(seed)
    if isinstance(model, tuple):
        x = rng.standard_normal((n, *model)).astype(np.float32)
    elif model.layers[0].type_id == "embedding":
        x = rng.integers(0, model.layers[0].params.input_dim, (n, *model.input_shape)).astype(np.float32)
    else:
        x = rng.standard_normal((n, *model.input_shape)).astype(np.float32)
    y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]
    return x, y


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _tfjs_initializer(spec):
    from trainctl.runs.formats.keras_objects import initializer_to

    if isinstance(spec, str):
        return _camel(spec)
    full = initializer_to({"seed": None, **spec} if "seed" in spec else spec, "tfjs", "initializer")
    return {"className": full["class_name"], "config": {_camel(k): v for k, v in full["config"].items()}}


def _tfjs_item(spec: dict, layer=None) -> dict:
    from trainctl.runs.formats.keras_objects import activation_to

    config = {}
    for key, value in spec.items():
        if key == "type":
            continue
        if key.endswith("activation"):
            value = activation_to(value, "tfjs", key)
        if key.endswith("_initializer"):  # TF.js takes {className, config} (or a camelCase id)
            value = _tfjs_initializer(value)
        if key == "target_shape" and layer is not None:
            value = list(layer.output_shape)
        if key == "layer":  # a wrapper's inner layer, built by the runner first
            value = _tfjs_item(value)
        config[_camel(key)] = value
    return {"type": _camel(spec["type"]), "config": config}


def tfjs_layers(layers: list[dict]) -> list[dict]:
    """The same stack as a TF.js user writes it: tf.layers.<camelCase type>({camelCase options})
    (a reshape's -1 written out: TF.js 4.22 cannot build a Flatten after an unresolved -1)."""
    from trainctl.nn.model import Sequential

    built = Sequential(layers)
    return [_tfjs_item(spec, layer) for spec, layer in zip(layers, built.layers)]


def keras_layers(keras, layers: list[dict]) -> list:
    """The same stack built with Keras 3 (keras.Input first, then keras.layers.<ClassName>)."""
    from trainctl.nn.layers import LAYERS

    from trainctl.nn.model import Sequential

    from trainctl.runs.formats.keras_objects import initializer_to

    built = [keras.Input(shape=Sequential(layers).input_shape)]
    for spec in layers:
        cls = LAYERS.get(spec["type"])
        options = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items()
                   if k not in ("type", "input_shape")}
        for key, value in options.items():
            if key.endswith("_initializer") and isinstance(value, dict):
                options[key] = keras.initializers.deserialize(initializer_to(value, "keras", key))
        built.append(getattr(keras.layers, cls.class_name)(**options))
    return built
