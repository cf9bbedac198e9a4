"""Deterministic kill points for the kill-loop tests (issue 9, item 8).

`run_to_kill_point` runs the CLI through a small wrapper that patches one of the run
directory's writers to stop the process at a chosen moment and say so on a pipe; the test
then SIGKILLs it. The patch only picks the instant (nothing the process has done is changed),
so each kill is what a power cut at that instant would be, and where it lands is known by
construction instead of hoped for from a random sleep:

- "write":   inside the N-th file write (atomic writes and checkpoint files alike), with
             half of the file's bytes on disk in its temp file;
- "publish": inside the N-th checkpoint save, its files written in the temp directory,
             before the rename that makes it count (a training run's checkpoints are
             fsynced after it, by runs/checkpoints.CheckpointSyncer);
- "save":    at the N-th checkpoint, before anything of it is written: training has run
             on since the previous checkpoint, and that work is lost.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

WRAPPER = r"""
import os, runpy, sys, time
phase, occurrence, signal_fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
from trainctl.runs import atomic, checkpoints
from trainctl.train import resume
seen = 0

def reached(detail, go_on=lambda: False):
    # count a kill point; at the chosen one say so on the pipe and wait there: for the kill,
    # or (holding) until go_on()
    global seen
    seen += 1
    if seen == occurrence:
        os.write(signal_fd, f"{phase} {detail}\n".encode())
        while not go_on():  # the test kills this process now, or lets it go on
            time.sleep(0.02)

if phase == "write":
    write_fd = atomic._write_fd
    def patched_write(fd, data):
        if seen + 1 == occurrence:  # half the bytes on disk, then stop
            view = memoryview(data).cast("B")
            write_fd(fd, view[: len(view) // 2])
            os.fsync(fd)
            reached(os.readlink(f"/proc/self/fd/{fd}"))
        reached("")
        write_fd(fd, data)
    atomic._write_fd = patched_write
elif phase == "publish":
    publish = checkpoints._publish
    def patched_publish(tmp, final):
        reached(str(tmp))
        publish(tmp, final)
    checkpoints._publish = patched_publish
elif phase in ("save", "hold"):  # hold is not a kill: it waits until the test creates $KILL_POINTS_GO
    go = os.environ.get("KILL_POINTS_GO")
    go_on = (lambda: os.path.exists(go)) if phase == "hold" else (lambda: False)
    save = resume.CheckpointWriter.save
    def patched_save(self, tag, *args, **kwargs):
        reached(tag, go_on)
        return save(self, tag, *args, **kwargs)
    resume.CheckpointWriter.save = patched_save
else:
    raise SystemExit(f"unknown kill point {phase!r}")
sys.argv = ["trainctl", *sys.argv[4:]]
runpy.run_module("trainctl", run_name="__main__")
"""

PHASES = ("write", "publish", "save")


@dataclass
class Attempt:
    killed: bool  # the kill point was reached and the process SIGKILLed there
    detail: str  # the temp file, temp checkpoint dir or checkpoint tag it was stopped at
    returncode: int
    stderr: str


def _launch(phase: str, occurrence: int, args: list[str], env: dict, stdout) -> tuple[subprocess.Popen, int]:
    """Start `trainctl *args` under the wrapper, stopping at the `occurrence`-th `phase` point;
    returns the process and the read end of the pipe it reports that point on."""
    read_end, write_end = os.pipe()
    try:
        process = subprocess.Popen([sys.executable, "-c", WRAPPER, phase, str(occurrence), str(write_end), *args],
                                   stdout=stdout, stderr=subprocess.PIPE, text=True, env=env, pass_fds=(write_end,))
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)  # the child holds the only write end: EOF when it exits
    return process, read_end


def _report(read_end: int, timeout: float) -> bytes | None:
    """The child's line on the pipe once it is at its point; what came before EOF when it
    exited without reaching it; None when neither happened within `timeout`."""
    message = b""
    deadline = time.monotonic() + timeout
    while not message.endswith(b"\n"):
        ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return None
        chunk = os.read(read_end, 4096)
        if not chunk:
            break  # exited before the point
        message += chunk
    return message


def run_to_kill_point(args: list[str], phase: str, occurrence: int, env: dict, timeout: float = 120) -> Attempt:
    """Run `trainctl *args` until the `occurrence`-th `phase` point, then SIGKILL it there.
    A run that finishes (or fails) before reaching it is not killed."""
    assert phase in PHASES, phase
    process, read_end = _launch(phase, occurrence, args, env, subprocess.DEVNULL)
    try:
        message = _report(read_end, timeout)
        if message is None:
            process.kill()
            raise AssertionError(f"{phase} #{occurrence} neither reached nor finished in {timeout}s")
        killed = message.endswith(b"\n")
        if killed:
            process.kill()
        _, stderr = process.communicate(timeout=timeout)
    finally:
        os.close(read_end)
    detail = message.decode().strip().partition(" ")[2]
    return Attempt(killed, detail, process.returncode, stderr)


def start_held(args: list[str], go: Path, env: dict, occurrence: int = 1, timeout: float = 120) -> subprocess.Popen:
    """Start `trainctl *args` and return once it waits at its `occurrence`-th checkpoint (alive,
    its run directory locked, mid-training) — it goes on when the test creates `go`."""
    process, read_end = _launch("hold", occurrence, args, {**env, "KILL_POINTS_GO": str(go)}, subprocess.PIPE)
    try:
        message = _report(read_end, timeout)
    finally:
        os.close(read_end)
    if not (message or b"").startswith(b"hold "):
        process.kill()
        raise AssertionError(f"checkpoint #{occurrence} not reached in {timeout}s: {process.communicate()[1]}")
    return process


def assert_inside_the_write(phase: str, detail: str) -> None:
    """What a kill at `phase` must have left: a half-written temp file, or a complete temp
    checkpoint directory that was never renamed into place."""
    if phase == "write":
        path = Path(detail)
        assert path.name.startswith(".tmp-") or path.parent.name.startswith(".tmp-"), detail
        assert path.exists(), f"the half-written temp file {detail} is not on disk"
    elif phase == "publish":
        assert Path(detail).name.startswith(".tmp-") and (Path(detail) / "manifest.json").exists(), detail


def kill_loop(schedule: list[tuple[str, int]], fresh: list[str], resume: list[str], out: Path, env: dict) -> list[str]:
    """`fresh` and `resume` are CLI arguments (after `trainctl`). Kill the run at each (phase, occurrence) of `schedule` in turn — restarting fresh while
    there is no run directory yet, resuming after — then let it finish. Returns the phases
    at which kills landed; each is checked to be where the schedule put it."""
    import shutil

    landed = []
    for phase, occurrence in schedule:
        if not (out / "config.yaml").exists():  # killed before the run directory was set up
            shutil.rmtree(out, ignore_errors=True)
            args = fresh
        else:
            args = resume
        attempt = run_to_kill_point(args, phase, occurrence, env)
        assert "Traceback" not in attempt.stderr, attempt.stderr
        if not attempt.killed:
            assert attempt.returncode == 0, attempt.stderr
            return landed  # finished before this kill point: nothing left to interrupt
        assert_inside_the_write(phase, attempt.detail)
        landed.append(phase)
    args = resume if (out / "config.yaml").exists() else fresh
    final = subprocess.run([sys.executable, "-m", "trainctl", *args], capture_output=True, text=True, env=env, timeout=300)
    assert final.returncode == 0, final.stderr
    return landed
