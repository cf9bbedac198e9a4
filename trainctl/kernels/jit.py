"""JIT flags in one place, and trainctl's own numba cache directory.

`njit` here is the only decorator kernels use: cache=True, no fastmath (results
must be reproducible and match references), no parallel (numba threads beside a
multi-threaded BLAS oversubscribe the cores: measured 500k → 21k samples/s).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def cache_dir() -> Path:
    """$TRAINCTL_CACHE_DIR, else $XDG_CACHE_HOME/trainctl/numba, else ~/.cache/trainctl/numba."""
    explicit = os.environ.get("TRAINCTL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "trainctl" / "numba"


def configure_cache() -> None:
    """Point numba at our cache dir; must run before numba is imported anywhere."""
    path = cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("NUMBA_CACHE_DIR", str(path))
    except OSError:
        # An unwritable cache costs compile time on every run, never a failure.
        pass


def clear_cache() -> None:
    """Delete every cached kernel (used when the cache is found damaged)."""
    shutil.rmtree(os.environ.get("NUMBA_CACHE_DIR", cache_dir()), ignore_errors=True)
    configure_cache()


JIT_OPTIONS = dict(cache=True, fastmath=False, nogil=True, error_model="numpy")


def njit(*args, **overrides):
    """numba.njit with trainctl's flags; use bare (`@njit`) or with overrides (`@njit(inline="always")`)."""
    import numba

    options = {**JIT_OPTIONS, **overrides}
    if args and callable(args[0]):
        return numba.njit(**options)(args[0])
    return numba.njit(*args, **options)
