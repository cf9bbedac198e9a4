"""trainctl's numba cache: where it lives (one directory per version of the kernel sources),
whether it can be trusted (numba unpickles its index files), the marks of what is compiled, and
a loader that turns a damaged entry into a recompile. Also the one-time preparation of numba
(`prepare_numba`) that the first `njit` and the first `kernel_cache()` run.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path


def cache_dir() -> Path:
    """$TRAINCTL_CACHE_DIR, else $XDG_CACHE_HOME/trainctl/numba, else ~/.cache/trainctl/numba."""
    explicit = os.environ.get("TRAINCTL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "trainctl" / "numba"


_PACKAGE = Path(__file__).resolve().parents[1]  # trainctl/
_COMPILED_SOURCES = ("kernels", "jit")  # what compiled code is made of: the kernels and this plumbing


def _sources_digest() -> str:
    """A digest of every file compiled code is made of: the kernels, and this package (the
    intrinsics, the gemm binding, the fpu fallback, the njit flags). numba keys a cached
    function on its own file only, so a kernel that calls (inlines) a kernel of another file
    would load stale code after that file changed (the compiled training loop calls kernels of
    every file): the cache lives in a directory per version of these sources instead."""
    import hashlib

    digest = hashlib.sha1()
    for folder in _COMPILED_SOURCES:
        for source in sorted((_PACKAGE / folder).glob("*.py")):
            digest.update(f"{folder}/{source.name}".encode())
            digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def untrusted_reason(path: Path) -> str | None:
    """Why `path` cannot be trusted as the kernel cache, or None when it can.

    numba unpickles the cache's index files, so whoever can write there can run code in
    trainctl: the directory must be owned by this user and writable by no one else, and no
    directory above it may let another user swap it (writable by others without the sticky
    bit, or owned by someone other than this user or root)."""
    uid = os.getuid()
    try:
        resolved = path.resolve(strict=True)
        info = resolved.stat()
    except OSError as error:
        return f"cannot be inspected ({error.strerror or error})"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != uid:
        return f"is owned by uid {info.st_uid}, not by this user (uid {uid})"
    if info.st_mode & 0o022:
        return f"is writable by {'group and others' if info.st_mode & 0o002 else 'its group'} (mode {info.st_mode & 0o777:o})"
    for parent in resolved.parents:
        try:
            above = parent.stat()
        except OSError:
            return f"its parent {parent} cannot be inspected"
        if above.st_uid not in (uid, 0):
            return f"its parent {parent} is owned by uid {above.st_uid}"
        if above.st_mode & 0o022 and not above.st_mode & stat.S_ISVTX:
            return f"its parent {parent} is writable by others (mode {above.st_mode & 0o777:o})"
    return None


def _make_private(path: Path) -> None:
    """mkdir -p with 0700 for every level created (whatever the umask), and 0700 on the cache
    directory itself when it is ours."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for level in reversed(missing):
        try:
            level.mkdir(mode=0o700)
        except FileExistsError:
            pass
        os.chmod(level, 0o700)  # mkdir's mode is masked by the umask (000 makes it 0777)


_fallback: Path | None = None


def _private_fallback() -> Path:
    """A fresh cache of this process's own (mkdtemp: 0700), removed at exit."""
    global _fallback
    if _fallback is None:
        import atexit
        import tempfile

        _fallback = Path(tempfile.mkdtemp(prefix="trainctl-kernels-"))
        atexit.register(shutil.rmtree, _fallback, True)
    return _fallback


