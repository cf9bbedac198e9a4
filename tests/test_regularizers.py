"""Regularizers: TF.js defaults, penalty against numpy, gradient against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from trainctl.errors import TrainctlError
from trainctl.nn.regularizers import REGULARIZERS, build_regularizer


def test_ids_and_tfjs_defaults():
    assert set(REGULARIZERS.names()) == {"l1", "l2", "l1l2"}
    assert (build_regularizer("l1l2").l1, build_regularizer("l1l2").l2) == (0.01, 0.01)
    assert (build_regularizer("L1L2").l1, build_regularizer("L1L2").l2) == (0.01, 0.01)
    assert (build_regularizer("l1").l1, build_regularizer("l1").l2) == (0.01, 0.0)
    assert (build_regularizer("l2").l1, build_regularizer("l2").l2) == (0.0, 0.01)
    r = build_regularizer({"type": "l1l2", "l1": 0.5})
    assert (r.l1, r.l2) == (0.5, 0.01)
    assert r.get_config() == {"type": "l1l2", "l1": 0.5, "l2": 0.01}
    assert build_regularizer(r.get_config()).get_config() == r.get_config()
    assert build_regularizer(None) is None
    assert build_regularizer(r) is r


@pytest.mark.parametrize("spec, fragment", [
    ("l3", "unknown regularizer"),
    ({"type": "l1", "l2": 0.1}, "unknown key 'l2'"),
    ({"type": "l2", "l2": -0.1}, "l2"),
    ({"type": "l1l2", "l1": float("nan")}, "l1"),
])
def test_bad_specs(spec, fragment):
    with pytest.raises(TrainctlError) as caught:
        build_regularizer(spec)
    assert fragment in str(caught.value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("l1, l2", [(0.01, 0.0), (0.0, 0.02), (0.03, 0.5)])
def test_penalty_matches_numpy(l1, l2, dtype):
    w = np.random.default_rng(0).standard_normal((7, 5, 3)).astype(dtype)
    expected = l1 * np.abs(w.astype(np.float64)).sum() + l2 * np.square(w.astype(np.float64)).sum()
    got = build_regularizer({"type": "l1l2", "l1": l1, "l2": l2}).penalty(w)
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("spec", ["l1", "l2", {"type": "l1l2", "l1": 0.03, "l2": 0.7}])
def test_add_grad_matches_finite_differences(spec):
    regularizer = build_regularizer(spec)
    w = np.random.default_rng(1).standard_normal((6, 4))
    w[np.abs(w) < 1e-3] = 0.5  # keep |w| away from the kink of |w|
    start = np.random.default_rng(2).standard_normal((6, 4))
    grad = start.copy()
    regularizer.add_grad(w, grad)
    h = 1e-6
    numeric = np.empty_like(w)
    for index in np.ndindex(w.shape):
        plus, minus = w.copy(), w.copy()
        plus[index] += h
        minus[index] -= h
        numeric[index] = (regularizer.penalty(plus) - regularizer.penalty(minus)) / (2 * h)
    np.testing.assert_allclose(grad - start, numeric, rtol=1e-6, atol=1e-9)


def test_add_grad_in_place_sign_at_zero_and_strided_views():
    r = build_regularizer({"type": "l1l2", "l1": 0.1, "l2": 0.25})
    w = np.array([[-2.0, 0.0], [3.0, -0.0]], np.float32)
    grad = np.ones_like(w)
    buffer = grad
    r.add_grad(w, grad)
    assert grad is buffer and grad.dtype == np.float32
    np.testing.assert_allclose(grad, [[1 - 0.1 - 1.0, 1.0], [1 + 0.1 + 1.5, 1.0]], rtol=1e-6)
    big_w = np.arange(12.0).reshape(3, 4) - 5
    big_grad = np.zeros((3, 4))
    r.add_grad(big_w[:, ::2], big_grad[:, ::2])  # strided: still in place
    np.testing.assert_allclose(big_grad[:, ::2], 0.1 * np.sign(big_w[:, ::2]) + 0.5 * big_w[:, ::2])
    assert not big_grad[:, 1::2].any()
    with pytest.raises(ValueError, match="shape"):
        r.add_grad(w, np.zeros(3, np.float32))
