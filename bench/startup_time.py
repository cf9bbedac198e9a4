"""Start-up and compile time of `trainctl train`, whole process, beside the imports it cannot avoid.

    python bench/startup_time.py                 # 5 warm and 3 cold runs of each row
    python bench/startup_time.py --warm 9 --cold 1 --no-torch
    python bench/startup_time.py --phases              # where one warm and one cold run spend it
    python bench/startup_time.py --phases configs/quickstart.yaml
    python bench/startup_time.py --warm 12 --cold 2 --no-torch --baseline-tree ../old-checkout

Rows: `trainctl train configs/linear_regression.yaml` and the README's quickstart command
(`trainctl train configs/quickstart.yaml`), each cold (a fresh, empty kernel cache per run:
TRAINCTL_CACHE_DIR points at a new directory, so every kernel compiles) and warm (a cache
filled by one untimed run first); for context `python -c pass`, `"import numpy"`, `"import numba"`
and, as a peer, `"import torch"` (skipped when torch is absent). Each run is a fresh process
with its output piped away; the table gives the median and the best of wall seconds and of
CPU seconds (user + sys of the child, from getrusage), which are steadier than wall time
on a shared machine. Bytecode caches are allowed (PYTHONDONTWRITEBYTECODE is dropped), as
for an installed package.

--phases runs `trainctl train configs/linear_regression.yaml` (or the config given) once warm and once cold, each in a
fresh process that times itself (CPU seconds, inclusive: a phase holds the imports it triggers)
at the stage boundaries: the CLI's import, the config, the model/data/callbacks, the run files,
the fit, the saved model, and numba's part: its import, the kernels decorated, each cached
kernel loaded and each function compiled.

--baseline-tree DIR adds a "before" row under each `trainctl train` row: the same command run
from another checkout (PYTHONPATH=DIR, its own kernel caches), alternating run by run with
this tree's, so both see the same load.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TRAINCTL = [PYTHON, "-m", "trainctl"]


def _environment(cache: Path, tree: Path = REPO) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONDONTWRITEBYTECODE", "NUMBA_CACHE_DIR")}
    env["TRAINCTL_CACHE_DIR"] = str(cache)
    env["PYTHONPATH"] = str(tree)  # the tree's trainctl, whatever the venv has installed
    return env


def timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of `command`; raises if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(command: list[str], runs: int, *, cold: bool, scratch: Path,
            trees: tuple[Path, ...] = (REPO,)) -> list[list[tuple[float, float]]]:
    """`runs` timed runs of `command` from each tree, alternating; cold: each in a new empty
    kernel cache; warm: one untimed run per tree fills its cache. One list per tree."""
    results: list[list[tuple[float, float]]] = [[] for _ in trees]
    warm_caches = [scratch / f"warm-cache-{index}" for index in range(len(trees))]
    if not cold:
        for tree, cache in zip(trees, warm_caches):
            timed(command, _environment(cache, tree), scratch)
    for index in range(runs):
        for which, tree in enumerate(trees):
            cache = scratch / f"cold-{index}-{which}" if cold else warm_caches[which]
            if cold:
                shutil.rmtree(cache, ignore_errors=True)
            # run from the scratch directory: `python -m` puts the working directory ahead of
            # PYTHONPATH, and from the repository every tree would import the repository's trainctl
            results[which].append(timed(command, _environment(cache, tree), scratch))
            if cold:
                shutil.rmtree(cache, ignore_errors=True)
    return results


def _row(name: str, results: list[tuple[float, float]]) -> str:
    walls, cpus = [r[0] for r in results], [r[1] for r in results]
    return (f"| {name:<44} | {len(results):>4} | {statistics.median(walls):>8.2f} | {min(walls):>8.2f} "
            f"| {statistics.median(cpus):>8.2f} | {min(cpus):>8.2f} |")


# The child side of --phases: wrap the stage functions (process CPU time, inclusive), run the CLI.
_PHASES_CHILD = r"""
import collections, functools, importlib.abc, resource, sys, time
clock = time.process_time
seconds, calls, kernels = collections.defaultdict(float), collections.Counter(), []

def timed(owner, name, label):
    function = getattr(owner, name)
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        start = clock()
        try:
            return function(*args, **kwargs)
        finally:
            seconds[label] += clock() - start
            calls[label] += 1
    setattr(owner, name, wrapper)

class TimedImport(importlib.abc.MetaPathFinder):
    names = {"numpy", "numba", "pydantic", "typer", "rich"}
    def find_spec(self, fullname, path, target=None):
        if fullname not in self.names:
            return None
        self.names.discard(fullname)
        spec = importlib.util.find_spec(fullname)
        run = spec.loader.exec_module
        def exec_module(module):
            start = clock()
            try:
                run(module)
            finally:
                seconds[f"import {fullname}"] += clock() - start
                calls[f"import {fullname}"] += 1
        spec.loader.exec_module = exec_module
        return spec

import importlib.util
sys.meta_path.insert(0, TimedImport())
import trainctl.jit.cache as cache, trainctl.jit.decorator as decorator
timed(decorator, "njit", "kernels decorated (njit; the first one imports numba)")
load = cache._load_without_refresh
def loading(entry, signature, context, original):
    start = clock()
    try:
        return load(entry, signature, context, original)
    finally:
        function = entry._py_func
        kernels.append(("load", clock() - start, f"{function.__module__.replace('trainctl.', '')}.{function.__qualname__}"))
