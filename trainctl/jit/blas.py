"""The gemm and dot symbols the kernels call (kernels/blas.py), bound to numpy's own BLAS.

numba's `np.dot` calls scipy's BLAS (scipy.linalg.cython_blas). numpy's wheel bundles its own,
newer OpenBLAS, and on the shapes a Dense layer's kernel gradient takes (x.T @ dz) it is faster:
bench/train_speed_profile.py, 1 thread, x.T @ dz for 784x32 at batch 512: 232 µs against 325 µs
through np.dot, batch 2048: 1146 against 1595 µs (the forward and dx products tie). Kernels call
it as an external C function, `trainctl_cblas_sgemm` / `trainctl_cblas_dgemm` (ILP64 CBLAS
signatures), a name `bind_gemm` binds to numpy's `cblas_?gemm` (found with ctypes in numpy's
bundled OpenBLAS), or, where numpy has none we know, to a numba cfunc doing the same product
with np.dot. The name is resolved when a kernel is linked, so cached kernels stay valid across
processes (an address baked into cached code would not). TRAINCTL_BLAS=scipy forces the np.dot
binding (tests check both agree).

The batch loss's dot product (`trainctl_cblas_sdot` / `_ddot`) is bound the same way. Through
np.dot it gave the same bits, over 3,696 vectors of 1-60,000 values, both types, at 1 and 2
threads. But np.dot's compiled code carries an environment of numba.np.linalg, and a warm
process imported that module, 29 ms, when it loaded the kernel from the cache.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np
from numba import carray, types

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # CBLAS enum values
GEMM_SYMBOLS = {"s": "trainctl_cblas_sgemm", "d": "trainctl_cblas_dgemm"}
DOT_SYMBOLS = {"s": "trainctl_cblas_sdot", "d": "trainctl_cblas_ddot"}


def _numpy_cblas() -> dict[str, int] | None:
    """Addresses of cblas_sgemm / _dgemm / _sdot / _ddot in the ILP64 OpenBLAS numpy's wheel
    bundles, by symbol name (GEMM_SYMBOLS' and DOT_SYMBOLS')."""
    root = Path(np.__file__).parent
    for folder in (root.parent / "numpy.libs", root / ".dylibs"):
        for library in sorted(folder.glob("*openblas64*")) if folder.is_dir() else ():
            try:
                handle = ctypes.CDLL(str(library))
            except OSError:
                continue
            for prefix in ("scipy_cblas_", "cblas_"):
                try:
                    return {symbols[p]: ctypes.cast(getattr(handle, f"{prefix}{p}{kind}64_"), ctypes.c_void_p).value
                            for kind, symbols in (("gemm", GEMM_SYMBOLS), ("dot", DOT_SYMBOLS)) for p in ("s", "d")}
                except AttributeError:
                    continue
    return None


def _dot_product(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """The CBLAS product with np.dot, for the cfunc fallback (row-major, alpha 1, beta 0 or 1: what
    kernels/blas.py's `gemm` passes; typed pointers, the same C ABI as void*). Rows lda, ldb, ldc
    apart (a view of a wider array's columns: reading them as contiguous gave wrong products);
    beta 1 adds the product to c (gemm's chunks of a kernel gradient's samples)."""
    a_shape = (k, m) if trans_a == TRANS else (m, k)
    b_shape = (n, k) if trans_b == TRANS else (k, n)
    # C-contiguous copies where rows lie apart (np.dot on strided views is numba's slow path)
    left = np.ascontiguousarray(carray(a, (a_shape[0] * lda,)).reshape((a_shape[0], lda))[:, :a_shape[1]])
    right = np.ascontiguousarray(carray(b, (b_shape[0] * ldb,)).reshape((b_shape[0], ldb))[:, :b_shape[1]])
    out = carray(c, (m * ldc,)).reshape((m, ldc))[:, :n]
    if trans_a == TRANS:
        product = np.dot(left.T, right.T) if trans_b == TRANS else np.dot(left.T, right)
    else:
        product = np.dot(left, right.T) if trans_b == TRANS else np.dot(left, right)
    if beta == 0:
        out[:, :] = product
    else:
        out[:, :] = product + out


def _dot_vectors(n, x, incx, y, incy):
    """The CBLAS dot product with np.dot, for the cfunc fallback. Strides of 1 only: all that
    kernels/blas.py's `dot` passes, since it takes C-contiguous vectors."""
    return np.dot(carray(x, (n,)), carray(y, (n,)))


def fallback_dot_signature(prefix: str):
    scalar = types.float32 if prefix == "s" else types.float64
    pointer = types.CPointer(scalar)
    return scalar(types.int64, pointer, types.int64, pointer, types.int64)


def fallback_signature(prefix: str):
    """The CBLAS signature with typed pointers, for the np.dot cfunc."""
    scalar = types.float32 if prefix == "s" else types.float64
    pointer = types.CPointer(scalar)
    return types.void(types.int32, types.int32, types.int32, types.int64, types.int64, types.int64, scalar,
                      pointer, types.int64, pointer, types.int64, scalar, pointer, types.int64)


_FALLBACKS: list = []  # keep the fallback cfuncs' machine code alive
_bound_to: str | None = None


def bind_gemm() -> str:
    """Bind GEMM_SYMBOLS and DOT_SYMBOLS (once per process, before a kernel calling them is
    linked); returns which BLAS they call: "numpy" or "scipy (np.dot)"."""
    global _bound_to
    if _bound_to is not None:
        return _bound_to
    import llvmlite.binding as llvm

    from trainctl.jit.cache import prepare_numba

    addresses = None if os.environ.get("TRAINCTL_BLAS") == "scipy" else _numpy_cblas()
    if addresses is None:
        from numba import cfunc  # only here: its import is not free, and the numpy binding is the usual one

        prepare_numba()  # the fallback cfuncs are cached in trainctl's directory
        for prefix in ("s", "d"):
            for symbols, function, signature in ((GEMM_SYMBOLS, _dot_product, fallback_signature),
                                                 (DOT_SYMBOLS, _dot_vectors, fallback_dot_signature)):
                compiled = cfunc(signature(prefix), cache=True)(function)
                _FALLBACKS.append(compiled)
                llvm.add_symbol(symbols[prefix], compiled.address)
        _bound_to = "scipy (np.dot)"
    else:
        for symbol, address in addresses.items():
            llvm.add_symbol(symbol, address)
        _bound_to = "numpy"
    return _bound_to
