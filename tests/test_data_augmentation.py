"""Image augmentation steps (random_flip, random_translation, random_rotation, random_zoom):
exact transforms against numpy, Keras fill modes, seeding per (epoch, batch), training batches
only, and the config checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainctl.data import DataConfig, load_data
from trainctl.data.augmentation import build_augmentation
from trainctl.data.config import PREPROCESSING_CONFIGS
from trainctl.errors import TrainctlError
from trainctl.nn.model import Sequential


def step(spec: dict):
    return PREPROCESSING_CONFIGS[spec["type"]].model_validate(spec)


def augment(spec: dict, x: np.ndarray, epoch=0, batch=0, seed=0) -> np.ndarray:
    return build_augmentation([step(spec)], x.shape[1:], seed).apply(x, epoch, batch).copy()


def images(n=16, rows=6, cols=6, channels=2, seed=0):
    return np.random.default_rng(seed).random((n, rows, cols, channels)).astype(np.float32)


def test_random_flip_flips_each_image_or_leaves_it():
    x = images(64)
    y = augment({"type": "random_flip", "mode": "horizontal"}, x)
    flipped = np.array([np.array_equal(a, b[:, ::-1]) for a, b in zip(y, x)])
    same = np.array([np.array_equal(a, b) for a, b in zip(y, x)])
    assert np.all(flipped | same) and 16 < flipped.sum() < 48
    y = augment({"type": "random_flip"}, x)  # Keras default: horizontal_and_vertical
    options = [lambda b: b, lambda b: b[::-1], lambda b: b[:, ::-1], lambda b: b[::-1, ::-1]]
    kinds = [next(k for k, f in enumerate(options) if np.array_equal(a, f(b))) for a, b in zip(y, x)]
    assert set(kinds) == {0, 1, 2, 3}


@pytest.mark.parametrize("fill_mode,expected_top", [
    ("constant", lambda x: np.full_like(x[:, :2], 0.5)),
    ("reflect", lambda x: x[:, [1, 0]]),     # (d c b a | a b c d)
    ("wrap", lambda x: x[:, [-2, -1]]),      # (a b c d | a b c d)
    ("nearest", lambda x: x[:, [0, 0]]),     # (a a a a | a b c d)
])
def test_random_translation_shifts_with_keras_fill_modes(fill_mode, expected_top):
    x = images(4, rows=8)
    y = augment({"type": "random_translation", "height_factor": [0.25, 0.25], "width_factor": 0.0,
                 "fill_mode": fill_mode, "fill_value": 0.5}, x)
    np.testing.assert_allclose(y[:, 2:], x[:, :-2], atol=1e-6)  # 25% of 8 rows: 2 rows down
    np.testing.assert_allclose(y[:, :2], expected_top(x), atol=1e-6)


def test_random_rotation_by_a_quarter_turn_is_rot90_counter_clockwise():
    x = images(3, rows=5, cols=5)
    y = augment({"type": "random_rotation", "factor": [0.25, 0.25]}, x)
    np.testing.assert_allclose(y, np.rot90(x, k=1, axes=(1, 2)), atol=1e-5)


def test_random_zoom_scales_about_the_centre():
    x = images(3, rows=5, cols=7)
    y = augment({"type": "random_zoom", "height_factor": [-0.5, -0.5], "interpolation": "nearest"}, x)
    # zoom 0.5 (in) in both directions: output (r, c) reads (2 + (r-2)/2, 3 + (c-3)/2), rounded half up
    rows = np.floor(2 + (np.arange(5) - 2) * 0.5 + 0.5).astype(int)
    cols = np.floor(3 + (np.arange(7) - 3) * 0.5 + 0.5).astype(int)
    np.testing.assert_array_equal(y, x[:, rows][:, :, cols])
    out = augment({"type": "random_zoom", "height_factor": [1.0, 1.0], "width_factor": [0.0, 0.0],
                   "fill_mode": "constant"}, x)  # zoom out 2× in rows only: the outer rows are fill
    np.testing.assert_allclose(out[:, 2], x[:, 2], atol=1e-6)
    np.testing.assert_allclose(out[:, 0], 0.0)


def test_draws_depend_on_epoch_and_batch_only():
    x = images(8)
    spec = {"type": "random_rotation", "factor": 0.1}
    a, b = augment(spec, x, epoch=1, batch=3), augment(spec, x, epoch=1, batch=3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, augment(spec, x, epoch=1, batch=4))
    assert not np.allclose(a, augment(spec, x, epoch=2, batch=3))
    assert not np.allclose(a, augment(spec, x, epoch=1, batch=3, seed=1))


def test_augmentation_changes_training_batches_only():
    rng = np.random.default_rng(0)
    x = rng.random((40, 4, 4, 1)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 40)]
    seen = []

    class Spy(Sequential):
        def forward(self, xb, training=False):
            seen.append((training, xb.copy()))
            return super().forward(xb, training)

    model = Spy([{"type": "flatten", "input_shape": [4, 4, 1]}, {"type": "dense", "units": 2, "activation": "softmax"}])
    model.compile("sgd", "categorical_crossentropy")
    augmentation = build_augmentation([step({"type": "random_flip", "mode": "vertical"})], (4, 4, 1), 0)
    # step by step, so the spy's forward sees each batch (the compiled loop, once cached, trains
    # the same batches inside one call: tests/test_compiled_conv.py)
    model.fit(x[:32], y[:32], epochs=1, batch_size=32, shuffle=False, validation_data=(x[32:], y[32:]),
              augmentation=augmentation, jit_compile=False)
    train_batches = [b for training, b in seen if training]
    eval_batches = [b for training, b in seen if not training]
    assert len(train_batches) == 1 and not np.array_equal(train_batches[0], x[:32])
    flipped = [np.array_equal(a, b[::-1]) for a, b in zip(train_batches[0], x[:32])]
    assert 4 < sum(flipped) < 28
    assert any(np.array_equal(b, x[32:]) for b in eval_batches)  # validation unchanged


def test_config_checks():
    with pytest.raises(ValueError, match="augmentation steps act on the training batches"):
        DataConfig.model_validate({"train": {"generator": "xor"},
                                   "preprocessing": [{"type": "random_flip"}, {"type": "reshape", "target_shape": [2, 1, 1]}]})
    with pytest.raises(ValueError, match="low <= high"):
        step({"type": "random_rotation", "factor": [0.2, -0.1]})
    with pytest.raises(ValueError):
        step({"type": "random_zoom", "height_factor": 0.2, "fill_mode": "mirror"})
    config = DataConfig.model_validate({"train": {"generator": "xor", "n_samples": 10},
                                        "preprocessing": [{"type": "randomFlip"}]})
    with pytest.raises(TrainctlError, match=r"random_flip needs images \[rows, cols, channels\], but samples have shape \[2\]"):
        load_data(config, 0, Path("."))