cache._load_without_refresh = loading
guard = cache.install_cache_guard
def compile_events():
    guard()
    from numba.core import event
    class Compiles(event.Listener):  # inclusive: a kernel's time holds the callees it compiles
        started = {}
        def on_start(self, ev):
            self.started[id(ev.data["dispatcher"]), str(ev.data["args"])] = (clock(), len(self.started))
        def on_end(self, ev):
            begun, depth = self.started.pop((id(ev.data["dispatcher"]), str(ev.data["args"])), (clock(), 0))
            function = ev.data["dispatcher"].py_func
            kernels.append(("compile" if depth == 0 else "compile (nested)", clock() - begun,
                            f"{function.__module__.replace('trainctl.', '')}.{function.__qualname__}"))
    if not getattr(cache, "_phases_listening", False):
        event.register("numba:compile", Compiles())
        cache._phases_listening = True
decorator.install_cache_guard = compile_events
start = clock()
import trainctl.cli
seconds["import trainctl.cli (typer, the commands)"] += clock() - start
import trainctl.config, trainctl.runs.train as run_train, trainctl.runs.build as build, trainctl.train.loop as loop
timed(trainctl.config, "load_config", "config: read + validate")
timed(run_train, "_prepare", "model, data, callbacks (_prepare)")
timed(run_train, "_write_run_files", "run files before training")
timed(run_train, "save_model_files", "model files after training")
timed(loop, "fit", "fit (the loop, kernels loaded or compiled)")
cli_app = sys.modules["trainctl.cli.app"]
sys.argv = ["trainctl", *sys.argv[1:]]
start = clock()
try:
    cli_app.app(prog_name="trainctl")
except SystemExit:
    pass
seconds["the command (typer parse .. render)"] += clock() - start
usage = resource.getrusage(resource.RUSAGE_SELF)
print(f"| whole process (user + sys) | | {usage.ru_utime + usage.ru_stime:.3f} |")
for label, value in sorted(seconds.items(), key=lambda item: -item[1]):
    print(f"| {label} | {calls[label]} | {value:.3f} |")
for kind, shown in (("load", "kernels loaded from the cache"), ("compile", "kernels compiled (top level)"),
                    ("compile (nested)", "of which callees compiled")):
    done = [k for k in kernels if k[0] == kind]
    if done:
        print(f"| {shown}: {len(done)} | | {sum(k[1] for k in done):.3f} |")
        for _, value, name in sorted(done, key=lambda k: -k[1])[:12]:
            print(f"| &nbsp;&nbsp;{name} | | {value:.3f} |")
"""


def phases(scratch: Path, config: str) -> None:
    """One warm and one cold run of `trainctl train config`, each timing its own stages."""
    command = [PYTHON, "-c", _PHASES_CHILD, "train", config,
               "--runs-root", str(scratch / "runs")]
    warm = scratch / "phases-cache"
    timed([*TRAINCTL, "train", config, "--runs-root", str(scratch / "runs")],
          _environment(warm), REPO)
    for name, cache in (("warm", warm), ("cold", scratch / "phases-cold")):
        done = subprocess.run(command, env=_environment(cache), cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"phases ({name}) failed:\n{done.stderr[-2000:]}")
        print(f"\n{name}: train {config} (CPU seconds, inclusive)\n| phase | calls | CPU s |\n|---|---|---|")
        print("\n".join(line for line in done.stdout.splitlines() if line.startswith("|")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=5, help="timed warm runs per row")
    parser.add_argument("--cold", type=int, default=3, help="timed cold runs per row (0: none)")
    parser.add_argument("--no-torch", action="store_true", help="skip the `import torch` row")
    parser.add_argument("--baseline-tree", type=Path, metavar="DIR",
                        help="also run the train rows from this checkout, alternating (a 'before' row each)")
    parser.add_argument("--phases", nargs="?", const="configs/linear_regression.yaml", metavar="CONFIG",
                        help="only the per-stage breakdown of one warm and one cold run (default: linear regression)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="trainctl-startup-") as scratch_name:
        scratch = Path(scratch_name)
        if args.phases:
            phases(scratch, args.phases)
            return
        runs_root = scratch / "runs"
        trainings = {
            "train linear_regression.yaml": [*TRAINCTL, "train", str(REPO / "configs/linear_regression.yaml"),
                                             "--runs-root", str(runs_root)],
            "train quickstart.yaml (README)": [*TRAINCTL, "train", str(REPO / "configs/quickstart.yaml"),
                                               "--runs-root", str(runs_root)],
        }
        imports = {"python -c pass": [PYTHON, "-c", "pass"]}
        imports.update({f"python -c 'import {module}'": [PYTHON, "-c", f"import {module}"]
                        for module in ("numpy", "numba", "torch")})
        if args.no_torch or subprocess.run([PYTHON, "-c", "import torch"], capture_output=True).returncode != 0:
            imports.pop("python -c 'import torch'")
        imports["trainctl --help"] = [*TRAINCTL, "--help"]

        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print("| command | runs | wall med | wall min | CPU med | CPU min |")
        print("|---|---|---|---|---|---|")
        for name, command in imports.items():
            timed(command, _environment(scratch / "warm-cache-0"), REPO)  # the page cache, bytecode
            print(_row(name, measure(command, args.warm, cold=False, scratch=scratch)[0]), flush=True)
        trees = (REPO,) if args.baseline_tree is None else (REPO, args.baseline_tree.resolve())
        for name, command in trainings.items():
            for kind, runs in (("warm", args.warm), ("cold", args.cold)):
                if not runs:
                    continue
                results = measure(command, runs, cold=kind == "cold", scratch=scratch, trees=trees)
                print(_row(f"{name}, {kind}", results[0]), flush=True)
                if len(results) > 1:
                    print(_row(f"&nbsp;&nbsp;before ({args.baseline_tree.name}), {kind}", results[1]), flush=True)


if __name__ == "__main__":
    main()
