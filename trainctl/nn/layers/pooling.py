"""Pooling layers: MaxPooling1D/2D, AveragePooling1D/2D, GlobalAveragePooling1D/2D,
GlobalMaxPooling1D/2D (tfjs-layers pooling.ts names, options and defaults).

Windowed pooling computes on the channels_last 4-D view (1-D: `[n, length, 1, channels]`
with a window of `[pool, 1]`, as TF.js expands the dims); max pooling keeps the argmax of
each window for backward. No weights.
"""

from __future__ import annotations

import math

import numpy as np

from trainctl.errors import TrainctlError
from trainctl.nn.layers.base import BuildContext, LayerParams, Shape, declare_layer
from trainctl.nn.layers.plans import ChannelsFirstPlan, GlobalPoolPlan, PoolPlan
from trainctl.nn.layers.spatial import (
    DataFormat,
    Padding,
    SizeOrSizes,
    SpatialLayer,
    conv_output_length,
    normalize_tuple,
    pad_before,
)


def _kernels():
    from trainctl.kernels import pooling

    return pooling


class Pooling1DParams(LayerParams):
    pool_size: SizeOrSizes = 2  # TF.js default
    strides: SizeOrSizes | None = None  # TF.js default: pool_size
    padding: Padding = "valid"  # TF.js default


class Pooling2DParams(LayerParams):
    pool_size: SizeOrSizes = 2  # TF.js default [2, 2]
    strides: SizeOrSizes | None = None  # TF.js default: pool_size
    padding: Padding = "valid"  # TF.js default
    data_format: DataFormat = "channels_last"  # TF.js default


class _Pooling(SpatialLayer):
    is_max: bool

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        p = self.params
        self.pool_size = normalize_tuple(p.pool_size, self.rank, "pool_size", self.name)
        self.strides = self.pool_size if p.strides is None else \
            normalize_tuple(p.strides, self.rank, "strides", self.name)
        self.in_spatial, self.channels = self._split_shape(input_shape)
        self.out_spatial = tuple(conv_output_length(size, k, p.padding, s)
                                 for size, k, s in zip(self.in_spatial, self.pool_size, self.strides))
        if any(o <= 0 for o in self.out_spatial):
            raise TrainctlError(f"{self.name}: input {list(self.in_spatial)} is smaller than pool_size "
                                f"{list(self.pool_size)} with padding 'valid'")
        pads = tuple(pad_before(size, out, k, s)
                     for size, out, k, s in zip(self.in_spatial, self.out_spatial, self.pool_size, self.strides))
        if self.rank == 1:  # [n, length, 1, channels] with a [pool, 1] window
            self.geometry = (self.pool_size[0], 1, self.strides[0], 1, pads[0], 0)
            self._in4 = (self.in_spatial[0], 1, self.channels)
            self._out4 = (self.out_spatial[0], 1, self.channels)
        else:
            self.geometry = (*self.pool_size, *self.strides, *pads)
            self._in4 = (*self.in_spatial, self.channels)
            self._out4 = (*self.out_spatial, self.channels)
        self.dtype = context.dtype
        return super().build(input_shape, context)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return self._join_shape(self.out_spatial, self.channels)

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        self._pool = _kernels()
        self._y = np.empty((batch_size, *self._out4), self.dtype)
        self._dx = np.empty((batch_size, *self._in4), self.dtype)
        if self.is_max:
            self._argmax = np.empty((batch_size, *self._out4), np.int64)
        self._layout_buffers(batch_size, self.in_spatial, self.channels, self.out_spatial, self.channels, self.dtype)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        n = x.shape[0]
        x4 = self._input_nhwc(x).reshape(n, *self._in4)
        y = self._y[:n]
        if self.is_max:
            self._pool.max_pool_forward(x4, *self.geometry, y, self._argmax[:n])
        else:
            self._pool.avg_pool_forward(x4, *self.geometry, y)
        return self._output_format(y.reshape(n, *self.out_spatial, self.channels))

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        if not need_dx:
            return None
        n = dy.shape[0]
        dy4 = self._grad_nhwc(dy).reshape(n, *self._out4)
        dx = self._dx[:n]
        if self.is_max:
            self._pool.max_pool_backward(dy4, self._argmax[:n], dx)
        else:
            self._pool.avg_pool_backward(dy4, *self.geometry, dx)
        return self._grad_format(dx.reshape(n, *self.in_spatial, self.channels))

    def compiled_plan(self) -> PoolPlan | ChannelsFirstPlan:
        argmax = self._argmax if self.is_max else np.zeros((0, 0, 0, 0), np.int64)
        return self._in_layout(PoolPlan(self.is_max, self._y, self._dx, argmax, self.geometry, self._in4),
                               self.out_spatial, self.channels)

    def flops_per_sample(self) -> int:
        return math.prod(self.out_spatial) * self.channels * math.prod(self.pool_size)


