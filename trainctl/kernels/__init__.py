"""numba kernels. Only this package imports numba; everything else imports it lazily.

Importing this package (or `kernels.codes`, which the registries read) does no work: the
first kernel decorated by `kernels.jit.njit` points numba's on-disk cache at trainctl's own
cache directory, before numba is first imported, so compiled kernels are reused across runs.
"""
