"""Helpers of the hostile-input tests: the real CLI as a subprocess, with its peak RSS."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from tests.fixtures import teacher_config, teacher_source
from tests.fixtures import write  # noqa: F401 (re-exported for the hostile tests)
from tests.test_hostile.fuzz import run_process

TRAINCTL = [sys.executable, "-m", "trainctl"]
MB = 1 << 20
ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "COLUMNS": "300", "TERM": "dumb"}

BASE = teacher_config(name="hostile", layers=("{type: dropout, rate: 0.1}",), data=("validation_split: 0.25",))
GENERATOR = teacher_source()


class Result:
    def __init__(self, code, stdout, stderr, rss):
        self.code, self.stdout, self.stderr, self.rss = code, stdout, stderr, rss

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip() and not line.startswith("warning:")]

    def clean_error(self) -> str:
        """The single error line of a clean failure (exit 1, one line, no traceback)."""
        assert self.code == 1, (self.code, self.stderr[-2000:])
        assert "Traceback" not in self.stderr, self.stderr[-2000:]
        assert len(self.lines) == 1, self.stderr[-2000:]
        assert self.lines[0].startswith("error: "), self.lines
        return self.lines[0]


def cli(*args, cwd: Path | None = None, timeout: float = 120, env: dict | None = None) -> Result:
    code, out, err, rss = run_process([*TRAINCTL, *map(str, args)], cwd or Path.cwd(), timeout, {**ENV, **(env or {})})
    assert code is not None, f"trainctl {' '.join(map(str, args))} still running after {timeout}s"
    return Result(code, out, err, rss)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def config_with_data(source: str) -> str:
    return BASE.replace(GENERATOR, source)
