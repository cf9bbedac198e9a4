"""Metrics: kernels against the numpy reference, TF.js's own test values, accuracy
resolution, aliases, applicability checks and edge cases."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from trainctl.train.epoch import EpochAccumulator

from tests.reference import metrics as reference
from trainctl.errors import DataError, TrainctlError
from trainctl.nn.metrics import (
    METRICS,
    Metric,
    ResolvedMetric,
    ShorthandMetric,
    check_metric_applicable,
    resolve_metric,
)
from trainctl.registry import UnknownIdError

CONCRETE = sorted(reference.REFERENCES)
TOLERANCE = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}


def _batch(name: str, shape: tuple[int, ...], dtype, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Targets and predictions of `shape` that exercise metric `name` (not all trivial)."""
    rng = np.random.default_rng(seed)
    width = shape[-1]
    if name.startswith("sparse"):
        y_pred = rng.random(shape) + 0.01
        labels = rng.integers(0, width, size=shape[:-1] + (1,))
        return labels.astype(dtype), y_pred.astype(dtype)
    if name.startswith("categorical"):
        y_pred = rng.random(shape) + 0.01
        y_true = np.eye(width)[rng.integers(0, width, size=shape[:-1])]
        return y_true.astype(dtype), y_pred.astype(dtype)
    if name in ("binary_accuracy", "binary_crossentropy", "precision", "recall"):
        y_true = (rng.random(shape) > 0.5).astype(dtype)
        y_pred = rng.random(shape)
        # Exact 0, 0.5 and 1 predictions: the thresholds and TF.js's exact-match counts.
        y_pred[rng.random(shape) < 0.3] = 1.0
        y_pred[rng.random(shape) < 0.2] = 0.0
        y_pred[rng.random(shape) < 0.1] = 0.5
        return y_true, y_pred.astype(dtype)
    y_true = rng.normal(size=shape)
    y_pred = y_true + 0.5 * rng.normal(size=shape)
    return y_true.astype(dtype), y_pred.astype(dtype)


