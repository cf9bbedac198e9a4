"""Issue 15, item 8: numba unpickles its cache index files, so a kernel cache another user
can write is never used: trainctl falls back to a fresh private cache with one warning line
and a file planted there is never loaded; the cache it creates is 0700 whatever the umask."""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import pytest

class Planted:
    """Unpickling this writes the marker file: the planted payload of the audit."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


KERNEL_FILE = Path(__file__).with_name("_cache_trust_kernel.py")  # one source path: one cache entry name


def run(cache: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRAINCTL_CACHE_DIR": str(cache)}
    env.pop("NUMBA_CACHE_DIR", None)
    return subprocess.run([sys.executable, str(KERNEL_FILE)], env=env, capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def plant(cache: Path, marker: Path) -> list[Path]:
    """Replace every index file in the cache with a pickle that creates `marker` when loaded."""
    index_files = sorted(cache.rglob("*.nbi"))
    assert index_files, "the kernel was not cached"
    for path in index_files:
        path.write_bytes(pickle.dumps(Planted(str(marker))))
    return index_files


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    """A cache made by a first run (private, 0700 even under umask 0), with its index files."""
    tmp_path = tmp_path_factory.mktemp("trust")
    root = tmp_path / "home"
    root.mkdir(mode=0o700)
    cache = root / "cache" / "numba"
    first = run(cache, tmp_path)
    assert first.returncode == 0, first.stderr
    # the kernels live in a folder per version of their sources, inside the cache directory
    assert first.stdout.split()[0] == "42" and Path(first.stdout.split()[1]).parent == cache
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700  # every level it created
    return cache


@pytest.fixture
def cached(master, tmp_path):
    """A copy of the master cache at the same path inside this test's directory."""
    import shutil

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "cache").mkdir(mode=0o700)
    cache = home / "cache" / "numba"
    shutil.copytree(master, cache)
    cache.chmod(0o700)
    return tmp_path, cache


def test_a_planted_pickle_in_a_private_cache_is_what_the_guard_cannot_stop(cached):
    """The negative control: in a directory that passes the checks, numba does unpickle the
    index (so the test below can fail), which is why only a private directory is trusted."""
    tmp_path, cache = cached
    marker = tmp_path / "pwned"
    plant(cache, marker)
    run(cache, tmp_path)
    assert marker.exists()


@pytest.mark.parametrize("how", ["group-writable", "other-writable", "foreign-owned", "replaceable parent"])
def test_an_untrusted_cache_is_not_used_and_its_planted_file_never_loaded(cached, how):
    tmp_path, cache = cached
    marker = tmp_path / "pwned"
    planted = plant(cache, marker)
    if how == "group-writable":
        cache.chmod(0o770)
    elif how == "other-writable":
        cache.chmod(0o707)
    elif how == "foreign-owned":
        if os.getuid() != 0:
            pytest.skip("chown to another user needs root")
        os.chown(cache, 65534, 65534)
    else:
        cache.parent.chmod(0o777)  # anyone may rename the cache away and put their own there
    result = run(cache, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    value, used = result.stdout.split()
    assert value == "42" and used != str(cache) and "trainctl-kernels-" in used
    warnings = [line for line in result.stderr.splitlines() if "kernel cache" in line]
    assert len(warnings) == 1 and str(cache) in warnings[0] and "not using it" in warnings[0], result.stderr
    assert not marker.exists()
    assert all(p.read_bytes() == pickle.dumps(Planted(str(marker))) for p in planted)  # not even rewritten
    assert not Path(used).exists()  # the private fallback is removed at exit


def test_a_foreign_owned_file_inside_the_cache_is_never_unpickled(cached):
    if os.getuid() != 0:
        pytest.skip("chown to another user needs root")
    tmp_path, cache = cached
    marker = tmp_path / "pwned"
    for path in plant(cache, marker):
        os.chown(path, 65534, 65534)
    result = run(cache, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "42"
    assert not marker.exists()
    assert "is not this user's own" in result.stderr
