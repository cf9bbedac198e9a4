"""Shape layers: ZeroPadding1D/2D, Cropping1D/2D, UpSampling1D/2D, Permute, RepeatVector.

2-D ones take TF.js's `data_format` (channels_last, the default, or channels_first); the
1-D ones are Keras's (TF.js has none) with Keras's defaults. Forward and backward copy into
buffers sized by allocate; padded borders are zero from allocation and never written.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BeforeValidator, Field, model_validator

from trainctl.config.base import NonNegativeInt, PositiveInt
from trainctl.errors import TrainctlError
from trainctl.nn.layers.base import LAYERS, BuildContext, Layer, LayerParams, Shape
from trainctl.nn.layers.noise import DataFormat
from trainctl.nn.layers.plans import ChannelsFirstPlan, CopyBoxPlan, IndexCopyPlan, UpsamplePlan, index_copy

Pair = Annotated[list[NonNegativeInt], Field(min_length=2, max_length=2)]


def _pairs_2d(value: Union[int, list], option: str, name: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """TF.js's three spellings: n, [rows, cols], [[top, bottom], [left, right]]."""
    if isinstance(value, int):
        return (value, value), (value, value)
    if len(value) == 2 and all(isinstance(v, int) for v in value):
        return (value[0], value[0]), (value[1], value[1])
    if len(value) == 2 and all(isinstance(v, list) and len(v) == 2 for v in value):
        return tuple(value[0]), tuple(value[1])  # type: ignore[return-value]
    raise TrainctlError(f"{name}: {option} must be n, [rows, cols] or [[top, bottom], [left, right]], got {value}")


