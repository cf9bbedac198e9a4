"""Metric kernels: one entry point, `metric_value(code, y_true, y_pred) -> float`.

Both arrays are 2-D `[rows, last_dim]` (an N-D batch reshaped over its last axis). Sparse
metrics take `y_true` as `[rows, 1]` class indices stored as floats. Formulas follow
TF.js `tfjs-layers/src/metrics.ts` and `losses.ts`, except precision and recall, which
threshold at 0.5 as Keras does (on purpose: TF.js counts only outputs exactly 0 or 1); r2,
auc, top-k, the confusion matrix behind f1_score and mean_iou follow Keras.

Element-wise arithmetic runs in y_pred's dtype, so float32 inputs reproduce TF.js's float32
results (clipping at 1e-7 and 1 - 1e-7 is not the same number in float32 and float64, and
changes binary crossentropy at the clip by ~0.2). Sums accumulate in float64, as the TF.js
CPU backend does before storing each reduction as float32 (the explicit `float(...)` keeps
that true under NUMBA_DISABLE_JIT, where NumPy would sum float32 in float32). Nothing is
allocated. The loss-like metrics are the loss kernels' row functions under this precision
policy (`kernels.losses.loss_rows(..., kind=y_pred's dtype, exact=True)`); codes in codes.py.
"""

from __future__ import annotations

import math

from trainctl.jit import njit
from trainctl.kernels.codes import (
    BINARY_ACCURACY,
    CATEGORICAL_ACCURACY,
    LOSS_METRIC_OFFSET,
    METRIC_CODES,
    R2_SCORE,
    SPARSE_CATEGORICAL_ACCURACY,
)
from trainctl.kernels.losses import LOSS_ONLY, loss_rows, loss_rows_for

__all__ = ["METRIC_CODES", "metric_value", "metric_value_for", "threshold_counts", "auc_value", "top_k_accuracy", "class_confusion"]

_EPSILON = 1e-7  # tfjs-layers backend epsilon() on CPU


@njit
def _argmax_row(a, row):
    # TF.js argMax: the first index of the largest value (strict `>`).
    best = a[row, 0]
    index = 0
    for j in range(1, a.shape[1]):
        if a[row, j] > best:
            best = a[row, j]
            index = j
    return index


@njit
def _binary_accuracy(y_true, y_pred):
    rows, width = y_pred.shape
    half = y_pred.dtype.type(0.5)
    total = 0.0
    for r in range(rows):
        hits = 0
        for j in range(width):
            thresholded = 1.0 if y_pred[r, j] > half else 0.0
            if y_true[r, j] == thresholded:
                hits += 1
        total += hits / width
    return total / rows


@njit
def _categorical_accuracy(y_true, y_pred, sparse):
    # the target class: argmax of a one-hot row, or the class index itself (sparse)
    rows = y_pred.shape[0]
    hits = 0
    for r in range(rows):
        target = y_true[r, 0] if sparse else _argmax_row(y_true, r)
        if target == _argmax_row(y_pred, r):
            hits += 1
    return hits / rows


@njit
def _mean_row_loss(loss_code, y_true, y_pred):
    # The loss kernels' row functions under the metric precision policy (y_pred's dtype,
    # TF.js's logged form), averaged over rows in float64. Empty views stand for the row
    # scale and per-row buffers a metric does not need (nothing is allocated).
    none = y_pred[0, :0]
    total = loss_rows(loss_code, y_true, y_pred, none, none, y_pred, LOSS_ONLY, y_pred.dtype.type, True)
    return total / y_pred.shape[0]


@njit
def _r2_score(y_true, y_pred):
    # Keras R2Score (uniform_average): 1 - SS_res / SS_tot per column, a column whose score
    # is infinite (constant target, imperfect prediction) scores 0, then the column mean.
    # A constant target predicted exactly is 0/0: NaN, as in Keras.
    rows, width = y_pred.shape
    total = 0.0
    for j in range(width):
        column_sum = 0.0
        for r in range(rows):
            column_sum += float(y_true[r, j])
        mean = column_sum / rows
        residual = 0.0
        spread = 0.0
        for r in range(rows):
            target = float(y_true[r, j])
            miss = target - float(y_pred[r, j])
            residual += miss * miss
            spread += (target - mean) * (target - mean)
        if spread == 0.0:
            # Keras: -inf (residuals left) becomes 0; 0/0 stays NaN. Spelled out so the
            # pure-Python run (NUMBA_DISABLE_JIT) does not raise ZeroDivisionError.
            score = 0.0 if residual > 0.0 else math.nan
        else:
            score = 1.0 - residual / spread
            if math.isinf(score):
                score = 0.0
        total += score
    return total / width


