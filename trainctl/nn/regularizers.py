"""Weight regularizers, as tfjs-layers/src/regularizers.ts: penalty l1 * sum|w| + l2 * sum w².

`penalty(w)` is added to the loss; `add_grad(w, grad)` adds its gradient
l1 * sign(w) + 2 * l2 * w to `grad` in place. sign(0) is 0 here; TF.js's autodiff of abs
gives -1 at exactly 0 (tf.step(x, -1)), which would push zero-initialised biases by l1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from trainctl.config.base import Configured, NonNegativeFloat, StrictModel, resolve_spec
from trainctl.registry import Registry


class Regularizer(Configured):
    """l1 * sum|w| + l2 * sum w²; subclasses only choose which rates are options."""

    class_name: ClassVar[str] = "L1L2"  # TF.js serialises l1() and l2() as L1L2 too

    def __init__(self, params: StrictModel | None = None, /, **kwargs: Any):
        super().__init__(params, **kwargs)
        self.l1 = float(getattr(self.params, "l1", 0.0))
        self.l2 = float(getattr(self.params, "l2", 0.0))

    def penalty(self, w: np.ndarray) -> float:
        """w: any shape → l1 * sum|w| + l2 * sum w², summed in float64."""
        from trainctl.kernels.optimizers import l1l2_penalty

        flat = np.ascontiguousarray(w).reshape(-1)
        return float(l1l2_penalty(flat, self.l1, self.l2))

    def add_grad(self, w: np.ndarray, grad: np.ndarray) -> None:
        """grad (same shape as w) += l1 * sign(w) + 2 * l2 * w, in place."""
        if grad.shape != w.shape:
            raise ValueError(f"grad shape {grad.shape} does not match weight shape {w.shape}")
        dtype = grad.dtype.type
        if w.flags.c_contiguous and grad.flags.c_contiguous and w.dtype == grad.dtype:
            from trainctl.kernels.optimizers import l1l2_add_grad

            l1l2_add_grad(w.reshape(-1), grad.reshape(-1), dtype(self.l1), dtype(2.0 * self.l2))
        else:  # strided views: correct but allocating; the training loop passes contiguous buffers
            grad += dtype(self.l1) * np.sign(w).astype(grad.dtype) + dtype(2.0 * self.l2) * w

    def __repr__(self) -> str:
        return f"{type(self).__name__}(l1={self.l1}, l2={self.l2})"


REGULARIZERS: Registry[type[Regularizer]] = Registry("regularizer")
_register = REGULARIZERS.register_type


@_register("l1l2", "L1L2")
class L1L2(Regularizer):
    class Params(StrictModel):
        l1: NonNegativeFloat = 0.01  # TF.js L1L2 default
        l2: NonNegativeFloat = 0.01  # TF.js L1L2 default


@_register("l1")
class L1(Regularizer):
    class Params(StrictModel):
        l1: NonNegativeFloat = 0.01  # TF.js tf.regularizers.l1 default


@_register("l2")
class L2(Regularizer):
    class Params(StrictModel):
        l2: NonNegativeFloat = 0.01  # TF.js tf.regularizers.l2 default


def build_regularizer(spec: str | Mapping[str, Any] | Regularizer | None) -> Regularizer | None:
    """`"l2"`, `{"type": "l1l2", "l1": 0.001}` (or a Regularizer) → Regularizer; None → None."""
    if spec is None or isinstance(spec, Regularizer):
        return spec
    cls, params = resolve_spec(REGULARIZERS, spec)
    return cls(params)
