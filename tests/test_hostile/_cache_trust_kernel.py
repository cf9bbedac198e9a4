"""A kernel compiled through trainctl's njit, for test_hostile_trust.py: the cache path and
the loader guard are the real ones; umask 0, as in the audit."""

import os

os.umask(0)

from trainctl.jit.cache import configure_cache
from trainctl.jit.decorator import njit

configure_cache()


@njit
def add_one(x):
    return x + 1


print(add_one(41), os.environ["NUMBA_CACHE_DIR"])
