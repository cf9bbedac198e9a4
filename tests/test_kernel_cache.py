"""The numba kernel cache: compiled once into trainctl's own directory; a damaged cache
entry is recompiled with a warning, never a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TRAIN = """
import numpy as np
from trainctl.nn.model import Sequential
m = Sequential([{"type": "dense", "units": 4, "activation": "relu", "input_shape": [3]},
                {"type": "dense", "units": 2, "activation": "softmax"}], seed=0)
m.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
rng = np.random.default_rng(0)
x = rng.random((10, 3), dtype=np.float32); y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 10)]
print(repr(m.fit(x, y, epochs=2).history["loss"]))
import sys  # what loading (not compiling) kernels must not import: jit/cache.py
print("scipy.linalg" in sys.modules, "numba.cpython.listobj" in sys.modules)
"""


def run(cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRAINCTL_CACHE_DIR": str(cache)}
    env.pop("NUMBA_CACHE_DIR", None)
    return subprocess.run([sys.executable, "-c", TRAIN], env=env, capture_output=True, text=True, timeout=300)


def test_kernels_are_cached_in_trainctl_cache_dir_and_damage_is_recompiled(tmp_path):
    cache = tmp_path / "cache"
    first = run(cache)
    assert first.returncode == 0, first.stderr
    index_files = sorted(cache.rglob("*.nbi"))
    data_files = sorted(cache.rglob("*.nbc"))
    assert index_files and data_files, "kernels were not cached in TRAINCTL_CACHE_DIR"

    for path in index_files[::2]:
        path.write_bytes(b"garbage")
    for path in data_files[1::2]:
        path.write_bytes(path.read_bytes()[:20])  # truncated
    damaged = run(cache)
    assert damaged.returncode == 0, damaged.stderr
    assert "Traceback" not in damaged.stderr
    assert "damaged kernel cache entry" in damaged.stderr
    history = first.stdout.splitlines()[0]
    assert first.stdout.splitlines()[1] == "False True"  # compiling refreshes numba's registries
    assert damaged.stdout.splitlines()[0] == history  # same numbers after recompiling

    repaired = run(cache)
    assert repaired.returncode == 0 and "damaged" not in repaired.stderr
    assert repaired.stdout.splitlines() == [history, "False False"]  # loads only: no registries


def test_kernel_variants_made_by_a_factory_have_names_of_their_own():
    # numba names compiled code by the function's name and a per-process counter: variants of
    # one factory (a fixed activation/loss/metric code, the recurrent loops' activation pairs),
    # compiled by different processes and loaded from the cache into one, shared a symbol and a
    # caller ran the wrong variant (a Python-path fit, then a compiled-loop fit, trained wrong)
    from trainctl.kernels import losses, metrics, recurrent, steps

    dense = {steps.dense_forward.py_func.__qualname__, steps.dense_kernels_for(0)[0].py_func.__qualname__,
             steps.dense_kernels_for(1)[0].py_func.__qualname__}
    loss = {losses.loss_rows.py_func.__qualname__, losses.loss_rows_for(0).py_func.__qualname__}
    metric = {metrics.metric_value.py_func.__qualname__, metrics.metric_value_for(0).py_func.__qualname__}
    lstm = {recurrent._lstm_forward_for(1, 2, True).py_func.__qualname__,
            recurrent._lstm_forward_for(2, 1, True).py_func.__qualname__}
    assert (len(dense), len(loss), len(metric), len(lstm)) == (3, 2, 2, 2)


CACHE_FIRST = """
import sys
from trainctl.jit.cache import kernel_cache
kernel_cache()  # the cache asked for before any kernel (train/compiled.py's marks can come first)
from trainctl.kernels import layers  # its kernels decorated, not compiled
print("scipy.linalg.cython_blas" in sys.modules, "scipy.linalg" in sys.modules)
"""


def test_configuring_the_cache_first_still_loads_cython_blas_alone(tmp_path):
    # kernel_cache() used to configure the cache without preloading scipy's cython_blas, and the
    # first njit after it then skipped the preload: numba's first compile of a kernel imported
    # all of scipy.linalg (~0.4 s). The preload itself keeps scipy.linalg out of a compile: the
    # first test above checks that on a real fit.
    env = {**os.environ, "TRAINCTL_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("NUMBA_CACHE_DIR", None)
    done = subprocess.run([sys.executable, "-c", CACHE_FIRST], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False"]


def test_the_cache_directory_changes_with_the_kernels_and_the_jit_plumbing(tmp_path, monkeypatch):
    # compiled code is made of the kernels and of trainctl/jit (intrinsics, the gemm binding,
    # the njit flags): an edit to either must select a fresh cache directory
    import shutil

    from trainctl.jit import cache

    package = Path(cache.__file__).resolve().parents[1]
    for folder in ("kernels", "jit"):
        shutil.copytree(package / folder, tmp_path / folder)
    monkeypatch.setattr(cache, "_PACKAGE", tmp_path)
    digests = [cache._sources_digest()]
    for edited in ("jit/intrinsics.py", "kernels/layers.py"):
        with open(tmp_path / edited, "a") as source:
            source.write("\n# edited\n")
        digests.append(cache._sources_digest())
    monkeypatch.undo()
    assert digests[0] == cache._sources_digest()  # the copy digests as the package does
    assert len(set(digests)) == 3
