"""One writer per run directory: `train` and `train --resume` hold a lock on the directory
for the life of the process (on RUN_DIR/.lock); a second process is told which process is
writing it, instead of racing it for the files.

On POSIX the lock is the kernel's `flock` on the open file, which is all this needs: held
while the process lives, released by the kernel when it dies, however it dies. Elsewhere it
is filelock's. filelock 4's import (its async and ownership layers: secrets, hmac, hashlib)
cost every warm `trainctl train` 9 ms, ~2% of it, for the call below."""

from __future__ import annotations

import os
from pathlib import Path

from trainctl.errors import ArtifactError
from trainctl.runs.files import LOCK_FILE

OWNER_FILE = LOCK_FILE + ".owner"  # the holder's PID (the lock file itself only carries the lock)
_held: dict[str, object] = {}  # path -> held lock, kept for the life of the process


def lock_run_dir(path: str | os.PathLike) -> None:
    """Lock `path` for this process, or ArtifactError "RUN_DIR is being written by process
    PID". Idempotent within one process; released when the process exits."""
    path = Path(path)
    key = str(path.resolve())
    if key in _held:
        return
    try:
        lock = _acquire(path / LOCK_FILE)
    except OSError as error:
        raise ArtifactError(f"cannot write {path}: {error.strerror or error}") from None
    if lock is None:
        raise ArtifactError(f"{path} is being written by process {_owner(path)}; wait for it to finish "
                            "(or use another --out)")
    _held[key] = lock
    owner = path / OWNER_FILE
    tmp = path / f"{OWNER_FILE}.{os.getpid()}"
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, owner)


class _FlockLock:
    """An exclusive flock on an open file descriptor: filelock's acquire/release, on POSIX."""

    def __init__(self, descriptor: int):
        self._descriptor = descriptor

    def release(self) -> None:
        os.close(self._descriptor)  # closing the last descriptor drops the flock


def _acquire(lock_file: Path):
    """The held lock on `lock_file`, or None when another process holds it."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        from filelock import FileLock, Timeout

        lock = FileLock(str(lock_file), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return None
        return lock
    descriptor = os.open(lock_file, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    except OSError:
        os.close(descriptor)
        raise
    return _FlockLock(descriptor)


def unlock_run_dir(path: str | os.PathLike) -> None:
    """Release the lock taken by `lock_run_dir` and remove its files, so a finished run
    directory holds only run files. (A process that fails without getting here loses the
    lock when it exits; the files it leaves are harmless.)"""
    path = Path(path)
    lock = _held.pop(str(path.resolve()), None)
    if lock is None:
        return
    for name in (OWNER_FILE, LOCK_FILE):  # owner first: a reader then says "(unknown)", never a stale PID
        try:
            (path / name).unlink()
        except OSError:
            pass
    lock.release()


def _owner(path: Path) -> str:
    try:
        text = (path / OWNER_FILE).read_text().strip()
    except OSError:
        return "(unknown)"
    return text if text.isdigit() else "(unknown)"


def lock_names() -> tuple[str, str]:
    """File names the lock adds to a run directory (not run files)."""
    return LOCK_FILE, OWNER_FILE
