"""Each generator: shapes, label encoding, statistics, seeding."""

from pathlib import Path

import numpy as np
import pytest

from trainctl.data import DataConfig, load_data


def load(train: dict, seed: int = 0, **extra):
    return load_data(DataConfig.model_validate({"train": train, **extra}), seed, Path("."))


def test_random_normal_statistics_and_shapes():
    d = load({"generator": "randomNormal", "n_samples": 20000, "shape": [4, 3], "target_shape": [2], "mean": 1.5, "stddev": 2.0})
    assert d.x.shape == (20000, 4, 3) and d.y.shape == (20000, 2) and d.x.dtype == np.float32
    assert abs(d.x.mean() - 1.5) < 0.03 and abs(d.x.std() - 2.0) < 0.03
    assert abs(np.corrcoef(d.x[:, 0, 0], d.y[:, 0])[0, 1]) < 0.03  # x and y drawn separately


def test_random_uniform_range():
    d = load({"generator": "random_uniform", "n_samples": 10000, "shape": [5], "minval": -3, "maxval": 1})
    assert d.x.min() >= -3 and d.x.max() < 1 and abs(d.x.mean() + 1) < 0.05


def test_linear_is_the_basic_training_loops_data():
    d = load({"generator": "linear"})
    assert d.x.shape == (201, 1) and d.y.shape == (201, 1)
    np.testing.assert_allclose(d.x[:, 0], np.linspace(-2, 2, 201), rtol=1e-6)
    w, b = np.polyfit(d.x[:, 0], d.y[:, 0], 1)
    assert abs(w - 3) < 0.3 and abs(b - 2) < 0.3
    assert 0.8 < np.std(d.y[:, 0] - (3 * d.x[:, 0] + 2)) < 1.2


def test_linear_with_several_weights_recovers_them():
    d = load({"generator": "linear", "n_samples": 5000, "true_w": [1.0, -2.0, 0.5], "true_b": 0.25, "noise": 0.01})
    design = np.hstack([d.x, np.ones((len(d.x), 1))])
    coef = np.linalg.lstsq(design, d.y[:, 0], rcond=None)[0]
    np.testing.assert_allclose(coef, [1.0, -2.0, 0.5, 0.25], atol=0.01)


def test_polynomial_and_sine_follow_their_formula():
    d = load({"generator": "polynomial", "n_samples": 3000, "coefficients": [1, 0, -2], "noise": 0.0})
    np.testing.assert_allclose(d.y[:, 0], 1 - 2 * d.x[:, 0] ** 2, rtol=1e-5, atol=1e-5)
    d = load({"generator": "sine", "n_samples": 3000, "amplitude": 2, "frequency": 3, "noise": 0.0})
    np.testing.assert_allclose(d.y[:, 0], 2 * np.sin(3 * d.x[:, 0]), atol=1e-5)


@pytest.mark.parametrize("name", ["moons", "circles", "xor", "spirals"])
def test_two_class_generators_are_balanced_binary(name):
    d = load({"generator": name, "n_samples": 1000})
    assert d.x.shape == (1000, 2) and d.y.shape == (1000, 1) and d.label_encoding == "binary"
    assert set(np.unique(d.y)) == {0.0, 1.0} and abs(d.y.mean() - 0.5) < 0.05
    assert d.class_names == ["0", "1"]


def test_circles_radii():
    d = load({"generator": "circles", "n_samples": 2000, "noise": 0.0, "factor": 0.3})
    r = np.linalg.norm(d.x, axis=1)
    np.testing.assert_allclose(r[d.y[:, 0] == 0], 1.0, atol=1e-5)
    np.testing.assert_allclose(r[d.y[:, 0] == 1], 0.3, atol=1e-5)


def test_xor_labels_are_sign_disagreement():
    d = load({"generator": "xor", "n_samples": 2000})
    np.testing.assert_array_equal(d.y[:, 0], ((d.x[:, 0] > 0) != (d.x[:, 1] > 0)).astype(np.float32))


