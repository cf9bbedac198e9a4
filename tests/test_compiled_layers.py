"""The compiled training loop for what it took over from the Python step loop: clipnorm (per
weight, as Optimizer.apply), activity regularizers (penalty in the loss, gradient into dy),
and the layers added to the general plan, each against step-by-step Python execution, bit
for bit (weights, optimizer state, histories, generator states); plus one `trainctl train`
run whose history shows the compiled loop ran. Float32 only: each new piece costs the suite
only its own first compile."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_compiled import _assert_identical
from trainctl.nn.model import Sequential

N, FEATURES, CLASSES = 45, 6, 3  # 45: the last batch of 8 is partial
SIDE, CHANNELS = 5, 2
IMAGE = [SIDE, SIDE, CHANNELS]


def _data(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, *shape)).astype(np.float32)
    labels = (x.reshape(N, -1)[:, :CLASSES].argmax(axis=1) + (rng.random(N) < 0.2)) % CLASSES
    return x, np.eye(CLASSES, dtype=np.float32)[labels]


def _fit(layers, optimizer, jit, *, shape=(FEATURES,), loss="categorical_crossentropy", spe=4, **fit_options):
    x, y = _data(shape)
    model = Sequential(layers, seed=7)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    history = model.fit(x, y, epochs=2, batch_size=8, jit_compile=jit, steps_per_execution=spe, **fit_options)
    return model, history


def _assert_compiled_matches(layers, optimizer="adam", **options):
    compiled = _fit(layers, optimizer, True, **options)
    assert compiled[0].compiled_fallback is None  # it really ran compiled
    python = _fit(layers, optimizer, False, **options)
    _assert_identical(compiled, python)
    assert _generator_states(compiled[0]) == _generator_states(python[0])  # each drew the same numbers
    return compiled


def _generator_states(model):
    """Every random layer's generator state, a TimeDistributed's inner layer's too."""
    from trainctl.nn.layers.base import RandomLayer

    layers = [getattr(layer, "inner", layer) for layer in model.layers]
    return [layer.get_state() for layer in layers if isinstance(layer, RandomLayer)]


DENSE = [{"type": "dense", "units": 7, "activation": "relu", "input_shape": [FEATURES]},
         {"type": "dense", "units": CLASSES, "activation": "softmax"}]
CONV = [{"type": "conv2d", "filters": 3, "kernel_size": 2, "activation": "tanh", "input_shape": IMAGE},
        {"type": "max_pooling2d", "pool_size": 2}, {"type": "flatten"},
        {"type": "dense", "units": CLASSES, "activation": "softmax"}]


# clipnorm 0.05 clips every weight's gradient, 0.3 only some of them (the per-weight norm decides)
@pytest.mark.parametrize("optimizer", [{"type": "sgd", "learning_rate": 0.5, "clipnorm": 0.05},
                                       {"type": "adam", "clipnorm": 0.3},
                                       {"type": "rmsprop", "centered": True, "momentum": 0.3, "clipnorm": 0.3}],
                         ids=["sgd", "adam", "rmsprop_centered"])
def test_clipnorm_runs_compiled_per_weight_bit_for_bit(optimizer):
    _assert_compiled_matches(DENSE, optimizer)


def test_clipnorm_clips_some_weights_and_not_others():
    """The threshold of the grid above sits between the weights' gradient norms, so both
    branches of the per-weight rule run (measured on the Python path's first step)."""
    from trainctl.kernels.optimizers import l2_norm

    model = Sequential(DENSE, seed=7)
    model.compile(optimizer={"type": "adam", "clipnorm": 0.3}, loss="categorical_crossentropy")
    x, y = _data((FEATURES,))
    model.fit(x[:8], y[:8], epochs=1, batch_size=8, jit_compile=False, shuffle=False)
    norms = [l2_norm(w.grad.reshape(-1)) for w in model.trainable_weights]
    assert min(norms) < 0.3 < max(norms)


def test_clipnorm_on_the_general_plan():
    _assert_compiled_matches(CONV, {"type": "momentum", "momentum": 0.9, "clipnorm": 0.2}, shape=IMAGE)


