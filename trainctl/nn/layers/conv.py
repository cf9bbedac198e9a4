"""Convolution layers: Conv1D, Conv2D, Conv2DTranspose (tfjs-layers convolutional.ts names,
options and defaults); the shared base `_ConvBase` (geometry, bias, the fused epilogue).
DepthwiseConv2D and SeparableConv2D are in depthwise.py.

Conv1D / Conv2D (one compiled call each way, kernels/conv_steps.py, which the compiled
training loop calls too): im2col (kernels/conv.py) then one BLAS matrix product against the
kernel viewed as `[kh * kw * in_channels, filters]`, then one fused bias + activation kernel.
Backward: the fused activation-derivative + bias-gradient kernel, `cols.T @ dz` for the
kernel gradient, `dz @ kernel.T` then col2im for the input gradient. A 1x1 convolution with
stride 1 skips im2col (the input is its own column matrix). Conv2DTranspose runs the same
kernels the other way round.
"""

from __future__ import annotations

import math

import numpy as np

from trainctl.nn.activations import ACTIVATIONS
from trainctl.config.base import PositiveInt, registry_id, typed_spec
from trainctl.errors import TrainctlError
from trainctl.nn.initializers import INITIALIZERS
from trainctl.nn.layers.base import LAYERS, BuildContext, LayerParams, Shape, with_activity_grad
from trainctl.nn.layers.plans import ChannelsFirstPlan, ConvPlan, ConvTransposePlan
from trainctl.nn.layers.spatial import (
    DataFormat,
    Padding,
    SizeOrSizes,
    SpatialLayer,
    conv_output_length,
    deconv_length,
    normalize_tuple,
    pad_before,
)
from trainctl.nn.regularizers import REGULARIZERS, build_regularizer


COLUMN_CHUNK_BYTES = 256 * 1024  # a column-matrix chunk that stays in a core's L2 cache (128K-1M measured alike)


def _kernels():
    from trainctl.kernels import activations, conv

    return activations, conv


def gemm_product():
    """out = op(a) @ op(b) as the compiled loop's products call it (kernels/blas.matmul: one
    BLAS gemm call), for the Python path of the layers whose products the loop runs so
    (SeparableConv2D's pointwise step, Conv2DTranspose): np.matmul would take gemv or its own
    loop where a dimension is 1, and numpy's BLAS where TRAINCTL_BLAS=scipy binds the loop's
    gemm to np.dot, and either sums in another order."""
    from trainctl.kernels.blas import matmul

    return matmul


class BaseConvParams(LayerParams):
    """Options every convolution takes (tfjs-layers BaseConvLayerArgs)."""

    kernel_size: SizeOrSizes
    strides: SizeOrSizes = 1  # TF.js default
    padding: Padding = "valid"  # TF.js default; 'same' pads pad_total // 2 before, the rest after
    data_format: DataFormat = "channels_last"  # TF.js default (imageDataFormat)
    dilation_rate: SizeOrSizes = 1  # TF.js default; strides and dilation cannot both exceed 1
    activation: registry_id(ACTIVATIONS) = "linear"  # TF.js default: none
    use_bias: bool = True  # TF.js default
    bias_initializer: typed_spec(INITIALIZERS) = "zeros"  # TF.js DEFAULT_BIAS_INITIALIZER
    bias_regularizer: typed_spec(REGULARIZERS, allow_null=True) = None
    activity_regularizer: typed_spec(REGULARIZERS, allow_null=True) = None


class ConvParams(BaseConvParams):
    filters: PositiveInt
    kernel_initializer: typed_spec(INITIALIZERS) = "glorot_normal"  # TF.js BaseConv DEFAULT_KERNEL_INITIALIZER
    kernel_regularizer: typed_spec(REGULARIZERS, allow_null=True) = None