ANY_CODE = -1  # metric_value reads the code from its argument at run time


def _metric_value_kernel(fixed):
    """metric_value with the metric code fixed when it is compiled (`fixed`), or read from
    the argument (`fixed` = ANY_CODE), as kernels/losses.py's _loss_rows_kernel: numba prunes
    the other codes' branches before typing them, so a fixed code compiles its own metric only.
    The arithmetic of a branch is the same either way: the results are bit-identical."""

    @njit
    def metric_value(code, y_true, y_pred):
        """The metric `code` (see METRIC_CODES) on one batch: y_true, y_pred [rows, k] → float.

        Sparse codes take y_true [rows, 1] of float class indices.
        """
        code = code if fixed == ANY_CODE else fixed
        if code == BINARY_ACCURACY:
            return _binary_accuracy(y_true, y_pred)
        if code == CATEGORICAL_ACCURACY:
            return _categorical_accuracy(y_true, y_pred, False)
        if code == SPARSE_CATEGORICAL_ACCURACY:
            return _categorical_accuracy(y_true, y_pred, True)
        if code >= LOSS_METRIC_OFFSET:
            return _mean_row_loss(code - LOSS_METRIC_OFFSET, y_true, y_pred)
        if code == R2_SCORE:
            return _r2_score(y_true, y_pred)
        raise ValueError("unknown metric code")

    return metric_value


metric_value = _metric_value_kernel(ANY_CODE)  # the compiled training loop's: any code at run time
_fixed_metric_values: dict = {}


def metric_value_for(code: int):
    """A callable (code, y_true, y_pred) -> float computing exactly what metric_value does,
    compiling only the metric `code`: the Python training loop and Metric.compute use it, so a
    model compiles (and loads) its own metrics only. A loss-like metric calls the loss kernel
    fixed to its loss (losses.loss_rows_for) under the metric precision policy, as
    _mean_row_loss does: the generic one would compile all fourteen formulas (~7 s cold)."""
    kernel = _fixed_metric_values.get(code)
    if kernel is None:
        if code >= LOSS_METRIC_OFFSET:
            rows_kernel = loss_rows_for(code - LOSS_METRIC_OFFSET)

            def kernel(code, y_true, y_pred):
                none = y_pred[0, :0]
                total = rows_kernel(code - LOSS_METRIC_OFFSET, y_true, y_pred, none, none, y_pred,
                                    LOSS_ONLY, y_pred.dtype.type, True)
                return total / y_pred.shape[0]
        else:
            kernel = _metric_value_kernel(int(code))
        _fixed_metric_values[code] = kernel
    return kernel


# -- Keras-style thresholded and ranked metrics (configured metrics; each has its own entry) --


@njit
def threshold_counts(y_true, y_pred, threshold, class_id, counts):
    """Keras confusion counts at one threshold into counts float64 [4] = (tp, fp, fn, tn):
    a prediction is positive when y_pred > threshold, a target when y_true != 0.
    class_id ≥ 0 takes that column only (one class of a softmax), -1 every column."""
    for i in range(4):
        counts[i] = 0.0
    first, last = (class_id, class_id + 1) if class_id >= 0 else (0, y_pred.shape[1])
    for r in range(y_pred.shape[0]):
        for j in range(first, last):
            predicted = y_pred[r, j] > threshold
            actual = y_true[r, j] != 0
            if predicted and actual:
                counts[0] += 1.0
            elif predicted:
                counts[1] += 1.0
            elif actual:
                counts[2] += 1.0
            else:
                counts[3] += 1.0


