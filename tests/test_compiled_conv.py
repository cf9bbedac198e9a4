"""The compiled training loop's general plan (kernels/plan_steps.train_spatial_plan_steps) for
conv models against step-by-step Python execution: bit-identical weights (moving statistics
included), optimizer state, histories, dropout generators and checkpoints over the option
grid (padding, strides, dilation, pool kinds, batch normalization, activations, Conv1D,
Reshape, regularizers, optimizers, sample weights), and exact resume from a mid-epoch step
checkpoint. Tiny images and few steps: the cost is the general plan's one compile."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_compiled import _assert_identical, _checkpoint_digests, _digest, _dropout_state, _SignalAt
from trainctl.nn.model import Sequential

N, SIDE, CHANNELS, CLASSES = 37, 6, 2, 3  # 37: the last batch of 8 is partial
IMAGE = [SIDE, SIDE, CHANNELS]


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, *IMAGE)).astype(np.float32)
    labels = (x[:, :2, :2, 0].sum(axis=(1, 2)) > 0).astype(int) + (x[:, 0, 0, 1] > 1)
    return x, np.eye(CLASSES, dtype=np.float32)[labels]


HEAD = [{"type": "flatten"}, {"type": "dense", "units": CLASSES, "activation": "softmax"}]
STACKS = {  # name: (layers, loss)
    "valid_relu_maxpool": ([
        {"type": "conv2d", "filters": 3, "kernel_size": 3, "activation": "relu", "input_shape": IMAGE},
        {"type": "max_pooling2d", "pool_size": 2}, *HEAD], "categorical_crossentropy"),
    "same_strides_avgpool_same_global_avg": ([
        {"type": "conv2d", "filters": 4, "kernel_size": [3, 2], "strides": 2, "padding": "same",
         "activation": "tanh", "input_shape": IMAGE},
        {"type": "average_pooling2d", "pool_size": 2, "strides": 1, "padding": "same"},
        {"type": "global_average_pooling2d"}, {"type": "dense", "units": CLASSES, "activation": "softmax"}],
        "categorical_crossentropy"),
    "reshape_one_channel_dilated_pointwise_nobias": ([  # the transposed column matrix, dilation, 1x1
        {"type": "reshape", "target_shape": [SIDE, SIDE * CHANNELS, 1], "input_shape": IMAGE},
        {"type": "conv2d", "filters": 3, "kernel_size": 2, "dilation_rate": 2, "activation": "elu"},
        {"type": "conv2d", "filters": 2, "kernel_size": 1, "use_bias": False},
        {"type": "max_pooling2d", "pool_size": 3, "strides": 2, "padding": "same"}, *HEAD],
        "categorical_crossentropy"),
    "batchnorm_regularized_dropout": ([
        {"type": "conv2d", "filters": 3, "kernel_size": 3, "padding": "same", "input_shape": IMAGE,
         "kernel_regularizer": {"type": "l1l2", "l1": 0.01, "l2": 0.01}, "bias_regularizer": "l2"},
        {"type": "batch_normalization", "momentum": 0.9, "gamma_regularizer": "l1"},
        {"type": "activation", "activation": "relu"},
        {"type": "max_pooling2d"}, {"type": "flatten"}, {"type": "dropout", "rate": 0.25},
        {"type": "dense", "units": 5, "activation": "relu"}, {"type": "batch_normalization", "center": False},
        {"type": "dense", "units": CLASSES, "activation": "softmax"}], "categorical_crossentropy"),
    "conv1d_reshape_activation_last": ([  # Reshape, Conv1D, pooling 1D and global, rate-0 dropout, fused Activation last
        {"type": "reshape", "target_shape": [SIDE * SIDE, CHANNELS], "input_shape": IMAGE},
        {"type": "conv1d", "filters": 3, "kernel_size": 4, "strides": 2, "padding": "same", "activation": "relu"},
        {"type": "average_pooling1d", "pool_size": 3},
        {"type": "dropout", "rate": 0.0},  # passes x on: a view in the plan
        {"type": "conv1d", "filters": 2, "kernel_size": 2},
        {"type": "max_pooling1d", "pool_size": 2, "padding": "same"},
        {"type": "reshape", "target_shape": [3, 1, 2]}, {"type": "global_max_pooling2d"}, {"type": "dense", "units": CLASSES},
        {"type": "activation", "activation": "softmax"}], "categorical_crossentropy"),
    "channels_first": ([  # each channels_first layer between its transposes (plan_zoo KIND_INDEX_COPY rows)
        {"type": "permute", "dims": [3, 1, 2], "input_shape": IMAGE},
        {"type": "conv2d", "filters": 3, "kernel_size": 3, "padding": "same", "activation": "relu",
         "data_format": "channels_first", "kernel_regularizer": "l2"},
        {"type": "max_pooling2d", "pool_size": 2, "data_format": "channels_first"},
        {"type": "depthwise_conv2d", "kernel_size": 2, "depth_multiplier": 2, "data_format": "channels_first"},
        {"type": "conv2d_transpose", "filters": 2, "kernel_size": 2, "activation": "tanh",
         "data_format": "channels_first", "activity_regularizer": "l1"},
        {"type": "average_pooling2d", "pool_size": 2, "strides": 1, "data_format": "channels_first"},
        {"type": "global_max_pooling2d", "data_format": "channels_first"},
        {"type": "dense", "units": CLASSES, "activation": "softmax"}], "categorical_crossentropy"),
    "channels_first_upsampling": ([  # UpSampling2D's channels_last plan between its transposes
        {"type": "permute", "dims": [3, 1, 2], "input_shape": IMAGE},
        {"type": "up_sampling2d", "size": [2, 1], "data_format": "channels_first"},
        {"type": "conv2d", "filters": 2, "kernel_size": 3, "activation": "relu", "data_format": "channels_first"},
        {"type": "up_sampling2d", "size": [1, 2], "interpolation": "bilinear", "data_format": "channels_first"},
        {"type": "flatten"},
        {"type": "dense", "units": CLASSES, "activation": "softmax"}], "categorical_crossentropy"),
    "channels_first_first_layer_1d": ([  # a first layer's transpose in computes no dx; Conv1D channels_first
        {"type": "conv2d", "filters": 2, "kernel_size": 2, "data_format": "channels_first", "input_shape": IMAGE},
        {"type": "reshape", "target_shape": [2, 5]},
        {"type": "conv1d", "filters": 3, "kernel_size": 3, "strides": 2, "data_format": "channels_first"},
        {"type": "flatten"},
        {"type": "dense", "units": CLASSES, "activation": "softmax"}], "categorical_crossentropy"),
    "per_position_mse": ([  # a loss over every output position (positions > 1), no flatten
        {"type": "conv2d", "filters": 2, "kernel_size": 3, "activation": "sigmoid", "input_shape": IMAGE},
        {"type": "dense", "units": 2}], "mean_squared_error"),
}
OPTIMIZERS = ["sgd", "adam", {"type": "momentum", "momentum": 0.9, "use_nesterov": True},
              {"type": "rmsprop", "centered": True, "momentum": 0.3, "clipvalue": 0.1}]


def _fit(layers, loss, optimizer, jit, *, spe=3, epochs=2, batch_size=8, **fit_options):
    x, y = _data()
    if loss == "mean_squared_error":
        y = np.tanh(x[:, 1:-1, 1:-1, :])
    model = Sequential(layers, seed=3)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"] if loss != "mean_squared_error" else ["mae"])
    history = model.fit(x, y, epochs=epochs, batch_size=batch_size, jit_compile=jit, steps_per_execution=spe,
                        **fit_options)
    return model, history


@pytest.mark.parametrize("stack", list(STACKS))
def test_conv_stacks_run_compiled_bit_for_bit(stack):
    layers, loss = STACKS[stack]
    compiled = _fit(layers, loss, "adam", True, validation_split=0.2)
    assert compiled[0].compiled_fallback is None  # it really ran compiled
    python = _fit(layers, loss, "adam", False, validation_split=0.2)
    _assert_identical(compiled, python)  # weights include the moving mean and variance
    assert _dropout_state(compiled[0]) == _dropout_state(python[0])


@pytest.mark.parametrize("optimizer", OPTIMIZERS[::2] + OPTIMIZERS[1::2][::-1],
                         ids=lambda o: o if isinstance(o, str) else "-".join(map(str, o.values())))
def test_conv_optimizers_and_options_match(optimizer):
    layers, loss = STACKS["batchnorm_regularized_dropout"]
    weights = np.random.default_rng(1).random(N) * 2
    options = {"sample_weight": weights} if isinstance(optimizer, dict) else {"shuffle": optimizer == "sgd"}
    spe = "auto" if optimizer == "adam" else 4  # auto: this process has loaded the loop, so it runs compiled
    runs = [_fit(layers, loss, optimizer, jit, spe=spe, **options) for jit in (True, False)]
    assert runs[0][0].compiled_fallback is None or spe == "auto"
    _assert_identical(*runs)


AUGMENTATION = [{"type": "random_flip", "mode": "horizontal_and_vertical"},
                {"type": "random_translation", "height_factor": 0.2, "width_factor": [-0.1, 0.3], "fill_mode": "nearest"},
                {"type": "random_rotation", "factor": 0.1, "fill_mode": "constant", "fill_value": 0.5},
                {"type": "random_zoom", "height_factor": [-0.2, 0.1], "interpolation": "nearest"}]


@pytest.mark.parametrize("shuffle", [True, False])
def test_augmented_batches_train_compiled_bit_for_bit(shuffle):
    """Each chunk is the augmented source's own next batches (train/stream_chunks.py), each
    transformed with the draws of its (epoch, batch) as the Python path takes them."""
    from trainctl.data.augmentation import build_augmentation
    from trainctl.data.config import DataConfig

    steps = DataConfig.model_validate({"train": {"generator": "xor"}, "preprocessing": AUGMENTATION}).preprocessing
    layers, loss = STACKS["batchnorm_regularized_dropout"]
    runs = []
    for jit in (True, False):
        augmentation = build_augmentation(steps, tuple(IMAGE), seed=7)
        runs.append(_fit(layers, loss, "adam", jit, spe=3, epochs=2, shuffle=shuffle, validation_split=0.2,
                         augmentation=augmentation))
    assert runs[0][0].compiled_fallback is None  # it really ran compiled
    assert runs[1][0].compiled_fallback == "jit_compile is off"
    _assert_identical(*runs)
    plain = _fit(layers, loss, "adam", True, spe=3, epochs=2, shuffle=shuffle, validation_split=0.2)
    assert plain[1].history["loss"] != runs[0][1].history["loss"]  # the augmentation did change the batches


# Products with a dimension of 1, where np.matmul would take gemv or dot and sum in another order
# than the loop's gemm: the layers' Python path calls the loop's product (nn/layers/conv.gemm_product).
ONE_DIMENSION_STACKS = {  # name: (layers, batch size)
    "one_channel_one_filter": ([  # pointwise [rows, 1] @ [1, 1], its grad [1, rows] @ [rows, 1]; 1 channel in
        {"type": "reshape", "target_shape": [SIDE, SIDE * CHANNELS, 1], "input_shape": IMAGE},
        {"type": "separable_conv2d", "filters": 1, "kernel_size": 2, "activation": "tanh"},
        {"type": "conv2d_transpose", "filters": 2, "kernel_size": 2, "activation": "relu"}, *HEAD], 8),
    "one_position_batches_of_one": ([  # a 1x1 output, then a 1x1 input; 37 = 9 * 4 + 1: a batch of one row
        {"type": "separable_conv2d", "filters": 3, "kernel_size": SIDE, "input_shape": IMAGE},
        {"type": "conv2d_transpose", "filters": 2, "kernel_size": 2, "strides": 2}, *HEAD], 4),
}


@pytest.mark.parametrize("stack", list(ONE_DIMENSION_STACKS))
def test_products_with_a_dimension_of_one_run_compiled_bit_for_bit(stack):
    layers, batch_size = ONE_DIMENSION_STACKS[stack]
    compiled = _fit(layers, "categorical_crossentropy", "adam", True, batch_size=batch_size, validation_split=0.2)
    assert compiled[0].compiled_fallback is None  # it really ran compiled
    _assert_identical(compiled, _fit(layers, "categorical_crossentropy", "adam", False, batch_size=batch_size,
                                     validation_split=0.2))


# -- checkpoints and exact resume of a conv model through the run API -----------------------
CONFIG = """\
name: conv-chunks
seed: 4
model:
  layers:
    - {type: conv2d, filters: 3, kernel_size: 3, padding: same, input_shape: [8, 8, 1]}
    - {type: batch_normalization}
    - {type: activation, activation: relu}
    - {type: max_pooling2d}
    - {type: flatten}
    - {type: dropout, rate: 0.2}
    - {type: dense, units: 3, activation: softmax}