class _ConvBase(SpatialLayer):
    """Geometry, weights and the fused bias + activation epilogue shared by every convolution."""

    Params = BaseConvParams
    uses_dilation = True

    def _geometry(self, input_shape: Shape) -> None:
        """The activation, kernel size, strides, dilation and input split of `input_shape`."""
        p = self.params
        owner = self.name
        self.activation = self.output_activation = ACTIVATIONS.get(p.activation)
        self.kernel_size = normalize_tuple(p.kernel_size, self.rank, "kernel_size", owner)
        self.strides = normalize_tuple(p.strides, self.rank, "strides", owner)
        self.dilation_rate = normalize_tuple(p.dilation_rate, self.rank, "dilation_rate", owner)
        if not self.uses_dilation and any(d != 1 for d in self.dilation_rate):
            raise TrainctlError(f"{owner}: {self.class_name} has no dilation in TF.js 4.22 (it ignores "
                                f"dilation_rate); remove dilation_rate {list(self.dilation_rate)}")
        if any(s > 1 for s in self.strides) and any(d > 1 for d in self.dilation_rate):
            raise TrainctlError(f"{owner}: strides {list(self.strides)} and dilation_rate "
                                f"{list(self.dilation_rate)} cannot both exceed 1 (as in TF.js)")
        if self.channels_first and self.activation.rowwise:
            raise TrainctlError(f"{owner}: activation {self.activation.name!r} normalises over the last axis, "
                                "which is not the channel axis with data_format channels_first; "
                                "use channels_last or a separate activation layer")
        self.in_spatial, self.in_channels = self._split_shape(input_shape)

    def _spatial_out(self, in_spatial: tuple[int, ...]) -> tuple[int, ...]:
        dilation = self.dilation_rate if self.uses_dilation else (1,) * self.rank
        out = tuple(conv_output_length(size, k, self.params.padding, s, d)
                    for size, k, s, d in zip(in_spatial, self.kernel_size, self.strides, dilation))
        if any(o <= 0 for o in out):
            raise TrainctlError(f"{self.name}: input {list(in_spatial)} is smaller than the "
                                f"{'dilated ' if any(d > 1 for d in dilation) else ''}kernel "
                                f"{list(self.kernel_size)} with padding 'valid'")
        return out

    def _geometry_4d(self, in_spatial, out_spatial, dilation) -> tuple[int, ...]:
        """(kh, kw, sh, sw, dh, dw, pad_top, pad_left) of the channels_last 4-D view."""
        pads = tuple(pad_before(size, out, k, s, d) for size, out, k, s, d
                     in zip(in_spatial, out_spatial, self.kernel_size, self.strides, dilation))
        if self.rank == 1:
            return (1, self.kernel_size[0], 1, self.strides[0], 1, dilation[0], 0, pads[0])
        return (*self.kernel_size, *self.strides, *dilation, *pads)

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        """The geometry, the subclass's output geometry, its kernels, then the bias (TF.js's
        weight order)."""
        self._geometry(input_shape)
        self._build_output()
        self._build_kernels(context)
        self._build_bias(self.out_channels, context)
        return super().build(input_shape, context)

    def _build_output(self) -> None:
        """Set out_spatial, out_channels and the channels_last 4-D `geometry`."""
        raise NotImplementedError

    def _kernel_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def _build_kernels(self, context: BuildContext) -> None:
        """The weights before the bias: `kernel` (the depthwise layers have their own)."""
        p = self.params
        self.kernel = self.add_weight("kernel", self._kernel_shape(), p.kernel_initializer, context,
                                      regularizer=p.kernel_regularizer)

    def _build_bias(self, units: int, context: BuildContext) -> None:
        p = self.params
        self.bias = self.add_weight("bias", (units,), p.bias_initializer, context,
                                    regularizer=p.bias_regularizer) if p.use_bias else None
        self._zero_bias = np.zeros(units, context.dtype)  # stands in for a missing bias
        self._scratch_bias_grad = np.zeros(units, context.dtype)
        self.activity_regularizer = build_regularizer(p.activity_regularizer)
        self.dtype = context.dtype

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        self._allocate_epilogue(batch_size * math.prod(self.out_spatial), self.out_channels)
        self._layout_buffers(batch_size, self.in_spatial, self.in_channels, self.out_spatial,
                             self.out_channels, self.dtype)

    def _bias_flops(self) -> int:
        return math.prod(self.out_spatial) * self.out_channels if self.bias is not None else 0

    # -- the fused epilogue: z (pre-activation, [rows, units]) → y ------------------------
    def _allocate_epilogue(self, rows: int, units: int) -> None:
        kernels, self._conv = _kernels()
        self._forward_kernel = kernels.bias_activation_forward
        self._backward_kernel = kernels.activation_backward_bias_grad
        self._z = np.empty((rows, units), self.dtype)
        self._y = np.empty((rows, units), self.dtype)
        self._dz = np.empty((rows, units), self.dtype)
        self._activity_grad = np.empty((rows, units), self.dtype) if self.activity_regularizer else None
        self._linear_code = ACTIVATIONS.get("linear").code
        self._rows = 0

    def _epilogue_forward(self, rows: int) -> np.ndarray:
        z, y = self._z[:rows], self._y[:rows]
        bias = self.bias.value if self.bias is not None else self._zero_bias
        self._forward_kernel(z, bias, y, self.activation.code)
        self._rows = rows
        return y

    def _epilogue_backward(self, dy2d: np.ndarray, code: int) -> np.ndarray:
        rows = self._rows
        z, y, dz = self._z[:rows], self._y[:rows], self._dz[:rows]
        self._backward_kernel(z, y, self._with_activity_grad(dy2d), dz, self._bias_grad(), code)
        return dz

    def _with_activity_grad(self, dy2d: np.ndarray) -> np.ndarray:
        """dLoss/dy plus, with an activity regularizer, the grad of penalty(y) / n (as Dense)."""
        if self.activity_regularizer is None:
            return dy2d
        rows = self._rows
        return with_activity_grad(self.activity_regularizer, self._y[:rows], dy2d, self._activity_grad[:rows], self._n)

    def _bias_grad(self) -> np.ndarray:
        return self.bias.grad if self.bias is not None else self._scratch_bias_grad

    def activity_loss(self, n: int) -> float:
        if self.activity_regularizer is None:
            return 0.0
        return self.activity_regularizer.penalty(self._y[: self._rows]) / n

    def _output(self, y2d: np.ndarray, n: int) -> np.ndarray:
        self._n = n
        return self._output_format(y2d.reshape(n, *self.out_spatial, self.out_channels))

    def _dy2d(self, dy: np.ndarray) -> np.ndarray:
        return self._grad_nhwc(dy).reshape(self._rows, self.out_channels)

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        return self._backward(self._dy2d(dy), self.activation.code, need_dx)

    def backward_from_preactivation(self, dz: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        """Backward when the loss already gave dLoss/dz (softmax fused with cross-entropy)."""
        return self._backward(self._dy2d(dz), self._linear_code, need_dx)

    @property
    def has_activity_regularizer(self) -> bool:
        return self.activity_regularizer is not None

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return self._join_shape(self.out_spatial, self.out_channels)


class _Conv(_ConvBase):
    """Conv1D / Conv2D: a kernel [*kernel_size, in_channels, filters] summed over in_channels."""

    Params = ConvParams

    def _build_output(self) -> None:
        self.out_spatial, self.out_channels = self._spatial_out(self.in_spatial), self.params.filters
        self.geometry = self._geometry_4d(self.in_spatial, self.out_spatial, self.dilation_rate)

    def _kernel_shape(self) -> tuple[int, ...]:
        return (*self.kernel_size, self.in_channels, self.params.filters)

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        from trainctl.kernels import conv_steps

        self._steps = conv_steps
        kh, kw, sh, sw, dh, dw, pt, pl = self.geometry
        self._in4 = (*self._as_2d(self.in_spatial), self.in_channels)
        self._out_hw = self._as_2d(self.out_spatial)
        self._per_sample = math.prod(self.out_spatial)  # output positions = column-matrix rows per sample
        depth = self._depth = kh * kw * self.in_channels
        if kh == kw == sh == sw == 1 and pt == pl == 0:
            self._mode = conv_steps.MODE_POINTWISE
        elif self.in_channels == 1:
            # few input channels (a grey image): the transposed column matrix copies runs of
            # out_w pixels instead of runs of kw (measured 3x faster for 1 channel)
            self._mode = conv_steps.MODE_TRANSPOSED
        else:
            self._mode = conv_steps.MODE_ROWS
        # The column matrix is built for a chunk of samples at a time, sized to stay in
        # cache between im2col and its matrix products (a whole batch's columns at batch
        # 256 are 13 MB for the MNIST CNN's second conv); backward rebuilds it per chunk.
        self._chunk = max(1, min(batch_size, COLUMN_CHUNK_BYTES // (self._per_sample * depth * self.dtype.itemsize)))
        scratch = 0 if self._mode == conv_steps.MODE_POINTWISE else self._chunk * self._per_sample * depth
        self._cols = np.empty(scratch, self.dtype)  # flat: [rows, depth] or [depth, rows] views
        self._dcols = np.empty(scratch, self.dtype)
        self._kernel_part = np.empty((depth if scratch else 0, self.out_channels), self.dtype)
        self._dx = np.empty((batch_size, *self._in4), self.dtype)

    def _kernel_args(self) -> tuple:
        """The geometry arguments of conv_steps.conv_forward / conv_backward after the buffers."""
        return (*self.geometry, *self._out_hw, self._chunk, self._mode)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        n = x.shape[0]
        self._x4 = np.ascontiguousarray(self._input_nhwc(x)).reshape(n, *self._in4)
        rows = n * self._per_sample
        bias = self.bias.value if self.bias is not None else self._zero_bias
        self._steps.conv_forward(self._x4, self.kernel.value.reshape(-1, self.out_channels), bias,
                                 *self._kernel_args(), self._cols, self._z, self._y, self.activation.code)
        self._rows = rows
        return self._output(self._y[:rows], n)

    def _backward(self, dy2d: np.ndarray, code: int, need_dx: bool) -> np.ndarray | None:
        dy2d = np.ascontiguousarray(self._with_activity_grad(dy2d))
        n = self._rows // self._per_sample
        self._steps.conv_backward(
            self._x4, self.kernel.value.reshape(-1, self.out_channels), self._z, self._y, dy2d, self._dz,
            self._bias_grad(), self.kernel.grad.reshape(-1, self.out_channels), self._kernel_part,
            *self._kernel_args(), self._cols, self._dcols, self._dx, code, need_dx)
        if not need_dx:
            return None
        return self._grad_format(self._dx[:n].reshape(n, *self.in_spatial, self.in_channels))

    def compiled_plan(self) -> ConvPlan | ChannelsFirstPlan:
        return self._in_layout(ConvPlan(
            self.kernel.value, self.bias.value if self.bias is not None else self._zero_bias,
            self.kernel.grad, self._bias_grad(), self._z, self._y, self._dz, self._dx,
            int(self.activation.code), self._cols, self._dcols, self._kernel_part,
            (*self.geometry, *self._out_hw, self._chunk, self._mode), self._in4,
            activity_regularizer=self.activity_regularizer, activity_grad=self._activity_grad),
            self.out_spatial, self.out_channels)

    def flops_per_sample(self) -> int:
        positions = math.prod(self.out_spatial)
        macs = math.prod(self.kernel_size) * self.in_channels * self.out_channels
        return positions * 2 * macs + self._bias_flops()


@LAYERS.register_type("conv2d")
class Conv2D(_Conv):
    """2-D convolution over [height, width] (TF.js Conv2D); kernel [kh, kw, in_channels, filters]."""

    rank = 2


@LAYERS.register_type("conv1d")
class Conv1D(_Conv):
    """1-D convolution over [length] (TF.js Conv1D); kernel [k, in_channels, filters].

    channels_first is computed as declared (input [channels, length] → output [filters,
    length']); TF.js 4.22 declares that output shape but returns channels_last data."""

    rank = 1


@LAYERS.register_type("conv2d_transpose")
class Conv2DTranspose(_ConvBase):
    """The transpose (gradient) of a Conv2D: kernel [kh, kw, filters, in_channels]; output
    size per axis deconvLength(size, stride, k, padding) (TF.js Conv2DTranspose, no dilation)."""

    rank = 2
    uses_dilation = False
    Params = ConvParams

    def _build_output(self) -> None:
        p = self.params
        self.out_spatial = tuple(deconv_length(size, s, k, p.padding)
                                 for size, s, k in zip(self.in_spatial, self.strides, self.kernel_size))
        self.out_channels = p.filters
        # the convolution it transposes maps out_spatial → in_spatial
        self.geometry = self._geometry_4d(self.out_spatial, self.in_spatial, (1, 1))

    def _kernel_shape(self) -> tuple[int, ...]:
        return (*self.kernel_size, self.params.filters, self.in_channels)

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        kh, kw = self.geometry[:2]
        self._in_rows_per_sample = math.prod(self.in_spatial)
        depth = kh * kw * self.out_channels
        in_rows = batch_size * self._in_rows_per_sample
        self._cols = np.empty((in_rows, depth), self.dtype)  # im2col of dz, and x @ kernel2d.T
        self._dx = np.empty((in_rows, self.in_channels), self.dtype)
        self._matmul = gemm_product()

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        n = x.shape[0]
        in_rows = n * self._in_rows_per_sample
        x2d = self._input_nhwc(x).reshape(in_rows, self.in_channels)
        kernel2d = self.kernel.value.reshape(-1, self.in_channels)  # [kh * kw * filters, in]
        cols = self._cols[:in_rows]
        self._matmul(x2d, kernel2d, cols, False, True)
        rows = n * math.prod(self.out_spatial)
        z4 = self._z[:rows].reshape(n, *self.out_spatial, self.out_channels)
        self._conv.col2im(cols, *self.geometry, *self.in_spatial, z4)
        self._x2d = x2d
        return self._output(self._epilogue_forward(rows), n)

    def _backward(self, dy2d: np.ndarray, code: int, need_dx: bool) -> np.ndarray | None:
        dz = self._epilogue_backward(dy2d, code)
        n = dz.shape[0] // math.prod(self.out_spatial)
        in_rows = n * self._in_rows_per_sample
        cols = self._cols[:in_rows]
        self._conv.im2col(dz.reshape(n, *self.out_spatial, self.out_channels), *self.geometry,
                          *self.in_spatial, cols)
        self._matmul(cols, self._x2d, self.kernel.grad.reshape(-1, self.in_channels), True, False)
        if not need_dx:
            return None
        dx = self._dx[:in_rows]
        self._matmul(cols, self.kernel.value.reshape(-1, self.in_channels), dx, False, False)
        return self._grad_format(dx.reshape(n, *self.in_spatial, self.in_channels))

    def compiled_plan(self) -> ConvTransposePlan | ChannelsFirstPlan:
        return self._in_layout(ConvTransposePlan(
            self.kernel.value, self.bias.value if self.bias is not None else self._zero_bias,
            self.kernel.grad, self._bias_grad(), self._z, self._y, self._dz, self._dx,
            int(self.activation.code), self._cols, self.geometry, (*self.in_spatial, self.in_channels),
            self.out_spatial, activity_regularizer=self.activity_regularizer, activity_grad=self._activity_grad),
            self.out_spatial, self.out_channels)

    def flops_per_sample(self) -> int:
        macs = math.prod(self.in_spatial) * math.prod(self.kernel_size) * self.in_channels * self.out_channels
        return 2 * macs + self._bias_flops()
