"""The training thread's environment: BLAS thread pools (through threadpoolctl) and the
floating-point control bits (flush-to-zero / denormals-are-zero), set for a fit and restored
after it, so a library user's own numpy code around trainctl is left as it was.

    with TrainingEnvironment(threads=1, flush_denormals=True):
        ...train...

Threads: threadpoolctl sets every loaded BLAS library's pool at run time (numpy's OpenBLAS and
scipy's, which numba's np.dot calls), instead of environment variables that only work when set
before numpy is first imported. Denormals: MXCSR is per thread, and OpenBLAS's worker threads
copy the control word of the thread that creates them, so when a pool has workers it is shut
down after the bits change and restarts, from the training thread, at its next call.
"""

from __future__ import annotations

import ctypes
import os
import threading

DEFAULT_THREADS = 1  # measured in bench/train_speed.py: see the README's "Threads" section

_pool_lock = threading.Lock()
_process_threads: int | None = None  # what set_threads last set (the CLI's --threads)


def _load_blas() -> None:
    """Load the BLAS libraries training calls, so threadpoolctl sees them all."""
    import numpy  # noqa: F401  (its OpenBLAS)

    from trainctl.jit.cython_blas import preload_cython_blas

    preload_cython_blas()  # without the rest of scipy.linalg (jit/cython_blas.py)
    try:
        import scipy.linalg.cython_blas  # noqa: F401  (numba's np.dot calls scipy's BLAS)
    except ImportError:
        pass


def blas_pools() -> list[dict]:
    from threadpoolctl import threadpool_info

    _load_blas()
    return [info for info in threadpool_info() if info.get("user_api") == "blas"]


def _restart_openblas_workers() -> None:
    """Shut down every OpenBLAS pool that has workers; each restarts on its next threaded
    call, its new workers copying the calling thread's MXCSR (FTZ/DAZ). Other BLAS libraries
    have no such entry point and keep their workers' bits."""
    for info in blas_pools():
        if info.get("internal_api") == "openblas" and info.get("num_threads", 1) > 1:
            try:
                ctypes.CDLL(info["filepath"]).blas_thread_shutdown_()
            except (OSError, AttributeError):
                pass


class TrainingEnvironment:
    """BLAS threads and FTZ/DAZ for the calling thread inside the block; restored on exit.

    threads: BLAS threads (None: leave the pools as they are). flush_denormals: True sets FTZ and
    DAZ (denormal results and inputs become 0: no 100-cycle microcode assists), False keeps IEEE
    denormals. Not re-entrant across threads: one training thread at a time per process."""

    def __init__(self, threads: int | None = None, flush_denormals: bool = True):
        self.threads = threads
        self.flush_denormals = flush_denormals
        self._limits = None
        self._previous_mxcsr: int | None = None

    def __enter__(self) -> "TrainingEnvironment":
        from trainctl.jit import fpu

        _load_blas()
        if self.threads is not None:
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(limits=self.threads, user_api="blas")
        self._previous_mxcsr = fpu.flush_denormals(self.flush_denormals)
        if self._previous_mxcsr is not None and self._control_changed():
            with _pool_lock:
                _restart_openblas_workers()
        return self

    def _control_changed(self) -> bool:
        from trainctl.jit import fpu

        return (fpu.get_mxcsr() ^ self._previous_mxcsr) & fpu.CONTROL != 0

    def __exit__(self, *exc) -> None:
        from trainctl.jit import fpu

        if self._previous_mxcsr is not None and self._control_changed():
            fpu.set_mxcsr(self._previous_mxcsr)
            with _pool_lock:
                _restart_openblas_workers()
        if self._limits is not None:
            self._limits.restore_original_limits()
            self._limits = None


def set_threads(threads: int) -> None:
    """Set every BLAS pool to `threads` for the rest of the process (the CLI's --threads)."""
    from threadpoolctl import threadpool_limits

    global _process_threads
    _load_blas()
    threadpool_limits(limits=int(threads), user_api="blas")
    _process_threads = int(threads)


def most_threads(threads: int | None) -> int | None:
    """The most BLAS threads a fit may use: its own `threads`, else the process's --threads
    (None: neither was set, and the pools are left alone)."""
    return threads if threads is not None else _process_threads


def cpu_count() -> int:
    """Processors this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
