"""Two processes compiling two signatures of one kernel into one cache at once (two pytest
workers, two experiment workers) both keep their entry, and a third process loads each
signature's own code from it. numba's save is an unlocked read-modify-write of the function's
index (numba/numba#10128); trainctl's njit saves under a file lock. The racers
(tests/cache_race_worker.py) each hold inside the save until the other has reached its own:
without the lock both read the same empty index, both name data file 1, and one signature's
entry is lost or points at the other's code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def python(code: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_concurrent_saves_of_one_kernel_keep_both_signatures(tmp_path):
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    racers = [python(f"from tests.cache_race_worker import race; race({name!r}, {other!r}, {dtype!r}, {str(rendezvous)!r})", env)
              for name, other, dtype in (("a", "b", "float32"), ("b", "a", "float64"))]
    for racer in racers:
        out, err = racer.communicate(timeout=300)
        assert racer.returncode == 0, err
        assert float(out) == 6.0
    loader = python("import numpy as np\n"
                    "from tests.cache_race_worker import scaled\n"
                    "a, b = scaled(np.full(1, 2, np.float32)), scaled(np.full(1, 2, np.float64))\n"
                    "print(a.dtype, b.dtype, sum(scaled.stats.cache_hits.values()),"
                    " sum(scaled.stats.cache_misses.values()))", env)
    out, err = loader.communicate(timeout=300)
    assert loader.returncode == 0, err
    first, second, hits, misses = out.split()
    assert (first, second) == ("float32", "float64")  # each signature ran its own code
    assert (int(hits), int(misses)) == (2, 0), "a signature was compiled again instead of loaded"


def test_a_signature_another_process_is_compiling_is_waited_for_and_loaded(tmp_path):
    # two processes starting on an empty cache together (experiment workers, test workers):
    # the second waits for the first's compile and loads it, instead of compiling it again
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    racers = {role: python(f"from tests.cache_race_worker import same_signature; same_signature({role!r}, {str(rendezvous)!r})", env)
              for role in ("first", "second")}
    counts = {}
    for role, racer in racers.items():
        out, err = racer.communicate(timeout=300)
        assert racer.returncode == 0, err
        counts[role] = tuple(int(n) for n in out.split())
    assert counts == {"first": (0, 1), "second": (1, 0)}, counts  # (cache hits, misses): one compile
