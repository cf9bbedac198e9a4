"""`gemm(a, b, out, trans_a, trans_b)`: out = op(a) @ op(b) through numpy's own BLAS, for the
Dense kernels (kernels/steps.py). The products are external C functions (ILP64 CBLAS
signatures) whose names trainctl.jit binds to numpy's `cblas_?gemm`, or to an np.dot cfunc
(jit/blas.py says why and how)."""

from __future__ import annotations

import numpy as np
from numba import types
from numba.core.extending import overload

from trainctl.jit import GEMM_SYMBOLS, NO_TRANS, ROW_MAJOR, TRANS, bind_gemm, njit

_SIGNATURES = {
    prefix: types.void(types.int32, types.int32, types.int32, types.int64, types.int64, types.int64, scalar,
                       types.voidptr, types.int64, types.voidptr, types.int64, scalar, types.voidptr, types.int64)
    for prefix, scalar in (("s", types.float32), ("d", types.float64))
}
_sgemm = types.ExternalFunction(GEMM_SYMBOLS["s"], _SIGNATURES["s"])
_dgemm = types.ExternalFunction(GEMM_SYMBOLS["d"], _SIGNATURES["d"])


def _gemm_call(a, b, out, trans_a, trans_b):
    """The typed call of `gemm` (see below)."""


@overload(_gemm_call)
def _gemm_call_impl(a, b, out, trans_a, trans_b):
    function = _sgemm if a.dtype == types.float32 else _dgemm
    unit = np.float32 if a.dtype == types.float32 else np.float64

    def impl(a, b, out, trans_a, trans_b):
        size = a.itemsize
        m, n = out.shape
        k = a.shape[0] if trans_a else a.shape[1]
        function(ROW_MAJOR, TRANS if trans_a else NO_TRANS, TRANS if trans_b else NO_TRANS, m, n, k, unit(1.0),
                 a.ctypes.data, max(1, a.strides[0] // size), b.ctypes.data, max(1, b.strides[0] // size),
                 unit(0.0), out.ctypes.data, max(1, out.strides[0] // size))

    return impl


@njit(inline="always")
def gemm(a, b, out, trans_a, trans_b):
    """out = op(a) @ op(b), op(v) = v.T when its flag is set. a, b, out: 2-D, one float dtype,
    rows contiguous (a C-contiguous array or a slice of rows of one); anything else goes
    through np.dot."""
    size = a.itemsize
    if a.strides[1] == size and b.strides[1] == size and out.strides[1] == size and out.shape[0] > 0 and out.shape[1] > 0:
        _gemm_call(a, b, out, trans_a, trans_b)
    elif trans_a and trans_b:
        np.dot(a.T, b.T, out)
    elif trans_a:
        np.dot(a.T, b, out)
    elif trans_b:
        np.dot(a, b.T, out)
    else:
        np.dot(a, b, out)


# before any kernel calling gemm is linked (after the first njit: the fallback cfuncs are cached)
BOUND_TO = bind_gemm()  # which BLAS the kernels' gemm calls: "numpy" or "scipy (np.dot)"
