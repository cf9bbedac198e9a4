"""The one decorator kernels use, with trainctl's JIT flags in one place: cache=True (into
trainctl's cache, cache.py), no fastmath (results must be reproducible and match references),
no parallel (numba threads beside a multi-threaded BLAS oversubscribe the cores: measured 500k
→ 21k samples/s).
"""

from __future__ import annotations

from trainctl.jit.cache import install_cache_guard, prepare_numba

JIT_OPTIONS = dict(cache=True, fastmath=False, nogil=True, error_model="numpy")


def njit(*args, **overrides):
    """numba.njit with trainctl's flags; use bare (`@njit`) or with overrides (`@njit(inline="always")`).
    The first call points numba's cache at trainctl's directory (before numba is imported)
    and loads scipy's cython_blas cheaply (preload_cython_blas)."""
    prepare_numba()
    import numba

    install_cache_guard()

    options = {**JIT_OPTIONS, **overrides}
    if args and callable(args[0]):
        return numba.njit(**options)(_named_by_variant(args[0]))
    decorate = numba.njit(*args, **options)
    return lambda function: decorate(_named_by_variant(function))


def _named_by_variant(function):
    """A kernel a factory makes once per constant (a fixed activation or loss code, a fast-path
    flag: `dense_kernels_for`, `loss_rows_for`, the recurrent loops) gets the constants in its
    name. numba names compiled code by the Python name and a per-process counter, so two
    variants compiled by two processes and loaded from the cache into a third could carry the
    same symbol, and a caller would run the wrong one: a Python-path fit (fixed codes) followed
    by a compiled-loop fit (generic codes) in one process trained with the wrong activation.
    Distinct names give distinct symbols (and cache files)."""
    cells = function.__closure__ or ()
    values = [cell.cell_contents for cell in cells]
    if values and all(isinstance(value, (bool, int, float, str)) for value in values):
        suffix = "_".join(str(value) for value in values)
        suffix = "".join(ch if ch.isalnum() else "_" for ch in suffix.replace("-", "m"))
        function.__name__ = f"{function.__name__}__{suffix}"
        function.__qualname__ = f"{function.__qualname__}__{suffix}"
    return function
