"""What the compiled training loop (trainctl/train/compiled.py, kernels/plan_steps.py) needs
of the layers beyond Dense and Dropout (whose plans are in base.py): each layer's buffers,
codes and geometry, valid after `allocate`, returned by `Layer.compiled_plan()`. Arrays are
the layer's own full-capacity buffers; the loop writes into them exactly as forward/backward do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ViewPlan:
    """Flatten / Reshape: the output is the input, reshaped (nothing computed either way)."""


@dataclass(frozen=True)
class ActivationPlan:
    """Activation: y = act(x) over the last axis of `features` values; y, dx [rows, features]."""

    y: np.ndarray
    dx: np.ndarray
    activation_code: int


@dataclass(frozen=True)
class ConvPlan:
    """Conv1D / Conv2D (channels_last) as kernels/conv_steps.py runs it: z, y, dz [rows, filters];
    dx [batch, h, w, c]; cols, dcols flat scratch; kernel_part [depth, filters] scratch;
    geometry = (kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w, chunk, mode);
    in4 = (h, w, c) of the input's 4-D view."""

    kernel: np.ndarray
    bias: np.ndarray  # zeros when the layer has no bias
    kernel_grad: np.ndarray
    bias_grad: np.ndarray  # scratch when the layer has no bias
    z: np.ndarray
    y: np.ndarray
    dz: np.ndarray
    dx: np.ndarray
    cols: np.ndarray
    dcols: np.ndarray
    kernel_part: np.ndarray
    activation_code: int
    geometry: tuple[int, ...]
    in4: tuple[int, int, int]


@dataclass(frozen=True)
class PoolPlan:
    """Max/AveragePooling1D/2D (channels_last): y [batch, oh, ow, c], dx [batch, h, w, c],
    argmax (max pooling; int64, y's shape), geometry = (ph, pw, sh, sw, pad_top, pad_left)."""

    is_max: bool
    y: np.ndarray
    dx: np.ndarray
    argmax: np.ndarray
    geometry: tuple[int, ...]
    in4: tuple[int, int, int]


@dataclass(frozen=True)
class GlobalPoolPlan:
    """GlobalMax/AveragePooling1D/2D (channels_last): y [batch, c], dx [batch, positions, c]."""

    is_max: bool
    y: np.ndarray
    dx: np.ndarray
    positions: int
    channels: int


@dataclass(frozen=True)
class BatchNormPlan:
    """BatchNormalization in training mode over the [n * pre, k, post] view of its input."""

    gamma: np.ndarray  # ones when scale is off
    beta: np.ndarray  # zeros when center is off
    gamma_grad: np.ndarray  # scratch when off
    beta_grad: np.ndarray
    moving_mean: np.ndarray
    moving_variance: np.ndarray
    sums: np.ndarray  # float64 scratch
    squares: np.ndarray
    batch_mean: np.ndarray
    batch_variance: np.ndarray
    inv_std: np.ndarray
    xhat: np.ndarray  # flat
    y: np.ndarray
    dx: np.ndarray
    epsilon: float
    decay: float
    pre: int
    k: int
    post: int
