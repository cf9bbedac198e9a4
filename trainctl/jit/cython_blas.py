"""scipy's cython_blas (the BLAS numba's np.dot calls), loaded without the rest of scipy.linalg."""

from __future__ import annotations

import sys
from pathlib import Path

_BLAS_MODULE = "scipy.linalg.cython_blas"


class _AttachCythonBlas:
    """A meta-path finder that waits for a later `import scipy.linalg` and, once its package
    has run, sets its `cython_blas` attribute to the module preload_cython_blas loaded, as a
    normal import would have (then it removes itself)."""

    def find_spec(self, name, path=None, target=None):
        if name != "scipy.linalg":
            return None
        import importlib.util

        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run_package = spec.loader.exec_module

        def exec_module(module):
            run_package(module)
            blas = sys.modules.get(_BLAS_MODULE)
            if blas is not None and not hasattr(module, "cython_blas"):
                module.cython_blas = blas

        spec.loader.exec_module = exec_module
        return spec


def preload_cython_blas() -> None:
    """Load scipy's `cython_blas` extension (the BLAS numba's np.dot calls; numba imports it
    by name when it first compiles or loads a kernel, and threadpoolctl must see it) without
    running `scipy/linalg/__init__.py`, which imports all of scipy.linalg and, through
    scipy's array-API layer, numpy.f2py: 0.38-0.52 s against 0.06 s for the extension alone
    (2 cores under load). numba finds the module in sys.modules; a later `import scipy.linalg`
    runs the package as usual and gets its `cython_blas` attribute (_AttachCythonBlas).
    Anything unexpected (no scipy, another layout) leaves the normal import to happen."""
    if _BLAS_MODULE in sys.modules or "scipy.linalg" in sys.modules:
        return
    import importlib.machinery
    import importlib.util

    try:
        scipy_spec = importlib.util.find_spec("scipy")
        if scipy_spec is None or not scipy_spec.submodule_search_locations:
            return
        folder = Path(list(scipy_spec.submodule_search_locations)[0]) / "linalg"
        path = next((folder / f"cython_blas{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES
                     if (folder / f"cython_blas{suffix}").is_file()), None)
        if path is None:
            return
        loader = importlib.machinery.ExtensionFileLoader(_BLAS_MODULE, str(path))
        spec = importlib.util.spec_from_file_location(_BLAS_MODULE, str(path), loader=loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[_BLAS_MODULE] = module
        try:
            loader.exec_module(module)
        except BaseException:
            sys.modules.pop(_BLAS_MODULE, None)
            raise
    except Exception:  # the ordinary import (numba's, threadpoolctl's) still works
        return
    sys.meta_path.insert(0, _AttachCythonBlas())