def _pair_1d(value: Union[int, list]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _spatial_axes(data_format: str, rank: int) -> list[int]:
    """Indices (into the per-sample shape) of the spatial axes."""
    return list(range(rank - 1)) if data_format == "channels_last" else list(range(1, rank))


def _check_rank(layer: Layer, input_shape: Shape, rank: int, form: str) -> None:
    if len(input_shape) != rank:
        raise TrainctlError(f"{layer.name}: {layer.class_name} expects inputs [null,{form}], "
                            f"got [null,{','.join(map(str, input_shape))}]")


class _Slicing(Layer):
    """Output = input with each axis padded (positive) or cropped (negative) at both ends."""

    def _pads(self, input_shape: Shape) -> list[tuple[int, int]]:
        raise NotImplementedError

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        self.dtype = context.dtype
        self.pads = self._pads(tuple(input_shape))
        return super().build(input_shape, context)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        out = tuple(d + a + b for d, (a, b) in zip(input_shape, self._pads(tuple(input_shape))))
        if any(d <= 0 for d in out):
            raise TrainctlError(f"{self.name}: {self.class_name} leaves nothing of [null,{','.join(map(str, input_shape))}]")
        return out

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        self._y = np.zeros((batch_size, *self.output_shape), self.dtype)
        self._dx = np.zeros((batch_size, *self.input_shape), self.dtype)
        # the box of the larger array that the smaller one fills, per feature axis (a 1-D
        # layer's [steps, channels] gets a third axis of 1): where it starts in x and in y
        pads = [*self.pads, (0, 0)][:3]
        in3, out3 = (tuple([*shape, 1][:3]) for shape in (self.input_shape, self.output_shape))
        padded = [a >= 0 and b >= 0 for a, b in pads]
        self._box = tuple(np.array(v, np.int64) for v in (
            [0 if pad else -a for (a, _), pad in zip(pads, padded)],
            [a if pad else 0 for (a, _), pad in zip(pads, padded)],
            [d_in if pad else d_out for d_in, d_out, pad in zip(in3, out3, padded)]))
        self._in3, self._out3 = in3, out3
        self._copy_box = _resampling_kernels().copy_box

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        n = x.shape[0]
        y = self._y[:n]
        x_start, y_start, extent = self._box
        self._copy_box(np.ascontiguousarray(x).reshape(n, *self._in3), x_start, y.reshape(n, *self._out3), y_start, extent)
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        if not need_dx:
            return None
        n = dy.shape[0]
        dx = self._dx[:n]
        x_start, y_start, extent = self._box
        self._copy_box(np.ascontiguousarray(dy).reshape(n, *self._out3), y_start, dx.reshape(n, *self._in3), x_start, extent)
        return dx

    def compiled_plan(self) -> CopyBoxPlan:
        x_start, y_start, extent = (tuple(int(v) for v in a) for a in self._box)
        return CopyBoxPlan(self._y, self._dx, self._in3, self._out3, x_start, y_start, extent)


@LAYERS.register_type("zero_padding1d")
class ZeroPadding1D(_Slicing):
    """Zeros before and after the steps of [null, steps, channels] (Keras ZeroPadding1D)."""

    in_tfjs = False

    class Params(LayerParams):
        padding: Union[NonNegativeInt, Pair] = 1  # Keras default

    def _pads(self, input_shape):
        _check_rank(self, input_shape, 2, "steps,channels")
        return [_pair_1d(self.params.padding), (0, 0)]


@LAYERS.register_type("zero_padding2d")
class ZeroPadding2D(_Slicing):
    """Zero rows and columns around images (TF.js ZeroPadding2D)."""

    class Params(LayerParams):
        padding: Union[NonNegativeInt, Pair, list[Pair]] = 1  # TF.js default [[1, 1], [1, 1]]
        data_format: DataFormat = "channels_last"

    def _pads(self, input_shape):
        _check_rank(self, input_shape, 3, "rows,cols,channels")
        rows, cols = _pairs_2d(self.params.padding, "padding", self.name)
        return [rows, cols, (0, 0)] if self.params.data_format == "channels_last" else [(0, 0), rows, cols]


@LAYERS.register_type("cropping1d")
class Cropping1D(_Slicing):
    """Drops steps at the start and end of [null, steps, channels] (Keras Cropping1D)."""

    in_tfjs = False

    class Params(LayerParams):
        cropping: Union[NonNegativeInt, Pair] = [1, 1]  # Keras default

    def _pads(self, input_shape):
        _check_rank(self, input_shape, 2, "steps,channels")
        a, b = _pair_1d(self.params.cropping)
        return [(-a, -b), (0, 0)]


@LAYERS.register_type("cropping2d", "cropping2D")
class Cropping2D(_Slicing):
    """Drops rows and columns at the image edges (TF.js Cropping2D; cropping is required there)."""

    class Params(LayerParams):
        cropping: Union[NonNegativeInt, Pair, list[Pair]]
        data_format: DataFormat = "channels_last"

    def _pads(self, input_shape):
        _check_rank(self, input_shape, 3, "rows,cols,channels")
        (t, b), (l, r) = _pairs_2d(self.params.cropping, "cropping", self.name)
        rows, cols = (-t, -b), (-l, -r)
        return [rows, cols, (0, 0)] if self.params.data_format == "channels_last" else [(0, 0), rows, cols]


def _resampling_kernels():
    from trainctl.kernels import resampling

    return resampling


def _bilinear_table(source: int, factor: int, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TF.js resizeBilinear (alignCorners false, halfPixelCenters false): output o reads
    source o·(in/out), between floor and min(ceil, in − 1)."""
    ratio = source / (source * factor)
    frac_pos = ratio * np.arange(source * factor)
    low = np.maximum(0, np.floor(frac_pos)).astype(np.int64)
    high = np.minimum(source - 1, np.ceil(frac_pos)).astype(np.int64)
    return low, high, (frac_pos - low).astype(dtype)


class _Copying(Layer):
    """A layer whose output and input gradient go to buffers of its own, [batch,
    *output_shape] and [batch, *input_shape] in the model's dtype."""

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        self.dtype = context.dtype
        return super().build(input_shape, context)

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        self._y = np.empty((batch_size, *self.output_shape), self.dtype)
        self._dx = np.empty((batch_size, *self.input_shape), self.dtype)


class _UpSampling(_Copying):
    """Repeats (nearest) or interpolates (bilinear) rows and columns by `size`."""

    def _factors(self) -> tuple[int, int]:
        raise NotImplementedError

    def _as_nhwc(self, a: np.ndarray) -> np.ndarray:
        """[n, *shape] → a [n, rows, cols, channels] view."""
        raise NotImplementedError

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        super().build(input_shape, context)
        interpolation = getattr(self.params, "interpolation", "nearest")
        self.bilinear = interpolation == "bilinear"
        (self._rows, self._cols, _), _ = self._nhwc_shapes()
        return self.output_shape

    @property
    def channels_first(self) -> bool:
        return getattr(self.params, "data_format", "channels_last") == "channels_first"

    def _nhwc_shapes(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """The input's and the output's per-sample [rows, cols, channels]."""
        rows, cols, channels = self._as_nhwc(np.empty((1, *self.input_shape), np.int8)).shape[1:]
        size_rows, size_cols = self._factors()
        return (rows, cols, channels), (rows * size_rows, cols * size_cols, channels)

    def allocate(self, batch_size: int) -> None:
        super().allocate(batch_size)
        # the interpolation tables are output-sized: made here, never for a shapes-only build
        size_rows, size_cols = self._factors()
        self._tables = (_bilinear_table(self._rows, size_rows, self.dtype) + _bilinear_table(self._cols, size_cols, self.dtype)
                        if self.bilinear else ())
        self._kernel = _resampling_kernels()
        if self.channels_first:
            # the compiled loop's channels_last copies of x, y, dy and dx (Python runs on
            # transposed views): its kernels take contiguous [n, rows, cols, channels] arrays
            into, out = self._nhwc_shapes()
            self._x_last, self._dx_last = (np.empty((batch_size, *into), self.dtype) for _ in range(2))
            self._y_last, self._dy_last = (np.empty((batch_size, *out), self.dtype) for _ in range(2))

    def buffer_nbytes(self, batch_size: int, itemsize: int) -> int:
        copies = 2 * batch_size * (math.prod(self.input_shape) + math.prod(self.output_shape)) * itemsize
        return super().buffer_nbytes(batch_size, itemsize) + (copies if self.channels_first else 0)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        y = self._y[: x.shape[0]]
        if self.bilinear:
            self._kernel.upsample_bilinear_forward(self._as_nhwc(x), *self._tables, self._as_nhwc(y))
        else:
            self._kernel.upsample_nearest_forward(self._as_nhwc(x), *self._factors(), self._as_nhwc(y))
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        if not need_dx:
            return None
        dx = self._dx[: dy.shape[0]]
        if self.bilinear:
            self._kernel.upsample_bilinear_backward(self._as_nhwc(dy), *self._tables, self._as_nhwc(dx))
        else:
            self._kernel.upsample_nearest_backward(self._as_nhwc(dy), *self._factors(), self._as_nhwc(dx))
        return dx

    def compiled_plan(self) -> UpsamplePlan | ChannelsFirstPlan:
        into, out = self._nhwc_shapes()
        if not self.channels_first:
            return UpsamplePlan(self._y, self._dx, into, self._factors(), self._tables)
        # channels_first: the channels_last plan between transposes, as the conv layers run
        # (the same per-element arithmetic as Python's on transposed views, so the same bits)
        inner = UpsamplePlan(self._y_last, self._dx_last, into, self._factors(), self._tables)
        return ChannelsFirstPlan(index_copy(self._x_last, self._dx, self.input_shape, (1, 2, 0)), inner,
                                 index_copy(self._y, self._dy_last, out, (2, 0, 1)))


@LAYERS.register_type("up_sampling1d", "upsampling1d")
class UpSampling1D(_UpSampling):
    """Repeats each step `size` times (Keras UpSampling1D; TF.js has none)."""

    in_tfjs = False

    class Params(LayerParams):
        size: PositiveInt = 2  # Keras default

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        _check_rank(self, input_shape, 2, "steps,channels")
        return super().build(input_shape, context)

    def _factors(self):
        return self.params.size, 1

    def _as_nhwc(self, a):
        return a.reshape(a.shape[0], a.shape[1], 1, a.shape[2])

    def compute_output_shape(self, input_shape):
        return (input_shape[0] * self.params.size, input_shape[1])


@LAYERS.register_type("up_sampling2d", "upsampling2d")
class UpSampling2D(_UpSampling):
    """Scales images up by `size` = [rows, cols] (TF.js UpSampling2D: nearest or bilinear)."""

    class Params(LayerParams):
        size: Union[PositiveInt, Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]] = [2, 2]  # TF.js DEFAULT_SIZE
        data_format: DataFormat = "channels_last"
        interpolation: Annotated[Literal["nearest", "bilinear"], BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v)] = "nearest"

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        _check_rank(self, input_shape, 3, "rows,cols,channels")
        return super().build(input_shape, context)

    def _factors(self):
        size = self.params.size
        return (size, size) if isinstance(size, int) else (size[0], size[1])

    def to_keras_config(self, config, fmt):
        config["size"] = list(self._factors())  # TF.js reads size as [rows, cols] only
        return config

    def _as_nhwc(self, a):
        return a if self.params.data_format == "channels_last" else a.transpose(0, 2, 3, 1)

    def compute_output_shape(self, input_shape):
        sr, sc = self._factors()
        if self.params.data_format == "channels_last":
            return (input_shape[0] * sr, input_shape[1] * sc, input_shape[2])
        return (input_shape[0], input_shape[1] * sr, input_shape[2] * sc)


@LAYERS.register_type("permute")
class Permute(_Copying):
    """Reorders the feature axes: dims is a permutation of 1..rank (TF.js Permute)."""

    class Params(LayerParams):
        dims: list[PositiveInt]

        @model_validator(mode="after")
        def _permutation(self):
            if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
                raise ValueError(f"dims {self.dims} must be a permutation of 1..{len(self.dims)}")
            return self

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        if len(self.params.dims) != len(input_shape):
            raise TrainctlError(f"{self.name}: dims {self.params.dims} has {len(self.params.dims)} axes, "
                                f"the input [null,{','.join(map(str, input_shape))}] has {len(input_shape)}")
        self._forward_axes = (0, *self.params.dims)
        self._backward_axes = tuple(int(a) for a in np.argsort(self._forward_axes))
        return super().build(input_shape, context)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[d - 1] for d in self.params.dims)

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        y = self._y[: x.shape[0]]
        np.copyto(y, x.transpose(self._forward_axes))
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        if not need_dx:
            return None
        dx = self._dx[: dy.shape[0]]
        np.copyto(dx, dy.transpose(self._backward_axes))
        return dx

    def compiled_plan(self) -> IndexCopyPlan | None:
        return index_copy(self._y, self._dx, self.input_shape, tuple(d - 1 for d in self.params.dims))


@LAYERS.register_type("repeat_vector")
class RepeatVector(_Copying):
    """[null, features] → [null, n, features] (TF.js RepeatVector)."""

    class Params(LayerParams):
        n: PositiveInt

    def build(self, input_shape: Shape, context: BuildContext) -> Shape:
        _check_rank(self, input_shape, 1, "features")
        return super().build(input_shape, context)

    def compute_output_shape(self, input_shape):
        return (self.params.n, input_shape[0])

    def forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        y = self._y[: x.shape[0]]
        np.copyto(y, x[:, None, :])
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        if not need_dx:
            return None
        # the repeats added in order from the first, as the compiled loop's index copy adds them
        # (kernels/plan_zoo._index_walk): np.sum would sum one feature's repeats ([n, repeats, 1],
        # a contiguous axis) pairwise, and starts any width from +0.0 (a sum of -0.0s is +0.0)
        dx = self._dx[: dy.shape[0]]
        np.copyto(dx, dy[:, 0])
        for repeat in range(1, dy.shape[1]):
            np.add(dx, dy[:, repeat], out=dx)
        return dx

    def compiled_plan(self) -> IndexCopyPlan | None:
        return index_copy(self._y, self._dx, self.input_shape, (0,), repeats=self.params.n)
