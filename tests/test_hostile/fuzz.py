"""A small fuzzer of hostile inputs through the real CLI: counts clean errors and tracebacks.

Run from the repository root:  .venv/bin/python tests/test_hostile/fuzz.py [--jobs 3]

Each case is one `trainctl` subprocess (validate, summary, train, predict, evaluate) on a
malformed config, override, data file or run directory. A case is `clean` when it exits 1
with one stderr line and no traceback, `ok` when it exits 0 (the input was acceptable),
`traceback` otherwise; any case whose peak RSS passes 1 GiB is a `blowup` too. Prints
the table the issue asks for and exits 1 if any case is not clean or ok.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere
from tests.fixtures import teacher_config, teacher_source  # noqa: E402

TRAINCTL = [str(Path(sys.executable).with_name("trainctl"))]
GIB = 1 << 30

BASE = teacher_config(name="fuzz", layers=("{type: dropout, rate: 0.1}",), data=("validation_split: 0.25",))
SIZES = ["10000000", "1000000000000", str(2 ** 63), "1" + "0" * 30, "1" + "0" * 1000, "true", "'16'"]
INT_KEYS = [
    "model.layers.0.units", "model.layers.2.units", "model.layers.0.input_shape.0", "fit.batch_size",
    "fit.epochs", "fit.validation_batch_size", "fit.steps_per_epoch", "fit.validation_freq",
    "fit.initial_epoch", "seed", "data.train.n_samples", "data.train.n_features", "data.train.n_classes",
    "data.train.hidden", "model.layers.1.seed",
]


def csv_text(rows=8):
    return "a,b,c,d,label\n" + "".join(f"{i},{i+1},{i+2},{i+3},{'xyz'[i % 3]}\n" for i in range(rows))


def make_files(root: Path) -> dict[str, Path]:
    files = {}
    (root / "cfg.yaml").write_text(BASE)
    files["cfg"] = root / "cfg.yaml"
    (root / "good.csv").write_text(csv_text())
    (root / "latin1.csv").write_bytes(csv_text().encode() + "é,1,2,3,x\n".encode("latin-1"))
    (root / "notzip.npz").write_bytes(b"this is not a zip archive\n" * 10)
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 4), }"
    header = header + " " * (117 - len(header)) + "\n"
    (root / "lying.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 64)
    (root / "secret.txt").write_text("password=hunter2 this line is private and long " * 4 + "\n1,2\n")
    np.save(root / "x4.npy", np.zeros((8, 4), np.float32))
    return files


def cases(root: Path, run: Path) -> list[tuple[str, list[str]]]:
    cfg = str(root / "cfg.yaml")
    found = []
    for key in INT_KEYS:
        for value in SIZES:
            for command in ("validate", "summary") if key.startswith("model.") else ("validate",):
                found.append((f"{command} {key}={value[:12]}", [command, cfg, "--set", f"{key}={value}"]))
            found.append((f"train {key}={value[:12]}", ["train", cfg, "-q", "--out", str(root / "runs" / f"{key}-{len(value)}-{value[:3]}"),
                                                       "--set", f"{key}={value}"] + ([] if key == "fit.epochs" else ["--set", "fit.epochs=1"])))

    def config_case(name: str, text: str, commands=("validate", "train")):
        path = root / f"{name}.yaml"
        path.write_text(text)
        for command in commands:
            extra = ["-q", "--out", str(root / "runs" / name)] if command == "train" else []
            found.append((f"{command} {name}", [command, str(path), *extra]))

    def data(source: str) -> str:
        return BASE.replace(teacher_source(), source)

    config_case("latin1-csv", data(f"{{csv: {root}/latin1.csv, target: label}}"))
    config_case("notzip-npz", data(f"{{npz: {root}/notzip.npz}}"))
    config_case("lying-npy", data(f"{{npy: {root}/lying.npy, targets: {root}/x4.npy}}"))
    config_case("secret-csv", data(f"{{csv: {root}/secret.txt, target: label}}"))
    config_case("stream-lying-npy", data(f"{{stream: {{source: {{npy: {root}/lying.npy}}}}}}"))
    config_case("csvlogger-abs", BASE + f"callbacks: [{{type: csv_logger, filename: {root}/victim.txt}}]\n")
    config_case("csvlogger-dotdot", BASE + "callbacks: [{type: csv_logger, filename: ../../victim.txt}]\n")
    config_case("monitor-typo", BASE + "callbacks: [{type: early_stopping, monitor: val_los}]\n")
    config_case("both-spellings", BASE.replace("batch_size: 16", "batch_size: 16, batchSize: 8"))
    config_case("input-vs-data", BASE.replace("input_shape: [4]", "input_shape: [5]"))
    config_case("units-bool", BASE.replace("units: 8", "units: true"))
    config_case("units-str", BASE.replace("units: 8", "units: '16'"))
    config_case("units-huge", BASE.replace("units: 8", "units: 1000000000000"))
    config_case("units-50m", BASE.replace("units: 8", "units: 50000000"))
    for name, path in (("latin1", "latin1.csv"), ("notzip", "notzip.npz"), ("lying", "lying.npy"), ("secret", "secret.txt")):
        found.append((f"predict {name}", ["predict", str(run), "--input", str(root / path)]))
        found.append((f"evaluate {name}", ["evaluate", str(run), "--data", str(root / path)]))
    # a run directory whose model.json claims a huge layer
    lying_run = root / "lying-run"
    shutil.copytree(run, lying_run)
    model = json.loads((lying_run / "model.json").read_text())
    model["layers"][0]["units"] = 10 ** 12
    (lying_run / "model.json").write_text(json.dumps(model))
    for command in (["summary", str(lying_run)], ["predict", str(lying_run), "--input", str(root / "x4.npy")],
                    ["evaluate", str(lying_run)]):
        found.append((f"{command[0]} model.json 10^12 units", command))
    return found


def run_process(args: list[str], cwd: Path, timeout: float, env: dict | None = None) -> tuple[int | None, str, str, int]:
    """(exit code or None on timeout, stdout, stderr, peak RSS in bytes) of one command."""
    env = {**os.environ, "COLUMNS": "200", **(env or {})}
    limit = 6 * GIB  # protect the machine; a case needing more is a blow-up anyway

    # A small wrapper sets the limit and runs the command as its own child, then reports that
    # child's peak RSS: measured from this (possibly large) test process, the fork's copied
    # pages would count in the child's peak.
    report = tempfile.NamedTemporaryFile("w+", delete=False)
    report.close()
    wrapped = [sys.executable, "-c", "import os, resource, subprocess, sys; limit = int(sys.argv[1]); "
               "resource.setrlimit(resource.RLIMIT_AS, (limit, limit)); code = subprocess.call(sys.argv[3:]); "
               "open(sys.argv[2], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
               "sys.exit(code if code >= 0 else 128 - code)",
               str(limit), report.name, *args]

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(wrapped, cwd=cwd, stdout=out, stderr=err, text=True, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        code = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:  # still running: its peak so far (VmHWM), then kill it
                import psutil

                for child in psutil.Process(proc.pid).children(recursive=True):
                    try:
                        with open(f"/proc/{child.pid}/status") as status_file:
                            hwm = next(int(line.split()[1]) for line in status_file if line.startswith("VmHWM"))
                        with open(report.name, "w") as handle:
                            handle.write(str(max(hwm, int(open(report.name).read() or 0))))
                    except (OSError, StopIteration, ValueError, psutil.Error):
                        pass
                os.killpg(proc.pid, 9)  # the wrapper and the command
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        proc.returncode = code if code is not None else -9
        out.seek(0)
        err.seek(0)
        try:
            peak = int(open(report.name).read() or 0) << 10
        except ValueError:
            peak = 0
        os.unlink(report.name)
        return code, out.read(), err.read(), peak


def run_case(args: list[str], cwd: Path, timeout: float) -> dict:
    start = time.perf_counter()
    code, _, err, rss = run_process([*TRAINCTL, *args], cwd, timeout)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    if code is None:
        verdict = "running"  # still training at the timeout: accepted; its memory is checked below
    elif code == 0:
        verdict = "ok"
    elif code == 1 and "Traceback" not in err and len(lines) == 1:
        verdict = "clean"
    elif code == 1 and "Traceback" not in err:
        verdict = "clean-multiline"
    else:
        verdict = "traceback"
    if rss > GIB:
        verdict = "blowup"
    return {"verdict": verdict, "code": code, "rss_mb": rss >> 20, "stderr": err.strip().splitlines()[-1:] if err.strip() else [],
            "seconds": round(time.perf_counter() - start, 2)}


REFUSE_WORDS = ("units-bool", "units-str", "units-huge", "csvlogger", "monitor-typo", "both-spellings",
                "input-vs-data", "latin1", "notzip", "lying", "secret", "model.json")


def should_refuse(name: str) -> bool:
    """Inputs that must be refused: sizes past the bounds, booleans and strings for integers,
    and every named hostile file or config."""
    if any(word in name for word in REFUSE_WORDS):
        return True
    value = name.rsplit("=", 1)[-1] if "=" in name else ""
    return value in ("true", "'16'") or (value.isdigit() and len(value) >= 12)


def table(results: list) -> dict[str, int]:
    """tried / clean errors / tracebacks / blow-ups / wrongly accepted (exit 0 or still running
    on an input that must be refused)."""
    counts = {"tried": len(results), "clean": 0, "traceback": 0, "blowup": 0, "wrongly accepted": 0}
    for name, result in results:
        verdict = result["verdict"]
        if verdict in ("clean", "clean-multiline"):
            counts["clean"] += 1
        elif verdict in ("traceback", "blowup"):
            counts[verdict] += 1
        elif should_refuse(name):
            counts["wrongly accepted"] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=20)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fuzz-"))
    make_files(root)
    run = root / "trained"
    subprocess.run([*TRAINCTL, "train", str(root / "cfg.yaml"), "-q", "--out", str(run)], check=True,
                   capture_output=True)
    all_cases = cases(root, run)
    with ThreadPoolExecutor(options.jobs) as pool:
        results = list(pool.map(lambda case: (case[0], run_case(case[1], root, options.timeout)), all_cases))
    counts: dict[str, int] = {}
    for name, result in results:
        counts[result["verdict"]] = counts.get(result["verdict"], 0) + 1
    bad = [(name, r) for name, r in results if r["verdict"] not in ("ok", "clean", "running")
           or (r["verdict"] in ("ok", "running") and should_refuse(name))]
    for name, r in bad:
        print(f"{r['verdict']:16} {name}: {' '.join(r['stderr'])[:160]}")
    print(f"inputs tried: {len(results)}; " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    print("table: " + ", ".join(f"{k} {v}" for k, v in table(results).items()))
    if options.json:
        options.json.write_text(json.dumps({"counts": counts, "results": results}, indent=1))
    shutil.rmtree(root, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
