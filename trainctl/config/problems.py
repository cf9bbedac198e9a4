"""Config problems: where they are, what they say, and pydantic's errors in plain English.

A problem prints as `FILE:LINE:COL: dotted.path: message` (line and column 1-based), or, for a
value given on the command line, `--set dotted.path: message`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from trainctl.errors import ConfigError


@dataclass(frozen=True)
class Problem:
    source: str  # a file path, or "--set a.b.c" for an override
    line: int | None  # 1-based; None when the source has no lines (an unreadable file, a --set)
    col: int | None
    path: str  # dotted path of the key or value, "" for the whole document
    message: str
    rank: int = 0  # 0: the file; i + 1: the i-th --set (problems sort by rank, then position)

    def format(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}:{self.col}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def sort_key(self) -> tuple:
        return (self.rank, self.line or 0, self.col or 0, self.path, self.message)


def raise_problems(problems: list[Problem]) -> None:
    """Raise one ConfigError holding every problem, sorted by place; nothing when empty."""
    if not problems:
        return
    lines: list[str] = []
    for problem in sorted(problems, key=Problem.sort_key):
        text = problem.format()
        if text not in lines:
            lines.append(text)
    raise ConfigError(lines)


@dataclass(frozen=True)
class RawProblem:
    """A problem before it has a place: a path (tuple of keys/indices) and what to point at.

    `at` is "key" (an unknown key: point at the key), "value" (point at the value) or
    "parent" (a missing key: point at the mapping that should hold it; `path` is that mapping).
    `suggestion` is the key an unknown key probably meant, so "missing 'units'" can be dropped
    when "unknown key 'unts'; did you mean 'units'?" already says it.
    """

    path: tuple[Any, ...]
    at: str
    message: str
    suggestion: str | None = None
    missing: str | None = None  # for at="parent": the missing key

    @property
    def dotted(self) -> str:
        return ".".join(str(part) for part in self.path)


def show(value: Any) -> str:
    """A value as the user wrote it in YAML: 'abc', 3, 0.5, .inf, true, null, a list, a mapping."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    if isinstance(value, int) and value.bit_length() > 64:  # 10**1000: say its size, not its digits
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:57] + "...")
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "str": "a string",
    "list": "a list",
    "tuple": "a list",
    "set": "a list",
    "dict": "a mapping",
    "model": "a mapping",
    "model_attributes": "a mapping",
    "dataclass": "a mapping",
}


def _strip_prefix(message: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def describe(error: dict[str, Any]) -> str:
    """Pydantic's error (one entry of ValidationError.errors()) as a short plain sentence."""
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    got = show(error.get("input"))
    bounds = {
        "greater_than": (">", "gt"),
        "greater_than_equal": (">=", "ge"),
        "less_than": ("<", "lt"),
        "less_than_equal": ("<=", "le"),
    }
    if kind in bounds:
        symbol, name = bounds[kind]
        return f"must be {symbol} {show(ctx.get(name))}, got {got}"
    if kind == "finite_number":
        return f"must be a finite number, got {got}"
    if kind == "int_from_float":
        return f"must be a whole number, got {got}"
    if kind == "multiple_of":
        return f"must be a multiple of {show(ctx.get('multiple_of'))}, got {got}"
    for suffix in ("_type", "_parsing"):
        if kind.endswith(suffix) and kind[: -len(suffix)] in _TYPE_WORDS:
            return f"must be {_TYPE_WORDS[kind[: -len(suffix)]]}, got {got}"
    if kind == "too_short":
        return (f"must have at least {_plural(ctx.get('min_length', 0), 'item')}, "
                f"got {ctx.get('actual_length')}")
    if kind == "too_long":
        return (f"must have at most {_plural(ctx.get('max_length', 0), 'item')}, "
                f"got {ctx.get('actual_length')}")
    if kind == "string_too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else (
            f"must have at least {ctx.get('min_length')} characters, got {got}")
    if kind == "string_too_long":
        return f"must have at most {ctx.get('max_length')} characters"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}, got {got}"
    if kind in ("literal_error", "enum"):
        expected = ctx.get("expected", "")
        return f"must be {expected}, got {got}"
    if kind in ("value_error", "assertion_error"):
        return _strip_prefix(error["msg"])
    if kind == "none_required":
        return f"must be null, got {got}"
    if kind in ("is_instance_of", "is_subclass_of"):
        return f"has the wrong type, got {got}"
    message = _strip_prefix(error["msg"])
    message = message[:1].lower() + message[1:]
    return f"{message}, got {got}" if "input" in error else message
