"""The BLAS thread count a fit trains with, chosen by measuring it.

`--threads N` (or `fit(threads=N)`) is the most threads a fit may use. With N > 1 the fit
times its own steps with N threads and with 1 and keeps the faster, and tries the other
again every few seconds, since the load beside it can change while it trains. Why: on this
2-core machine beside a program that keeps one core busy, two OpenBLAS threads share the one
free core with their spin-waits and ran 0.2-0.6x one thread (bench/train_speed.py's busy
table), while on an idle machine 2 threads are 1.08-1.18x one. A fixed count is wrong in one
of the two cases; the measurement is right in both.

Switching costs no bits in float32: OpenBLAS divides a product's rows and columns among its
threads, and kernels/blas.py hands it the depth in one thread's blocks (its threaded driver
splits the sums otherwise), so every result is the same at any count
(tests/test_thread_governor.py trains at 1, at 2 and switching, and compares the bytes;
tests/test_kernel_exactness.py the products W2's 784 inputs moved). A float64 fit never gets
here with more than one thread: OpenBLAS's threaded dgemm rounds otherwise (train/loop.py).
Only step time is measured (start()/stop() around the steps, not callbacks or validation);
the first slice after a start or a reset is dropped, as it holds compiling and warm-up. A fit
starts at 1 thread and tries N after its first slices, so a short fit is never slower than
`--threads 1`; a try already far slower than the other count ends early (LOSING).
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable

SLICE_SECONDS = 0.2  # one measurement: consecutive steps timed until they add up to this
PROBE_EVERY = 25  # slices at the chosen count (~5 s) between two tries of the other count
PROBE_SLICES = 2  # a try of the other count lasts this many slices
KEEP = 3  # each count is judged by the median of its last KEEP slices
# A slice at one count that has run LOSING_AFTER seconds at under LOSING of the other count's
# median ends there, and the rest of its try is dropped: beside a busy core 2 threads ran
# 0.4-0.8x one (traced on W2/512: 2-thread slices of 21.0k and 40.8k samples/s against 1-thread
# 46k-51k), so a whole try of a count that slow costs up to ~0.2 s of training per probe;
# ended after a chunk or two it costs a few hundredths. 0.9: a try 0.7-0.9x the other, which
# 0.7 let run its whole 0.4 s, cost a 2-s fit beside a busy core ~5% (bench/train_speed.py's
# busy W2/512 and D8 rows at 2 threads, 0.90 and 0.95 of 1 thread); where the tried count is
# the faster one (quiet W2/512 at 2 threads: 1.14x), its first 0.05 s would have to run 20%
# under its rate to be dropped, and the next probe tries it again.
LOSING_AFTER = 0.05
LOSING = 0.9


class ThreadGovernor:
    """Picks between `most` BLAS threads and 1 from the step rate each gives (samples/s).

    set_count(n) changes the pools; clock() reads wall time (tests pass a fake one)."""

    def __init__(self, most: int, set_count: Callable[[int], None],
                 clock: Callable[[], float] = time.perf_counter):
        self.most = most
        self.current = most
        self._set_count = set_count
        self._clock = clock
        self._rates: dict[int, deque[float]] = {most: deque(maxlen=KEEP), 1: deque(maxlen=KEEP)}
        self._queue: list[int] = []  # counts the next slices run at, before the choice resumes
        self._since_probe = 0
        self._samples = 0
        self._seconds = 0.0
        self._started: float | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the slice in progress and drop the next one (a compile is about to run);
        then measure both counts afresh, 1 thread first: a fit too short to finish the probe
        (under ~1 s of steps) trains at the count that is never far from the best, where
        starting at `most` left short fits at 2 threads when 2 were 0.5-0.9x one
        (bench/train_speed.py's quiet 2-thread rows, which fit for ~0.3 s)."""
        self._samples, self._seconds = 0, 0.0
        self._drop_next = True
        self._queue = [1] * PROBE_SLICES + [self.most] * PROBE_SLICES
        self._use(1)

    def start(self) -> None:
        self._started = self._clock()

    def stop(self, samples: int) -> None:
        """The steps since start() trained `samples` samples."""
        if self._started is None:
            return
        self._seconds += self._clock() - self._started
        self._samples += samples
        self._started = None
        losing = self._losing()
        if self._seconds >= SLICE_SECONDS or losing:
            self._slice_done(self._samples / self._seconds, losing)
            self._samples, self._seconds = 0, 0.0

    def _losing(self) -> bool:
        """Whether the slice in progress is already far slower than the other count's figures."""
        if self._drop_next or self._seconds < LOSING_AFTER:
            return False
        other = self._rates[1 if self.current == self.most else self.most]
        return bool(other) and self._samples / self._seconds < LOSING * statistics.median(other)

    def _slice_done(self, rate: float, losing: bool = False) -> None:
        if self._drop_next:
            self._drop_next = False
            return
        self._rates[self.current].append(rate)
        if losing:  # the rest of this count's try would only cost more
            self._queue = [count for count in self._queue if count != self.current]
        if self._queue:
            self._use(self._queue.pop(0))
            return
        best = self._best()
        self._since_probe += 1
        if self._since_probe >= PROBE_EVERY:
            self._since_probe = 0
            other = 1 if best == self.most else self.most
            self._queue = [other] * (PROBE_SLICES - 1)
            self._rates[other].clear()  # its old figures are from another load
            self._use(other)
            return
        self._use(best)

    def _best(self) -> int:
        measured = {count: statistics.median(rates) for count, rates in self._rates.items() if rates}
        if not measured:
            return self.current
        return max(measured, key=lambda count: (measured[count], count))

    def _use(self, count: int) -> None:
        if count != self.current:
            self._set_count(count)
            self.current = count

    def finish(self) -> None:
        """Leave the pools at `most`, as the fit found them."""
        self._use(self.most)


class FixedThreads:
    """The pools as they are (threads 1, or none asked for): nothing to measure."""

    def reset(self) -> None: ...
    def start(self) -> None: ...
    def stop(self, samples: int) -> None: ...
    def finish(self) -> None: ...


def governor_for(most: int | None) -> ThreadGovernor | FixedThreads:
    """A governor when the fit may use more than one thread, else one that does nothing."""
    if most is None or most <= 1:
        return FixedThreads()
    return ThreadGovernor(most, blas_thread_setter())


def blas_thread_setter() -> Callable[[int], None]:
    """Set every loaded BLAS pool's thread count: threadpoolctl's per-library controllers,
    found once (finding them walks the loaded libraries: milliseconds), set per switch (µs)."""
    from threadpoolctl import ThreadpoolController

    controllers = ThreadpoolController().select(user_api="blas").lib_controllers

    def set_count(count: int) -> None:
        for controller in controllers:
            controller.set_num_threads(count)

    return set_count
