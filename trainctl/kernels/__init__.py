"""numba kernels. Only this package (and trainctl.jit, the plumbing under it) imports numba;
everything else imports kernels lazily.

Kernels import only numpy, numba, math, each other and what trainctl.jit exports for them
(`njit`, the intrinsics, the gemm symbols). Importing this package (or `kernels.codes`, which
the registries read) does no work: the first kernel decorated by `trainctl.jit.njit` points
numba's on-disk cache at trainctl's own cache directory, before numba is first imported, so
compiled kernels are reused across runs.
"""
