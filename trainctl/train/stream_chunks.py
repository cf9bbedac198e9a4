"""A streamed epoch's batches, a chunk at a time, for the compiled loop (train/compiled.py).

The chunk is filled from the source's own `batches(epoch, batch_size, start_batch)` iterator,
so the loop trains the very batches the Python path would, in the same order and with the
same shuffle-buffer draws, and the stream is never read whole: a chunk holds at most the
batches compiled.GATHER_BUDGET allows. The arrays are writable, C-contiguous and of the
model's dtype, the type the loops are already compiled for (no second specialisation).

Python batches (fitDataset over a generator) are the producer's size: the loop starts at its
first batch's, and a longer batch is held until CompiledSteps.widen makes room for it.
"""

from __future__ import annotations

import math

import numpy as np


def streamed(source) -> bool:
    """Whether the loop trains `source` a chunk of its own batches at a time: a stream, Python
    batches, or either or arrays weighted by class (fitDataset's classWeight) or augmented
    (the images of each batch transformed as it is taken)."""
    from trainctl.data.augmentation import AugmentedSource
    from trainctl.data.python_source import PythonBatchSource
    from trainctl.data.source import ArraySource
    from trainctl.data.stream import StreamSource
    from trainctl.train.class_weights import ClassWeightedSource

    if type(source) in (ClassWeightedSource, AugmentedSource):
        return type(source.source) is ArraySource or streamed(source.source)
    return type(source) in (StreamSource, PythonBatchSource)


def loop_batch_size(source, batch_size: int) -> int:
    """The rows of the loop's batches: the fit's batch size, or for Python batches (whose size
    is the producer's) the producer's first batch's."""
    from trainctl.data.python_source import PythonBatchSource
    from trainctl.data.source import WrappedSource

    while isinstance(source, WrappedSource):
        source = source.source
    return source.first_rows if type(source) is PythonBatchSource else batch_size


def stream_chunks(source, batch_size: int, dtype) -> "StreamChunks | None":
    """The chunk filler for a streamed source; None for in-memory arrays (the loop reads them in place)."""
    if not streamed(source):
        return None
    return StreamChunks(source, batch_size, math.prod(source.x_shape), math.prod(source.y_shape), dtype)


class StreamChunks:
    """Reused chunk arrays filled with the next batches of a stream (a StreamSource, or one
    wrapped to weight its batches by class)."""

    def __init__(self, source, batch_size: int, x_width: int, y_width: int, dtype):
        self.source, self.batch_size, self.dtype = source, batch_size, np.dtype(dtype)
        self.widths = (x_width, y_width)
        self._arrays: tuple[np.ndarray, ...] | None = None  # x, y, weights, the order 0, 1, ...
        self._batches = iter(())
        self.sizes: list[int] = []  # the filled batches' sizes; the first `used` are trained
        self.used = 0
        self.last_sizes: list[int] = []  # the sizes of the batches the last chunk trained
        self.has_weights = False
        self._ended = False
        self._held: tuple | None = None  # a batch longer than the loop's, read and not yet trained

    def begin_epoch(self, epoch: int, first_batch: int) -> None:
        self._batches = iter(self.source.batches(epoch, self.batch_size, first_batch))
        self.sizes, self.used, self._ended, self._held = [], 0, False, None

    @property
    def wider(self) -> int:
        """The rows of a batch held for being longer than the loop's batches (0: none)."""
        return 0 if self._held is None else self._held[0].shape[0]

    def fill(self, n_batches: int) -> int:
        """Readies up to n_batches batches; returns how many are ready (0: the epoch's stream
        has ended, or its next batch is `wider` than the loop's). A chunk ends at a short batch:
        the loop takes only its last batch as partial."""
        if self.used < len(self.sizes):  # a non-finite loss ended the last chunk early: its rest comes first
            return min(n_batches, len(self.sizes) - self.used)
        self.sizes, self.used, self.has_weights = [], 0, False
        if self._ended:
            return 0
        x_all, y_all, w_all, _ = self._ensure(n_batches * self.batch_size)
        rows = 0
        while len(self.sizes) < n_batches:
            # a held batch's arrays stay valid: the producer is not advanced until it is copied
            if self._held is not None:
                batch, self._held = self._held, None
            else:
                batch = next(self._batches, None)
            if batch is None:
                self._ended = True
                break
            x, y, weights = batch
            count = x.shape[0]
            if count > self.batch_size:
                self._held = batch
                break
            x_all[rows:rows + count] = x.reshape(count, -1)
            y_all[rows:rows + count] = y.reshape(count, -1)
            if weights is None:
                w_all[rows:rows + count] = 1  # w·(1/rows) is 1/rows exactly: an unweighted batch's scale
            else:
                w_all[rows:rows + count] = weights
                self.has_weights = True
            rows += count
            self.sizes.append(count)
            if count < self.batch_size:
                break
        return len(self.sizes)

    def _ensure(self, rows: int) -> tuple[np.ndarray, ...]:
        if self._arrays is None or self._arrays[0].shape[0] < rows:
            x_width, y_width = self.widths
            self._arrays = (np.empty((rows, x_width), self.dtype), np.empty((rows, y_width), self.dtype),
                            np.empty(rows, self.dtype), np.arange(rows, dtype=np.int64))
        return self._arrays

    def size_ahead(self) -> int:
        """The size of the next ready batch."""
        return self.sizes[self.used]

    def rows_ahead(self, n_steps: int) -> int:
        """The rows of the next n_steps ready batches."""
        return sum(self.sizes[self.used:self.used + n_steps])

    def arrays(self) -> tuple[np.ndarray, ...]:
        """(x, y, weights, order, first row): the ready batches for the loop, which reads rows
        order[first row:] in batches of batch_size up to the filled rows (the last may be short)."""
        rows = sum(self.sizes)
        x_all, y_all, w_all, order = self._arrays
        return x_all[:rows], y_all[:rows], w_all[:rows], order[:rows], self.used * self.batch_size

    def trained(self, done: int) -> None:
        """Marks the next `done` ready batches trained (their sizes: last_sizes)."""
        self.last_sizes = self.sizes[self.used:self.used + done]
        self.used += done
