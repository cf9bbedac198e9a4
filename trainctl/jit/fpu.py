"""The training thread's floating-point control: flush-to-zero and denormals-are-zero.

On x86-64, SSE/AVX arithmetic on denormal numbers (|x| < 1.18e-38 in float32) takes a
microcode assist of ~100 cycles per operation. Deep ReLU stacks drift into them as training
goes on (8 x 256 layers: epochs slowing from 1.96 s to 3.70 s). Two MXCSR bits remove that:
FTZ (bit 15) writes 0 for a result that would be denormal, DAZ (bit 6) reads a denormal input
as 0. PyTorch's `torch.set_flush_denormal(True)` sets the same two bits.

MXCSR is per thread, so it is read and written from the thread that trains. On Linux and macOS
that is the C library's own `fegetenv` / `fesetenv` through ctypes (x86-64's fenv_t holds the
MXCSR word: glibc and musl at byte 28, macOS at byte 4): no machine code of ours, no C
extension, and no numba — reading the bits used to be the process's first numba cache load,
which initialises numba's whole target context (~0.4 s of every `trainctl train`, and ~0.7 s
of compiling on a cold cache). Elsewhere on x86-64 two LLVM intrinsics compiled through numba
(`llvm.x86.sse.stmxcsr` / `ldmxcsr`, jit/intrinsics.py) do it; on other machines (aarch64,
...) the functions are no-ops that report "unsupported".
"""

from __future__ import annotations

import ctypes
import platform
import sys

FTZ = 0x8000  # MXCSR bit 15: flush denormal results to zero
DAZ = 0x0040  # MXCSR bit 6: treat denormal inputs as zero
CONTROL = 0xFFC0  # bits 6-15 control; bits 0-5 are sticky exception flags arithmetic sets

SUPPORTED = platform.machine().lower() in ("x86_64", "amd64")

# byte offset of the MXCSR word in x86-64's fenv_t, by C library
_FENV_MXCSR_OFFSET = {"linux": 28, "darwin": 4}.get(sys.platform)


def _c_library_env():
    """(fegetenv, fesetenv, fenv_t type) from the C library, or None where fenv_t's layout
    is not known here."""
    if not SUPPORTED or _FENV_MXCSR_OFFSET is None:
        return None
    try:
        libc = ctypes.CDLL(None)
        fegetenv, fesetenv = libc.fegetenv, libc.fesetenv
    except (OSError, AttributeError):
        return None

    class FEnv(ctypes.Structure):
        _fields_ = [("head", ctypes.c_uint8 * _FENV_MXCSR_OFFSET), ("mxcsr", ctypes.c_uint32),
                    ("tail", ctypes.c_uint8 * 32)]  # room for any trailing fields

    fegetenv.argtypes = fesetenv.argtypes = [ctypes.POINTER(FEnv)]
    fegetenv.restype = fesetenv.restype = ctypes.c_int
    return fegetenv, fesetenv, FEnv


_libc_env = _c_library_env()

if SUPPORTED and _libc_env is not None:
    _fegetenv, _fesetenv, _FEnv = _libc_env

    def _get() -> int:
        env = _FEnv()
        if _fegetenv(ctypes.byref(env)) != 0:
            raise OSError("fegetenv failed")
        return env.mxcsr

    def _set(value: int) -> None:
        env = _FEnv()
        if _fegetenv(ctypes.byref(env)) != 0:
            raise OSError("fegetenv failed")
        env.mxcsr = value  # the x87 part is written back as it was read
        if _fesetenv(ctypes.byref(env)) != 0:
            raise OSError("fesetenv failed")

elif SUPPORTED:
    from trainctl.jit.decorator import njit
    from trainctl.jit.intrinsics import ldmxcsr, stmxcsr

    @njit
    def _get():
        return stmxcsr()

    @njit
    def _set(value):
        ldmxcsr(value)
        return stmxcsr()


def get_mxcsr() -> int | None:
    """The calling thread's MXCSR, or None where there is none."""
    return int(_get()) if SUPPORTED else None


def set_mxcsr(value: int) -> None:
    if SUPPORTED:
        _set(int(value) & 0xFFFF)


def flush_denormals(enable: bool) -> int | None:
    """Set (enable=True) or clear FTZ and DAZ on the calling thread; returns the previous MXCSR
    (to restore with `set_mxcsr`), or None where the bits do not exist."""
    if not SUPPORTED:
        return None
    previous = get_mxcsr()
    wanted = previous | FTZ | DAZ if enable else previous & ~(FTZ | DAZ)
    if wanted != previous:
        set_mxcsr(wanted)
    return previous


class FlushDenormals:
    """`with FlushDenormals(True):` — FTZ/DAZ on the calling thread inside, the caller's MXCSR
    restored after (a library user's own numpy code keeps IEEE denormals)."""

    def __init__(self, enable: bool):
        self.enable = enable
        self._previous: int | None = None

    def __enter__(self) -> "FlushDenormals":
        self._previous = flush_denormals(self.enable)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            set_mxcsr(self._previous)
