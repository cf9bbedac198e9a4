"""Shared test setup: the repository root on sys.path, so `tests.reference` imports work
however pytest is started."""

import os
import sys
from pathlib import Path

# One BLAS thread, as the CLI defaults to: the suite's layers are small, and a second
# thread only spins beside pytest's other work. Set before anything imports numpy.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import pytest  # noqa: E402

# Peer fixtures usable from any test module (each skips cleanly when its peer is absent).
from tests.fixtures import teacher_config, write  # noqa: E402
from tests.peers.tfjs import tfjs  # noqa: E402,F401


@pytest.fixture
def teacher_yaml(tmp_path):
    """Write the tiny teacher config (tests/fixtures.py) with the given options into the
    test's tmp_path: `teacher_yaml(n_features=6, fit="{epochs: 2, batch_size: 16}")` → its path."""
    return lambda filename="c.yaml", **options: write(tmp_path, filename, teacher_config(**options))


# The files that take longest on an empty kernel cache (CI: first compiles, subprocesses,
# dask clusters), longest first, from the durations of a cold `-n 2 --dist loadfile` run.
# They are collected first so each of the two workers starts on a long file and the short
# ones fill in behind: in collection order the hostile sweep came last and ran alone for
# minutes while the other worker idled. Only the order changes; every file still runs whole.
LONGEST_FIRST = (
    "tests/test_hostile/test_hostile_sweep.py",
    "tests/test_compiled_conv.py",
    "tests/test_compiled.py",
    "tests/test_kernel_cache.py",
    "tests/test_interop.py",
    "tests/test_search.py",
    "tests/test_experiment.py",
    "tests/test_recurrent_torch.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {path: position for position, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.partition("::")[0], len(rank)))  # stable: the rest keep their order
