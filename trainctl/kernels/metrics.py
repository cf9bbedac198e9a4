"""Metric kernels: one entry point, `metric_value(code, y_true, y_pred) -> float`.

Both arrays are 2-D `[rows, last_dim]` (an N-D batch reshaped over its last axis). Sparse
metrics take `y_true` as `[rows, 1]` class indices stored as floats. Formulas follow
TF.js `tfjs-layers/src/metrics.ts` and `losses.ts`; r2 follows Keras `R2Score`.

Element-wise arithmetic runs in y_pred's dtype, so float32 inputs reproduce TF.js's float32
results (clipping at 1e-7 and 1 - 1e-7 is not the same number in float32 and float64, and
changes binary crossentropy at the clip by ~0.2). Sums accumulate in float64, as the TF.js
CPU backend does before storing each reduction as float32 (the explicit `float(...)` keeps
that true under NUMBA_DISABLE_JIT, where NumPy would sum float32 in float32). Nothing is
allocated.
"""

from __future__ import annotations

import math

from trainctl.kernels.jit import njit

BINARY_ACCURACY = 0
CATEGORICAL_ACCURACY = 1
SPARSE_CATEGORICAL_ACCURACY = 2
PRECISION = 3
RECALL = 4
MEAN_SQUARED_ERROR = 5
MEAN_ABSOLUTE_ERROR = 6
MEAN_ABSOLUTE_PERCENTAGE_ERROR = 7
COSINE_PROXIMITY = 8
BINARY_CROSSENTROPY = 9
CATEGORICAL_CROSSENTROPY = 10
SPARSE_CATEGORICAL_CROSSENTROPY = 11
R2_SCORE = 12

METRIC_CODES = {
    "binary_accuracy": BINARY_ACCURACY,
    "categorical_accuracy": CATEGORICAL_ACCURACY,
    "sparse_categorical_accuracy": SPARSE_CATEGORICAL_ACCURACY,
    "precision": PRECISION,
    "recall": RECALL,
    "mean_squared_error": MEAN_SQUARED_ERROR,
    "mean_absolute_error": MEAN_ABSOLUTE_ERROR,
    "mean_absolute_percentage_error": MEAN_ABSOLUTE_PERCENTAGE_ERROR,
    "cosine_proximity": COSINE_PROXIMITY,
    "binary_crossentropy": BINARY_CROSSENTROPY,
    "categorical_crossentropy": CATEGORICAL_CROSSENTROPY,
    "sparse_categorical_crossentropy": SPARSE_CATEGORICAL_CROSSENTROPY,
    "r2_score": R2_SCORE,
}

_EPSILON = 1e-7  # tfjs-layers backend epsilon() on CPU


@njit
def _clip(value, low, high):
    # Written as TF.js clipByValue: a NaN passes through unchanged.
    if value > high:
        return high
    if value < low:
        return low
    return value


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
def _categorical_accuracy(y_true, y_pred):
    rows = y_pred.shape[0]
    hits = 0
    for r in range(rows):
        if _argmax_row(y_true, r) == _argmax_row(y_pred, r):
            hits += 1
    return hits / rows


@njit
def _sparse_categorical_accuracy(y_true, y_pred):
    rows = y_pred.shape[0]
    hits = 0
    for r in range(rows):
        if y_true[r, 0] == _argmax_row(y_pred, r):
            hits += 1
    return hits / rows


@njit
def _confusion_counts(y_true, y_pred):
    # TF.js counts exact 1s and 0s in y_pred: probabilities in between count as neither.
    true_positives = 0
    false_positives = 0
    false_negatives = 0
    for r in range(y_pred.shape[0]):
        for j in range(y_pred.shape[1]):
            predicted = y_pred[r, j]
            target = y_true[r, j]
            if predicted == 1:
                if target == 1:
                    true_positives += 1
                elif target == 0:
                    false_positives += 1
            elif predicted == 0 and target == 1:
                false_negatives += 1
    return true_positives, false_positives, false_negatives


@njit
def _precision(y_true, y_pred):
    tp, fp, _ = _confusion_counts(y_true, y_pred)
    if tp + fp > 0:
        return tp / (tp + fp)
    return 0.0


@njit
def _recall(y_true, y_pred):
    tp, _, fn = _confusion_counts(y_true, y_pred)
    if tp + fn > 0:
        return tp / (tp + fn)
    return 0.0


@njit
def _mean_squared_error(y_true, y_pred):
    rows, width = y_pred.shape
    total = 0.0
    for r in range(rows):
        row_sum = 0.0
        for j in range(width):
            diff = y_pred[r, j] - y_true[r, j]
            row_sum += float(diff * diff)
        total += row_sum / width
    return total / rows


@njit
def _mean_absolute_error(y_true, y_pred):
    rows, width = y_pred.shape
    total = 0.0
    for r in range(rows):
        row_sum = 0.0
        for j in range(width):
            row_sum += float(abs(y_pred[r, j] - y_true[r, j]))
        total += row_sum / width
    return total / rows