@njit
def auc_value(y_true, y_pred, class_id, pr, scratch):
    """Keras AUC (summation_method interpolation) over num_thresholds = scratch.shape[1]
    evenly spaced thresholds [-eps, 1/(T-1), ..., (T-2)/(T-1), 1+eps]; pr: the PR curve
    (Davis & Goadrich interpolation), else ROC (trapezoids). scratch float64 [4, T] holds
    tp, fp, fn, tn per threshold. Columns are pooled (multi_label=False) unless class_id ≥ 0."""
    n_t = scratch.shape[1]
    for i in range(4):
        for t in range(n_t):
            scratch[i, t] = 0.0
    first, last = (class_id, class_id + 1) if class_id >= 0 else (0, y_pred.shape[1])
    eps = 1e-7
    for r in range(y_pred.shape[0]):
        for j in range(first, last):
            p = float(y_pred[r, j])
            actual = y_true[r, j] != 0
            for t in range(n_t):
                if t == 0:
                    thr = -eps
                elif t == n_t - 1:
                    thr = 1.0 + eps
                else:
                    thr = t / (n_t - 1)
                if p > thr:
                    if actual:
                        scratch[0, t] += 1.0
                    else:
                        scratch[1, t] += 1.0
                else:
                    if actual:
                        scratch[2, t] += 1.0
                    else:
                        scratch[3, t] += 1.0
    tp, fp, fn, tn = scratch[0], scratch[1], scratch[2], scratch[3]
    total = 0.0
    if pr:
        for t in range(n_t - 1):
            dtp = tp[t] - tp[t + 1]
            p_a = tp[t] + fp[t]
            p_b = tp[t + 1] + fp[t + 1]
            dp = p_a - p_b
            slope = dtp / dp if dp > 0 else 0.0
            intercept = tp[t + 1] - slope * p_b
            ratio = p_a / p_b if (p_a > 0 and p_b > 0) else 1.0
            denominator = tp[t + 1] + fn[t + 1]
            if denominator > 0:
                total += slope * (dtp + intercept * math.log(ratio)) / denominator
        return total
    for t in range(n_t - 1):
        tpr_a = tp[t] / (tp[t] + fn[t]) if tp[t] + fn[t] > 0 else 0.0
        tpr_b = tp[t + 1] / (tp[t + 1] + fn[t + 1]) if tp[t + 1] + fn[t + 1] > 0 else 0.0
        fpr_a = fp[t] / (fp[t] + tn[t]) if fp[t] + tn[t] > 0 else 0.0
        fpr_b = fp[t + 1] / (fp[t + 1] + tn[t + 1]) if fp[t + 1] + tn[t + 1] > 0 else 0.0
        total += (fpr_a - fpr_b) * (tpr_a + tpr_b) / 2.0
    return total


@njit
def top_k_accuracy(y_true, y_pred, k, sparse):
    """Share of rows whose target class is among the k largest predictions (ties count as
    in, as tf.math.in_top_k). sparse: y_true [rows, 1] class indices, else one-hot rows."""
    rows, width = y_pred.shape
    hits = 0
    for r in range(rows):
        target = int(y_true[r, 0]) if sparse else _argmax_row(y_true, r)
        if target < 0 or target >= width:
            continue
        score = y_pred[r, target]
        above = 0
        for j in range(width):
            if y_pred[r, j] > score:
                above += 1
        if above < k:
            hits += 1
    return hits / rows


@njit
def class_confusion(y_true, y_pred, sparse, threshold, matrix):
    """Single-label confusion matrix into matrix [k, k] (rows: true class, columns:
    predicted). A 1-unit output is two classes (y_pred > threshold); wider outputs take
    argmax; targets are class indices (sparse) or one-hot/0-1 columns."""
    k = matrix.shape[0]
    for a in range(k):
        for b in range(k):
            matrix[a, b] = 0.0
    width = y_pred.shape[1]
    for r in range(y_pred.shape[0]):
        if width == 1:
            predicted = 1 if y_pred[r, 0] > threshold else 0
            actual = 1 if y_true[r, 0] != 0 else 0
        else:
            predicted = _argmax_row(y_pred, r)
            actual = int(y_true[r, 0]) if sparse else _argmax_row(y_true, r)
        if 0 <= actual < k and 0 <= predicted < k:
            matrix[actual, predicted] += 1.0