def configure_cache() -> None:
    """Point numba at our cache dir (unless the user chose one with NUMBA_CACHE_DIR), created
    0700. A directory that is not private to this user (see `untrusted_reason`) is never
    used: numba gets a fresh private one instead, with a one-line warning. numba reads the
    variable once, at import: if something imported numba first, its config is set
    directly, before any trainctl kernel is decorated."""
    import warnings

    chosen = Path(os.environ.get("NUMBA_CACHE_DIR") or cache_dir() / f"kernels-{_sources_digest()}")
    try:
        _make_private(chosen)
    except OSError:
        pass  # reported below as untrusted (cannot be inspected) or unusable
    reason = untrusted_reason(chosen)
    if reason is not None:
        fallback = _private_fallback()
        warnings.warn(f"kernel cache {chosen} {reason}; not using it (numba would unpickle its files), "
                      f"compiling into a fresh private cache {fallback}", RuntimeWarning, stacklevel=2)
        chosen = fallback
    os.environ["NUMBA_CACHE_DIR"] = str(chosen)
    if "numba" in sys.modules:
        from numba.core import config as numba_config

        numba_config.CACHE_DIR = str(chosen)


_prepared = False


def prepare_numba() -> None:
    """Once per process, before numba is imported or loads a kernel: point its cache at
    trainctl's directory and load scipy's cython_blas cheaply (cython_blas.py). The first
    `njit` and the first `kernel_cache()` both run it: when kernel_cache() configured the
    cache alone, a kernel decorated after it skipped the cheap load and numba imported all
    of scipy.linalg (~0.4 s)."""
    global _prepared
    if not _prepared:
        from trainctl.jit.cython_blas import preload_cython_blas

        configure_cache()
        preload_cython_blas()
        _prepared = True


def kernel_cache() -> Path:
    """The directory numba caches trainctl's kernels in (prepared on first use; no numba import)."""
    prepare_numba()
    return Path(os.environ["NUMBA_CACHE_DIR"])


def _compiled_mark(key: str) -> Path:
    return kernel_cache() / "compiled" / key


def is_marked_compiled(key: str) -> bool:
    """Whether `mark_compiled(key)` ran with this cache (and this version of the kernel sources:
    the cache directory is per version), i.e. loading the kernel costs a load, not a compile."""
    return _compiled_mark(key).is_file()


def mark_compiled(key: str) -> None:
    """Record that the kernel `key` (a name and its specialisation) is in the cache now."""
    mark = _compiled_mark(key)
    try:
        mark.parent.mkdir(mode=0o700, exist_ok=True)
        mark.touch()
    except OSError:
        pass  # a read-only cache: the next process decides as if it were not compiled


def clear_cache() -> None:
    """Delete every cached kernel (used when the cache is found damaged)."""
    shutil.rmtree(os.environ.get("NUMBA_CACHE_DIR", cache_dir()), ignore_errors=True)
    configure_cache()


_cache_guard_installed = False


def _owned_and_private(path: str) -> bool:
    """A cache file that is not this user's own (planted before the directory was made
    private) is never unpickled; missing files are fine."""
    try:
        return os.stat(path).st_uid == os.getuid()
    except OSError:
        return True


def _load_without_refresh(cache, sig, target_context, original):
    """numba's Cache.load_overload without its `target_context.refresh()`.

    refresh() installs every typing and lowering registry numba has (it imports
    numba.cpython.*, numba.np.*, numba.typed.*, cffi's C parser, ...: ~0.3 s of every warm
    `trainctl train`, the largest single piece after the imports) — what compiling needs, not
    what loading compiled machine code needs. Loading needs numba's runtime (NRT) symbols,
    which `rtsys.initialize` registers, as refresh would first. Any compile that follows runs
    numba's compiler, which refreshes the context itself. Falls back to numba's own method
    when its internals are not as expected."""
    load = getattr(cache, "_load_overload", None)
    guard = getattr(cache, "_guard_against_spurious_io_errors", None)
    if load is None or guard is None:
        return original(cache, sig, target_context)
    from numba.core.runtime import rtsys

    rtsys.initialize(target_context)
    with guard():
        return load(sig, target_context)
    return None  # the guard swallowed a spurious I/O error (Windows), as numba's method returns


