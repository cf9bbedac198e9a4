"""Depthwise convolutions: DepthwiseConv2D and SeparableConv2D (a depthwise step, then a 1x1
convolution), with tfjs-layers convolutional_depthwise.ts / SeparableConv2D names, options
and defaults. The depthwise step has direct kernels (kernels/conv.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import model_validator

from trainctl.config.base import PositiveInt, typed_spec
from trainctl.nn.initializers import INITIALIZERS
from trainctl.nn.layers.base import LAYERS, BuildContext
from trainctl.nn.layers.conv import BaseConvParams, _ConvBase, gemm_product
from trainctl.nn.layers.plans import ChannelsFirstPlan, DepthwisePlan
from trainctl.nn.regularizers import REGULARIZERS


class DepthwiseParams(BaseConvParams):
    depth_multiplier: PositiveInt = 1  # TF.js default
    depthwise_initializer: typed_spec(INITIALIZERS) = "glorot_normal"  # TF.js: DEFAULT_KERNEL_INITIALIZER
    depthwise_regularizer: typed_spec(REGULARIZERS, allow_null=True) = None


class _DepthwiseStep(_ConvBase):
    """The depthwise convolution both layers run (depthwise_kernel [kh, kw, in, multiplier])."""

    def _depthwise_forward(self, x: np.ndarray, out2d: np.ndarray, channels: int) -> None:
        """Keeps x in channels_last for backward; out2d [rows, channels] gets the convolution."""
        n = x.shape[0]
        self._x4 = self._input_nhwc(x)
        kh, kw, sh, sw, dh, dw, pt, pl = self.geometry
        self._conv.depthwise_forward(self._x4, self.depthwise_kernel.value, sh, sw, dh, dw, pt, pl,
                                     out2d.reshape(n, *self.out_spatial, channels))

    def _depthwise_backward(self, d2d: np.ndarray, channels: int, need_dx: bool) -> np.ndarray | None:
        """Fills the depthwise kernel's gradient from d2d [rows, channels]; dx in the layer's format."""
        n = self._x4.shape[0]
        kh, kw, sh, sw, dh, dw, pt, pl = self.geometry
        dx = self._dx[:n]
        self._conv.depthwise_backward(self._x4, self.depthwise_kernel.value,
                                      d2d.reshape(n, *self.out_spatial, channels),
                                      sh, sw, dh, dw, pt, pl, self.depthwise_kernel.grad, dx, need_dx)
        return self._grad_format(dx) if need_dx else None

    def _depthwise_plan(self, pointwise: np.ndarray, pointwise_grad: np.ndarray, mid: np.ndarray,
                        dmid: np.ndarray) -> DepthwisePlan | ChannelsFirstPlan:
        """The compiled loop's plan (kernels/plan_zoo.py KIND_DEPTHWISE); a separable layer
        passes its pointwise kernel and mid buffers, DepthwiseConv2D empty ones."""
        return self._in_layout(DepthwisePlan(
            self.depthwise_kernel.value, self.bias.value if self.bias is not None else self._zero_bias,
            self.depthwise_kernel.grad, self._bias_grad(), self._z, self._y, self._dz, self._dx,
            int(self.activation.code), pointwise, pointwise_grad, mid, dmid, self.geometry,
            (*self.in_spatial, self.in_channels), self.out_spatial, self.params.depth_multiplier,
            pointwise.size > 0, activity_regularizer=self.activity_regularizer, activity_grad=self._activity_grad),
            self.out_spatial, self.out_channels)


@LAYERS.register_type("depthwise_conv2d")
class DepthwiseConv2D(_DepthwiseStep):
    """Each input channel convolved with its own depth_multiplier filters: depthwise_kernel
    [kh, kw, in_channels, depth_multiplier], output channel c * depth_multiplier + k (TF.js)."""

    rank = 2
    uses_dilation = False  # TF.js 4.22 DepthwiseConv2D passes no dilation
    Params = DepthwiseParams

    def _build_output(self) -> None:
        self.out_spatial = self._spatial_out(self.in_spatial)
        self.out_channels = self.in_channels * self.params.depth_multiplier
        self.geometry = self._geometry_4d(self.in_spatial, self.out_spatial, (1, 1))

    def _build_kernels(self, context: BuildContext) -> None:
        p = self.params
        shape = (*self.kernel_size, self.in_channels, p.depth_multiplier)
        self.depthwise_kernel = self.add_weight("depthwise_kernel", shape, p.depthwise_initializer, context,
                                                regularizer=p.depthwise_regularizer)

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        self._dx = np.empty((batch_size, *self.in_spatial, self.in_channels), self.dtype)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        n = x.shape[0]
        rows = n * math.prod(self.out_spatial)
        self._depthwise_forward(x, self._z[:rows], self.out_channels)
        return self._output(self._epilogue_forward(rows), n)

    def _backward(self, dy2d: np.ndarray, code: int, need_dx: bool) -> np.ndarray | None:
        return self._depthwise_backward(self._epilogue_backward(dy2d, code), self.out_channels, need_dx)

    def compiled_plan(self) -> DepthwisePlan | ChannelsFirstPlan:
        none = np.zeros(0, self.dtype)
        return self._depthwise_plan(none, none, none, none)

    def flops_per_sample(self) -> int:
        macs = math.prod(self.out_spatial) * math.prod(self.kernel_size) * self.out_channels
        return 2 * macs + self._bias_flops()


class SeparableParams(BaseConvParams):
    filters: PositiveInt
    depth_multiplier: PositiveInt = 1  # TF.js default
    depthwise_initializer: typed_spec(INITIALIZERS) = "glorot_uniform"  # TF.js DEFAULT_DEPTHWISE_INITIALIZER
    # TF.js 4.22 initialises the pointwise kernel with depthwise_initializer when one is given
    # (it reads config.depthwiseInitializer for both); that is kept when pointwise_initializer
    # is left out, and an explicit pointwise_initializer is honoured.
    pointwise_initializer: typed_spec(INITIALIZERS, allow_null=True) = None
    depthwise_regularizer: typed_spec(REGULARIZERS, allow_null=True) = None
    pointwise_regularizer: typed_spec(REGULARIZERS, allow_null=True) = None
    kernel_initializer: Any = None  # refused, as TF.js does: use depthwise_/pointwise_ options
    kernel_regularizer: Any = None

    @model_validator(mode="after")
    def _no_kernel_options(self):
        if self.kernel_initializer is not None or self.kernel_regularizer is not None:
            raise ValueError("kernel_initializer and kernel_regularizer are invalid for separable_conv2d; "
                             "use depthwise_initializer, pointwise_initializer, depthwise_regularizer "
                             "and pointwise_regularizer")
        return self


@LAYERS.register_type("separable_conv2d")
class SeparableConv2D(_DepthwiseStep):
    """A depthwise convolution (depthwise_kernel [kh, kw, in, depth_multiplier], with
    dilation) followed by a 1x1 convolution (pointwise_kernel [1, 1, in * depth_multiplier,
    filters]), then bias and activation (TF.js SeparableConv2D)."""

    rank = 2
    Params = SeparableParams

    def _build_output(self) -> None:
        self.out_spatial, self.out_channels = self._spatial_out(self.in_spatial), self.params.filters
        self.geometry = self._geometry_4d(self.in_spatial, self.out_spatial, self.dilation_rate)

    def _build_kernels(self, context: BuildContext) -> None:
        p = self.params
        self.mid_channels = self.in_channels * p.depth_multiplier
        depthwise_shape = (*self.kernel_size, self.in_channels, p.depth_multiplier)
        self.depthwise_kernel = self.add_weight("depthwise_kernel", depthwise_shape, p.depthwise_initializer,
                                                context, regularizer=p.depthwise_regularizer)
        pointwise_init = p.pointwise_initializer or p.depthwise_initializer
        self.pointwise_kernel = self.add_weight("pointwise_kernel", (1, 1, self.mid_channels, p.filters),
                                                pointwise_init, context, regularizer=p.pointwise_regularizer)

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        rows = batch_size * math.prod(self.out_spatial)
        self._mid = np.empty((rows, self.mid_channels), self.dtype)
        self._dmid = np.empty((rows, self.mid_channels), self.dtype)
        self._dx = np.empty((batch_size, *self.in_spatial, self.in_channels), self.dtype)
        self._matmul = gemm_product()

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        n = x.shape[0]
        rows = n * math.prod(self.out_spatial)
        mid = self._mid[:rows]
        self._depthwise_forward(x, mid, self.mid_channels)
        self._matmul(mid, self.pointwise_kernel.value.reshape(self.mid_channels, -1), self._z[:rows], False, False)
        return self._output(self._epilogue_forward(rows), n)

    def _backward(self, dy2d: np.ndarray, code: int, need_dx: bool) -> np.ndarray | None:
        dz = self._epilogue_backward(dy2d, code)
        rows = dz.shape[0]
        mid, dmid = self._mid[:rows], self._dmid[:rows]
        pointwise = self.pointwise_kernel.value.reshape(self.mid_channels, -1)
        self._matmul(mid, dz, self.pointwise_kernel.grad.reshape(self.mid_channels, -1), True, False)
        self._matmul(dz, pointwise, dmid, False, True)
        return self._depthwise_backward(dmid, self.mid_channels, need_dx)

    def compiled_plan(self) -> DepthwisePlan | ChannelsFirstPlan:
        return self._depthwise_plan(self.pointwise_kernel.value, self.pointwise_kernel.grad, self._mid, self._dmid)

    def flops_per_sample(self) -> int:
        positions = math.prod(self.out_spatial)
        depthwise = positions * math.prod(self.kernel_size) * self.mid_channels
        pointwise = positions * self.mid_channels * self.out_channels
        return 2 * (depthwise + pointwise) + self._bias_flops()