MaxPooling1D = declare_layer("max_pooling1d", "MaxPooling1D", _Pooling, rank=1, is_max=True, Params=Pooling1DParams)
AveragePooling1D = declare_layer("average_pooling1d", "AveragePooling1D", _Pooling, rank=1, is_max=False,
                                 Params=Pooling1DParams)
MaxPooling2D = declare_layer("max_pooling2d", "MaxPooling2D", _Pooling, rank=2, is_max=True, Params=Pooling2DParams)
AveragePooling2D = declare_layer("average_pooling2d", "AveragePooling2D", _Pooling, rank=2, is_max=False,
                                 Params=Pooling2DParams)


class GlobalPooling2DParams(LayerParams):
    data_format: DataFormat = "channels_last"  # TF.js default


class _GlobalPooling(SpatialLayer):
    """Mean or max over every spatial position: [n, *spatial, c] → [n, c]."""

    is_max: bool

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        self.in_spatial, self.channels = self._split_shape(input_shape)
        self.positions = math.prod(self.in_spatial)
        self.dtype = context.dtype
        return super().build(input_shape, context)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (self.channels,)

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        self._pool = _kernels()
        self._y = np.empty((batch_size, self.channels), self.dtype)
        self._dx = np.empty((batch_size, self.positions, self.channels), self.dtype)
        if self.channels_first:
            self._in_nhwc = np.empty((batch_size, *self.in_spatial, self.channels), self.dtype)
            self._dx_nchw = np.empty((batch_size, self.channels, *self.in_spatial), self.dtype)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        n = x.shape[0]
        self._x3 = self._input_nhwc(x).reshape(n, self.positions, self.channels)
        y = self._y[:n]
        self._pool.global_pool_forward(self._x3, y, self.is_max)
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        if not need_dx:
            return None
        n = dy.shape[0]
        dx = self._dx[:n]
        self._pool.global_pool_backward(self._x3, self._y[:n], dy, dx, self.is_max)
        return self._grad_format(dx.reshape(n, *self.in_spatial, self.channels))

    def compiled_plan(self) -> GlobalPoolPlan | ChannelsFirstPlan:
        return self._in_layout(GlobalPoolPlan(self.is_max, self._y, self._dx, self.positions, self.channels))

    def flops_per_sample(self) -> int:
        return self.positions * self.channels


GlobalAveragePooling1D = declare_layer("global_average_pooling1d", "GlobalAveragePooling1D", _GlobalPooling,
                                       rank=1, is_max=False)
GlobalMaxPooling1D = declare_layer("global_max_pooling1d", "GlobalMaxPooling1D", _GlobalPooling, rank=1, is_max=True)
GlobalAveragePooling2D = declare_layer("global_average_pooling2d", "GlobalAveragePooling2D", _GlobalPooling,
                                       rank=2, is_max=False, Params=GlobalPooling2DParams)
GlobalMaxPooling2D = declare_layer("global_max_pooling2d", "GlobalMaxPooling2D", _GlobalPooling, rank=2, is_max=True,
                                   Params=GlobalPooling2DParams)
