"""Activation layers with options or weights: LeakyReLU, PReLU, ELU(alpha), ReLU(max_value,
threshold, negative_slope), ThresholdedReLU, Softmax over any axis.

Element-wise kernels take 1-D arrays; PReLU takes [n, positions] with an index from each
position to its alpha; softmax takes [pre, k, post] and normalises over k.
"""

import math

from trainctl.jit import njit


@njit
def leaky_relu_forward(x, alpha, y):
    """TF.js leakyRelu: x < 0 → alpha·x."""
    for i in range(x.shape[0]):
        v = x[i]
        y[i] = alpha * v if v < 0 else v


@njit
def leaky_relu_backward(x, dy, alpha, dx):
    for i in range(x.shape[0]):
        dx[i] = alpha * dy[i] if x[i] < 0 else dy[i]


@njit
def elu_forward(x, alpha, y):
    """x > 0 → x, else alpha·(eˣ − 1)."""
    for i in range(x.shape[0]):
        v = x[i]
        y[i] = v if v > 0 else alpha * (math.exp(v) - 1.0)


@njit
def elu_backward(x, dy, alpha, dx):
    for i in range(x.shape[0]):
        v = x[i]
        dx[i] = dy[i] if v > 0 else dy[i] * alpha * math.exp(v)


@njit
def relu_forward(x, has_max, max_value, threshold, negative_slope, y):
    """Keras relu: (x if x > threshold else 0), clipped to [0, max_value] when max_value is
    set, minus negative_slope·max(threshold − x, 0). TF.js ReLU is threshold 0, slope 0."""
    for i in range(x.shape[0]):
        v = x[i]
        positive = v if v > threshold else 0.0
        if has_max:
            positive = min(max(positive, 0.0), max_value)
        y[i] = positive - negative_slope * max(threshold - v, 0.0)


@njit
def relu_backward(x, dy, has_max, max_value, threshold, negative_slope, dx):
    for i in range(x.shape[0]):
        v = x[i]
        slope = 0.0
        if v > threshold and (not has_max or (v > 0.0 and v < max_value)):
            slope = 1.0
        if v < threshold:
            slope += negative_slope
        dx[i] = dy[i] * slope


@njit
def thresholded_relu_forward(x, theta, y):
    """TF.js ThresholdedReLU: x · (x > theta)."""
    for i in range(x.shape[0]):
        v = x[i]
        y[i] = v if v > theta else 0.0


@njit
def thresholded_relu_backward(x, dy, theta, dx):
    for i in range(x.shape[0]):
        dx[i] = dy[i] if x[i] > theta else 0.0


@njit
def prelu_forward(x, alpha, index, y):
    """TF.js prelu: x < 0 → alpha·x. x, y [n, positions]; alpha flat; index [positions] → alpha."""
    n, positions = x.shape
    for i in range(n):
        for p in range(positions):
            v = x[i, p]
            y[i, p] = alpha[index[p]] * v if v < 0 else v


@njit
def prelu_backward(x, dy, alpha, index, need_dx, acc, dalpha, dx):
    """dalpha[a] = Σ dy·x where x < 0 over the positions sharing alpha a; acc float64 scratch."""
    n, positions = x.shape
    for a in range(acc.shape[0]):
        acc[a] = 0.0
    for i in range(n):
        for p in range(positions):
            v = x[i, p]
            if v < 0:
                acc[index[p]] += dy[i, p] * v
                if need_dx:
                    dx[i, p] = dy[i, p] * alpha[index[p]]
            elif need_dx:
                dx[i, p] = dy[i, p]
    for a in range(acc.shape[0]):
        dalpha[a] = acc[a]


@njit
def softmax_forward(x, y):
    """Softmax over axis 1 of x [pre, k, post] (max-shifted)."""
    pre, k, post = x.shape
    for i in range(pre):
        for j in range(post):
            top = x[i, 0, j]
            for c in range(1, k):
                top = max(top, x[i, c, j])
            total = 0.0
            for c in range(k):
                e = math.exp(x[i, c, j] - top)
                y[i, c, j] = e
                total += e
            for c in range(k):
                y[i, c, j] = y[i, c, j] / total


@njit
def softmax_backward(y, dy, dx):
    """dx = y·(dy − Σ_k dy·y) over axis 1."""
    pre, k, post = y.shape
    for i in range(pre):
        for j in range(post):
            dot = 0.0
            for c in range(k):
                dot += dy[i, c, j] * y[i, c, j]
            for c in range(k):
                dx[i, c, j] = y[i, c, j] * (dy[i, c, j] - dot)


# The compiled training loop's dispatch over the element-wise layers (each layer calls its
# kernels by name; the loop by this code, with the same kernels and the same option types).
ELEMENTWISE_OPS = {"leaky_relu": 0, "elu": 1, "relu": 2, "thresholded_relu": 3}


@njit
def elementwise_forward(op, x, options, y):
    """The element-wise layer `op`'s forward; options: its float options in order (ReLU:
    has_max as 0/1, max_value, threshold, negative_slope). 1-D arrays."""
    if op == 0:
        leaky_relu_forward(x, options[0], y)
    elif op == 1:
        elu_forward(x, options[0], y)
    elif op == 2:
        relu_forward(x, options[0] != 0.0, options[1], options[2], options[3], y)
    else:
        thresholded_relu_forward(x, options[0], y)


@njit
def elementwise_backward(op, x, dy, options, dx):
    if op == 0:
        leaky_relu_backward(x, dy, options[0], dx)
    elif op == 1:
        elu_backward(x, dy, options[0], dx)
    elif op == 2:
        relu_backward(x, dy, options[0] != 0.0, options[1], options[2], options[3], dx)
    else:
        thresholded_relu_backward(x, dy, options[0], dx)