ACTIVITY_STACKS = {  # name: (layers, input shape)
    "dense_l1l2_hidden_l2_fused_last": ([
        {"type": "dense", "units": 7, "activation": "relu", "input_shape": [FEATURES],
         "activity_regularizer": {"type": "l1l2", "l1": 0.01, "l2": 0.02}},
        {"type": "dropout", "rate": 0.3},
        {"type": "dense", "units": CLASSES, "activation": "softmax", "activity_regularizer": "l2",
         "kernel_regularizer": "l1"}], (FEATURES,)),
    "conv_l1_and_dense": ([
        {"type": "conv2d", "filters": 3, "kernel_size": 2, "activation": "relu", "input_shape": IMAGE,
         "activity_regularizer": {"type": "l1", "l1": 0.05}},
        {"type": "flatten"},
        {"type": "dense", "units": CLASSES, "activation": "softmax", "activity_regularizer": "l1"}], IMAGE),
    # inside a TimeDistributed the penalty and its gradient divide by the n * steps samples the
    # inner layer saw (TimeDistributed.activity_loss), a plain layer's by the batch's n
    "time_distributed_dense_and_conv1d": ([
        {"type": "time_distributed", "input_shape": [SIDE, SIDE, CHANNELS],
         "layer": {"type": "dense", "units": 3, "activation": "tanh",
                   "activity_regularizer": {"type": "l1l2", "l1": 0.02, "l2": 0.05}}},
        {"type": "time_distributed",
         "layer": {"type": "conv1d", "filters": 2, "kernel_size": 2, "activity_regularizer": "l2"}},
        {"type": "flatten"},
        {"type": "dense", "units": CLASSES, "activation": "softmax", "activity_regularizer": "l1"}], IMAGE),
}


def _without_activity(spec: dict) -> dict:
    """The layer spec without activity regularizers (a wrapped layer's too)."""
    return {key: _without_activity(value) if key == "layer" else value for key, value in spec.items()
            if key != "activity_regularizer"}


@pytest.mark.parametrize("stack", list(ACTIVITY_STACKS))
def test_activity_regularizers_run_compiled_bit_for_bit(stack):
    layers, shape = ACTIVITY_STACKS[stack]
    compiled = _assert_compiled_matches(layers, shape=shape, validation_split=0.2,
                                        sample_weight=np.random.default_rng(3).random(N) * 2)
    plain = [_without_activity(layer) for layer in layers]
    assert compiled[1].history["loss"] != _fit(plain, "adam", True, shape=shape, validation_split=0.2,
                                               sample_weight=np.random.default_rng(3).random(N) * 2)[1].history["loss"]


