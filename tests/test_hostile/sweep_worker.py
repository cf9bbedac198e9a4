"""One process that runs many `trainctl` commands in turn, for the size sweep: the CLI's own
entry point (typer's test runner, so exit codes and uncaught exceptions are what a user
would get) without paying interpreter start-up and kernel loading once per case.

Reads one JSON case a line on stdin: {"args": [...], "limit": seconds}. For each it resets
the peak RSS (/proc/self/clear_refs), runs the command, stops it at `limit` seconds if it is
still running (a legitimate long run: SIGALRM raises CaseTimeout in whatever Python code
runs, outside numba's compiler), and writes one line `@@CASE {json}` with the exit code, an uncaught exception (a bug)
and the case's peak RSS. Run it as a file (`python tests/test_hostile/sweep_worker.py`); the
test side is `run_cases` in test_hostile_sweep.py.
"""

from __future__ import annotations

import json
import signal
import sys
import traceback


class CaseTimeout(BaseException):
    """The case is still running at its limit (not an Exception: nothing in trainctl catches it)."""


def _inside_numba(frame) -> bool:
    """Whether the interrupted code runs inside numba or llvmlite (any frame of the stack)."""
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.split(".", 1)[0] in ("numba", "llvmlite"):
            return True
        frame = frame.f_back
    return False


def _alarm(signum, frame):
    lock = sys.modules.get("numba.core.compiler_lock")
    if (lock is not None and lock.global_compiler_lock.is_locked()) or _inside_numba(frame):
        # numba is compiling, loading its cache or building a typed List: an exception in
        # there leaves its state half-built for every later case of this worker ("no compiled
        # object yet"; a typed List numba can no longer unbox: "can't unbox a List as a
        # <NULL>", seen in CI), so that finishes first; the case stops as soon as it is out.
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        return
    raise CaseTimeout


def peak_rss() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) << 10 for line in status if line.startswith("VmHWM"))


def _release() -> None:
    """Give back what earlier cases freed, so this case's peak starts from the baseline.
    What survives the collection is frozen (gc.freeze: left out of every later collection):
    with numba and the kernels loaded a full collection walks ~1M long-lived objects, 82 ms a
    case, three quarters of a validate case's time; after a freeze it walks only what the
    last case made."""
    import ctypes
    import gc

    gc.collect()
    gc.freeze()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def run(runner, app, case: dict) -> dict:
    _release()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # the peak RSS from here on is this case's
    outcome = {"code": None, "timed_out": False, "exception": None, "stderr": ""}
    signal.setitimer(signal.ITIMER_REAL, case["limit"])
    try:
        result = runner.invoke(app, case["args"])
        signal.setitimer(signal.ITIMER_REAL, 0)
        outcome["code"] = result.exit_code
        outcome["stderr"] = result.stderr[-600:]
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            outcome["exception"] = "".join(traceback.format_exception(result.exception))[-1500:]
    except CaseTimeout:
        outcome["timed_out"] = True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    outcome["rss"] = peak_rss()
    return outcome


def _warm_up() -> None:
    """Import numba, set up its compiler and import the kernel modules before the first case.
    A case's limit fires SIGALRM wherever Python is, and one that lands inside numba's first
    import or its lazy compiler set-up leaves numba half-imported ("module 'numba' has no
    attribute 'core'") for every later case of this worker: on a busy 2-core machine the
    first train of a fresh process took 4-5 s wall, past the train cases' 2 s."""
    import importlib
    import pkgutil

    import numba

    import trainctl.kernels

    numba.njit(lambda x: x + 1)(1)
    for module in pkgutil.iter_modules(trainctl.kernels.__path__):
        importlib.import_module(f"trainctl.kernels.{module.name}")


def main() -> None:
    from typer.testing import CliRunner

    from trainctl.cli import app

    _warm_up()
    runner = CliRunner()
    signal.signal(signal.SIGALRM, _alarm)
    out = sys.stdout
    for line in sys.stdin:
        try:
            outcome = run(runner, app, json.loads(line))
        except CaseTimeout:  # the alarm fired just as the command returned
            outcome = {"code": None, "timed_out": True, "exception": None, "stderr": "", "rss": peak_rss()}
        out.write("@@CASE " + json.dumps(outcome) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
