"""What the compiled training loop (trainctl/train/compiled.py, kernels/plan_steps.py, general_plan_steps.py) needs
of the layers beyond Dense and Dropout (whose plans are in base.py): each layer's buffers,
codes and geometry, valid after `allocate`, returned by `Layer.compiled_plan()`. Arrays are
the layer's own full-capacity buffers; the loop writes into them exactly as forward/backward do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trainctl.nn.layers.base import ProductPlan


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
class ConvPlan(ProductPlan):
    """Conv1D / Conv2D (channels_last) as kernels/conv_steps.py runs it: z, y, dz [rows, filters];
    dx [batch, h, w, c]; cols, dcols flat scratch; kernel_part [depth, filters] scratch;
    geometry = (kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w, chunk, mode);
    in4 = (h, w, c) of the input's 4-D view."""

    cols: np.ndarray
    dcols: np.ndarray
    kernel_part: np.ndarray
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


@dataclass(frozen=True)
class ElementwisePlan:
    """LeakyReLU, ELU, ReLU, ThresholdedReLU: y = f(x) element by element; op is the kernels'
    code (kernels/advanced_activations.ELEMENTWISE_OPS), options their float options in order."""

    op: int
    options: tuple[float, ...]
    y: np.ndarray
    dx: np.ndarray


@dataclass(frozen=True)
class SoftmaxPlan:
    """The Softmax layer over the [n * pre, k, post] view; y, dx flat."""

    y: np.ndarray
    dx: np.ndarray
    pre: int
    k: int
    post: int


@dataclass(frozen=True)
class LayerNormPlan:
    """LayerNormalization over the [n * pre, k, post] view: gamma, beta flat [k] (ones/zeros
    when off; their grads scratch then), inv_std [capacity * pre * post], xhat, y, dx flat,
    sums/squares the kernel's float64 accumulators [k]."""

    gamma: np.ndarray
    beta: np.ndarray
    gamma_grad: np.ndarray
    beta_grad: np.ndarray
    inv_std: np.ndarray
    xhat: np.ndarray
    y: np.ndarray
    dx: np.ndarray
    sums: np.ndarray
    squares: np.ndarray
    epsilon: float
    pre: int
    k: int
    post: int


@dataclass(frozen=True)
class PReLUPlan:
    """PReLU over [n, positions]: alpha flat with its grad, index [positions] → alpha, acc
    float64 [alpha size]; y, dx flat."""

    alpha: np.ndarray
    alpha_grad: np.ndarray
    index: np.ndarray
    acc: np.ndarray
    y: np.ndarray
    dx: np.ndarray
    positions: int


@dataclass(frozen=True)
class UpsamplePlan:
    """UpSampling1D/2D over the [n, h, w, c] view (channels_last); y, dx flat. Bilinear: the
    layer's tables (top, bottom, row_frac, left, right, col_frac; see reshaping._bilinear_table)."""

    y: np.ndarray
    dx: np.ndarray
    in4: tuple[int, int, int]
    factors: tuple[int, int]
    tables: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class CopyBoxPlan:
    """ZeroPadding/Cropping 1D/2D over [n, a, b, c] views of input and output (kernels/
    resampling.copy_box): x_start in the input, y_start in the output, extent of the box."""

    y: np.ndarray
    dx: np.ndarray
    in3: tuple[int, int, int]
    out3: tuple[int, int, int]
    x_start: tuple[int, int, int]
    y_start: tuple[int, int, int]
    extent: tuple[int, int, int]


@dataclass(frozen=True)
class NoisePlan:
    """A noise layer in training (kernels/noise.noise_forward's op): `rng` draws `features` per
    sample each step (standard normal in the layer's dtype if `normal`, else uniform float64),
    drawn per chunk in step order as its forward draws them; mask, y, dx flat (spatial dropout's
    mask [capacity, channels]); options the kernel's floats."""

    op: int
    rng: Any
    features: int
    normal: bool
    options: tuple[float, ...]
    mask: np.ndarray
    y: np.ndarray
    dx: np.ndarray
    channels: int = 1
    channels_last: bool = True


@dataclass(frozen=True)
class MaskingPlan:
    """Masking (kernels/plan_zoo.py KIND_MASKING) over `positions` per sample (every axis but
    the last) of `width` values each: keep [capacity * positions] the mask as 1.0 / 0.0 in the
    model's dtype (the recurrent layers after it read it); mask_value rounded to the dtype, as
    numpy compares a Python float with the layer's input; y, dx flat."""

    y: np.ndarray
    dx: np.ndarray
    keep: np.ndarray
    mask_value: float
    positions: int
    width: int


@dataclass(frozen=True)
class DrawsPlan:
    """What a layer draws from its generator `rng` per sample and step in training, besides its
    plan (a recurrent layer's dropout masks): `features` uniforms, drawn per chunk in step order
    as Dropout's are (train/compiled.py); rate > 0."""

    rng: Any
    features: int
    rate: float


