"""Initializers: distributions and limits on large shapes, TF.js fans and defaults,
determinism, orthogonality, identity, truncation bounds and parameter errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainctl.errors import TrainctlError
from trainctl.nn.initializers import (
    INITIALIZERS,
    TRUNCATED_NORMAL_STD,
    build_initializer,
    compute_fans,
)
from trainctl.seeding import rng_for

BIG = (400, 500)  # fan_in 400, fan_out 500, 200k draws: sample std within ~0.2% of the truth


def draw(spec, shape=BIG, seed=0, dtype=np.float64):
    return build_initializer(spec)(shape, rng_for(seed, "init", "test"), dtype)


def assert_moments(x, mean, std, rel=0.02):
    n = x.size
    assert abs(x.mean() - mean) < 5 * std / math.sqrt(n) + 1e-12, (x.mean(), mean)
    assert abs(x.std() / std - 1) < rel, (x.std(), std)


def test_constant_zeros_ones():
    np.testing.assert_array_equal(draw("zeros", (3, 4)), np.zeros((3, 4)))
    np.testing.assert_array_equal(draw("ones", (2, 2, 2)), np.ones((2, 2, 2)))
    np.testing.assert_array_equal(draw({"type": "constant", "value": -1.5}, (5,)), np.full(5, -1.5))


def test_random_normal_defaults_and_params():
    assert_moments(draw("random_normal"), 0.0, 0.05)  # TF.js DEFAULT_STDDEV
    assert_moments(draw({"type": "random_normal", "mean": 1.0, "stddev": 2.0}), 1.0, 2.0)


def test_random_uniform_defaults_and_params():
    x = draw("random_uniform")
    assert -0.05 <= x.min() and x.max() < 0.05 and x.max() > 0.0499 and x.min() < -0.0499
    assert_moments(x, 0.0, 0.1 / math.sqrt(12))
    y = draw({"type": "randomUniform", "minval": 0, "maxval": 2})  # 0 is 0, unlike TF.js's `minval || -0.05`
    assert 0 <= y.min() < 0.001 and 1.999 < y.max() < 2
    assert_moments(y, 1.0, 2 / math.sqrt(12))


def test_truncated_normal_redraws_beyond_two_stddev():
    x = draw("truncated_normal")
    assert np.abs(x).max() <= 2 * 0.05
    assert np.abs(x).max() > 1.99 * 0.05
    assert_moments(x, 0.0, 0.05 * TRUNCATED_NORMAL_STD)
    y = draw({"type": "truncated_normal", "mean": 3.0, "stddev": 0.5})
    assert np.abs(y - 3.0).max() <= 1.0
    assert_moments(y, 3.0, 0.5 * TRUNCATED_NORMAL_STD)


def test_truncated_normal_constant_matches_the_distribution():
    # Var of N(0,1) truncated to [-2, 2]: 1 - 2 * 2 * phi(2) / (2 * Phi(2) - 1)
    phi = math.exp(-2) / math.sqrt(2 * math.pi)
    mass = math.erf(2 / math.sqrt(2))
    assert TRUNCATED_NORMAL_STD == pytest.approx(math.sqrt(1 - 4 * phi / mass), rel=1e-12)


@pytest.mark.parametrize("spec, scale, n_key", [
    ("glorot_uniform", 1.0, "avg"), ("he_uniform", 2.0, "in"), ("lecun_uniform", 1.0, "in"),
    ({"type": "variance_scaling", "scale": 3.0, "mode": "fan_out", "distribution": "uniform"}, 3.0, "out"),
])
def test_uniform_variance_scaling_limits(spec, scale, n_key):
    n = {"in": 400, "out": 500, "avg": 450}[n_key]
    limit = math.sqrt(3 * scale / n)
    x = draw(spec)
    assert x.max() <= limit and x.min() >= -limit and x.max() > 0.999 * limit
    assert_moments(x, 0.0, limit / math.sqrt(3))


@pytest.mark.parametrize("spec, scale, n_key", [
    ("glorot_normal", 1.0, "avg"), ("he_normal", 2.0, "in"), ("lecun_normal", 1.0, "in"),
    ("varianceScaling", 1.0, "in"),  # TF.js defaults: scale 1, fanIn, normal
    ({"type": "variance_scaling", "scale": 0.5, "mode": "fanAvg"}, 0.5, "avg"),
])
def test_normal_variance_scaling_is_truncated_without_correction_as_tfjs(spec, scale, n_key):
    n = {"in": 400, "out": 500, "avg": 450}[n_key]
    stddev = math.sqrt(scale / n)  # TF.js: truncatedNormal(0, sqrt(scale)), no 0.8796 correction
    x = draw(spec)
    assert np.abs(x).max() <= 2 * stddev
    assert_moments(x, 0.0, stddev * TRUNCATED_NORMAL_STD)


def test_truncated_normal_distribution_has_the_target_variance():
    spec = {"type": "variance_scaling", "scale": 2.0, "mode": "fan_in", "distribution": "truncatedNormal"}
    x = draw(spec)
    target = math.sqrt(2.0 / 400)
    assert_moments(x, 0.0, target)
    assert np.abs(x).max() <= 2 * target / TRUNCATED_NORMAL_STD


def test_compute_fans_as_tfjs():
    assert compute_fans((7, 3)) == (7, 3)
    assert compute_fans((5, 16, 32)) == (5 * 16, 5 * 32)  # conv1d kernel [width, in, out]
    assert compute_fans((3, 3, 16, 32)) == (144, 288)  # conv2d kernel
    assert compute_fans((2, 3, 3, 4, 8)) == (18 * 4, 18 * 8)  # conv3d kernel
    assert compute_fans((16,)) == (4.0, 4.0)  # other ranks: sqrt(size) for both
    assert compute_fans((2, 2, 2, 2, 2, 2)) == (8.0, 8.0)


def test_conv_kernel_uses_receptive_field():
    x = draw("he_uniform", (3, 3, 64, 32))
    limit = math.sqrt(3 * 2.0 / (9 * 64))
    assert x.max() <= limit and x.max() > 0.99 * limit


def test_fan_below_one_counts_as_one():
    x = draw({"type": "variance_scaling", "distribution": "uniform"}, (1, 1))
    assert abs(x[0, 0]) <= math.sqrt(3.0)


def test_determinism_dtype_and_seed_option():
    a = draw("glorot_uniform", (30, 20), seed=5, dtype=np.float32)
    b = draw("glorot_uniform", (30, 20), seed=5, dtype=np.float32)
    c = draw("glorot_uniform", (30, 20), seed=6, dtype=np.float32)
    assert a.dtype == np.float32 and a.shape == (30, 20)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    for type_id in INITIALIZERS.names():
        if type_id in ("constant", "identity"):
            continue
        first = draw(type_id, (6, 6), seed=1)
        np.testing.assert_array_equal(first, draw(type_id, (6, 6), seed=1), err_msg=type_id)
    seeded = {"type": "random_normal", "seed": 3}
    np.testing.assert_array_equal(draw(seeded, (4, 4), seed=1), draw(seeded, (4, 4), seed=2))


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (40, 40), (3, 3, 4, 8)])
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_orthogonal(shape, gain):
    q = draw({"type": "orthogonal", "gain": gain}, shape)
    assert q.shape == shape
    m = q.reshape(-1, shape[-1])
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(gram, gain**2 * np.eye(gram.shape[0]), atol=1e-12)


def test_orthogonal_is_gram_schmidt_of_the_draw():
    # Gram-Schmidt gives a positive diagonal in R: the first row follows the first draw's direction
    rng_a, rng_b = rng_for(0, "o"), rng_for(0, "o")
    q = build_initializer("orthogonal")((3, 5), rng_a, np.float64)
    a = rng_b.standard_normal((3, 5))
    np.testing.assert_allclose(q[0], a[0] / np.linalg.norm(a[0]), atol=1e-12)
    with pytest.raises(TrainctlError, match="at least 2 axes"):
        draw("orthogonal", (5,))


def test_identity():
    np.testing.assert_array_equal(draw("identity", (3, 3)), np.eye(3))
    np.testing.assert_array_equal(draw({"type": "identity", "gain": 0.5}, (2, 2), dtype=np.float32),
                                  0.5 * np.eye(2, dtype=np.float32))
    for shape in [(2, 3), (3,), (2, 2, 2)]:
        with pytest.raises(TrainctlError, match="2-D square"):
            draw("identity", shape)


def test_ids_and_camel_case_spellings():
    expected = {"constant", "zeros", "ones", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform",
                "lecun_normal", "lecun_uniform", "random_normal", "random_uniform", "truncated_normal",
                "variance_scaling", "orthogonal", "identity"}
    assert set(INITIALIZERS.names()) == expected
    for spelling, type_id in [("glorotUniform", "glorot_uniform"), ("heNormal", "he_normal"),
                              ("leCunNormal", "lecun_normal"), ("leCunUniform", "lecun_uniform"),
                              ("truncatedNormal", "truncated_normal"), ("varianceScaling", "variance_scaling")]:
        assert build_initializer(spelling).type_id == type_id


def test_get_config_round_trip():
    for spec in ["glorot_uniform", {"type": "random_normal", "mean": 0.1, "stddev": 0.2},
                 {"type": "variance_scaling", "scale": 2, "mode": "fanOut", "distribution": "uniform"},
                 {"type": "constant", "value": 3}]:
        config = build_initializer(spec).get_config()
        assert build_initializer(config).get_config() == config
    assert build_initializer({"type": "varianceScaling", "mode": "fanAvg"}).get_config() == {
        "type": "variance_scaling", "scale": 1.0, "mode": "fan_avg", "distribution": "normal"}
    assert build_initializer("random_uniform").get_config() == {"type": "random_uniform", "minval": -0.05, "maxval": 0.05}


@pytest.mark.parametrize("spec, fragment", [
    ("glorot_unifrom", "did you mean 'glorot_uniform'"),
    ({"type": "random_normal", "stdev": 0.1}, "did you mean 'stddev'"),
    ({"type": "random_normal", "stddev": -1}, "stddev"),
    ({"type": "random_uniform", "minval": 1, "maxval": 0}, "must not exceed maxval"),
    ({"type": "variance_scaling", "scale": 0}, "scale"),
    ({"type": "variance_scaling", "mode": "fan_sideways"}, "mode"),
    ({"type": "variance_scaling", "distribution": "cauchy"}, "distribution"),
    ({"type": "constant"}, "value: required"),
    ({"type": "constant", "value": float("inf")}, "finite"),
    ({"type": "glorot_uniform", "scale": 2}, "unknown key 'scale'"),
    ({"type": "zeros", "value": 1}, "unknown key 'value'"),
    ({"stddev": 1}, "needs a 'type' key"),
])
def test_bad_params_raise_clear_errors(spec, fragment):
    with pytest.raises(TrainctlError) as caught:
        build_initializer(spec)
    assert fragment in str(caught.value)
