"""The speed paths of the kernels compute what the plain formulas compute, bit for bit: Adam's
divisions by its bias corrections as float64 reciprocal products (kernels/optimizers.py), and
the Dense products through numpy's BLAS or the np.dot fallback (kernels/blas.py, bound in jit/blas.py),
large narrow ones split into OpenBLAS's small products."""

from __future__ import annotations

import contextlib
import ctypes

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from trainctl.jit.fpu import SUPPORTED, FlushDenormals


def _tfjs_adam(value, grad, m, v, lr, beta1, beta2, epsilon, step):
    """adam_optimizer.ts op by op in numpy float32 (each op rounds, like TF.js's kernels)."""
    f = np.float32
    one_minus_acc1 = f(1) - f(beta1) ** step
    one_minus_acc2 = f(1) - f(beta2) ** step
    m_new = m * f(beta1) + grad * (f(1) - f(beta1))
    v_new = v * f(beta2) + np.square(grad) * (f(1) - f(beta2))
    m_hat = m_new / one_minus_acc1
    v_hat = v_new / one_minus_acc2
    m[...] = m_new
    v[...] = v_new
    value[...] = (m_hat / (np.sqrt(v_hat) + f(epsilon))) * f(-lr) + value


@pytest.mark.parametrize("flush", [True, False])
def test_adam_update_equals_the_tfjs_divisions_bit_for_bit(flush):
    from trainctl.kernels.optimizers import adam_update

    rng = np.random.default_rng(3)
    n = 4099  # not a multiple of the vector width: the loop's scalar tail runs too
    f = np.float32
    ours = [rng.standard_normal(n).astype(f), np.zeros(n, f), np.zeros(n, f)]
    theirs = [a.copy() for a in ours]
    lr, beta1, beta2, epsilon = 1e-3, 0.9, 0.999, 1e-7
    with FlushDenormals(flush), np.errstate(all="ignore"):
        for step in range(1, 25):
            # magnitudes from 1e-44 (denormal) to 1e4, and the special values
            grad = (rng.standard_normal(n) * 10.0 ** rng.uniform(-44, 4, n)).astype(f)
            grad[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45]
            acc1, acc2 = f(beta1) ** step, f(beta2) ** step
            adam_update(ours[0], grad, ours[1], ours[2], f(-lr), f(beta1), f(beta2), f(1) - f(beta1),
                        f(1) - f(beta2), f(1) - acc1, f(1) - acc2, f(epsilon), f(1), f(0))
            _tfjs_adam(*theirs[:1], grad, *theirs[1:], lr, beta1, beta2, epsilon, step)
    for a, b in zip(ours, theirs):
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.skipif(not SUPPORTED, reason="FTZ/DAZ are x86 bits")
def test_reciprocal_products_equal_float32_divisions():
    """The identity the Adam kernel relies on, over random float32 numerators and divisors
    (every exponent, both signs, NaN and infinities) under FTZ/DAZ."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 2**32, 400_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    divisors = rng.integers(0, 2**32, 40, dtype=np.uint64).astype(np.uint32).view(np.float32)
    divisors = np.concatenate([divisors, np.float32(1) - np.float32(0.999) ** np.arange(1, 30, dtype=np.float32)])
    with FlushDenormals(True), np.errstate(all="ignore"):
        for c in divisors:
            quotient = x / c
            product = (x.astype(np.float64) * (1.0 / np.float64(c))).astype(np.float32)
            same = (quotient.view(np.uint32) == product.view(np.uint32)) | (np.isnan(quotient) & np.isnan(product))
            assert same.all(), (c, x[~same][:3])


def _products(dtype, rng, rows, n_in, n_out):
    x = rng.standard_normal((rows + 3, n_in)).astype(dtype)[:rows]  # a slice of rows, as batches are
    kernel = rng.standard_normal((n_in, n_out)).astype(dtype)
    dy = rng.standard_normal((rows, n_out)).astype(dtype)
    return x, kernel, dy


def _dense_step(x, kernel, dy):
    """A linear Dense layer's forward and backward with zero bias: its three products
    z = x @ W, the kernel gradient x.T @ dy and dx = dy @ W.T."""
    from trainctl.kernels.steps import dense_backward, dense_forward

    bias = np.zeros(kernel.shape[1], kernel.dtype)
    z, y, dz = np.empty_like(dy), np.empty_like(dy), np.empty_like(dy)
    dx, kernel_grad, bias_grad = np.empty_like(x), np.empty_like(kernel), np.empty_like(bias)
    dense_forward(x, kernel, bias, z, y, 0)
    dense_backward(x, kernel, z, y, dy, dz, dx, kernel_grad, bias_grad, 0, True)
    return z, kernel_grad, dx


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_products_are_numpys(dtype):
    """forward z = x @ W, kernel grad x.T @ dz, dx = dz @ W.T: the same bits as np.matmul."""
    from trainctl.kernels import blas

    rng = np.random.default_rng(0)
    for rows, n_in, n_out in ((7, 5, 3), (130, 64, 33), (1, 1, 1), (0, 4, 2)):
        x, kernel, dy = _products(dtype, rng, rows, n_in, n_out)
        z, kernel_grad, dx = _dense_step(x, kernel, dy)
        exact = np.array_equal if blas.BOUND_TO == "numpy" else np.allclose
        assert exact(z, np.matmul(x, kernel))
        assert exact(kernel_grad, np.matmul(x.T, dy))
        assert exact(dx, np.matmul(dy, kernel.T))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_batch_loss_dot_is_np_dots(dtype):
    """kernels/blas.dot (numpy's cblas_?dot) gives np.dot's bits as numba compiles it (scipy's
    BLAS), the batch loss's former product: every length up to 300, and long ones."""
    from numba import njit
    from numba.core.errors import TypingError

    from trainctl.kernels.steps import batch_loss

    numba_dot = njit(lambda a, b: np.dot(a, b))
    rng = np.random.default_rng(2)
    for n in [*range(301), 511, 4096, 8191, 8192]:
        a = (rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3, n)).astype(dtype)
        b = (rng.random(n) / max(n, 1)).astype(dtype)
        assert dtype(batch_loss(a, b)).tobytes() == dtype(numba_dot(a, b)).tobytes(), n
    # past a block, the blocks' sums in order, at any thread count (OpenBLAS would share one sum)
    a = (rng.standard_normal(60_000) * 100).astype(dtype)
    b = rng.random(60_000).astype(dtype)
    expected = dtype(0)
    for first in range(0, 60_000, 8192):
        expected = expected + numba_dot(a[first:first + 8192], b[first:first + 8192]) if first else \
            dtype(numba_dot(a[:8192], b[:8192]))
    for threads in (1, 2):
        with threadpool_limits(threads, user_api="blas"):
            assert dtype(batch_loss(a, b)).tobytes() == dtype(expected).tobytes(), threads
    with pytest.raises(TypingError, match="C-contiguous"):  # strided: OpenBLAS would sum another way
        njit(lambda a, b: batch_loss(a, b))(a[::2], b[::2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_narrow_products_run_as_small_products(dtype):
    """Past OpenBLAS's small-matrix bound (M * N * K > 1e6) a float32 x @ W runs in blocks of 32
    output rows, and x.T @ dz in chunks of 64 or 32 samples, each chunk's product added to the sum
    of the chunks before (kernels/blas.py): each exactly numpy's matmul of that block or chunk,
    the batch's last, shorter one too. float64 keeps one call; dx = dz @ W.T is never split."""
    from trainctl.kernels import blas
    def close(a, b):  # scipy's BLAS (the fallback binding) may sum a block another way: float32 rounding apart
        return np.allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())

    rng = np.random.default_rng(4)
    exact = np.array_equal if blas.BOUND_TO == "numpy" else close
    single = dtype == np.float32
    # (rows, n_in, n_out, rows per x @ W call, samples per x.T @ dz call)
    for rows, n_in, n_out, block, chunk in ((517, 784, 32, 32, 32), (130, 784, 10, 32, 64), (517, 256, 64, 32, 32),
                                            (33, 784, 32, 33, 33), (300, 784, 128, 300, 300)):
        if not single:
            block, chunk = rows, rows
        x, kernel, dy = _products(dtype, rng, rows, n_in, n_out)
        z, kernel_grad, dx = _dense_step(x, kernel, dy)
        # float32: one thread's bits at any count (the test below), numpy's whole products are not
        with threadpool_limits(1, user_api="blas") if single else contextlib.nullcontext():
            assert exact(z, np.concatenate([x[a:a + block] @ kernel for a in range(0, rows, block)]))
            expected = x[:chunk].T @ dy[:chunk]
            for a in range(chunk, rows, chunk):
                expected = x[a:a + chunk].T @ dy[a:a + chunk] + expected
            assert exact(kernel_grad, expected)
            assert exact(dx, dy @ kernel.T)
        if single and blas.BOUND_TO == "numpy" and rows == 517 and n_in == 784:  # W1's first layer: the
            # splits sum differently from the whole products, so the checks above can tell them apart
            assert not np.array_equal(z, x @ kernel) and not np.array_equal(kernel_grad, x.T @ dy)


def test_float32_products_give_the_same_bits_at_any_thread_count():
    """OpenBLAS's threaded driver splits a product's depth k otherwise than one thread does
    (784 = 392 + 392 against 400 + 384), so W2's first layer (batch x 784 -> 256) came out
    different in the last bits at 2 threads (the thread governor switches counts mid-fit).
    gemm calls it once per one-thread depth block (kernels/blas.py DEPTH_BLOCK): the bits of
    one thread's whole product, at 1 and at 2 threads."""
    from trainctl.kernels import blas

    if blas.BOUND_TO != "numpy":
        pytest.skip("the depth blocks are OpenBLAS's (numpy's binding)")
    rng = np.random.default_rng(5)
    for rows, n_in, n_out in ((512, 784, 256), (128, 1000, 300), (1100, 600, 64)):
        x, kernel, dy = _products(np.float32, rng, rows, n_in, n_out)
        results = []
        for threads in (1, 2):
            with threadpool_limits(threads, user_api="blas"):
                results.append(_dense_step(x, kernel, dy))
        for one, two in zip(*results):
            assert np.array_equal(one, two), (rows, n_in, n_out)
        with threadpool_limits(1, user_api="blas"):  # and one thread's own whole product: nothing moved
            assert np.array_equal(results[0][0], x @ kernel)
            assert np.array_equal(results[0][2], dy @ kernel.T)


@pytest.mark.filterwarnings("ignore:np.vdot:numba.core.errors.NumbaPerformanceWarning")  # np.dot's own note on strides
def test_dense_product_of_any_layout():
    """gemm is typed by its operands' layouts: C-contiguous ones always take BLAS (numpy may give an
    axis of length 1 any stride: a row view with stride 0 once made BLAS refuse lda < k and leave z
    unwritten), a strided one takes BLAS when its rows are contiguous and np.dot when not."""
    from trainctl.kernels.steps import dense_forward

    rng = np.random.default_rng(2)
    kernel, bias = rng.standard_normal((5, 3)), np.zeros(3)
    row = rng.standard_normal(5)[None, :]  # C-contiguous, strides (0, 8)
    wide = rng.standard_normal((6, 10))
    for x in (row, wide[:, :5], wide[:, ::2]):
        z, y, z_copy = np.full((x.shape[0], 3), np.nan), np.empty((x.shape[0], 3)), np.empty((x.shape[0], 3))
        dense_forward(x, kernel, bias, z, y, 0)
        dense_forward(np.array(x), kernel, bias, z_copy, y, 0)  # a fresh C-contiguous copy: BLAS
        np.testing.assert_allclose(z, x @ kernel, rtol=1e-12)
        if x.strides[1] == x.itemsize:
            assert np.array_equal(z, z_copy)  # rows contiguous: the same BLAS call, the same bits


def test_a_product_of_mixed_float_types_does_not_compile():
    """BLAS reads every operand as the first one's type: a float32 input beside a float64 model's
    weights was read past its end (outputs like -5.8e183). The product now refuses to compile
    instead; the Trainer and predict cast their inputs to the model's type first."""
    from numba.core.errors import TypingError

    from trainctl.nn.model import Sequential

    model = Sequential([{"type": "dense", "units": 3, "input_shape": [4]}], seed=0, dtype=np.float64)
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).random((5, 4)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), x.astype(np.float64) @ model.weights[0].value, rtol=1e-12)
    with pytest.raises(TypingError, match="gemm needs one float dtype for all operands, got float32, float64"):
        model.forward(x)  # the buffers predict allocated, the input not cast