SHAPES = [(32, 1), (32, 10), (5, 3, 4), (2, 3, 2, 6)]
CASES = [
    (name, shape)
    for name in CONCRETE
    for shape in SHAPES
    # Class metrics on a 1-unit output are constant (check_metric_applicable refuses them).
    if not ("categorical" in name and shape[-1] == 1)
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, shape", CASES)
def test_metric_matches_reference(name, shape, dtype):
    for seed in range(3):
        y_true, y_pred = _batch(name, shape, dtype, seed)
        got = METRICS.get(name).compute(y_true, y_pred)
        want = getattr(reference, name)(y_true, y_pred)
        assert isinstance(got, float)
        np.testing.assert_allclose(got, want, **TOLERANCE[dtype], err_msg=f"{name} seed {seed}")


def test_batches_are_not_all_trivial():
    # The reference comparison above means little if every value were 0 or 1.
    for name in ("precision", "recall", "binary_accuracy", "categorical_accuracy"):
        y_true, y_pred = _batch(name, (32, 10), np.float32, 0)
        assert 0.0 < METRICS.get(name).compute(y_true, y_pred) < 1.0, name


def test_sparse_labels_may_drop_the_last_axis():
    y_true, y_pred = _batch("sparse_categorical_accuracy", (4, 5, 6), np.float32, 1)
    metric = METRICS.get("sparse_categorical_accuracy")
    assert metric.compute(y_true[..., 0], y_pred) == metric.compute(y_true, y_pred)


def test_non_contiguous_and_list_inputs():
    y_true, y_pred = _batch("mean_squared_error", (6, 8), np.float64, 2)
    metric = METRICS.get("mse")
    want = metric.compute(np.ascontiguousarray(y_true.T), np.ascontiguousarray(y_pred.T))
    assert metric.compute(y_true.T, y_pred.T) == want
    assert metric.compute(y_true.tolist(), y_pred.tolist()) == pytest.approx(metric.compute(y_true, y_pred), rel=1e-6)


def test_targets_are_cast_to_the_prediction_dtype():
    # float32 predictions are scored in float32 whatever the targets' dtype, as in TF.js.
    y_true = np.array([[0], [1], [1]], dtype=np.int64)
    y_pred = np.array([[0.0], [1.0], [0.25]], dtype=np.float32)
    metric = METRICS.get("binary_crossentropy")
    assert metric.compute(y_true, y_pred) == metric.compute(y_true.astype(np.float32), y_pred)
    assert metric.compute(y_true.astype(np.float64), y_pred) == metric.compute(y_true.astype(np.float32), y_pred)


# --- TF.js's own expectations (tfjs-layers/src/metrics_test.ts) -----------------------


def test_tfjs_binary_accuracy_cases():
    acc = METRICS.get("binary_accuracy")
    assert acc.compute([1, 1, 1, 1, 0, 0, 0, 0], [1, 0, 1, 0, 0, 1, 0, 1]) == 0.5
    assert acc.compute([1, 1, 1, 1, 0, 0, 0, 0], [0.2, 0.4, 0.6, 0.8, 0.2, 0.3, 0.4, 0.7]) == 5 / 8
    # Per-row [0.5, 0.75] and [0, 1, 1, 0.5], averaged over rows.
    assert acc.compute([[1, 1, 1, 1], [0, 0, 0, 0]], [[1, 0, 1, 0], [0, 0, 0, 1]]) == 0.625
    y_true = [[1, 1], [1, 1], [0, 0], [0, 0]]
    y_pred = [[0.2, 0.4], [0.6, 0.8], [0.2, 0.3], [0.4, 0.7]]
    assert acc.compute(y_true, y_pred) == 0.625


def test_binary_accuracy_threshold_is_strictly_greater_than_half():
    acc = METRICS.get("binary_accuracy")
    assert acc.compute([[1.0]], [[0.5]]) == 0.0
    assert acc.compute([[0.0]], [[0.5]]) == 1.0


def test_tfjs_sparse_categorical_accuracy():
    y_pred = [[0, 1, 0], [1, 0, 0], [0, 0.4, 0.6], [0, 0.6, 0.4], [0.7, 0.3, 0]]
    metric = METRICS.get("sparse_categorical_accuracy")
    assert metric.compute([1, 1, 2, 2, 0], y_pred) == pytest.approx(3 / 5)
    assert metric.compute([[1], [1], [2], [2], [0]], y_pred) == pytest.approx(3 / 5)


def test_tfjs_categorical_accuracy():
    metric = METRICS.get("categorical_accuracy")
    assert metric.compute([0, 0, 0, 1], [0.1, 0.8, 0.05, 0.05]) == 0.0
    y_true = [[0, 0, 0, 1], [0, 0, 0, 1]]
    assert metric.compute(y_true, [[0.1, 0.8, 0.05, 0.05], [0.1, 0.05, 0.05, 0.8]]) == 0.5


def test_argmax_ties_take_the_first_index():
    metric = METRICS.get("categorical_accuracy")
    assert metric.compute([[1, 0, 0]], [[0.4, 0.4, 0.2]]) == 1.0
    assert metric.compute([[0, 1, 0]], [[0.4, 0.4, 0.2]]) == 0.0


@pytest.mark.parametrize(
    "y_true, y_pred, want",
    [  # float32 values from Keras, quoted in TF.js's binaryCrossentropy test.
        ([0], [0.0], 1.00000015e-07),
        ([0], [0.5], 6.93147182e-01),
        ([0], [1.0], 1.59423847e01),
        ([1], [0.0], 1.61180954e01),
        ([1], [0.5], 6.93147182e-01),
        ([1], [1.0], 1.19209332e-07),
        ([1, 0], [1.0, 0.0], 1.0960467e-07),
        ([1, 0], [0.5, 0.5], 6.9314718e-01),
        ([1, 0], [0.0, 1.0], 1.6030239e01),
    ],
)
def test_tfjs_binary_crossentropy_float32_clip_values(y_true, y_pred, want):
    # 1 - 1e-7 rounds to 0.99999988 in float32: the value at the clip differs from float64's.
    got = METRICS.get("binary_crossentropy").compute(
        np.array([y_true], np.float32), np.array([y_pred], np.float32)
    )
    assert got == pytest.approx(want, rel=1e-6)


def test_binary_crossentropy_float64_clips_at_float64_epsilon():
    got = METRICS.get("binary_crossentropy").compute(np.array([[0.0]]), np.array([[1.0]]))
    high = 1 - 1e-7  # the clip bound; 1 - high is not exactly 1e-7, as in TF.js
    logit = math.log(high / (1 - high))
    assert got == pytest.approx(logit + math.log1p(math.exp(-logit)), rel=1e-12)


def test_tfjs_categorical_crossentropy():
    metric = METRICS.get("categorical_crossentropy")
    y_true = np.array([[0, 0, 0, 1], [0, 0, 0, 1]], np.float32)
    y_pred = np.array([[0.1, 0.8, 0.05, 0.05], [0.1, 0.05, 0.05, 0.8]], np.float32)
    assert metric.compute(y_true[:1], y_pred[:1]) == pytest.approx(2.995732, rel=1e-6)
    assert metric.compute(y_true[1:], y_pred[1:]) == pytest.approx(0.22314353, rel=1e-6)
    assert metric.compute(y_true, y_pred) == pytest.approx((2.995732 + 0.22314353) / 2, rel=1e-6)


def test_categorical_crossentropy_propagates_nan_predictions():
    # Terms under a 0 target still count when they are NaN, as 0 * log(NaN) does in TF.js:
    # an inf prediction rescales to inf / inf = NaN there while the target's own term is finite.
    metric = METRICS.get("categorical_crossentropy")
    assert math.isnan(metric.compute([[0.0, 1.0, 0.0]], [[0.2, 0.5, np.inf]]))
    assert math.isnan(metric.compute([[0.0, 0.0, 0.0]], [[0.2, 0.5, np.nan]]))
    with np.errstate(invalid="ignore"):
        assert math.isnan(reference.categorical_crossentropy([[0.0, 1.0, 0.0]], [[0.2, 0.5, np.inf]]))


def test_categorical_crossentropy_rescales_rows():
    metric = METRICS.get("categorical_crossentropy")
    assert metric.compute([[0, 1]], [[2.0, 6.0]]) == pytest.approx(-math.log(0.75), rel=1e-6)


def test_sparse_crossentropy_matches_one_hot_categorical():
    y_true, y_pred = _batch("sparse_categorical_crossentropy", (16, 5), np.float64, 3)
    one_hot = np.eye(5)[y_true[:, 0].astype(int)]
    sparse = METRICS.get("sparse_categorical_crossentropy").compute(y_true, y_pred)
    dense = METRICS.get("categorical_crossentropy").compute(one_hot, y_pred)
    assert sparse == pytest.approx(dense, rel=1e-12)


def test_sparse_crossentropy_out_of_range_label_scores_zero():
    # TF.js one-hots an out-of-range index to all zeros: that row contributes 0.
    metric = METRICS.get("sparse_categorical_crossentropy")
    y_pred = np.array([[0.2, 0.8], [0.5, 0.5]])
    assert metric.compute([[1], [7]], y_pred) == pytest.approx(-math.log(0.8) / 2, rel=1e-12)


def test_precision_and_recall_on_exact_labels():
    precision, recall = METRICS.get("precision"), METRICS.get("recall")
    assert precision.compute([0, 0, 0, 1], [0, 0, 0, 1]) == 1.0
    labels = [[0, 0, 1], [0, 0, 1], [1, 0, 0], [0, 1, 0]]
    predictions = [[0, 0, 1], [1, 0, 0], [1, 0, 0], [0, 1, 0]]
    assert precision.compute(labels, predictions) == 0.75
    assert recall.compute(labels, predictions) == 0.75
    assert recall.compute([1, 0, 1, 0, 0, 0, 1], [0, 0, 1, 1, 1, 1, 0]) == pytest.approx(1 / 3)


def test_precision_without_positive_predictions_is_zero():
    labels = [[0, 0, 1], [0, 0, 1], [1, 0, 0], [0, 1, 0]]
    assert METRICS.get("precision").compute(labels, np.zeros((4, 3))) == 0.0


def test_recall_without_positive_targets_is_zero():
    predictions = [[0, 0, 1], [1, 0, 0], [1, 0, 0], [0, 1, 0]]
    assert METRICS.get("recall").compute(np.zeros((4, 3)), predictions) == 0.0


def test_precision_and_recall_threshold_at_half_as_keras_not_tfjs():
    # trainctl departs from TF.js on purpose: TF.js counts only outputs exactly 1, so a
    # sigmoid's probabilities never count and precision reads 0; Keras thresholds at 0.5.
    labels = np.array([[1.0], [0.0], [1.0], [1.0]], np.float32)
    probabilities = np.array([[0.99], [0.6], [0.7], [0.4]], np.float32)
    assert METRICS.get("precision").compute(labels, probabilities) == pytest.approx(2 / 3)
    assert METRICS.get("recall").compute(labels, probabilities) == pytest.approx(2 / 3)


def test_keras_r2_example():
    y_true = np.array([[1], [4], [3]], np.float32)
    y_pred = np.array([[2], [4], [4]], np.float32)
    assert METRICS.get("r2_score").compute(y_true, y_pred) == pytest.approx(0.57142854, rel=1e-6)


def test_r2_perfect_prediction_is_one():
    y = np.array([[1.0, -2.0], [3.0, 5.0], [2.0, 0.5]])
    assert METRICS.get("r2_score").compute(y, y) == 1.0


def test_r2_constant_targets():
    r2 = METRICS.get("r2_score")
    constant = np.full((4, 1), 3.0, np.float32)
    # SS_tot = 0 with residuals: Keras turns the -inf into 0.
    assert r2.compute(constant, constant + np.float32(0.5)) == 0.0
    # SS_tot = 0 and SS_res = 0: 0/0, NaN as in Keras.
    assert math.isnan(r2.compute(constant, constant))
    # Columns average: a constant column scores 0 beside a varying one.
    y_true = np.array([[3.0, 1.0], [3.0, 4.0], [3.0, 3.0]])
    y_pred = np.array([[2.0, 2.0], [2.0, 4.0], [2.0, 4.0]])
    assert r2.compute(y_true, y_pred) == pytest.approx((0.0 + 0.5714285714285714) / 2, rel=1e-12)


def test_cosine_proximity_of_parallel_and_opposite_rows():
    cosine = METRICS.get("cosine")
    assert cosine.compute([[1.0, 2.0, 2.0]], [[2.0, 4.0, 4.0]]) == pytest.approx(-1.0, rel=1e-6)
    assert cosine.compute([[1.0, 0.0]], [[-3.0, 0.0]]) == pytest.approx(1.0, rel=1e-6)
    # An all-zero row normalises against sqrt(1e-7), not by zero.
    assert cosine.compute([[0.0, 0.0]], [[1.0, 0.0]]) == 0.0


def test_mape_clips_zero_targets_at_epsilon():
    got = METRICS.get("mape").compute(np.array([[0.0, 2.0]]), np.array([[1e-7, 1.0]]))
    assert got == pytest.approx(100 * (1.0 + 0.5) / 2, rel=1e-9)


# --- shapes that do not fit ---------------------------------------------------------


@pytest.mark.parametrize(
    "name, y_true_shape, y_pred_shape",
    [
        ("mse", (8, 3), (8, 4)),
        ("categorical_accuracy", (8, 1), (8, 4)),
        ("sparse_categorical_accuracy", (8, 4), (8, 4)),
        ("binary_accuracy", (4, 1), (8, 1)),
        ("mse", (4, 8), (8, 4)),
    ],
)
def test_mismatched_targets_raise_data_error(name, y_true_shape, y_pred_shape):
    with pytest.raises(DataError, match="do not fit predictions"):
        METRICS.get(name).compute(np.zeros(y_true_shape), np.zeros(y_pred_shape))


# --- resolution of 'accuracy' / 'crossentropy' (TF.js training.ts) ---------------------


@pytest.mark.parametrize(
    "loss, output_shape, kind",
    [
        ("binary_crossentropy", (None, 1), "binary"),
        ("binary_crossentropy", (None, 5), "binary"),  # multi-label
        ("categorical_crossentropy", (None, 1), "binary"),
        ("categorical_crossentropy", (None, 10), "categorical"),
        ("sparse_categorical_crossentropy", (None, 10), "sparse"),
        ("sparse_categorical_crossentropy", (None, 1), "binary"),  # last dim 1 wins
        ("mean_squared_error", (None, 1), "binary"),
        ("mean_squared_error", (None, 3), "categorical"),
        ("sparseCategoricalCrossentropy", (None, 4), "sparse"),
        ("binaryCrossentropy", (None, 4), "binary"),
        ("categorical_crossentropy", (None, 7, 1), "binary"),
        ("sparse_categorical_crossentropy", (None, 7, 6), "sparse"),
        ("categorical_crossentropy", (7, 6), "categorical"),
        (None, (None, 3), "categorical"),
    ],
)
@pytest.mark.parametrize("asked", ["accuracy", "acc", "crossentropy", "ce"])
def test_shorthand_resolution_table(asked, loss, output_shape, kind):
    family = "accuracy" if asked.startswith("acc") else "crossentropy"
    want = {"binary": f"binary_{family}", "sparse": f"sparse_categorical_{family}",
            "categorical": f"categorical_{family}"}[kind]
    resolved = resolve_metric(asked, loss, output_shape)
    assert isinstance(resolved, ResolvedMetric)
    assert resolved.name == want
    assert resolved.metric is METRICS.get(want)
    assert resolved.log_key == asked
    assert resolved.requested == family
    assert resolved.greater_is_better is (family == "accuracy")


@pytest.mark.parametrize(
    "asked, log_key, name",
    [
        ("acc", "acc", "binary_accuracy"),
        ("accuracy", "accuracy", "binary_accuracy"),
        ("binaryAccuracy", "binaryAccuracy", "binary_accuracy"),
        ("mse", "mse", "mean_squared_error"),
        ("meanSquaredError", "meanSquaredError", "mean_squared_error"),
        (" precision ", "precision", "precision"),
    ],
)
def test_resolved_metric_keeps_the_asked_log_key(asked, log_key, name):
    resolved = resolve_metric(asked, "binary_crossentropy", (None, 1))
    assert (resolved.log_key, resolved.name) == (log_key, name)


def test_resolved_metric_computes_its_concrete_metric():
    y_true, y_pred = _batch("sparse_categorical_accuracy", (32, 10), np.float32, 4)
    resolved = resolve_metric("acc", "sparse_categorical_crossentropy", (None, 10))
    assert resolved.compute(y_true, y_pred) == reference.sparse_categorical_accuracy(y_true, y_pred)


def test_shorthand_computed_directly_infers_from_shapes():
    accuracy = METRICS.get("accuracy")
    assert isinstance(accuracy, ShorthandMetric)
    for name, shape in [("binary_accuracy", (16, 1)), ("sparse_categorical_accuracy", (16, 4)),
                        ("categorical_accuracy", (16, 4))]:
        y_true, y_pred = _batch(name, shape, np.float64, 5)
        assert accuracy.compute(y_true, y_pred) == getattr(reference, name)(y_true, y_pred), name
    with pytest.raises(TypeError, match="shorthand"):
        accuracy.code


# --- ids and aliases ----------------------------------------------------------------


@pytest.mark.parametrize(
    "alias, canonical",
    [
        ("acc", "accuracy"), ("accuracy", "accuracy"), ("ce", "crossentropy"),
        ("binaryAccuracy", "binary_accuracy"), ("categoricalAccuracy", "categorical_accuracy"),
        ("sparseCategoricalAccuracy", "sparse_categorical_accuracy"),
        ("mse", "mean_squared_error"), ("MSE", "mean_squared_error"),
        ("meanSquaredError", "mean_squared_error"),
        ("mae", "mean_absolute_error"), ("MAE", "mean_absolute_error"),
        ("meanAbsoluteError", "mean_absolute_error"),
        ("mape", "mean_absolute_percentage_error"), ("MAPE", "mean_absolute_percentage_error"),
        ("meanAbsolutePercentageError", "mean_absolute_percentage_error"),
        ("cosine", "cosine_proximity"), ("cosineProximity", "cosine_proximity"),
        ("binaryCrossentropy", "binary_crossentropy"),
        ("categoricalCrossentropy", "categorical_crossentropy"),
        ("sparseCategoricalCrossentropy", "sparse_categorical_crossentropy"),
        ("precision", "precision"), ("recall", "recall"),
        ("r2Score", "r2_score"), ("R2Score", "r2_score"),
    ],
)
def test_aliases(alias, canonical):
    assert METRICS.resolve(alias) == canonical


def test_registry_holds_every_metric_with_a_kernel_code():
    from trainctl.kernels.metrics import METRIC_CODES

    configured = ["auc", "f1_score", "mean_iou", "sparse_top_k_categorical_accuracy", "top_k_categorical_accuracy"]
    assert sorted(METRICS.names()) == sorted(CONCRETE + configured + ["accuracy", "crossentropy"])
    with_options = {"precision", "recall", *configured}  # computed by their own kernels, with options
    assert sorted(METRIC_CODES) == sorted(set(CONCRETE) - with_options)
    assert len(set(METRIC_CODES.values())) == len(METRIC_CODES)
    for name in CONCRETE + configured:
        metric = METRICS.get(name)
        assert isinstance(metric, Metric) and not isinstance(metric, ShorthandMetric)
        assert metric.code == METRIC_CODES.get(name, -1)
        assert metric.sparse_targets is name.startswith("sparse")


def test_unknown_metric_suggests_the_closest():
    with pytest.raises(UnknownIdError, match="did you mean 'accuracy'"):
        resolve_metric("accuracyy", "categorical_crossentropy", (None, 3))
    with pytest.raises(TrainctlError, match="unknown metric"):
        METRICS.get("f2_score")


def test_greater_is_better():
    assert METRICS.get("acc").greater_is_better
    assert METRICS.get("r2_score").greater_is_better
    assert METRICS.get("precision").greater_is_better
    for name in ("mse", "mae", "mape", "cosine", "binary_crossentropy", "crossentropy"):
        assert not METRICS.get(name).greater_is_better, name


# --- applicability --------------------------------------------------------------------


@pytest.mark.parametrize(
    "metric, loss, output_shape, problem",
    [
        ("categorical_accuracy", "mean_squared_error", (None, 1), "binary_accuracy"),
        ("categorical_crossentropy", "mean_squared_error", (None, 1), "binary_crossentropy"),
        ("sparse_categorical_accuracy", "sparse_categorical_crossentropy", (None, 1), "binary_accuracy"),
        ("sparse_categorical_accuracy", "categorical_crossentropy", (None, 10), "class-index targets"),
        ("sparseCategoricalCrossentropy", "mean_squared_error", (None, 4, 10), "class-index targets"),
        ("mse", "sparse_categorical_crossentropy", (None, 10), "shaped like the output"),
        ("categorical_accuracy", "sparse_categorical_crossentropy", (None, 10), "shaped like the output"),
        ("precision", "sparseCategoricalCrossentropy", (None, 10), "shaped like the output"),
        ("accuracy", "categorical_crossentropy", (None, 1), None),
        ("acc", "sparse_categorical_crossentropy", (None, 10), None),
        ("acc", "binary_crossentropy", (None, 5), None),
        ("ce", "categorical_crossentropy", (None, 10), None),
        ("sparse_categorical_accuracy", "sparse_categorical_crossentropy", (None, 10), None),
        ("binary_accuracy", "binary_crossentropy", (None, 1), None),
        ("precision", "binary_crossentropy", (None, 1), None),
        ("r2_score", "mean_squared_error", (None, 3), None),
        ("mse", "sparse_categorical_crossentropy", (None, 1), None),
        ("categorical_accuracy", "categorical_crossentropy", (None, None), None),
    ],
)
def test_check_metric_applicable(metric, loss, output_shape, problem):
    message = check_metric_applicable(metric, loss, output_shape)
    if problem is None:
        assert message is None
    else:
        assert message is not None and problem in message
        assert "\n" not in message
        assert repr(metric) in message


def test_check_metric_applicable_takes_resolved_and_registry_objects():
    resolved = resolve_metric("acc", "categorical_crossentropy", (None, 10))
    assert check_metric_applicable(resolved, "categorical_crossentropy", (None, 10)) is None
    message = check_metric_applicable(resolved, "sparse_categorical_crossentropy", (None, 10))
    assert message is not None and "'acc' (categorical_accuracy)" in message
    assert check_metric_applicable(METRICS.get("categorical_accuracy"), "mse", (None, 1)) is not None
    assert check_metric_applicable(METRICS.get("accuracy"), "mse", (None, 1)) is None


# --- epoch means ------------------------------------------------------------------------


def test_epoch_accumulator_is_the_size_weighted_mean():
    # The accumulator the fit loop, evaluation and the display share (train/epoch.py).
    totals = EpochAccumulator(["loss", "acc"])
    totals.add([0.5, 1.0], 32)
    totals.add([1.0, 0.0], 8)
    assert totals.means() == {"loss": pytest.approx(0.6), "acc": pytest.approx(0.8)}
    assert totals.seen == 40
    resumed = EpochAccumulator(["loss", "acc"])
    resumed.set_state(totals.get_state())  # a checkpoint in the middle of an epoch
    resumed.add([0.25, 1.0], 3)
    totals.add([0.25, 1.0], 3)
    assert resumed.means() == totals.means()
    totals.reset()
    assert totals.seen == 0 and totals.means() == {"loss": 0.0, "acc": 0.0}


def test_epoch_mean_of_batch_accuracy_equals_whole_epoch_accuracy():
    # Accuracy is a per-row mean, so size-weighted batch means give the epoch value exactly.
    y_true, y_pred = _batch("categorical_accuracy", (100, 5), np.float64, 6)
    metric = METRICS.get("categorical_accuracy")
    starts = range(0, 100, 32)
    values = [metric.compute(y_true[s:s + 32], y_pred[s:s + 32]) for s in starts]
    sizes = [len(y_true[s:s + 32]) for s in starts]
    totals = EpochAccumulator(["categorical_accuracy"])
    for value, size in zip(values, sizes):
        totals.add([value], size)
    assert totals.means()["categorical_accuracy"] == pytest.approx(metric.compute(y_true, y_pred), rel=1e-12)


def test_import_does_not_load_numba():
    code = "import sys, trainctl.nn.metrics; assert 'numba' not in sys.modules, 'numba imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))
