"""`gemm(a, b, out, trans_a, trans_b)`: out = op(a) @ op(b) through numpy's own BLAS, for the
Dense kernels (kernels/steps.py), and `dot(a, b)` of two vectors, for the batch loss. The
products are external C functions (ILP64 CBLAS signatures) whose names trainctl.jit binds to
numpy's `cblas_?gemm` / `cblas_?dot`, or to np.dot cfuncs (jit/blas.py says why and how)."""

from __future__ import annotations

import numpy as np
from numba import types
from numba.core.errors import TypingError
from numba.core.extending import overload

from trainctl.jit import DOT_SYMBOLS, GEMM_SYMBOLS, NO_TRANS, ROW_MAJOR, TRANS, bind_gemm, njit

_SIGNATURES = {
    prefix: types.void(types.int32, types.int32, types.int32, types.int64, types.int64, types.int64, scalar,
                       types.voidptr, types.int64, types.voidptr, types.int64, scalar, types.voidptr, types.int64)
    for prefix, scalar in (("s", types.float32), ("d", types.float64))
}
_sgemm = types.ExternalFunction(GEMM_SYMBOLS["s"], _SIGNATURES["s"])
_dgemm = types.ExternalFunction(GEMM_SYMBOLS["d"], _SIGNATURES["d"])
_sdot = types.ExternalFunction(DOT_SYMBOLS["s"], types.float32(types.int64, types.voidptr, types.int64,
                                                               types.voidptr, types.int64))
_ddot = types.ExternalFunction(DOT_SYMBOLS["d"], types.float64(types.int64, types.voidptr, types.int64,
                                                               types.voidptr, types.int64))


def _product(a, b, out, trans_a, trans_b):
    """`gemm`'s body, typed by the operands' dtype and layouts (below)."""


def _typed_call(a, b, out):
    """What both overloads decide from the operands' types: the BLAS function and its scalar
    type for their one float dtype, and which operands are typed C-contiguous. BLAS reads every
    operand's memory as the first one's type (a float32 array beside float64 ones would be read
    past its end), so mixed types do not compile."""
    if not (a.dtype == b.dtype == out.dtype and a.dtype in (types.float32, types.float64)):
        raise TypingError(f"gemm needs one float dtype for all operands, got {a.dtype}, {b.dtype}, {out.dtype}")
    single = a.dtype == types.float32
    return (_sgemm if single else _dgemm), (np.float32 if single else np.float64), \
        a.layout == "C", b.layout == "C", out.layout == "C"


# OpenBLAS (0.3.31, SkylakeX: what numpy bundles here) computes a float32 product of at most
# SMALL_PRODUCT multiply-adds (M * N * K) with its small-matrix kernels, which skip the packing
# of both operands; a larger product of a narrow output pays that packing. Split into products
# under the bound it runs faster, 1 thread (bench/gemm_shapes.py, min of 9 interleaved rounds):
# x @ W for 784x32 at batch 512 252 -> 184 us in blocks of 32 rows; x.T @ dz for 784x32 at batch
# 512 240 -> 212 us and at 2048 1220 -> 902 us in chunks of 32 samples, each added to the sum of
# the chunks before (beta = 1). The chunks sum a kernel gradient's elements in another order, and
# which kernel sums an element sets its last bits, so the split is a function of the shape
# alone: every path that runs a product of that shape (the Python step, the compiled loop, any
# thread count) gets the same bits. dz @ W.T is left whole (its small kernel is not permitted).
SMALL_PRODUCT = 1_000_000
ROW_BLOCK = 32  # x @ W: output rows per call (the small kernel's best, measured)
SAMPLE_CHUNKS = (64, 32)  # x.T @ dz: samples per call, the largest under the bound


# The depth (k) a float32 product sums over in one pass: one-thread OpenBLAS (SkylakeX sgemm)
# takes DEPTH_BLOCK at a time while at least twice that is left, then splits the rest in two
# halves rounded up to 16, summing the passes in C in order. Its threaded driver halves without
# the rounding (k = 784: 392 + 392 where one thread does 400 + 384), so W2's 784 -> 256 product
# came out different in the last bits at 1 and 2 threads. Calling it once per one-thread block
# (each a single pass for either driver, beta = 1 after the first) gives the one-thread bits
# at every thread count: measured equal to the whole one-thread product for every k tried
# (200-3000) and all three layouts, and at 2 threads too (tests/test_kernel_exactness.py).
DEPTH_BLOCK = 448


