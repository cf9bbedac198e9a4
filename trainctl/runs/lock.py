"""One writer per run directory: `train` and `train --resume` hold a lock on the directory
for the life of the process (filelock, on RUN_DIR/.lock); a second process is told which
process is writing it, instead of racing it for the files."""

from __future__ import annotations

import os
from pathlib import Path

from trainctl.errors import ArtifactError
from trainctl.runs.files import LOCK_FILE

OWNER_FILE = LOCK_FILE + ".owner"  # the holder's PID (the lock file itself is filelock's)
_held: dict[str, object] = {}  # path -> FileLock, kept for the life of the process


def lock_run_dir(path: str | os.PathLike) -> None:
    """Lock `path` for this process, or ArtifactError "RUN_DIR is being written by process
    PID". Idempotent within one process; released when the process exits."""
    from filelock import FileLock, Timeout

    path = Path(path)
    key = str(path.resolve())
    if key in _held:
        return
    lock = FileLock(str(path / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ArtifactError(f"{path} is being written by process {_owner(path)}; wait for it to finish "
                            "(or use another --out)") from None
    except OSError as error:
        raise ArtifactError(f"cannot write {path}: {error.strerror or error}") from None
    _held[key] = lock
    owner = path / OWNER_FILE
    tmp = path / f"{OWNER_FILE}.{os.getpid()}"
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, owner)


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
