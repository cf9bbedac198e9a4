"""JIT flags in one place, and trainctl's own numba cache directory.

`njit` here is the only decorator kernels use: cache=True, no fastmath (results
must be reproducible and match references), no parallel (numba threads beside a
multi-threaded BLAS oversubscribe the cores: measured 500k → 21k samples/s).
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


def _sources_digest() -> str:
    """A digest of every kernel source file. numba keys a cached function on its own file
    only, so a kernel that calls (inlines) a kernel of another file would load stale code
    after that file changed (the compiled training loop calls kernels of every file): the
    cache lives in a directory per version of the kernel sources instead."""
    import hashlib

    digest = hashlib.sha1()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode())
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


def kernel_cache() -> Path:
    """The directory numba caches trainctl's kernels in (configured on first use; no numba import)."""
    global _cache_configured
    if not _cache_configured:
        configure_cache()
        _cache_configured = True
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


JIT_OPTIONS = dict(cache=True, fastmath=False, nogil=True, error_model="numpy")


_cache_guard_installed = False
_cache_configured = False


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


def _install_cache_guard() -> None:
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
    _cache_guard_installed = True


_BLAS_MODULE = "scipy.linalg.cython_blas"


class _AttachCythonBlas:
    """A meta-path finder that waits for a later `import scipy.linalg` and, once its package
    has run, sets its `cython_blas` attribute to the module preload_cython_blas loaded, as a
    normal import would have (then it removes itself)."""

    def find_spec(self, name, path=None, target=None):
        if name != "scipy.linalg":
            return None
        import importlib.util

        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run_package = spec.loader.exec_module

        def exec_module(module):
            run_package(module)
            blas = sys.modules.get(_BLAS_MODULE)
            if blas is not None and not hasattr(module, "cython_blas"):
                module.cython_blas = blas

        spec.loader.exec_module = exec_module
        return spec


def preload_cython_blas() -> None:
    """Load scipy's `cython_blas` extension (the BLAS numba's np.dot calls; numba imports it
    by name when it first compiles or loads a kernel, and threadpoolctl must see it) without
    running `scipy/linalg/__init__.py`, which imports all of scipy.linalg and, through
    scipy's array-API layer, numpy.f2py: 0.38-0.52 s against 0.06 s for the extension alone
    (2 cores under load). numba finds the module in sys.modules; a later `import scipy.linalg`
    runs the package as usual and gets its `cython_blas` attribute (_AttachCythonBlas).
    Anything unexpected (no scipy, another layout) leaves the normal import to happen."""
    if _BLAS_MODULE in sys.modules or "scipy.linalg" in sys.modules:
        return
    import importlib.machinery
    import importlib.util

    try:
        scipy_spec = importlib.util.find_spec("scipy")
        if scipy_spec is None or not scipy_spec.submodule_search_locations:
            return
        folder = Path(list(scipy_spec.submodule_search_locations)[0]) / "linalg"
        path = next((folder / f"cython_blas{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES
                     if (folder / f"cython_blas{suffix}").is_file()), None)
        if path is None:
            return
        loader = importlib.machinery.ExtensionFileLoader(_BLAS_MODULE, str(path))
        spec = importlib.util.spec_from_file_location(_BLAS_MODULE, str(path), loader=loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[_BLAS_MODULE] = module
        try:
            loader.exec_module(module)
        except BaseException:
            sys.modules.pop(_BLAS_MODULE, None)
            raise
    except Exception:  # the ordinary import (numba's, threadpoolctl's) still works
        return
    sys.meta_path.insert(0, _AttachCythonBlas())


def njit(*args, **overrides):
    """numba.njit with trainctl's flags; use bare (`@njit`) or with overrides (`@njit(inline="always")`).
    The first call points numba's cache at trainctl's directory (before numba is imported)
    and loads scipy's cython_blas cheaply (preload_cython_blas)."""
    global _cache_configured
    if not _cache_configured:
        configure_cache()
        preload_cython_blas()
        _cache_configured = True
    import numba

    _install_cache_guard()

    options = {**JIT_OPTIONS, **overrides}
    if args and callable(args[0]):
        return numba.njit(**options)(_named_by_variant(args[0]))
    decorate = numba.njit(*args, **options)
    return lambda function: decorate(_named_by_variant(function))


def _named_by_variant(function):
    """A kernel a factory makes once per constant (a fixed activation or loss code, a fast-path
    flag: `dense_kernels_for`, `loss_rows_for`, the recurrent loops) gets the constants in its
    name. numba names compiled code by the Python name and a per-process counter, so two
    variants compiled by two processes and loaded from the cache into a third could carry the
    same symbol, and a caller would run the wrong one: a Python-path fit (fixed codes) followed
    by a compiled-loop fit (generic codes) in one process trained with the wrong activation.
    Distinct names give distinct symbols (and cache files)."""
    cells = function.__closure__ or ()
    values = [cell.cell_contents for cell in cells]
    if values and all(isinstance(value, (bool, int, float, str)) for value in values):
        suffix = "_".join(str(value) for value in values)
        suffix = "".join(ch if ch.isalnum() else "_" for ch in suffix.replace("-", "m"))
        function.__name__ = f"{function.__name__}__{suffix}"
        function.__qualname__ = f"{function.__qualname__}__{suffix}"
    return function