@njit
def _mean_absolute_percentage_error(y_true, y_pred):
    rows, width = y_pred.shape
    eps = y_pred.dtype.type(_EPSILON)
    total = 0.0
    for r in range(rows):
        row_sum = 0.0
        for j in range(width):
            target = y_true[r, j]
            magnitude = abs(target)
            if magnitude < eps:
                magnitude = eps
            row_sum += float(abs((target - y_pred[r, j]) / magnitude))
        total += 100.0 * (row_sum / width)
    return total / rows


@njit
def _cosine_proximity(y_true, y_pred):
    rows, width = y_pred.shape
    kind = y_pred.dtype.type
    eps = kind(_EPSILON)
    total = 0.0
    for r in range(rows):
        true_squares = 0.0
        pred_squares = 0.0
        for j in range(width):
            true_squares += float(y_true[r, j] * y_true[r, j])
            pred_squares += float(y_pred[r, j] * y_pred[r, j])
        true_norm = math.sqrt(max(kind(true_squares), eps))
        pred_norm = math.sqrt(max(kind(pred_squares), eps))
        row_sum = 0.0
        for j in range(width):
            row_sum += float((y_true[r, j] / true_norm) * (y_pred[r, j] / pred_norm))
        total -= row_sum
    return total / rows


@njit
def _binary_crossentropy(y_true, y_pred):
    # TF.js: clip, back to logits, then the stable sigmoid cross-entropy with logits.
    rows, width = y_pred.shape
    kind = y_pred.dtype.type
    eps = kind(_EPSILON)
    one = kind(1.0)
    zero = kind(0.0)
    high = one - eps
    total = 0.0
    for r in range(rows):
        row_sum = 0.0
        for j in range(width):
            p = _clip(y_pred[r, j], eps, high)
            logit = math.log(p / (one - p))
            row_sum += float(max(logit, zero) - logit * y_true[r, j] + math.log1p(math.exp(-abs(logit))))
        total += row_sum / width
    return total / rows


@njit
def _categorical_crossentropy(y_true, y_pred):
    # TF.js: rescale each row to sum to 1, clip to [eps, 1 - eps], -sum(target * log).
    rows, width = y_pred.shape
    kind = y_pred.dtype.type
    eps = kind(_EPSILON)
    high = kind(1.0) - eps
    total = 0.0
    for r in range(rows):
        row_sum = 0.0
        for j in range(width):
            row_sum += float(y_pred[r, j])
        scale = kind(row_sum)
        cross = 0.0
        for j in range(width):
            p = _clip(y_pred[r, j] / scale, eps, high)
            target = y_true[r, j]
            # 0 * log(p) adds nothing for clipped p, so skip the log (most of the cost
            # with one-hot targets); a NaN p still propagates, as 0 * log(NaN) does in TF.js.
            if target != 0 or p != p:
                cross += float(target * math.log(p))
        total -= cross
    return total / rows


@njit
def _sparse_categorical_crossentropy(y_true, y_pred):
    # TF.js: clip, then one-hot(floor(label)) through categorical crossentropy (which
    # rescales and clips again). A label outside [0, width) one-hots to zeros: loss 0.
    rows, width = y_pred.shape
    kind = y_pred.dtype.type
    eps = kind(_EPSILON)
    high = kind(1.0) - eps
    total = 0.0
    for r in range(rows):
        label = math.floor(y_true[r, 0])
        if not (label >= 0 and label < width):
            continue
        row_sum = 0.0
        for j in range(width):
            row_sum += float(_clip(y_pred[r, j], eps, high))
        scale = kind(row_sum)
        p = _clip(_clip(y_pred[r, int(label)], eps, high) / scale, eps, high)
        total -= float(math.log(p))
    return total / rows


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


@njit
def metric_value(code, y_true, y_pred):
    """The metric `code` (see METRIC_CODES) on one batch: y_true, y_pred [rows, k] → float.

    Sparse codes take y_true [rows, 1] of float class indices.
    """
    if code == BINARY_ACCURACY:
        return _binary_accuracy(y_true, y_pred)
    if code == CATEGORICAL_ACCURACY:
        return _categorical_accuracy(y_true, y_pred)
    if code == SPARSE_CATEGORICAL_ACCURACY:
        return _sparse_categorical_accuracy(y_true, y_pred)
    if code == PRECISION:
        return _precision(y_true, y_pred)
    if code == RECALL:
        return _recall(y_true, y_pred)
    if code == MEAN_SQUARED_ERROR:
        return _mean_squared_error(y_true, y_pred)
    if code == MEAN_ABSOLUTE_ERROR:
        return _mean_absolute_error(y_true, y_pred)
    if code == MEAN_ABSOLUTE_PERCENTAGE_ERROR:
        return _mean_absolute_percentage_error(y_true, y_pred)
    if code == COSINE_PROXIMITY:
        return _cosine_proximity(y_true, y_pred)
    if code == BINARY_CROSSENTROPY:
        return _binary_crossentropy(y_true, y_pred)
    if code == CATEGORICAL_CROSSENTROPY:
        return _categorical_crossentropy(y_true, y_pred)
    if code == SPARSE_CATEGORICAL_CROSSENTROPY:
        return _sparse_categorical_crossentropy(y_true, y_pred)
    if code == R2_SCORE:
        return _r2_score(y_true, y_pred)
    raise ValueError("unknown metric code")