def test_blobs_one_hot_clusters():
    d = load({"generator": "blobs", "n_samples": 3000, "n_features": 3, "n_classes": 4, "cluster_std": 0.5})
    assert d.x.shape == (3000, 3) and d.y.shape == (3000, 4) and d.label_encoding == "one_hot"
    labels = d.y.argmax(1)
    for k in range(4):
        members = d.x[labels == k]
        assert abs(len(members) - 750) <= 1
        np.testing.assert_allclose(members.std(axis=0), 0.5, atol=0.05)


def test_spirals_many_classes_sparse_for_sparse_loss():
    cfg = DataConfig.model_validate({"train": {"generator": "spirals", "n_samples": 900, "n_classes": 3}})
    d = load_data(cfg, 0, Path("."), loss="sparseCategoricalCrossentropy")
    assert d.y.shape == (900, 1) and d.label_encoding == "sparse" and set(np.unique(d.y)) == {0, 1, 2}


def test_teacher_any_width_is_learnable_and_uses_every_class():
    d = load({"generator": "teacher", "n_samples": 6000, "n_features": 784, "n_classes": 10, "hidden": 32})
    assert d.x.shape == (6000, 784) and d.y.shape == (6000, 10)
    counts = d.y.sum(0)
    assert counts.min() > 100, counts  # centred logits: no class left empty
    # Labels are a deterministic function of x: the same x gives the same label in another split.
    v = load({"generator": "teacher", "n_samples": 6000, "n_features": 784, "n_classes": 10},
             validation={"generator": "teacher", "n_samples": 500, "n_features": 784, "n_classes": 10})
    assert not np.array_equal(v.x[:500], v.x_val)  # validation draws different samples ...
    # ... from the same teacher: a linear probe fitted on train transfers to validation.
    w = np.linalg.lstsq(v.x, v.y, rcond=None)[0]
    assert (np.argmax(v.x_val @ w, 1) == v.y_val.argmax(1)).mean() > 0.5


def test_generators_are_seeded():
    a = load({"generator": "moons", "n_samples": 100}, seed=1)
    b = load({"generator": "moons", "n_samples": 100}, seed=1)
    c = load({"generator": "moons", "n_samples": 100}, seed=2)
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)


def test_zip_of_two_generators_is_the_guides_dummy_data():
    d = load({"zip": {"x": {"generator": "random_normal", "n_samples": 100, "shape": [784]},
                      "y": {"generator": "random_uniform", "n_samples": 100, "shape": [10]}}})
    assert d.x.shape == (100, 784) and d.y.shape == (100, 10)
    assert d.y.min() >= 0 and d.y.max() < 1


def test_token_sequences_are_integer_tokens_labelled_by_a_hidden_bag_of_tokens_rule():
    d = load({"generator": "token_sequences", "n_samples": 4000, "vocab_size": 30, "length": 12, "n_classes": 3},
             validation={"generator": "token_sequences", "n_samples": 1000, "vocab_size": 30, "length": 12, "n_classes": 3})
    assert d.x.shape == (4000, 12) and d.y.shape == (4000, 3)
    assert np.all(d.x == np.floor(d.x)) and d.x.min() >= 1 and d.x.max() <= 29
    counts = d.y.sum(axis=0)
    assert counts.min() > 4000 / 3 * 0.6  # every class is common
    assert not np.array_equal(d.x[:1000], d.x_val)  # train and validation differ ...

    def bags(x):
        return np.stack([np.bincount(row.astype(int), minlength=30) for row in x])

    # ... but share the rule: a linear model on token counts fitted on train transfers
    design = np.hstack([bags(d.x), np.ones((len(d.x), 1))])
    coef = np.linalg.lstsq(design, d.y * 2 - 1, rcond=None)[0]
    val_pred = np.argmax(np.hstack([bags(d.x_val), np.ones((1000, 1))]) @ coef, axis=1)
    assert (val_pred == d.y_val.argmax(axis=1)).mean() > 0.8


def test_token_sequences_with_min_length_are_zero_padded_at_the_end():
    d = load({"generator": "token_sequences", "n_samples": 500, "vocab_size": 10, "length": 8, "min_length": 3})
    nonzero = d.x != 0
    lengths = nonzero.sum(axis=1)
    assert lengths.min() >= 3 and lengths.max() == 8 and len(np.unique(lengths)) == 6
    np.testing.assert_array_equal(nonzero, np.arange(8)[None, :] < lengths[:, None])  # padding only at the end