# -- layers added to the general plan ------------------------------------------------------
LAYER_STACKS = {  # name: (layers, input shape)
    "activations_norm_noise": ([
        {"type": "dense", "units": 8, "input_shape": [FEATURES]},
        {"type": "leaky_re_lu", "alpha": 0.2},
        {"type": "layer_normalization", "gamma_regularizer": "l2"},
        {"type": "gaussian_noise", "stddev": 0.3},
        {"type": "dense", "units": 8},
        {"type": "re_lu", "max_value": 1.5, "threshold": -0.2, "negative_slope": 0.1},
        {"type": "alpha_dropout", "rate": 0.2},
        {"type": "dense", "units": 8},
        {"type": "elu", "alpha": 0.7},
        {"type": "gaussian_dropout", "rate": 0.3},
        {"type": "thresholded_re_lu", "theta": 0.1},
        {"type": "prelu", "alpha_initializer": {"type": "constant", "value": 0.25}, "alpha_regularizer": "l1"},
        {"type": "dense", "units": CLASSES},
        {"type": "softmax"}], (FEATURES,)),  # a last Softmax layer fused with the loss
    "padding_upsampling_spatial_dropout_2d": ([
        {"type": "zero_padding2d", "padding": [[1, 0], [0, 2]], "input_shape": IMAGE},
        {"type": "conv2d", "filters": 3, "kernel_size": 3, "activation": "relu"},
        {"type": "up_sampling2d", "size": [2, 1]},
        {"type": "cropping2d", "cropping": [[1, 2], [0, 1]]},
        {"type": "spatial_dropout2d", "rate": 0.4},
        {"type": "prelu", "shared_axes": [1, 2], "alpha_initializer": {"type": "constant", "value": 0.1}},
        {"type": "layer_normalization", "axis": [-2, -1], "center": False},
        {"type": "flatten"},
        {"type": "dense", "units": CLASSES, "activation": "softmax"}], tuple(IMAGE)),
    "steps_1d_softmax_mid": ([
        {"type": "reshape", "target_shape": [SIDE * SIDE, CHANNELS], "input_shape": IMAGE},
        {"type": "zero_padding1d", "padding": [2, 1]},
        {"type": "cropping1d", "cropping": [1, 3]},
        {"type": "up_sampling1d", "size": 2},
        {"type": "spatial_dropout1d", "rate": 0.3},
        {"type": "conv1d", "filters": 3, "kernel_size": 3, "strides": 2},
        {"type": "softmax", "axis": 1},  # over the steps: not fused, its own backward
        {"type": "flatten"},
        {"type": "dense", "units": CLASSES, "activation": "softmax"},
        {"type": "gaussian_dropout", "rate": 0.0}], tuple(IMAGE)),  # rate 0: passes x on
    "depthwise_separable_transpose_bilinear": ([  # kernels/plan_zoo.py KIND_DEPTHWISE, KIND_CONV_TRANSPOSE
        {"type": "depthwise_conv2d", "kernel_size": 2, "depth_multiplier": 2, "padding": "same", "activation": "relu",
         "depthwise_regularizer": "l2", "input_shape": IMAGE},
        {"type": "separable_conv2d", "filters": 3, "kernel_size": 2, "dilation_rate": 2, "activation": "tanh",
         "pointwise_regularizer": "l1", "bias_regularizer": "l2"},
        {"type": "conv2d_transpose", "filters": 2, "kernel_size": 3, "strides": 2, "padding": "same",
         "activity_regularizer": "l2"},
        {"type": "up_sampling2d", "size": [2, 3], "interpolation": "bilinear"},
        {"type": "separable_conv2d", "filters": 2, "kernel_size": 3, "strides": 2, "use_bias": False},
        {"type": "conv2d_transpose", "filters": 2, "kernel_size": 2, "kernel_regularizer": "l2"},
        {"type": "flatten"},
        {"type": "dense", "units": CLASSES, "activation": "softmax"}], tuple(IMAGE)),
    "permute_repeat_vector_time_distributed": ([  # KIND_INDEX_COPY: permutations of 2 and 3 axes, a repeat
        {"type": "permute", "dims": [3, 1, 2], "input_shape": IMAGE},
        {"type": "reshape", "target_shape": [CHANNELS * SIDE, SIDE]},
        {"type": "permute", "dims": [2, 1]},
        {"type": "flatten"},
        {"type": "dense", "units": 4, "activation": "tanh"},
        {"type": "repeat_vector", "n": 3},
        {"type": "dense", "units": 2},
        {"type": "time_distributed", "layer": {"type": "dense", "units": 3, "activation": "relu",
                                               "kernel_regularizer": "l2"}},
        {"type": "permute", "dims": [2, 1]},
        {"type": "flatten"},
        {"type": "dense", "units": CLASSES, "activation": "softmax"}], tuple(IMAGE)),
    "time_distributed_conv_pool_norm": ([  # RepeatedPlan: the inner rows over n * steps samples (G_TIMES)
        {"type": "reshape", "target_shape": [2, SIDE, SIDE, 1], "input_shape": IMAGE},
        {"type": "time_distributed", "layer": {"type": "conv2d", "filters": 3, "kernel_size": 2, "activation": "relu",
                                               "kernel_regularizer": "l2"}},
        {"type": "time_distributed", "layer": {"type": "max_pooling2d", "pool_size": 2}},
        {"type": "time_distributed", "layer": {"type": "batch_normalization"}},
        {"type": "time_distributed", "layer": {"type": "conv2d", "filters": 2, "kernel_size": 1,
                                               "data_format": "channels_first"}},  # its transposes' rows too
        {"type": "time_distributed", "layer": {"type": "flatten"}},
        {"type": "time_distributed", "layer": {"type": "dense", "units": 4, "activation": "tanh"}},
        {"type": "flatten"},
        {"type": "dense", "units": CLASSES, "activation": "softmax"}], tuple(IMAGE)),
    "time_distributed_random": ([  # inner layers that draw: n * steps rows' numbers per step
        {"type": "reshape", "target_shape": [2, SIDE, SIDE * CHANNELS // 2], "input_shape": IMAGE},
        {"type": "time_distributed", "layer": {"type": "dropout", "rate": 0.3}},
        {"type": "time_distributed", "layer": {"type": "spatial_dropout1d", "rate": 0.4}},
        {"type": "time_distributed", "layer": {"type": "dense", "units": 4}},
        {"type": "time_distributed", "layer": {"type": "gaussian_noise", "stddev": 0.3}},
        {"type": "time_distributed", "layer": {"type": "gaussian_dropout", "rate": 0.3}},
        {"type": "time_distributed", "layer": {"type": "alpha_dropout", "rate": 0.2}},
        {"type": "dropout", "rate": 0.2},  # and one outside, on the same chunk
        {"type": "flatten"},
        {"type": "dense", "units": CLASSES, "activation": "softmax"}], tuple(IMAGE)),
}


@pytest.mark.parametrize("stack", list(LAYER_STACKS))
def test_added_layers_run_compiled_bit_for_bit(stack):
    layers, shape = LAYER_STACKS[stack]
    _assert_compiled_matches(layers, shape=shape, validation_split=0.2)


def test_sparse_labels_on_the_general_plan():
    """Sparse labels (one per sample, not one value per unit) reach the general plan's loss: its
    targets were reshaped to [rows, units] and the fit stopped with a ValueError."""
    x, y = _data(tuple(IMAGE))
    runs = []
    for jit in (True, False):
        model = Sequential(CONV, seed=7)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        runs.append((model, model.fit(x, y.argmax(axis=1).astype(np.float32), epochs=2, batch_size=8, jit_compile=jit,
                                      steps_per_execution=4)))
    assert runs[0][0].compiled_fallback is None
    _assert_identical(*runs)


# -- one `trainctl train` through the CLI on the compiled loop -----------------------------
CLI_CONFIG = """\
name: compiled-layers
seed: 3
model:
  layers:
    - {type: dense, units: 8, input_shape: [6], activity_regularizer: {type: l2, l2: 0.01}}
    - {type: leaky_re_lu}
    - {type: layer_normalization}
    - {type: gaussian_noise, stddev: 0.1}
    - {type: dense, units: 3, activation: softmax}
optimizer: {type: adam, learning_rate: 0.01, clipnorm: 0.5}
loss: categorical_crossentropy
metrics: [accuracy]
data:
  train: {generator: teacher, n_samples: 120, n_features: 6, n_classes: 3, hidden: 4}
fit: {epochs: 2, batch_size: 16, validation_split: 0.2, steps_per_execution: 4, jit_compile: JIT}
"""


ZOO_CONFIG = """\
name: compiled-zoo
seed: 3
model:
  layers:
    - {type: conv2d, filters: 3, kernel_size: 2, padding: same, data_format: channels_first, input_shape: [2, 4, 4]}
    - {type: depthwise_conv2d, kernel_size: 2, activation: relu, data_format: channels_first}
    - {type: permute, dims: [2, 3, 1]}
    - {type: up_sampling2d, interpolation: bilinear}
    - {type: conv2d_transpose, filters: 2, kernel_size: 2}
    - {type: flatten}
    - {type: dense, units: 3, activation: softmax}
optimizer: {type: adam, learning_rate: 0.01}
loss: categorical_crossentropy
metrics: [accuracy]
data:
  train: {generator: teacher, n_samples: 120, n_features: 32, n_classes: 3, hidden: 4}
  preprocessing: [{type: reshape, target_shape: [2, 4, 4]}]
fit: {epochs: 2, batch_size: 16, validation_split: 0.2, steps_per_execution: 4, jit_compile: JIT}
"""


@pytest.mark.parametrize("config", [CLI_CONFIG, ZOO_CONFIG], ids=["activations_norm_noise", "conv_zoo"])
def test_trainctl_train_runs_these_layers_on_the_compiled_loop(tmp_path, monkeypatch, config):
    from tests.test_cli import ok
    from tests.test_compiled import _digest
    from trainctl.train.compiled import CompiledSteps

    chunks = []
    run = CompiledSteps.run

    def counting_run(self, order, first_batch, n_steps, totals):  # a spy: the real chunk runs
        done = run(self, order, first_batch, n_steps, totals)
        chunks.append(done.shape[0])
        return done

    monkeypatch.setattr(CompiledSteps, "run", counting_run)
    for jit in ("true", "false"):
        path = tmp_path / f"{jit}.yaml"
        path.write_text(config.replace("JIT", jit))
        ok(["train", path, "--out", tmp_path / jit])
        if jit == "true":
            assert sum(chunks) == 2 * 6 and chunks  # 96 training samples in batches of 16: every step compiled
    assert chunks and sum(chunks) == 12  # the Python run added none
    for name in ("weights.safetensors", "optimizer.safetensors", "history.csv"):
        assert _digest(tmp_path / "true" / name) == _digest(tmp_path / "false" / name), name