@njit(inline="always")
def _depth_pass(rest, chunk):
    """How much of the `rest` of a product's depth the next call sums: `chunk` (x.T @ dz's
    samples, or the whole depth), else (0) one-thread OpenBLAS's next depth block."""
    if chunk > 0:
        return chunk if chunk < rest else rest
    if rest >= 2 * DEPTH_BLOCK:
        return DEPTH_BLOCK
    if rest > DEPTH_BLOCK:
        return (rest // 2 + 15) // 16 * 16
    return rest


@njit(inline="always")
def _split(m, n, k, trans_a, trans_b):
    """How a float32 product out[m, n] = op(a) @ op(b) over k is split: x @ W into blocks of
    this many output rows, x.T @ dz into chunks of this many of the k samples (0: whole)."""
    if m * n * k <= SMALL_PRODUCT or trans_b:
        return 0
    if not trans_a:
        return ROW_BLOCK if ROW_BLOCK * n * k <= SMALL_PRODUCT else 0
    for chunk in SAMPLE_CHUNKS:
        if chunk * m * n <= SMALL_PRODUCT:
            return chunk
    return 0


@overload(_product)
def _product_impl(a, b, out, trans_a, trans_b):
    # Operands typed C-contiguous (every Dense buffer and weight view) always take the BLAS call:
    # numba prunes the np.dot branches on this constant, so np.dot is not compiled into them (its
    # four transposition variants were ~0.5 CPU-s of a cold linear regression's compile, and its
    # environment an import of numba.np.linalg on every warm one).
    function, unit, a_rows, b_rows, out_rows = _typed_call(a, b, out)
    typed_contiguous = a_rows and b_rows and out_rows
    blocked = a.dtype == types.float32  # float64 (gradient checks) keeps one call

    def impl(a, b, out, trans_a, trans_b):
        size = a.itemsize
        if typed_contiguous:
            rows_contiguous = True
        else:
            rows_contiguous = a.strides[1] == size and b.strides[1] == size and out.strides[1] == size
        if rows_contiguous and out.shape[0] > 0 and out.shape[1] > 0:
            m, n = out.shape
            k = a.shape[0] if trans_a else a.shape[1]
            # The leading dimensions: a C-contiguous operand's row length, since numpy may report
            # any stride for an axis of length 1 (np.arange(5)[None, :] has strides (0, 8), which
            # BLAS refuses as < k); another operand's row stride. `x if x > 1 else 1`, not max():
            # numba's max is one more function to compile.
            lda = a.shape[1] if a_rows else a.strides[0] // size
            ldb = b.shape[1] if b_rows else b.strides[0] // size
            ldc = out.shape[1] if out_rows else out.strides[0] // size
            lda = lda if lda > 1 else 1
            ldb = ldb if ldb > 1 else 1
            ldc = ldc if ldc > 1 else 1
            split = _split(m, n, k, trans_a, trans_b) if blocked else 0
            trans = TRANS if trans_a else NO_TRANS, TRANS if trans_b else NO_TRANS
            if split > 0 and not trans_a:  # blocks of rows of x and out
                for first in range(0, m, split):
                    rows = split if first + split <= m else m - first
                    function(ROW_MAJOR, trans[0], trans[1], rows, n, k, unit(1.0), a.ctypes.data + first * lda * size,
                             lda, b.ctypes.data, ldb, unit(0.0), out.ctypes.data + first * ldc * size, ldc)
            else:
                # the depth in passes summed into out in order (beta 1 after the first): x.T @ dz's
                # chunks of samples; past the small bound, OpenBLAS's own one-thread depth blocks
                # (one call each, so its threads cannot choose others); else the whole depth at once
                deep = blocked and split == 0 and k > DEPTH_BLOCK and m * n * k > SMALL_PRODUCT
                chunk = split if split > 0 else (0 if deep else k)
                first = 0
                while True:  # one call at least: a depth of 0 (no samples) writes out's zeros
                    depth = _depth_pass(k - first, chunk)
                    a_at = first * (lda if trans_a else 1)  # op(a)'s columns first.. (a's rows when transposed)
                    b_at = first * (1 if trans_b else ldb)  # op(b)'s rows first..
                    function(ROW_MAJOR, trans[0], trans[1], m, n, depth, unit(1.0), a.ctypes.data + a_at * size, lda,
                             b.ctypes.data + b_at * size, ldb, unit(0.0 if first == 0 else 1.0), out.ctypes.data, ldc)
                    first += depth
                    if first >= k:
                        break
        elif typed_contiguous:
            pass  # an empty product: nothing to write
        elif trans_a and trans_b:
            np.dot(a.T, b.T, out)
        elif trans_a:
            np.dot(a.T, b, out)
        elif trans_b:
            np.dot(a, b.T, out)
        else:
            np.dot(a, b, out)

    return impl


def _gemm_call(a, b, out, trans_a, trans_b):
    """The BLAS call alone, for callers that have checked every operand's rows are contiguous
    (matmul below: the GRU's column blocks are not C-contiguous, and with
    `gemm` they would compile the np.dot fallback they never take)."""


@overload(_gemm_call)
def _gemm_call_impl(a, b, out, trans_a, trans_b):
    function, unit, a_rows, b_rows, out_rows = _typed_call(a, b, out)

    def impl(a, b, out, trans_a, trans_b):
        size = a.itemsize
        m, n = out.shape
        k = a.shape[0] if trans_a else a.shape[1]
        lda = a.shape[1] if a_rows else a.strides[0] // size  # as in _product: a length-1 axis
        ldb = b.shape[1] if b_rows else b.strides[0] // size  # may report any stride
        ldc = out.shape[1] if out_rows else out.strides[0] // size
        function(ROW_MAJOR, TRANS if trans_a else NO_TRANS, TRANS if trans_b else NO_TRANS, m, n, k, unit(1.0),
                 a.ctypes.data, lda if lda > 1 else 1, b.ctypes.data, ldb if ldb > 1 else 1,
                 unit(0.0), out.ctypes.data, ldc if ldc > 1 else 1)

    return impl


@njit
def matmul(a, b, out, trans_a, trans_b):
    """out = op(a) @ op(b) in one BLAS gemm call, callable from Python and from compiled code
    alike, so the two paths run the same product: the recurrent layers' input projection and
    weight and input gradients, SeparableConv2D's pointwise step and Conv2DTranspose (where
    np.matmul would take gemv or its own loop for a dimension of 1). Every array has
    contiguous rows (C arrays, or column blocks of them: the GRU's recurrent-kernel gradient),
    so no np.dot fallback is compiled."""
    if a.strides[1] != a.itemsize or b.strides[1] != b.itemsize or out.strides[1] != out.itemsize:
        raise ValueError("matmul: rows must be contiguous")
    _gemm_call(a, b, out, trans_a, trans_b)


@njit(inline="always")
def gemm(a, b, out, trans_a, trans_b):
    """out = op(a) @ op(b), op(v) = v.T when its flag is set. a, b, out: 2-D, one float dtype.
    Through BLAS when every operand is C-contiguous (typed so) or, at run time, has contiguous
    rows; anything else goes through np.dot."""
    _product(a, b, out, trans_a, trans_b)


# OpenBLAS (x86_64 ?dot) shares a dot product of more than 10,000 values between its threads,
# each summing a part: the sum's last bits would follow the thread count. Blocks of this many,
# each summed by one thread, added in order, are the same at any count (and np.dot's bits up to it).
DOT_BLOCK = 8192


def _vector_dot(a, b):
    """`dot`'s body, typed by the vectors' dtype (below)."""


@overload(_vector_dot)
def _vector_dot_impl(a, b):
    # C-contiguous only: OpenBLAS sums a strided vector in another order, where np.dot would
    # have copied it first (tests/test_kernel_exactness.py)
    if not (a.ndim == b.ndim == 1 and a.layout == b.layout == "C" and a.dtype == b.dtype
            and a.dtype in (types.float32, types.float64)):
        raise TypingError(f"dot needs two C-contiguous vectors of one float dtype, got {a} and {b}")
    function = _sdot if a.dtype == types.float32 else _ddot

    def impl(a, b):
        n = a.shape[0]
        if b.shape[0] != n:
            raise ValueError("dot: the vectors differ in length")
        size = a.itemsize
        total = function(n if n < DOT_BLOCK else DOT_BLOCK, a.ctypes.data, 1, b.ctypes.data, 1)
        for first in range(DOT_BLOCK, n, DOT_BLOCK):
            part = n - first if n - first < DOT_BLOCK else DOT_BLOCK
            total += function(part, a.ctypes.data + first * size, 1, b.ctypes.data + first * size, 1)
        return total

    return impl


@njit(inline="always")
def dot(a, b):
    """a · b of two C-contiguous vectors of one float dtype: np.dot's bits up to DOT_BLOCK values
    (the same OpenBLAS kernel, jit/blas.py, without numba.np.linalg), and beyond it the blocks'
    sums added in order, which no thread count changes."""
    return _vector_dot(a, b)


# before any kernel calling gemm is linked (after the first njit: the fallback cfuncs are cached)
BOUND_TO = bind_gemm()  # which BLAS the kernels' gemm calls: "numpy" or "scipy (np.dot)"