def install_cache_guard() -> None:
    """A damaged cache entry (truncated or garbage index/data file) must cost a recompile,
    never a crash: numba raises from inside its loader, so loading is wrapped once here.
    The damaged entry's index is reset and numba compiles and saves a fresh one."""
    global _cache_guard_installed
    if _cache_guard_installed:
        return
    import warnings

    from numba.core import caching

    original = caching.Cache.load_overload

    def load_overload_or_recompile(self, sig, target_context):
        index = getattr(getattr(self, "_cache_file", None), "_index_path", None)
        if index is not None and not _owned_and_private(index):
            warnings.warn(f"trainctl: kernel cache file {index} is not this user's own; recompiling",
                          RuntimeWarning, stacklevel=2)
            try:  # numba re-reads the index when it saves: remove it (the directory is ours)
                os.unlink(index)
            except OSError:
                self._trainctl_no_save = True
            return None
        try:
            return _load_without_refresh(self, sig, target_context, original)
        except Exception as error:  # any damage: unpickling errors, bad magic, short reads
            warnings.warn(f"trainctl: damaged kernel cache entry ({type(error).__name__}); recompiling",
                          RuntimeWarning, stacklevel=2)
            try:
                self.flush()
            except OSError:
                pass  # an unwritable cache only costs compile time
            return None

    original_save = caching.Cache.save_overload

    def save_overload_unless_untrusted(self, sig, data):
        if getattr(self, "_trainctl_no_save", False):
            return None
        index = getattr(getattr(self, "_cache_file", None), "_index_path", None)
        if index is None:
            return original_save(self, sig, data)
        from filelock import FileLock

        # numba's save reads the function's index, adds this overload, writes the index back and
        # then the data file it named, unlocked: two processes saving two overloads of one
        # function at once (test workers, experiment workers) both pick data file 1, and the
        # index keeps one overload while file 1 may hold the other's code (numba/numba#10128;
        # its maintainers propose a file lock). One saver per function at a time.
        self._impl.locator.ensure_cache_path()
        with FileLock(index + ".lock"):
            return original_save(self, sig, data)

    caching.Cache.load_overload = load_overload_or_recompile
    caching.Cache.save_overload = save_overload_unless_untrusted
    _serialise_compiles()
    _cache_guard_installed = True


def _serialise_compiles() -> None:
    """One process compiles a kernel's signature at a time; the others wait and load its cache
    entry. Without this, processes starting on an empty cache together (an experiment's
    workers, the test suite's two workers) each compiled the same loops: 51 CPU-s of one cold
    suite run went to signatures a second process compiled again (the spatial loop's layer
    dispatch alone, 8 s, twice). numba's compiler lock is taken first, so a process's own
    threads never wait on each other's file lock; across processes the locks are taken along
    the call graph (a caller's, then its callees'), which has no cycles, so no two processes
    can wait on each other."""
    import hashlib

    from filelock import FileLock
    from numba.core import sigutils
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.dispatcher import Dispatcher

    original = Dispatcher.compile

    def compile_once_across_processes(self, sig):
        index = getattr(getattr(getattr(self, "_cache", None), "_cache_file", None), "_index_path", None)
        if index is None:  # no disk cache (cache=False): nothing to share
            return original(self, sig)
        args, _ = sigutils.normalize_signature(sig)
        existing = self.overloads.get(tuple(args))
        if existing is not None:  # the typing of every call asks again: no lock for that
            return existing.entry_point
        signature = hashlib.sha1(str(tuple(args)).encode()).hexdigest()[:16]  # another signature compiles alongside
        with global_compiler_lock:
            try:
                self._cache._impl.locator.ensure_cache_path()
                lock = FileLock(f"{index}.{signature}.compiling")
                lock.acquire()
            except OSError:  # a read-only cache: compile unshared
                return original(self, sig)
            try:
                return original(self, sig)
            finally:
                lock.release()

    Dispatcher.compile = compile_once_across_processes
