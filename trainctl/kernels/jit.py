"""JIT flags in one place, and trainctl's own numba cache directory.

`njit` here is the only decorator kernels use: cache=True, no fastmath (results
must be reproducible and match references), no parallel (numba threads beside a
multi-threaded BLAS oversubscribe the cores: measured 500k → 21k samples/s).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def cache_dir() -> Path:
    """$TRAINCTL_CACHE_DIR, else $XDG_CACHE_HOME/trainctl/numba, else ~/.cache/trainctl/numba."""
    explicit = os.environ.get("TRAINCTL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "trainctl" / "numba"


def configure_cache() -> None:
    """Point numba at our cache dir (unless the user chose one with NUMBA_CACHE_DIR). numba
    reads the variable once, at import: if something imported numba first, its config is
    set directly, before any trainctl kernel is decorated."""
    path = cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # an unwritable cache costs compile time on every run, never a failure
    chosen = os.environ.setdefault("NUMBA_CACHE_DIR", str(path))
    if "numba" in sys.modules:
        from numba.core import config as numba_config

        numba_config.CACHE_DIR = chosen


def clear_cache() -> None:
    """Delete every cached kernel (used when the cache is found damaged)."""
    shutil.rmtree(os.environ.get("NUMBA_CACHE_DIR", cache_dir()), ignore_errors=True)
    configure_cache()


JIT_OPTIONS = dict(cache=True, fastmath=False, nogil=True, error_model="numpy")


_cache_guard_installed = False
_cache_configured = False


def _install_cache_guard() -> None:
    """A damaged cache entry (truncated or garbage index/data file) must cost a recompile,
    never a crash: numba raises from inside its loader, so loading is wrapped once here.
    The damaged entry's index is reset and numba compiles and saves a fresh one."""
    global _cache_guard_installed
    if _cache_guard_installed:
        return
    import warnings

    from numba.core import caching

    original = caching.Cache.load_overload

    def load_overload_or_recompile(self, sig, target_context):
        try:
            return original(self, sig, target_context)
        except Exception as error:  # any damage: unpickling errors, bad magic, short reads
            warnings.warn(f"trainctl: damaged kernel cache entry ({type(error).__name__}); recompiling",
                          RuntimeWarning, stacklevel=2)
            try:
                self.flush()
            except OSError:
                pass  # an unwritable cache only costs compile time
            return None

    caching.Cache.load_overload = load_overload_or_recompile
    _cache_guard_installed = True


def njit(*args, **overrides):
    """numba.njit with trainctl's flags; use bare (`@njit`) or with overrides (`@njit(inline="always")`).
    The first call points numba's cache at trainctl's directory (before numba is imported)."""
    global _cache_configured
    if not _cache_configured:
        configure_cache()
        _cache_configured = True
    import numba

    _install_cache_guard()

    options = {**JIT_OPTIONS, **overrides}
    if args and callable(args[0]):
        return numba.njit(**options)(args[0])
    return numba.njit(*args, **options)
