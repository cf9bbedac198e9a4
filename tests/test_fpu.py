"""Flush-to-zero / denormals-are-zero on the training thread, and its BLAS workers."""

import numpy as np
import pytest

from trainctl.kernels import fpu
from trainctl.train.runtime import TrainingEnvironment

pytestmark = pytest.mark.skipif(not fpu.SUPPORTED, reason="MXCSR exists on x86-64 only")

TINY = np.float32(1e-39)  # a float32 denormal


def _denormal_product():
    return (np.full(4, TINY) * np.float32(1.0))[0]


def test_bits_set_inside_and_restored_after():
    control = 0xFFC0  # bits 0-5 are sticky exception flags that arithmetic sets
    before = fpu.get_mxcsr() & control
    assert _denormal_product() == TINY  # IEEE outside
    with TrainingEnvironment(flush_denormals=True):
        assert fpu.get_mxcsr() & (fpu.FTZ | fpu.DAZ) == fpu.FTZ | fpu.DAZ
        assert _denormal_product() == 0.0  # DAZ: the denormal input reads as 0
        assert np.float32(1e-30) * np.float32(1e-9) == 0.0  # FTZ: a denormal result is 0
    assert fpu.get_mxcsr() & control == before
    assert _denormal_product() == TINY


def test_keep_denormals_option_leaves_ieee_arithmetic():
    with TrainingEnvironment(flush_denormals=False):
        assert fpu.get_mxcsr() & (fpu.FTZ | fpu.DAZ) == 0
        assert np.float32(1e-30) * np.float32(1e-9) != 0.0


def test_blas_worker_threads_flush_too():
    # Every product is ~1e-40 (denormal): with FTZ on every thread that computes a block of
    # the result, all of it is exactly 0; a worker left with IEEE bits leaves nonzero blocks.
    rng = np.random.default_rng(0)
    a = (np.abs(rng.standard_normal((512, 256))) * 1e-20 + 1e-21).astype(np.float32)
    b = (np.abs(rng.standard_normal((256, 512))) * 1e-20 + 1e-21).astype(np.float32)
    with TrainingEnvironment(threads=2, flush_denormals=True):
        assert not np.any(a @ b)
    with TrainingEnvironment(threads=2, flush_denormals=False):
        assert np.all(a @ b > 0)
    assert np.all(a @ b > 0)  # workers restarted with the caller's IEEE bits
