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


def _wait_for(path: Path) -> None:
    """Until the other process has made `path` (two minutes at most)."""
    deadline = time.monotonic() + 120
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{path.name} never appeared: the other process did not get there")
        time.sleep(0.01)


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
        _wait_for(folder / f"{other}.arrived")
        time.sleep(0.5)  # without a lock the other has read the same index as this process by now
        return save_index(self, overloads)

    caching.Cache.save_overload = arrive_then_save
    caching.IndexDataCacheFile._save_index = wait_for_the_other_then_save_index
    print(scaled(np.full(1, 2, dtype))[0])


@njit
def tripled(x):
    return x * 3


def same_signature(role: str, rendezvous: str) -> None:
    """Two processes call `tripled` on float32 into one empty cache: "first" holds inside numba's
    compiler until "second" has made its call, then compiles; prints this process's cache hits
    and misses."""
    import numpy as np

    folder = Path(rendezvous)
    if role == "first":
        compiler = tripled._compiler
        compile_now = compiler.compile

        def compile_once_the_other_has_called(args, return_type):
            (folder / "first.compiling").touch()
            _wait_for(folder / "second.calling")
            time.sleep(1.0)  # the second process is inside its call by now
            return compile_now(args, return_type)

        compiler.compile = compile_once_the_other_has_called
    else:
        _wait_for(folder / "first.compiling")
        (folder / "second.calling").touch()
    tripled(np.ones(2, np.float32))
    print(sum(tripled.stats.cache_hits.values()), sum(tripled.stats.cache_misses.values()))
