"""What convolution and pooling layers share: option types, TF.js output-length and padding
arithmetic, and the channels_first ↔ channels_last transposes.

Every spatial layer computes in channels_last 4-D `[n, height, width, channels]` (a 1-D
signal is `[n, 1, length, channels]`); a channels_first layer transposes its input into a
buffer of its own and its output back, as tfjs-layers does around every conv and pool.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator, Field

from trainctl.config.base import MAX_COUNT
from trainctl.errors import TrainctlError
from trainctl.nn.layers.base import Layer, Shape


def _snake_value(value: Any) -> Any:
    """'channelsLast' → 'channels_last' (TF.js spells enum values in camelCase)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", value).lower() if isinstance(value, str) else value


Padding = Annotated[Literal["valid", "same"], BeforeValidator(_snake_value)]
DataFormat = Annotated[Literal["channels_last", "channels_first"], BeforeValidator(_snake_value)]
PositiveSize = Annotated[int, Field(gt=0, le=MAX_COUNT)]  # bounded like every size (not Strict: a union with lists)
SizeOrSizes = PositiveSize | list[PositiveSize]


def normalize_tuple(value: int | list[int], rank: int, name: str, owner: str) -> tuple[int, ...]:
    """TF.js normalizeArray: an int is repeated `rank` times; a list must have `rank` entries."""
    if isinstance(value, int):
        return (value,) * rank
    if len(value) != rank:
        raise TrainctlError(f"{owner}: {name} needs {rank} value{'s' if rank > 1 else ''}, got {list(value)}")
    return tuple(int(v) for v in value)


def conv_output_length(size: int, kernel: int, padding: str, stride: int, dilation: int = 1) -> int:
    """tfjs-layers convOutputLength: 'same' keeps ceil(size / stride) positions, 'valid' only
    the windows that fit."""
    effective = kernel + (kernel - 1) * (dilation - 1)
    length = size if padding == "same" else size - effective + 1
    return (length + stride - 1) // stride


def pad_before(size: int, out: int, kernel: int, stride: int, dilation: int = 1) -> int:
    """TF.js 'same' padding: the total the windows overhang, the odd pixel after (0 for 'valid')."""
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2


def deconv_length(size: int, stride: int, kernel: int, padding: str) -> int:
    """tfjs-layers deconvLength: the output length of a transposed convolution."""
    if padding == "valid":
        return size * stride + max(kernel - stride, 0)
    return size * stride


class SpatialLayer(Layer):
    """A layer over `rank` spatial axes with a channel axis first or last."""

    rank: int = 2
    # channels_first only: the transpose buffers (_layout_buffers)
    _in_nhwc = _out_nchw = _dy_nhwc = _dx_nchw = None

    def _data_format(self) -> str:
        return getattr(self.params, "data_format", "channels_last")

    @property
    def channels_first(self) -> bool:
        return self._data_format() == "channels_first"

    def _split_shape(self, shape: Shape) -> tuple[tuple[int, ...], int]:
        """(spatial sizes, channels) of a per-sample shape; checks its rank."""
        if len(shape) != self.rank + 1:
            raise TrainctlError(
                f"{self.name}: {self.class_name} expects inputs of rank {self.rank + 2} "
                f"([batch, {self._axes_hint()}]), got an input of shape [null,{','.join(map(str, shape))}]"
            )
        if self.channels_first:
            return tuple(shape[1:]), int(shape[0])
        return tuple(shape[:-1]), int(shape[-1])

    def _axes_hint(self) -> str:
        names = "length" if self.rank == 1 else "height, width"
        return f"channels, {names}" if self.channels_first else f"{names}, channels"

    def _join_shape(self, spatial: tuple[int, ...], channels: int) -> Shape:
        return (channels, *spatial) if self.channels_first else (*spatial, channels)

    @staticmethod
    def _as_2d(spatial: tuple[int, ...]) -> tuple[int, int]:
        """(height, width) of the 4-D channels_last view: a 1-D length L is (1, L)."""
        return (1, spatial[0]) if len(spatial) == 1 else (spatial[0], spatial[1])

    # -- layout -------------------------------------------------------------------------
    def _layout_buffers(self, batch_size: int, in_spatial, in_channels, out_spatial, out_channels, dtype) -> None:
        """Transpose buffers for channels_first (none for channels_last)."""
        if not self.channels_first:
            return
        self._in_nhwc = np.empty((batch_size, *in_spatial, in_channels), dtype)
        self._out_nchw = np.empty((batch_size, out_channels, *out_spatial), dtype)
        self._dy_nhwc = np.empty((batch_size, *out_spatial, out_channels), dtype)
        self._dx_nchw = np.empty((batch_size, in_channels, *in_spatial), dtype)

    def _perm_to_last(self) -> tuple[int, ...]:
        return (0, *range(2, self.rank + 2), 1)

    def _perm_to_first(self) -> tuple[int, ...]:
        return (0, self.rank + 1, *range(1, self.rank + 1))

    def _relayout(self, a: np.ndarray, buffer: np.ndarray, perm: tuple[int, ...]) -> np.ndarray:
        """a transposed by `perm` into the head of `buffer` (channels_first); a itself otherwise."""
        if not self.channels_first:
            return a
        buf = buffer[: a.shape[0]]
        np.copyto(buf, a.transpose(perm))
        return buf

    def _input_nhwc(self, x: np.ndarray) -> np.ndarray:
        """x in the layer's format → channels_last [n, *spatial, c] (a view, or the buffer)."""
        return self._relayout(x, self._in_nhwc, self._perm_to_last())

    def _output_format(self, y_nhwc: np.ndarray) -> np.ndarray:
        """y channels_last [n, *spatial, c] → the layer's format."""
        return self._relayout(y_nhwc, self._out_nchw, self._perm_to_first())

    def _grad_nhwc(self, dy: np.ndarray) -> np.ndarray:
        return self._relayout(dy, self._dy_nhwc, self._perm_to_last())

    def _grad_format(self, dx_nhwc: np.ndarray) -> np.ndarray:
        return self._relayout(dx_nhwc, self._dx_nchw, self._perm_to_first())

    def _in_layout(self, inner, out_spatial: tuple[int, ...] | None = None, out_channels: int = 0):
        """The compiled plan `inner` (channels_last) of this layer as its data_format runs it: for
        channels_first between the transposes above (the output's only when out_spatial is given)."""
        from trainctl.nn.layers.plans import ChannelsFirstPlan, index_copy

        if inner is None or not self.channels_first:
            return inner
        rank = self.rank
        to_last = index_copy(self._in_nhwc, self._dx_nchw, self.input_shape, tuple(range(1, rank + 1)) + (0,))
        to_first = None
        if out_spatial is not None:
            to_first = index_copy(self._out_nchw, self._dy_nhwc, (*out_spatial, out_channels), (rank, *range(rank)))
        return ChannelsFirstPlan(to_last, inner, to_first)


def rows_of(batch: int, spatial: tuple[int, ...]) -> int:
    return batch * math.prod(spatial)
