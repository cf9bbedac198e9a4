"""The Dense products one BLAS call at a time against the split kernels/blas.py makes, per shape:
CPU µs of x @ W and x.T @ dz (1 thread, float32) for each layer shape and batch size, whole
(one cblas_sgemm over the batch) and split (`gemm`: blocks of 32 output rows for x @ W, chunks
of 64 or 32 samples summed in order for x.T @ dz, where the split's rule applies; "-" where it
does not). Each figure is the best of ROUNDS rounds interleaved with its pair, so a loaded
machine slows both alike.

    python bench/gemm_shapes.py                       # W1, W2 and sweep layer shapes
    python bench/gemm_shapes.py --shapes 784x32 --batch 128 512 --rounds 15
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

threadpool_limits(1)

from trainctl.jit import NO_TRANS, ROW_MAJOR, TRANS, njit  # noqa: E402
from trainctl.kernels.blas import _sgemm, _split, gemm  # noqa: E402


@njit
def _whole_loop(a, b, out, trans_a, n):
    """One BLAS call per product: what `gemm` did before it split products."""
    m, units = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    for _ in range(n):
        _sgemm(ROW_MAJOR, TRANS if trans_a else NO_TRANS, NO_TRANS, m, units, k, np.float32(1.0), a.ctypes.data,
               a.shape[1], b.ctypes.data, b.shape[1], np.float32(0.0), out.ctypes.data, units)


@njit
def _gemm_loop(a, b, out, trans_a, n):
    for _ in range(n):
        gemm(a, b, out, trans_a, False)


def best_us(run, calls: int, rounds: int) -> list[float]:
    """Best CPU µs per call of each of `run`'s functions, interleaved round by round."""
    for f in run:
        f(1)
    best = [float("inf")] * len(run)
    for _ in range(rounds):
        for i, f in enumerate(run):
            start = time.process_time()
            f(calls)
            best[i] = min(best[i], (time.process_time() - start) / calls * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["784x32", "32x10", "784x256", "256x256", "256x10"],
                        help="layer shapes IN x UNITS")
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 128, 512, 2048])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'shape':>9} {'batch':>5} | {'x@W whole':>9} {'split':>7} {'ratio':>5} | "
          f"{'x.T@dz whole':>12} {'split':>7} {'ratio':>5}   (CPU µs, best of {args.rounds})")
    for shape in args.shapes:
        n_in, units = (int(v) for v in shape.split("x"))
        kernel = rng.standard_normal((n_in, units)).astype(np.float32)
        kernel_grad = np.empty_like(kernel)
        for batch in args.batch:
            x = rng.standard_normal((batch, n_in)).astype(np.float32)
            dz = rng.standard_normal((batch, units)).astype(np.float32)
            z = np.empty_like(dz)
            calls = max(3, int(2e7 / (2 * batch * n_in * units)))
            cells = []
            for a, b, out, trans_a in ((x, kernel, z, False), (x, dz, kernel_grad, True)):
                m, k = (n_in, batch) if trans_a else (batch, n_in)
                whole, split = best_us([lambda c: _whole_loop(a, b, out, trans_a, c),
                                        lambda c: _gemm_loop(a, b, out, trans_a, c)], calls, args.rounds)
                if _split(m, units, k, trans_a, False) == 0:
                    cells.append(f"{whole:9.1f} {'-':>7} {'':>5}")
                else:
                    cells.append(f"{whole:9.1f} {split:7.1f} {whole / split:5.2f}")
            print(f"{shape:>9} {batch:5d} | {cells[0]} | {cells[1]:>26}", flush=True)


if __name__ == "__main__":
    main()
