"""`--set a.b.c=VALUE`: change any key of a loaded config before it is validated.

VALUE is YAML, read by the config loader (`--set fit.epochs=10` is an int, `--set
optimizer={type: adam, learning_rate: 1e-3}` a mapping). A path walks mappings by key (either
spelling, `batch_size` or `batchSize`) and lists by index (`model.layers.0.units`). The last
key may be new; it is then validated like any key. An id shorthand (`optimizer: sgd`) is
widened to `{type: sgd}` when a --set reaches into it (`--set optimizer.learning_rate=0.1`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Iterable

from trainctl.config.loader import parse_yaml
from trainctl.config.problems import Problem, raise_problems, show
from trainctl.registry import snake_case

# Sections where a string is the id shorthand of a mapping {type: id, ...}.
_TYPED_SPEC = re.compile(r"^(optimizer|callbacks\.\d+|model\.layers\.\d+)$")


@dataclass(frozen=True)
class Override:
    """One --set: the path as written (split on '.') and the parsed value."""

    path: tuple[str, ...]
    value: Any
    index: int = 0  # its place among the --set options, for ordering problems

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    @property
    def source(self) -> str:
        return f"--set {self.dotted}"

    def problem(self, message: str, path: str = "", overrides: str = "") -> Problem:
        """A problem of this --set; `overrides` is the FILE:LINE:COL of the key it replaced."""
        source = f"{self.source} (overrides {overrides})" if overrides else self.source
        return Problem(source, None, None, path, message, rank=self.index + 1)


def parse_overrides(items: Iterable[str]) -> list[Override]:
    """Parse `PATH=VALUE` strings; ConfigError listing every malformed one."""
    overrides, problems = parse_overrides_collecting(items)
    raise_problems(problems)
    return overrides


def parse_overrides_collecting(items: Iterable[str]) -> tuple[list[Override], list[Problem]]:
    """Parse `PATH=VALUE` strings: the good ones, and a problem for each malformed one."""
    overrides: list[Override] = []
    problems: list[Problem] = []
    for index, item in enumerate(items):
        rank = index + 1
        path_text, equals, value_text = item.partition("=")
        path_text = path_text.strip()
        if not equals or not path_text:
            problems.append(Problem(f"--set {item}", None, None, "", "expected PATH=VALUE, "
                                    "e.g. --set fit.epochs=10", rank=rank))
            continue
        path = tuple(part.strip() for part in path_text.split("."))
        if any(not part for part in path):
            problems.append(Problem(f"--set {path_text}", None, None, "", "empty key in the path; "
                                    "keys are separated by single dots", rank=rank))
            continue
        document = parse_yaml(value_text, f"--set {path_text}", allow_empty=True)
        if document.problems:
            problems.extend(Problem(p.source, None, None, "", f"{p.message} (in the value "
                                    f"{show(value_text)})", rank=rank) for p in document.problems)
            continue
        overrides.append(Override(path, document.data, index))
    return overrides, problems


def _find_key(mapping: dict, segment: str) -> Any:
    """The existing key a path segment names: exact, as text (`0` for int 0), or the other
    spelling (`batch_size` for `batchSize`). None when there is none."""
    for key in mapping:
        if str(key) == segment:
            return key
    for key in mapping:
        if isinstance(key, str) and snake_case(key) == snake_case(segment):
            return key
    return None


def apply_overrides_located(data: Any, overrides: list[Override]) -> tuple[Any, list[tuple | None],
                                                                          list[Problem]]:
    """Apply overrides to a deep copy of `data`. Returns the new data; for each override the
    path of keys it set (spelled as in the data), or None when its path is bad; and a problem
    for each bad path (that override is skipped, the others still apply)."""
    data = copy.deepcopy(data)
    problems: list[Problem] = []
    resolved: list[tuple | None] = []
    for override in overrides:
        if not isinstance(data, dict):
            problems.append(override.problem("the config is not a mapping; nothing to set"))
            resolved.append(None)
            continue
        node: Any = data
        walked: list[Any] = []
        for depth, segment in enumerate(override.path):
            last = depth == len(override.path) - 1
            here = ".".join(str(part) for part in walked) or "the config"
            if isinstance(node, dict):
                key = _find_key(node, segment)
                key = segment if key is None else key
                if last:
                    node[key] = copy.deepcopy(override.value)
                else:
                    child = node.get(key)
                    if isinstance(child, str) and _TYPED_SPEC.match(".".join(map(str, walked + [key]))):
                        node[key] = {"type": child}
                    elif key not in node or child is None:
                        node[key] = {}
                    node = node[key]
                walked.append(key)
                continue
            if isinstance(node, list):
                if not re.fullmatch(r"-?\d+", segment):
                    problems.append(override.problem(f"{here} is a list; {segment!r} is not an "
                                                     "index (0, 1, ...)"))
                    break
                index = int(segment)
                if not 0 <= index < len(node):
                    span = f"indices 0 to {len(node) - 1}" if node else "no items"
                    problems.append(override.problem(f"index {index} is out of range; {here} "
                                                     f"has {len(node)} item{'s' * (len(node) != 1)} "
                                                     f"({span})"))
                    break
                if last:
                    node[index] = copy.deepcopy(override.value)
                else:
                    child = node[index]
                    if isinstance(child, str) and _TYPED_SPEC.match(".".join(map(str, walked + [index]))):
                        node[index] = {"type": child}
                    node = node[index]
                walked.append(index)
                continue
            problems.append(override.problem(f"cannot set {segment!r} inside {here}, which is "
                                             f"{show(node)}, not a mapping or a list"))
            break
        resolved.append(tuple(walked) if len(walked) == len(override.path) else None)
    return data, resolved, problems


def apply_overrides(data: Any, overrides: Iterable[Override | str]) -> Any:
    """`data` with every override applied (strings are parsed first); `data` is not changed."""
    items = list(overrides)
    strings = [item for item in items if isinstance(item, str)]
    parsed = iter(parse_overrides(strings))
    ordered = [next(parsed) if isinstance(item, str) else item for item in items]
    ordered = [Override(item.path, item.value, index) for index, item in enumerate(ordered)]
    data, _, problems = apply_overrides_located(data, ordered)
    raise_problems(problems)
    return data
