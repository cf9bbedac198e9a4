"""Arrays read from .npy / .npz files made into the data's form: float32 rows checked finite,
targets as [n, m], sample weights as [n] (never negative), row counts that agree."""

from __future__ import annotations

import numpy as np

from trainctl.errors import DataError


def float_rows(x: np.ndarray, shown: str) -> np.ndarray:
    """float32 rows; a float32 memory map is kept as it is (checked finite block by block)."""
    if x.ndim == 1:
        x = x[:, None]
    if x.dtype == np.float32 and x.flags.c_contiguous:
        from trainctl.data.readers import _check_finite

        for start in range(0, len(x), 65536):
            _check_finite(x[start : start + 65536], shown, lambda row, col, s=start: f": row {s + row + 1}")
        return x
    from trainctl.data.readers import as_float32

    return as_float32(x, shown)


def target_array(y: np.ndarray, shown: str) -> np.ndarray:
    if y.dtype.kind not in "biuf":
        raise DataError(f"{shown}: targets must be numeric, got dtype {y.dtype}")
    y = np.asarray(y)
    return float_rows(y.reshape(len(y), -1) if y.ndim != 1 else y[:, None], shown)


def weights(w: np.ndarray, shown: str) -> np.ndarray:
    from trainctl.data.readers import as_float32

    w = as_float32(np.asarray(w).reshape(len(w), -1), shown)
    if w.shape[1] != 1:
        raise DataError(f"{shown}: sample weights must be one number per sample, got shape {list(w.shape)}")
    if (w < 0).any():
        raise DataError(f"{shown}: row {int(np.flatnonzero(w[:, 0] < 0)[0]) + 1}: sample weight is negative")
    return np.ascontiguousarray(w[:, 0])


def same_rows(n_other: int, n_x: int, other: str, x_name: str) -> None:
    if n_other != n_x:
        raise DataError(f"{other}: has {n_other} rows but {x_name} has {n_x}")
