"""Losses: values against the plain-numpy TF.js references, gradients (generic and fused)
against central finite differences in float64, clipping edge cases, the registry."""

import numpy as np
import pytest

from tests.reference.activations import sigmoid as ref_sigmoid
from tests.reference.activations import softmax as ref_softmax
from tests.reference.losses import EPSILON, REFERENCE
from trainctl.nn.activations import ACTIVATIONS
from trainctl.kernels import codes
from trainctl.nn.losses import LOSSES
from trainctl.registry import UnknownIdError
from tests.reference.gradients import numeric_grad

NAMES = sorted(codes.LOSS_CODES)


def make_inputs(name, rng, shape):
    """(y_true, y_pred) suited to the loss, away from kinks and clip boundaries."""
    n = shape[-1]
    if name == "sparse_categorical_crossentropy":
        labels = rng.integers(0, n, size=shape[:-1] + (1,)).astype(np.float64)
        p = rng.uniform(0.05, 1.0, size=shape)
        return labels, p / p.sum(axis=-1, keepdims=True)
    if name == "categorical_crossentropy":
        # soft targets and unnormalised predictions: exercises TF.js's division by the row sum
        return rng.dirichlet(np.ones(n), size=shape[:-1]), rng.uniform(0.05, 1.0, size=shape)
    if name == "kullback_leibler_divergence":
        return rng.dirichlet(np.ones(n), size=shape[:-1]), rng.uniform(0.05, 0.95, size=shape)
    if name == "categorical_hinge":
        t = np.eye(n)[rng.integers(0, n, size=shape[:-1])]
        return t, rng.normal(size=shape) * 0.3  # 1 + neg - pos stays well above 0
    if name == "binary_crossentropy":
        return rng.integers(0, 2, size=shape).astype(np.float64), rng.uniform(0.05, 0.95, size=shape)
    if name in ("hinge", "squared_hinge"):
        t = rng.choice([-1.0, 1.0], size=shape)
        p = rng.normal(size=shape)
        margin = 1.0 - t * p
        p[np.abs(margin) < 0.05] += 0.2 * t[np.abs(margin) < 0.05]
        return t, p
    if name == "mean_absolute_percentage_error":
        t = rng.uniform(0.5, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
        return t, t + rng.uniform(0.1, 1.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    if name in ("mean_squared_logarithmic_error", "poisson"):
        return rng.uniform(0.0, 3.0, size=shape), rng.uniform(0.1, 3.0, size=shape)
    t = rng.normal(size=shape)
    return t, t + rng.uniform(0.1, 1.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)


def batch_objective(loss, t, row_scale):
    return lambda p: float(np.dot(row_scale, loss.compute(t, p)))


# -- registry and metadata --------------------------------------------------------------------
def test_all_fourteen_tfjs_losses_are_registered():
    assert len(NAMES) == 14
    assert set(LOSSES.names()) == set(NAMES) == set(REFERENCE)


@pytest.mark.parametrize(
    "spelling,name",
    [
        ("meanSquaredError", "mean_squared_error"),
        ("mse", "mean_squared_error"),
        ("MSE", "mean_squared_error"),
        ("meanAbsoluteError", "mean_absolute_error"),
        ("mae", "mean_absolute_error"),
        ("MAE", "mean_absolute_error"),
        ("meanAbsolutePercentageError", "mean_absolute_percentage_error"),
        ("mape", "mean_absolute_percentage_error"),
        ("MAPE", "mean_absolute_percentage_error"),
        ("meanSquaredLogarithmicError", "mean_squared_logarithmic_error"),
        ("msle", "mean_squared_logarithmic_error"),
        ("MSLE", "mean_squared_logarithmic_error"),
        ("squaredHinge", "squared_hinge"),
        ("hinge", "hinge"),
        ("categoricalHinge", "categorical_hinge"),
        ("logcosh", "logcosh"),
        ("categoricalCrossentropy", "categorical_crossentropy"),
        ("sparseCategoricalCrossentropy", "sparse_categorical_crossentropy"),
        ("binaryCrossentropy", "binary_crossentropy"),
        ("kullbackLeiblerDivergence", "kullback_leibler_divergence"),
        ("kld", "kullback_leibler_divergence"),
        ("KLD", "kullback_leibler_divergence"),
        ("poisson", "poisson"),
        ("cosineProximity", "cosine_proximity"),
        ("cosine", "cosine_proximity"),
    ],
)
def test_tfjs_ids_and_aliases_resolve(spelling, name):
    assert LOSSES.resolve(spelling) == name
    assert LOSSES.get(spelling).name == name


def test_unknown_loss_suggests_the_closest():
    with pytest.raises(UnknownIdError, match="did you mean 'categorical_crossentropy'"):
        LOSSES.get("categorical_crossentopy")
    with pytest.raises(UnknownIdError, match="did you mean 'binary_crossentropy'"):
        LOSSES.get("binaryCrossEntropy")


def test_target_facts_drive_the_checks_production_runs():
    # The loop's check_targets/check_loss_applicable and the data's label encoding ask the Loss.
    from trainctl.data import label_encoding
    from trainctl.errors import DataError

    cce, scce, bce = (LOSSES.get(n) for n in ("categorical_crossentropy", "sparse_categorical_crossentropy",
                                               "binary_crossentropy"))
    assert (cce.fused_activation, scce.fused_activation, bce.fused_activation) == ("softmax", "softmax", "sigmoid")
    assert LOSSES.get("kld").needs_probabilities and LOSSES.get("kld").fused_activation is None
    for name, encoding in [("categorical_crossentropy", "one_hot"), ("kld", "one_hot"), ("categorical_hinge", "one_hot"),
                           ("sparse_categorical_crossentropy", "sparse"), ("binary_crossentropy", "binary"),
                           ("hinge", "binary"), ("mse", None), ("poisson", None)]:
        assert LOSSES.get(name).label_encoding == encoding, name
        by_loss = encoding if encoding in ("sparse", "one_hot") else None  # else the number of classes decides
        assert label_encoding("auto", name, 3, True, False) == (by_loss or "one_hot"), name
        assert label_encoding("auto", name, 2, True, False) == (by_loss or "binary"), name
        assert label_encoding("auto", name, 3, False, False) == (encoding if encoding in ("sparse", "one_hot") else "none")
    assert cce.check_output(1, "softmax") and scce.check_output(1, "softmax") and not bce.check_output(1, "sigmoid")
    assert "expects a softmax output" in cce.check_output(3, "sigmoid")[0]
    assert "expects probabilities" in bce.check_output(1, "relu")[0]
    assert not LOSSES.get("mse").check_output(1, "relu")
    labels = np.array([[0.0], [2.0], [3.0]])
    with pytest.raises(DataError, match=r"where: row 3: labels must be integers in \[0, 2\]"):
        scce.check_targets(labels, (3,), "where")
    scce.check_targets(labels[:2], (3,), "where")
    with pytest.raises(DataError, match="targets look like class labels"):
        cce.check_targets(labels, (3,), "where")
    with pytest.raises(DataError, match=r"binary_crossentropy needs targets in \[0, 1\]"):
        bce.check_targets(np.array([[0.0], [2.0]]), (1,), "where")
    LOSSES.get("hinge").check_targets(np.array([[-1.0], [1.0]]), (1,), "where")  # ±1 targets pass
    for name in NAMES:
        assert LOSSES.get(name).target_kind in ("one_hot", "sparse_labels", "binary", "signed", "regression")


# -- values -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_match_reference_nd(name, dtype):
    rng = np.random.default_rng(10)
    t, p = make_inputs(name, rng, (4, 3, 5))
    t, p = t.astype(dtype), p.astype(dtype)
    per_row = LOSSES.get(name).compute(t, p)
    assert per_row.shape == (12,) and per_row.dtype == dtype
    expected = REFERENCE[name](t.astype(np.float64), p.astype(np.float64)).reshape(-1)
    rtol, atol = (1e-5, 1e-6) if dtype == np.float32 else (1e-12, 1e-13)
    np.testing.assert_allclose(per_row, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", NAMES)
def test_values_at_kinks_and_clips_match_reference(name):
    """Values the kernels must get right even where gradients are conventions."""
    t = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    p = np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    if name == "sparse_categorical_crossentropy":
        t = np.array([[0.0], [1.0], [3.0]])
    np.testing.assert_allclose(LOSSES.get(name).compute(t, p), REFERENCE[name](t, p), rtol=1e-12, atol=1e-12)


# -- gradients: generic path ----------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_finite_differences(name):
    rng = np.random.default_rng(11)
    t, p = make_inputs(name, rng, (3, 4))
    row_scale = rng.uniform(0.2, 1.0, size=3)  # like sample_weight / rows
    loss = LOSSES.get(name)
    grad = np.full_like(p, np.nan)
    loss.compute(t, p, row_scale, grad)
    numeric = numeric_grad(batch_objective(loss, t, row_scale), p.copy())
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_nd_default_scale_is_gradient_of_the_mean(name):
    rng = np.random.default_rng(12)
    t, p = make_inputs(name, rng, (2, 3, 4))
    loss = LOSSES.get(name)
    grad = np.empty_like(p)
    per_row = loss.compute(t, p, grad=grad)
    assert grad.shape == p.shape
    numeric = numeric_grad(lambda x: float(loss.compute(t, x).mean()), p.copy())
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(per_row, loss.compute(t, p))  # grad does not change the value


def test_mae_gradient_at_zero_error_follows_tf_abs_gradient():
    t = np.array([[1.0, 2.0]])
    grad = np.empty_like(t)
    LOSSES.get("mae").compute(t, t.copy(), None, grad)
    np.testing.assert_array_equal(grad, [[-0.5, -0.5]])  # step(0, -1) = -1, times 1/cols


def test_categorical_hinge_gradient_reaches_every_tied_maximum():
    t = np.array([[1.0, 0.0, 0.0]])
    p = np.array([[0.2, 0.5, 0.5]])
    grad = np.empty_like(p)
    per_row = LOSSES.get("categorical_hinge").compute(t, p, np.ones(1), grad)
    assert per_row[0] == pytest.approx(1.3)
    np.testing.assert_array_equal(grad, [[-1.0, 1.0, 1.0]])
    inactive = np.array([[3.0, 0.5, 0.1]])  # 1 + 0.5 - 3 < 0: loss 0, no gradient
    assert LOSSES.get("categorical_hinge").compute(t, inactive, np.ones(1), grad)[0] == 0.0
    np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize("name", ["categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy"])
def test_clipped_predictions_have_zero_gradient(name):
    """p = 0 and p = 1 sit outside [eps, 1 - eps]: tf.clipByValue blocks the gradient there."""
    p = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    t = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    if name == "sparse_categorical_crossentropy":
        t = np.array([[0.0], [1.0], [0.0]])
    loss = LOSSES.get(name)
    grad = np.full_like(p, np.nan)
    per_row = loss.compute(t, p, np.ones(3), grad)
    np.testing.assert_array_equal(grad, 0.0)
    assert np.all(np.isfinite(per_row))
    np.testing.assert_allclose(per_row, REFERENCE[name](t, p), rtol=1e-12)
    if name == "categorical_crossentropy":
        assert per_row[0] == pytest.approx(-np.log(1 - EPSILON), rel=1e-6)  # right and certain
        assert per_row[1] == pytest.approx(-np.log(EPSILON), rel=1e-9)  # wrong and certain
    if name == "sparse_categorical_crossentropy":  # clipped first, then renormalised: 1 - 2 eps
        assert per_row[0] == pytest.approx(-np.log((1 - EPSILON) / (1 + EPSILON)), rel=1e-6)


def test_sparse_labels_follow_tf_one_hot():
    p = np.array([[0.2, 0.3, 0.5]] * 4)
    labels = np.array([[2.7], [-1.0], [3.0], [0.0]])  # floor(2.7) = 2; out of range: a zero row
    per_row = LOSSES.get("sparse_categorical_crossentropy").compute(labels, p)
    np.testing.assert_allclose(per_row, [-np.log(0.5), 0.0, 0.0, -np.log(0.2)], rtol=1e-12)
    int_labels = np.array([2, 1])  # integer labels, flat: cast and reshaped
    np.testing.assert_allclose(
        LOSSES.get("sparse_categorical_crossentropy").compute(int_labels, p[:2]), [-np.log(0.5), -np.log(0.3)]
    )


def test_mape_with_zero_targets_and_zero_predictions():
    loss = LOSSES.get("mape")
    t = np.array([[0.0, 2.0], [4.0, -1.0]])
    p = np.array([[1e-3, 0.0], [0.0, 0.0]])
    per_row = loss.compute(t, p)
    np.testing.assert_allclose(per_row, REFERENCE["mean_absolute_percentage_error"](t, p), rtol=1e-12)
    assert per_row[1] == pytest.approx(100.0)  # y_pred = 0 is 100% off
    assert per_row[0] == pytest.approx(100.0 * (1e-3 / EPSILON + 1.0) / 2)  # |y_true| clipped to eps
    grad = np.empty_like(p)
    loss.compute(t, p, np.ones(2), grad)
    assert np.all(np.isfinite(grad))
    assert grad[0, 0] == pytest.approx(100.0 / 2 / EPSILON)


# -- gradients: fused output-layer kernels ------------------------------------------------------------
def _softmax(z):
    out = np.empty_like(z)
    ACTIVATIONS.get("softmax").forward(z, out)
    return out


def _sigmoid(z):
    out = np.empty_like(z)
    ACTIVATIONS.get("sigmoid").forward(z, out)
    return out


FUSED_CASES = [
    (name, regime)
    for name in ("categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy")
    for regime in ("mild", "low_clip", "saturated")
]


def _fused_inputs(name, regime, rng):
    rows, cols = 4, 5
    z = rng.normal(size=(rows, cols))
    if regime == "low_clip":  # one probability per row below eps, the rest inside the clip
        z[:, 1] -= 24.0
    elif regime == "saturated":  # rows (nearly) one-hot: every clip active, gradient vanishes
        z[:, 0] += 24.0
        z[:, 1] -= 24.0
    if name == "categorical_crossentropy":
        t = rng.dirichlet(np.ones(cols), size=rows) * rng.uniform(0.5, 1.5, size=(rows, 1))  # rows need not sum to 1
    elif name == "sparse_categorical_crossentropy":
        t = np.array([[0.0], [1.0], [2.0], [4.0]])
    else:
        t = rng.integers(0, 2, size=(rows, cols)).astype(np.float64)
    return t, z


@pytest.mark.parametrize("name,regime", FUSED_CASES)
def test_fused_gradient_matches_finite_differences_through_the_activation(name, regime):
    rng = np.random.default_rng(13)
    t, z = _fused_inputs(name, regime, rng)
    loss = LOSSES.get(name)
    activate = _softmax if loss.fused_activation == "softmax" else _sigmoid
    row_scale = rng.uniform(0.2, 1.0, size=z.shape[0])
    probs = activate(z)
    dz = np.full_like(z, np.nan)
    per_row = loss.fused_backward(t, probs, row_scale, None, dz)
    np.testing.assert_array_equal(per_row, loss.compute(t, probs))
    numeric = numeric_grad(lambda x: float(np.dot(row_scale, loss.compute(t, activate(x)))), z.copy())
    np.testing.assert_allclose(dz, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name,regime", FUSED_CASES)
def test_fused_gradient_equals_chained_loss_and_activation_backward(name, regime):
    rng = np.random.default_rng(14)
    t, z = _fused_inputs(name, regime, rng)
    loss = LOSSES.get(name)
    activation = ACTIVATIONS.get(loss.fused_activation)
    probs = np.empty_like(z)
    activation.forward(z, probs)
    row_scale = np.full(z.shape[0], 0.25)
    grad, chained = np.empty_like(z), np.empty_like(z)
    loss.compute(t, probs, row_scale, grad)
    activation.backward(z, probs, grad, chained)
    fused = np.empty_like(z)
    loss.fused_backward(t, probs, row_scale, None, fused)
    np.testing.assert_allclose(fused, chained, rtol=1e-9, atol=1e-15)


def test_fused_softmax_crossentropy_is_p_minus_t_without_clips():
    rng = np.random.default_rng(15)
    z = rng.normal(size=(6, 4))
    p = ref_softmax(z)
    labels = rng.integers(0, 4, size=6)
    t = np.eye(4)[labels]
    scale = np.full(6, 1 / 6)
    for name, target in (("categorical_crossentropy", t), ("sparse_categorical_crossentropy", labels[:, None])):
        dz = np.empty_like(p)
        LOSSES.get(name).fused_backward(target, p, scale, None, dz)
        np.testing.assert_allclose(dz, (p - t) / 6, rtol=1e-12, atol=1e-16)
    pb = ref_sigmoid(z)
    tb = (rng.random(size=z.shape) < 0.5).astype(np.float64)
    dz = np.empty_like(pb)
    LOSSES.get("binary_crossentropy").fused_backward(tb, pb, scale, None, dz)
    np.testing.assert_allclose(dz, (pb - tb) / 6 / 4, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("name", ["categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_backward_in_place_nd(name, dtype):
    rng = np.random.default_rng(16)
    z = rng.normal(size=(2, 3, 5)).astype(dtype)
    loss = LOSSES.get(name)
    activate = _softmax if loss.fused_activation == "softmax" else _sigmoid
    probs = activate(z)
    if name == "categorical_crossentropy":
        t = np.eye(5, dtype=dtype)[rng.integers(0, 5, size=(2, 3))]
    elif name == "sparse_categorical_crossentropy":
        t = rng.integers(0, 5, size=(2, 3, 1)).astype(dtype)
    else:
        t = rng.integers(0, 2, size=(2, 3, 5)).astype(dtype)
    separate = np.empty_like(probs)
    expected_loss = loss.fused_backward(t, probs, None, None, separate)
    per_row = np.empty(6, dtype)
    loss.fused_backward(t, probs, None, per_row, probs)  # dz written over probs
    np.testing.assert_array_equal(per_row, expected_loss)
    np.testing.assert_array_equal(probs, separate)
    assert separate.dtype == dtype and separate.shape == z.shape


# -- wrapper contract -------------------------------------------------------------------------------
def test_per_row_buffer_is_filled_and_returned():
    t, p = np.zeros((3, 2)), np.ones((3, 2))
    buffer = np.empty(3)
    result = LOSSES.get("mse").compute(t, p, None, None, buffer)
    assert result is buffer or np.shares_memory(result, buffer)
    np.testing.assert_array_equal(buffer, 1.0)


def test_wrapper_refuses_misuse():
    loss = LOSSES.get("mse")
    p = np.ones((3, 2))
    with pytest.raises(ValueError, match="does not match"):
        loss.compute(np.zeros((3, 3)), p)
    with pytest.raises(ValueError, match="share memory"):
        loss.compute(np.zeros((3, 2)), p, None, p)
    with pytest.raises(ValueError, match="row_scale"):
        loss.compute(np.zeros((3, 2)), p, np.ones(2))
    with pytest.raises(ValueError, match="one class index per row"):
        LOSSES.get("sparse_categorical_crossentropy").compute(np.zeros((3, 2)), p)
    with pytest.raises(ValueError, match="no fused"):
        loss.fused_backward(np.zeros((3, 2)), p, None, None, np.empty_like(p))


def test_batch_loss_weights_samples_like_tfjs():
    rng = np.random.default_rng(17)
    t, p = rng.normal(size=(4, 3, 2)), rng.normal(size=(4, 3, 2))
    w = np.array([1.0, 0.0, 2.0, 0.5])
    per_sample = REFERENCE["mean_squared_error"](t, p)  # [4, 3]
    loss = LOSSES.get("mse")
    assert loss.batch_loss(t, p) == pytest.approx(per_sample.mean(), rel=1e-12)
    assert loss.batch_loss(t, p, w) == pytest.approx((per_sample * w[:, None]).mean(), rel=1e-12)
