"""The one interface the training loop reads data through: in-memory arrays and streams alike.

A BatchSource yields (x, y, sample_weight) batches for an epoch. Arrays it yields may be
reused buffers, valid until the next batch is requested; the last batch may be partial.
"""

from __future__ import annotations

from typing import Iterator, Protocol

import numpy as np

from trainctl.seeding import rng_for

Batch = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


class BatchSource(Protocol):
    x_shape: tuple[int, ...]  # per-sample shapes, without the batch axis
    y_shape: tuple[int, ...]

    def n_batches(self, batch_size: int) -> int | None:
        """Batches per epoch, or None for a stream of unknown length."""

    def batches(self, epoch: int, batch_size: int, start_batch: int = 0) -> Iterator[Batch]:
        """The epoch's batches from `start_batch` on (resume skips the ones already trained)."""


class WrappedSource:
    """A BatchSource that changes another's batches (augmentation, class weights): the shapes,
    sample count and batch count are the wrapped source's; subclasses implement `batches`."""

    def __init__(self, source: BatchSource):
        self.source = source
        self.x_shape, self.y_shape = source.x_shape, source.y_shape
        self.n_samples = getattr(source, "n_samples", None)

    def n_batches(self, batch_size: int) -> int | None:
        return self.source.n_batches(batch_size)


def split_validation(x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None, fraction: float):
    """TF.js validationSplit: the LAST `fraction` of the samples, taken before any shuffling."""
    split_at = int(np.floor(x.shape[0] * (1.0 - fraction)))
    head = (x[:split_at], y[:split_at], None if sample_weight is None else sample_weight[:split_at])
    tail = (x[split_at:], y[split_at:], None if sample_weight is None else sample_weight[split_at:])
    return head, tail


class ArraySource:
    """Batches over in-memory (or memory-mapped) arrays, reshuffled every epoch when asked.

    The order of epoch e depends only on (seed, e), so a resumed run sees the same batches.
    Rows are gathered by a numba kernel into buffers allocated once per batch size. An x that
    is a strided view no 2-D reshape can express without copying (time-series windows over
    one series) is gathered per batch instead, so its rows are never copied all at once.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None,
                 *, shuffle: bool = False, seed: int = 0, dtype=np.float32):
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.x_shape, self.y_shape = tuple(x.shape[1:]), tuple(y.shape[1:])
        self.n_samples = int(x.shape[0])
        self.shuffle, self.seed, self.dtype = shuffle, seed, np.dtype(dtype)
        self._x2d = _rows_view(x)  # None: a view of overlapping windows (see windowed_batches)
        self._y2d = y.reshape(self.n_samples, -1)
        self._buffers: tuple[np.ndarray, ...] | None = None

    def n_batches(self, batch_size: int) -> int:
        return -(-self.n_samples // batch_size)

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n_samples, dtype=np.int64)
        return rng_for(self.seed, "shuffle", epoch).permutation(self.n_samples).astype(np.int64)

    def batches(self, epoch: int, batch_size: int, start_batch: int = 0) -> Iterator[Batch]:
        if self._x2d is None:
            yield from self._windowed_batches(epoch, batch_size, start_batch)
            return
        contiguous = (not self.shuffle and self._x2d.dtype == self.dtype and self._y2d.dtype == self.dtype
                      and self._x2d.flags.c_contiguous and self._y2d.flags.c_contiguous)
        if contiguous:  # in order and already the right dtype: hand out views, no copy
            for start in range(start_batch * batch_size, self.n_samples, batch_size):
                stop = min(start + batch_size, self.n_samples)
                weights = None if self.sample_weight is None else self.sample_weight[start:stop]
                yield self.x[start:stop], self.y[start:stop], weights
            return
        from trainctl.kernels.batches import gather_batch

        order = self.order(epoch)
        x_buf, y_buf, w_buf = self._batch_buffers(batch_size)
        for start in range(start_batch * batch_size, self.n_samples, batch_size):
            count = min(batch_size, self.n_samples - start)
            gather_batch(self._x2d, self._y2d, order, start, count, x_buf, y_buf)
            weights = None
            if self.sample_weight is not None:
                np.take(self.sample_weight, order[start:start + count], out=w_buf[:count])
                weights = w_buf[:count]
            yield (x_buf[:count].reshape(count, *self.x_shape), y_buf[:count].reshape(count, *self.y_shape), weights)

    def _windowed_batches(self, epoch: int, batch_size: int, start_batch: int) -> Iterator[Batch]:
        """Batches gathered from a strided x by np.take into one reused [batch, ...] buffer."""
        order = self.order(epoch)
        if self._buffers is None or self._buffers[0].shape[0] != batch_size:
            self._buffers = (
                np.empty((batch_size, *self.x_shape), self.dtype),
                np.empty((batch_size, self._y2d.shape[1]), self.dtype),
                np.empty(batch_size, self.dtype),
            )
        x_buf, y_buf, w_buf = self._buffers
        for start in range(start_batch * batch_size, self.n_samples, batch_size):
            count = min(batch_size, self.n_samples - start)
            rows = order[start:start + count]
            for source, buf in ((self.x, x_buf), (self._y2d, y_buf)):
                if source.dtype == self.dtype:
                    np.take(source, rows, axis=0, out=buf[:count])
                else:
                    buf[:count] = source[rows]
            weights = None
            if self.sample_weight is not None:
                w_buf[:count] = self.sample_weight[rows]
                weights = w_buf[:count]
            yield x_buf[:count], y_buf[:count].reshape(count, *self.y_shape), weights

    def _batch_buffers(self, batch_size: int) -> tuple[np.ndarray, ...]:
        if self._buffers is None or self._buffers[0].shape[0] != batch_size:
            self._buffers = (
                np.empty((batch_size, self._x2d.shape[1]), self.dtype),
                np.empty((batch_size, self._y2d.shape[1]), self.dtype),
                np.empty(batch_size, self.dtype),
            )
        return self._buffers


def _rows_view(x: np.ndarray) -> np.ndarray | None:
    """x as [n, -1] without copying (windows of one series with sampling_rate 1 are such a
    view: overlapping rows), or None when only a copy could be 2-D."""
    try:
        return np.reshape(x, (x.shape[0], -1), copy=False)
    except ValueError:
        return None