@pytest.mark.filterwarnings("ignore:np.vdot:numba.core.errors.NumbaPerformanceWarning")  # np.dot's own note on strides
def test_np_dot_fallback_computes_the_cblas_product():
    """The binding used where numpy bundles no OpenBLAS we know, called through its C address,
    for each pair of transpose flags, on operands whose rows lie further apart than their length
    (columns of a wider array: read as contiguous, they gave wrong products), beta 0 and 1."""
    from numba import cfunc

    from trainctl.jit import blas

    product = cfunc(blas.fallback_signature("d"), cache=True)(blas._dot_product)
    rng = np.random.default_rng(1)
    m, n, k, extra = 4, 3, 5, 2
    pointer = ctypes.POINTER(ctypes.c_double)
    for trans_a in (False, True):
        for trans_b in (False, True):
            wide_a = rng.standard_normal((k, m + extra) if trans_a else (m, k + extra))
            wide_b = rng.standard_normal((n, k + extra) if trans_b else (k, n + extra))
            a = wide_a[:, :m] if trans_a else wide_a[:, :k]
            b = wide_b[:, :k] if trans_b else wide_b[:, :n]
            flags = [blas.TRANS if t else blas.NO_TRANS for t in (trans_a, trans_b)]
            expected = (a.T if trans_a else a) @ (b.T if trans_b else b)
            for beta, before in ((0.0, np.full((m, n + extra), np.nan)), (1.0, rng.standard_normal((m, n + extra)))):
                wide_out = before.copy()  # beta 0 never reads c (NaN stays out); beta 1 adds to it
                product.ctypes(blas.ROW_MAJOR, *flags, m, n, k, 1.0, a.ctypes.data_as(pointer), wide_a.shape[1],
                               b.ctypes.data_as(pointer), wide_b.shape[1], beta, wide_out.ctypes.data_as(pointer),
                               wide_out.shape[1])
                np.testing.assert_allclose(wide_out[:, :n], expected + (before[:, :n] if beta else 0.0), rtol=1e-12)
                assert np.array_equal(wide_out[:, n:], before[:, n:], equal_nan=True)  # past the row: untouched
