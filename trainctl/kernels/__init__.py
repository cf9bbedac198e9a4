"""numba kernels. Only this package imports numba; everything else imports it lazily.

Importing this package points numba's on-disk cache at trainctl's own cache directory
before numba is first imported, so compiled kernels are reused across runs.
"""

from trainctl.kernels.jit import configure_cache

configure_cache()