@dataclass(frozen=True)
class BidirectionalPlan:
    """Bidirectional (kernels/bidirectional_steps.py): its copies' RecurrentPlans (each with its
    own buffers and generator), merge_mode, y and dx [capacity, ...] (the merged output, the
    summed input gradient), the copies' dy buffers, and `half` [1]: 0.5 in the model's dtype."""

    forward: Any
    backward: Any
    merge_mode: str
    y: np.ndarray
    dx: np.ndarray
    dy_forward: np.ndarray
    dy_backward: np.ndarray
    half: np.ndarray


@dataclass(frozen=True)
class DepthwisePlan(ProductPlan):
    """DepthwiseConv2D / SeparableConv2D (channels_last), kernels/plan_zoo.py KIND_DEPTHWISE:
    kernel is the depthwise kernel [kh, kw, c, multiplier]; a separable layer's pointwise kernel
    [c * multiplier, filters] with its grad, and mid, dmid [rows, c * multiplier] (empty for
    DepthwiseConv2D); geometry = (kh, kw, sh, sw, dh, dw, pad_top, pad_left)."""

    pointwise: np.ndarray
    pointwise_grad: np.ndarray
    mid: np.ndarray
    dmid: np.ndarray
    geometry: tuple[int, ...]
    in4: tuple[int, int, int]
    out_hw: tuple[int, int]
    multiplier: int
    separable: bool


@dataclass(frozen=True)
class ConvTransposePlan(ProductPlan):
    """Conv2DTranspose (channels_last), kernels/plan_zoo.py KIND_CONV_TRANSPOSE: kernel
    [kh, kw, filters, in]; cols [in rows, kh * kw * filters] scratch; geometry the convolution
    it transposes (kh, kw, sh, sw, dh, dw, pad_top, pad_left); in3 = (h, w, in channels)."""

    cols: np.ndarray
    geometry: tuple[int, ...]
    in3: tuple[int, int, int]
    out_hw: tuple[int, int]


@dataclass(frozen=True)
class IndexCopyPlan:
    """y [n, *dims] = x read at Σ i_k · strides[k] per sample (kernels/plan_zoo.py
    KIND_INDEX_COPY): Permute, RepeatVector (stride 0 along the repeats), a channels_first
    layer's transposes. dims and strides have plan_zoo.INDEX_AXES entries (1 / 0 in front)."""

    y: np.ndarray
    dx: np.ndarray
    dims: tuple[int, ...]
    strides: tuple[int, ...]


def index_copy(y: np.ndarray, dx: np.ndarray, in_shape: tuple[int, ...], axes: tuple[int, ...],
               repeats: int = 0) -> IndexCopyPlan | None:
    """The IndexCopyPlan of y = x.transpose(axes) per sample (axes of the per-sample shape
    in_shape), with `repeats` > 0 a new leading axis of that many copies (RepeatVector); None
    beyond plan_zoo.INDEX_AXES axes."""
    from trainctl.kernels.plan_zoo import INDEX_AXES

    in_strides = [int(np.prod(in_shape[k + 1:])) for k in range(len(in_shape))]
    dims = [in_shape[a] for a in axes]
    strides = [in_strides[a] for a in axes]
    if repeats:
        dims, strides = [repeats, *dims], [0, *strides]
    if len(dims) > INDEX_AXES:
        return None
    pad = INDEX_AXES - len(dims)
    return IndexCopyPlan(y, dx, (1,) * pad + tuple(dims), (0,) * pad + tuple(strides))


@dataclass(frozen=True)
class ChannelsFirstPlan:
    """A channels_first conv or pooling layer: its channels_last plan between the transposes its
    Python path makes (nn/layers/spatial.py): x into the layer's [n, *spatial, c] buffer
    (to_last; backward dx back to channels_first) and, unless the output has no spatial axes
    (global pooling), y out to channels_first (to_first; backward dy into [n, *spatial, c])."""

    to_last: IndexCopyPlan
    inner: Any
    to_first: IndexCopyPlan | None


@dataclass(frozen=True)
class RepeatedPlan:
    """TimeDistributed around a layer other than Dense: the inner layer's plan, run over
    `times` (the steps) inner samples per sample, as TimeDistributed.forward runs the inner
    layer on [n * steps, ...] (the loop's G_TIMES column)."""

    inner: Any
    times: int


def plan_rows(plan) -> list:
    """The rows a layer's plan takes in the compiled loop: a ChannelsFirstPlan's three (or two),
    a RepeatedPlan's inner plan's."""
    if isinstance(plan, RepeatedPlan):
        return plan_rows(plan.inner)
    if isinstance(plan, ChannelsFirstPlan):
        return [plan.to_last, plan.inner] + ([plan.to_first] if plan.to_first is not None else [])
    return [plan]


def main_plan(plan):
    """The plan that computes the layer (a ChannelsFirstPlan's inner, a RepeatedPlan's inner
    layer's), None for None."""
    if isinstance(plan, RepeatedPlan):
        return main_plan(plan.inner)
    return plan.inner if isinstance(plan, ChannelsFirstPlan) else plan
