"""fitDataset over Python data: a generator (or any iterable, or a function returning one)
of batches, each `(x, y)`, `(x, y, sample_weight)` or TF.js's `{"xs": x, "ys": y}`.

A function is called once per epoch for a fresh pass (as TF.js asks a dataset for a new
iterator every epoch). A generator object can be iterated only once, so epochs continue
it where the last one stopped (TF.js's behaviour with batchesPerEpoch); an epoch that finds
it exhausted is an error that says what to pass instead.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from trainctl.errors import DataError


def _as_batch(item: Any, index: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if isinstance(item, dict):
        if "xs" not in item or "ys" not in item:
            raise DataError(f"batch {index + 1}: a dict batch needs 'xs' and 'ys' (as TF.js datasets), got keys "
                            f"{', '.join(map(str, item)) or 'none'}")
        item = (item["xs"], item["ys"], item.get("sample_weight"))
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise DataError(f"batch {index + 1}: expected (x, y), (x, y, sample_weight) or {{'xs': x, 'ys': y}}, "
                        f"got {type(item).__name__}")
    x = np.ascontiguousarray(item[0], dtype=dtype)
    y = np.ascontiguousarray(item[1], dtype=dtype)
    if y.ndim == 1:
        y = y[:, None]
    weights = None if len(item) < 3 or item[2] is None else np.ascontiguousarray(item[2], dtype=dtype).reshape(-1)
    if x.ndim < 2 or x.shape[0] == 0 or y.shape[0] != x.shape[0] or (weights is not None and weights.shape[0] != x.shape[0]):
        raise DataError(f"batch {index + 1}: x has shape {list(x.shape)} and y {list(y.shape)}; a batch needs the "
                        "same number (> 0) of rows in each")
    return x, y, weights


class PythonBatchSource:
    """A BatchSource over Python batches (see the module docstring). `batch_size` is the
    producer's business: each item is one batch."""

    def __init__(self, batches: Iterable[Any] | Callable[[], Iterable[Any]], *, dtype=np.float32,
                 batches_per_epoch: int | None = None, where: str = "dataset"):
        self.dtype, self.where, self.batches_per_epoch = np.dtype(dtype), where, batches_per_epoch
        self._factory = batches if callable(batches) and not hasattr(batches, "__next__") else None
        self._shared: Iterator[Any] | None = None if self._factory else iter(batches)
        first_iter = iter(self._factory()) if self._factory else self._shared
        try:
            first = next(first_iter)
        except StopIteration:
            raise DataError(f"{where}: yields no batches") from None
        x, y, _ = _as_batch(first, 0, self.dtype)
        self.x_shape, self.y_shape = tuple(x.shape[1:]), tuple(y.shape[1:])
        self.first_rows = x.shape[0]  # the compiled loop's batch size (train/stream_chunks.py)
        self.n_samples = None
        self._pending: Any = None if self._factory else first  # a one-shot iterator keeps what was peeked
        self._epochs_served = 0

    def n_batches(self, batch_size: int) -> int | None:
        return self.batches_per_epoch

    def batches(self, epoch: int, batch_size: int, start_batch: int = 0):
        if self._factory is not None:
            items: Iterator[Any] = itertools.islice(iter(self._factory()), start_batch, None)
        else:
            items = self._shared
            if self._pending is not None:
                items, self._pending = itertools.chain([self._pending], items), None
        if self.batches_per_epoch is not None:  # stop here, so a shared iterator loses no batch
            items = itertools.islice(items, max(self.batches_per_epoch - start_batch, 0))
        count = 0
        for index, item in enumerate(items, start=start_batch):
            x, y, weights = _as_batch(item, index, self.dtype)
            if tuple(x.shape[1:]) != self.x_shape or tuple(y.shape[1:]) != self.y_shape:
                raise DataError(f"{self.where}: batch {index + 1} has x {list(x.shape)} and y {list(y.shape)}; the first "
                                f"batch had per-sample shapes {list(self.x_shape)} and {list(self.y_shape)}")
            count += 1
            yield x, y, weights
        if count == 0:
            hint = ("pass a function that returns a new generator (called once per epoch), or set "
                    "batches_per_epoch so each epoch takes that many batches") if self._factory is None else \
                "the function returned an empty iterable"
            raise DataError(f"{self.where}: no batches left for epoch {epoch + 1}; {hint}")
        self._epochs_served += 1
