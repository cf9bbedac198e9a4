"""Activations by id: `ACTIVATIONS.get("relu").forward(z, out)`.

Each activation is a small frozen object naming a kernel code; the math lives in
`trainctl.kernels.activations` (loaded on first use, so importing this module never
imports numba). Arrays of any rank are accepted: the kernels see them as
`[rows, last_dim]` and softmax / log_softmax act over the last axis, as in TF.js.
Ids and formulas follow tfjs-layers/src/activations.ts; camelCase ids (`hardSigmoid`,
`logSoftmax`) resolve through the registry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainctl.kernels import codes
from trainctl.registry import Registry


def as_rows(a: np.ndarray, writable: bool = False) -> np.ndarray:
    """`a` as a 2-D C-contiguous `[rows, last_dim]` view (a 1-D array becomes one row).

    A buffer the kernel writes into must already be C-contiguous: a copy would swallow
    the result. Read-only inputs that are not contiguous are copied.
    """
    if a.ndim == 0:
        raise ValueError("activations and losses need arrays of rank >= 1, got a scalar")
    if not a.flags.c_contiguous:
        if writable:
            raise ValueError("output buffer must be C-contiguous")
        a = np.ascontiguousarray(a)
    return a.reshape(-1, a.shape[-1])


def _check_float(*arrays: np.ndarray) -> None:
    dtype = arrays[0].dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"activation kernels take float32 or float64 arrays, got {dtype}")
    for a in arrays[1:]:
        if a.dtype != dtype:
            raise TypeError(f"mixed dtypes {dtype} and {a.dtype}: pass arrays of one dtype")


@dataclass(frozen=True)
class Activation:
    """An activation function: forward and backward over the last axis of any-rank arrays."""

    name: str  # canonical snake_case id
    code: int  # kernel code from trainctl.kernels.codes
    rowwise: bool  # True when each output depends on the whole last-axis row (softmax)

    def forward(self, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out = act(z); z, out: same shape [..., d]; `out` may be `z`. Returns out."""
        from trainctl.kernels.activations import activation_forward

        _check_float(z, out)
        activation_forward(as_rows(z), as_rows(out, writable=True), self.code)
        return out

    def forward_with_bias(self, z: np.ndarray, bias: np.ndarray, out: np.ndarray) -> np.ndarray:
        """z += bias in place (z keeps the pre-activation), then out = act(z).

        z, out: [..., d]; bias: [d]. Returns out.
        """
        from trainctl.kernels.activations import bias_activation_forward

        _check_float(z, bias, out)
        bias_activation_forward(as_rows(z, writable=True), bias, as_rows(out, writable=True), self.code)
        return out

    def backward(self, z: np.ndarray, y: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> np.ndarray:
        """dz = dL/dz given dy = dL/dy, z the pre-activation, y = act(z); all [..., d]. Returns dz."""
        from trainctl.kernels.activations import activation_backward

        _check_float(z, y, dy, dz)
        activation_backward(as_rows(z), as_rows(y), as_rows(dy), as_rows(dz, writable=True), self.code)
        return dz

    def backward_with_bias_grad(
        self, z: np.ndarray, y: np.ndarray, dy: np.ndarray, dz: np.ndarray, dbias: np.ndarray
    ) -> np.ndarray:
        """As `backward`, and dbias[j] = sum of dz[..., j] over all rows (dbias [d], overwritten)."""
        from trainctl.kernels.activations import activation_backward_bias_grad

        _check_float(z, y, dy, dz, dbias)
        activation_backward_bias_grad(
            as_rows(z), as_rows(y), as_rows(dy), as_rows(dz, writable=True), dbias, self.code
        )
        return dz


ACTIVATIONS: Registry[Activation] = Registry("activation")

# id -> extra aliases (camelCase TF.js spellings already resolve through snake_case)
_ALIASES: dict[str, tuple[str, ...]] = {
    "linear": ("identity",),
    "swish": ("silu",),  # Keras 3 name
    "gelu_new": ("gelu_tanh",),
}

for _name, _code in codes.ACTIVATION_CODES.items():
    ACTIVATIONS.register(_name, *_ALIASES.get(_name, ()))(
        Activation(name=_name, code=_code, rowwise=_code in codes.ROWWISE_ACTIVATIONS)
    )


def get_activation(name: str | None) -> Activation:
    """The activation for an id (any accepted spelling); None means linear, as in TF.js."""
    return ACTIVATIONS.get("linear" if name is None else name)
