"""The training thread's floating-point control: flush-to-zero and denormals-are-zero.

On x86-64, SSE/AVX arithmetic on denormal numbers (|x| < 1.18e-38 in float32) takes a
microcode assist of ~100 cycles per operation. Deep ReLU stacks drift into them as training
goes on (8 x 256 layers: epochs slowing from 1.96 s to 3.70 s). Two MXCSR bits remove that:
FTZ (bit 15) writes 0 for a result that would be denormal, DAZ (bit 6) reads a denormal input
as 0. PyTorch's `torch.set_flush_denormal(True)` sets the same two bits.

MXCSR is per thread, so it is read and written from the thread that trains, by two LLVM
intrinsics (`llvm.x86.sse.stmxcsr` / `ldmxcsr`) compiled through numba: no ctypes machine code,
no C extension. Elsewhere (aarch64, ...) the functions are no-ops that report "unsupported".
"""

from __future__ import annotations

import platform

FTZ = 0x8000  # MXCSR bit 15: flush denormal results to zero
DAZ = 0x0040  # MXCSR bit 6: treat denormal inputs as zero
CONTROL = 0xFFC0  # bits 6-15 control; bits 0-5 are sticky exception flags arithmetic sets

SUPPORTED = platform.machine().lower() in ("x86_64", "amd64")

if SUPPORTED:
    from trainctl.kernels.intrinsics import ldmxcsr, stmxcsr
    from trainctl.kernels.jit import njit

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
