"""The processes of test_kernel_cache_race.py. `race(name, other, dtype, rendezvous)` compiles
one signature of `scaled` into the cache (NUMBA_CACHE_DIR) shared with a second process,
holding inside numba's save at the moment that lets two saves race (the function's index read,
not yet written back) until the other process has reached its own save. Imported by module
name in every process, so all three use the same cache entry name."""

from __future__ import annotations

import time
from pathlib import Path

from trainctl.jit import njit


@njit
def scaled(x):
    return x * 3  # an array of x's dtype: the signature shows in the result


def race(name: str, other: str, dtype: str, rendezvous: str) -> None:
    import numpy as np
    from numba.core import caching  # trainctl's njit has installed its cache hooks by now

    guarded_save = caching.Cache.save_overload
    save_index = caching.IndexDataCacheFile._save_index
    folder = Path(rendezvous)

    def arrive_then_save(self, sig, data):
        (folder / f"{name}.arrived").touch()  # at the save: about to take the lock, if any
        return guarded_save(self, sig, data)

    def wait_for_the_other_then_save_index(self, overloads):
        deadline = time.monotonic() + 120
        while not (folder / f"{other}.arrived").exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"{other} never reached its save")
            time.sleep(0.01)
        time.sleep(0.5)  # without a lock the other has read the same index as this process by now
        return save_index(self, overloads)

    caching.Cache.save_overload = arrive_then_save
    caching.IndexDataCacheFile._save_index = wait_for_the_other_then_save_index
    print(scaled(np.full(1, 2, dtype))[0])
