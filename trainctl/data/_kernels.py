"""numba kernels of the data pipeline: row gathering and the shuffle-buffer exchange.

Imported lazily (only when a stream first batches), so `import trainctl.data` stays free
of numba. Kernels take and return arrays only; rows are 2-D [rows, width] float32 views.
"""

from __future__ import annotations

import numpy as np

from trainctl.kernels.jit import njit


@njit
def gather_rows(src, index, out):  # pragma: no cover - compiled
    """out[i, :] = src[index[i], :] for i < len(index): a batch gathered over a permutation."""
    width = src.shape[1]
    for i in range(index.shape[0]):
        row = index[i]
        for j in range(width):
            out[i, j] = src[row, j]


@njit
def _exchange(buffer, incoming, slots, out):  # pragma: no cover - compiled
    # tf.data's shuffle: emit the element in a random slot, put the next input there.
    width = buffer.shape[1]
    for i in range(slots.shape[0]):
        slot = slots[i]
        for j in range(width):
            out[i, j] = buffer[slot, j]
            buffer[slot, j] = incoming[i, j]


def shuffle_exchange(buffer: np.ndarray, incoming: np.ndarray, slots: np.ndarray, out: np.ndarray) -> None:
    """For each incoming row i: out[i] = buffer[slots[i]]; buffer[slots[i]] = incoming[i].

    buffer [B, w], incoming [c, w], slots int64 [c] in [0, B), out [c, w]; all float32."""
    _exchange(buffer, incoming, slots, out)
