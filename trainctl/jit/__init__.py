"""Compile and runtime plumbing under the kernels: the `njit` decorator and its flags
(decorator), trainctl's numba cache (cache: directory, trust, damage, one-time preparation),
scipy's cython_blas loaded cheaply (cython_blas), the gemm and dot symbols bound to numpy's
BLAS (blas), LLVM intrinsics numba lacks (intrinsics: prefetch, MXCSR) and the thread's
flush-to-zero control (fpu).

Kernels (trainctl/kernels/*) import from this package only the names below, from the package
itself (tests/test_render.py holds that). They load on first use, so importing the package, as
the training runtime and the compiled-step marks do, imports no numba.
"""

from __future__ import annotations

import importlib

_EXPORTS = {  # name here: (module, its name there)
    "njit": ("decorator", "njit"),
    "prefetch": ("intrinsics", "prefetch"), "stmxcsr": ("intrinsics", "stmxcsr"),
    "FTZ": ("fpu", "FTZ"), "DAZ": ("fpu", "DAZ"), "MXCSR_SUPPORTED": ("fpu", "SUPPORTED"),
    "GEMM_SYMBOLS": ("blas", "GEMM_SYMBOLS"), "DOT_SYMBOLS": ("blas", "DOT_SYMBOLS"),
    "ROW_MAJOR": ("blas", "ROW_MAJOR"), "NO_TRANS": ("blas", "NO_TRANS"),
    "TRANS": ("blas", "TRANS"), "bind_gemm": ("blas", "bind_gemm"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'trainctl.jit' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    return getattr(importlib.import_module(f"trainctl.jit.{module}"), attribute)
