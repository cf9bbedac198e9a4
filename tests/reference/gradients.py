"""Central finite differences: the independent reference every analytic gradient is checked against."""

from __future__ import annotations

from typing import Callable

import numpy as np

STEP = 1e-6  # float64 central differences: truncation and rounding errors both ~1e-10


def numeric_grad(f: Callable[[np.ndarray], float], x: np.ndarray, step: float = STEP) -> np.ndarray:
    """d f(x) / dx at every element of x (x is perturbed in place and restored)."""
    grad = np.empty_like(x)
    flat, g = x.reshape(-1), grad.reshape(-1)
    for k in range(flat.size):
        saved = flat[k]
        flat[k] = saved + step
        up = f(x)
        flat[k] = saved - step
        down = f(x)
        flat[k] = saved
        g[k] = (up - down) / (2 * step)
    return grad