optimizer: {type: adam, learning_rate: 0.003}
loss: categorical_crossentropy
metrics: [accuracy]
data:
  train: {generator: teacher, n_samples: 300, n_features: 64, n_classes: 3, hidden: 6}
  preprocessing: [{type: reshape, target_shape: [8, 8, 1]}]
fit: {epochs: 3, batch_size: 16, validation_split: 0.2, steps_per_execution: STEPS, jit_compile: JIT}
"""


def _run(tmp_path, name, steps, jit, callbacks=(), handle_signals=False):
    from trainctl.config import load_config
    from trainctl.runs.train import train_from_config

    config = tmp_path / f"{name}.yaml"
    config.write_text(CONFIG.replace("STEPS", steps).replace("JIT", jit))
    return train_from_config(load_config(config), out=tmp_path / name, checkpoint_every=5, keep_checkpoints=100,
                             callbacks=callbacks, handle_signals=handle_signals)


def test_conv_checkpoints_history_and_mid_epoch_resume_are_exact(tmp_path, monkeypatch):
    from trainctl.runs.train import resume_training
    from trainctl.train.compiled import CompiledSteps
    from trainctl.train.resume import TrainingInterrupted

    chunks = []
    run = CompiledSteps.run
    monkeypatch.setattr(CompiledSteps, "run", lambda self, *args: chunks.append(args[2]) or run(self, *args))
    _run(tmp_path, "compiled", "4", "true")
    assert sum(chunks) == 3 * 15  # every step ran compiled: 240 training rows in batches of 16
    _run(tmp_path, "python", "4", "false")
    for name in ("weights.safetensors", "optimizer.safetensors", "history.csv"):
        assert _digest(tmp_path / "compiled" / name) == _digest(tmp_path / "python" / name), name
    digests = _checkpoint_digests(tmp_path / "compiled")
    assert digests == _checkpoint_digests(tmp_path / "python") and any("step" in key for key in digests)
    with pytest.raises(TrainingInterrupted) as stopped:
        _run(tmp_path, "interrupted", "4", "true", callbacks=[_SignalAt(6)], handle_signals=True)
    assert stopped.value.epoch == 1 and stopped.value.batch >= 6  # mid-epoch, at a chunk end
    resume_training(tmp_path / "interrupted")
    for name in ("weights.safetensors", "optimizer.safetensors", "history.csv"):
        assert _digest(tmp_path / "interrupted" / name) == _digest(tmp_path / "compiled" / name), name
