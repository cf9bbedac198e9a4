"""`gemm(a, b, out, trans_a, trans_b)`: out = op(a) @ op(b) through numpy's own BLAS, for the
Dense kernels (kernels/steps.py).

numba's `np.dot` calls scipy's BLAS (scipy.linalg.cython_blas). numpy's wheel bundles its own,
newer OpenBLAS, and on the shapes a Dense layer's kernel gradient takes (x.T @ dz) it is faster:
bench/train_speed_profile.py, 1 thread, x.T @ dz for 784x32 at batch 512: 232 µs against 325 µs
through np.dot, batch 2048: 1146 against 1595 µs (the forward and dx products tie). Kernels call
it as an external C function, `trainctl_cblas_sgemm` / `trainctl_cblas_dgemm` (ILP64 CBLAS
signatures), a name this module binds at import to numpy's `cblas_?gemm` (found with ctypes in
numpy's bundled OpenBLAS), or, where numpy has none we know, to a numba cfunc doing the same
product with np.dot. The name is resolved when a kernel is linked, so cached kernels stay valid
across processes (an address baked into cached code would not). TRAINCTL_BLAS=scipy forces the
np.dot binding (tests check both agree).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import llvmlite.binding as llvm
import numpy as np
from numba import carray, types
from numba.core.extending import overload

from trainctl.kernels.jit import njit

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # CBLAS enum values

_SIGNATURES = {
    prefix: types.void(types.int32, types.int32, types.int32, types.int64, types.int64, types.int64, scalar,
                       types.voidptr, types.int64, types.voidptr, types.int64, scalar, types.voidptr, types.int64)
    for prefix, scalar in (("s", types.float32), ("d", types.float64))
}
_SYMBOLS = {"s": "trainctl_cblas_sgemm", "d": "trainctl_cblas_dgemm"}
_sgemm = types.ExternalFunction(_SYMBOLS["s"], _SIGNATURES["s"])
_dgemm = types.ExternalFunction(_SYMBOLS["d"], _SIGNATURES["d"])


def _numpy_cblas() -> dict[str, int] | None:
    """Addresses of cblas_sgemm / cblas_dgemm in the ILP64 OpenBLAS numpy's wheel bundles."""
    root = Path(np.__file__).parent
    for folder in (root.parent / "numpy.libs", root / ".dylibs"):
        for library in sorted(folder.glob("*openblas64*")) if folder.is_dir() else ():
            try:
                handle = ctypes.CDLL(str(library))
            except OSError:
                continue
            for pattern in ("scipy_cblas_{}gemm64_", "cblas_{}gemm64_"):
                try:
                    return {p: ctypes.cast(getattr(handle, pattern.format(p)), ctypes.c_void_p).value
                            for p in ("s", "d")}
                except AttributeError:
                    continue
    return None


def _dot_product(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """The CBLAS product with np.dot, for the cfunc fallback (row-major, alpha 1, beta 0 and
    contiguous rows: what `gemm` below passes; typed pointers, the same C ABI as void*)."""
    a_shape = (k, m) if trans_a == TRANS else (m, k)
    b_shape = (n, k) if trans_b == TRANS else (k, n)
    left = carray(a, (a_shape[0] * a_shape[1],)).reshape(a_shape)
    right = carray(b, (b_shape[0] * b_shape[1],)).reshape(b_shape)
    out = carray(c, (m * n,)).reshape((m, n))
    if trans_a == TRANS:
        if trans_b == TRANS:
            np.dot(left.T, right.T, out)
        else:
            np.dot(left.T, right, out)
    elif trans_b == TRANS:
        np.dot(left, right.T, out)
    else:
        np.dot(left, right, out)


def fallback_signature(prefix: str):
    """The CBLAS signature with typed pointers, for the np.dot cfunc."""
    scalar = types.float32 if prefix == "s" else types.float64
    pointer = types.CPointer(scalar)
    return types.void(types.int32, types.int32, types.int32, types.int64, types.int64, types.int64, scalar,
                      pointer, types.int64, pointer, types.int64, scalar, pointer, types.int64)


def _bind() -> str:
    addresses = None if os.environ.get("TRAINCTL_BLAS") == "scipy" else _numpy_cblas()
    if addresses is None:
        from numba import cfunc  # only here: its import is not free, and the numpy binding is the usual one

        for prefix in ("s", "d"):
            compiled = cfunc(fallback_signature(prefix), cache=True)(_dot_product)
            _FALLBACKS.append(compiled)  # keep the machine code alive
            llvm.add_symbol(_SYMBOLS[prefix], compiled.address)
        return "scipy (np.dot)"
    for prefix, address in addresses.items():
        llvm.add_symbol(_SYMBOLS[prefix], address)
    return "numpy"


_FALLBACKS: list = []


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


# after the first njit (it points numba's cache at trainctl's directory, for the fallback cfuncs)
BOUND_TO = _bind()  # which BLAS the kernels' gemm calls: "numpy" or "scipy (np.dot)"
