"""Start-up and compile time of `trainctl train`, whole process, beside the imports it cannot avoid.

    python bench/startup_time.py                 # 5 warm and 3 cold runs of each row
    python bench/startup_time.py --warm 9 --cold 1 --no-torch

Rows: `trainctl train configs/linear_regression.yaml` and the README's quickstart command
(`trainctl train configs/quickstart.yaml`), each cold (a fresh, empty kernel cache per run:
TRAINCTL_CACHE_DIR points at a new directory, so every kernel compiles) and warm (a cache
filled by one untimed run first); for context `python -c pass`, `"import numpy"`, `"import numba"`
and, as a peer, `"import torch"` (skipped when torch is absent). Each run is a fresh process
with its output piped away; the table gives the median and the best of wall seconds and of
CPU seconds (user + sys of the child, from getrusage), which are steadier than wall time
on a shared machine. Bytecode caches are allowed (PYTHONDONTWRITEBYTECODE is dropped), as
for an installed package.
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


def _environment(cache: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONDONTWRITEBYTECODE", "NUMBA_CACHE_DIR")}
    env["TRAINCTL_CACHE_DIR"] = str(cache)
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


def measure(command: list[str], runs: int, *, cold: bool, scratch: Path) -> list[tuple[float, float]]:
    """`runs` timed runs; cold: each in a new empty kernel cache; warm: one untimed run fills it."""
    results = []
    warm_cache = scratch / "warm-cache"
    if not cold:
        timed(command, _environment(warm_cache), REPO)
    for index in range(runs):
        cache = scratch / f"cold-{index}" if cold else warm_cache
        if cold:
            shutil.rmtree(cache, ignore_errors=True)
        results.append(timed(command, _environment(cache), REPO))
        if cold:
            shutil.rmtree(cache, ignore_errors=True)
    return results


def _row(name: str, results: list[tuple[float, float]]) -> str:
    walls, cpus = [r[0] for r in results], [r[1] for r in results]
    return (f"| {name:<44} | {len(results):>4} | {statistics.median(walls):>8.2f} | {min(walls):>8.2f} "
            f"| {statistics.median(cpus):>8.2f} | {min(cpus):>8.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=5, help="timed warm runs per row")
    parser.add_argument("--cold", type=int, default=3, help="timed cold runs per row (0: none)")
    parser.add_argument("--no-torch", action="store_true", help="skip the `import torch` row")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="trainctl-startup-") as scratch_name:
        scratch = Path(scratch_name)
        runs_root = scratch / "runs"
        trainings = {
            "train linear_regression.yaml": [*TRAINCTL, "train", "configs/linear_regression.yaml",
                                             "--runs-root", str(runs_root)],
            "train quickstart.yaml (README)": [*TRAINCTL, "train", "configs/quickstart.yaml",
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
            timed(command, _environment(scratch / "warm-cache"), REPO)  # the page cache, bytecode
            print(_row(name, measure(command, args.warm, cold=False, scratch=scratch)), flush=True)
        for name, command in trainings.items():
            print(_row(f"{name}, warm", measure(command, args.warm, cold=False, scratch=scratch)), flush=True)
            if args.cold:
                print(_row(f"{name}, cold", measure(command, args.cold, cold=True, scratch=scratch)), flush=True)


if __name__ == "__main__":
    main()
