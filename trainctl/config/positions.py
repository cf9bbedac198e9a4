"""Where a config's keys and values sit in its source: 1-based marks by dotted path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainctl.config.problems import Problem


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    col: int  # 1-based


@dataclass
class Positions:
    """Where each dotted path ("model.layers.0.units") sits in the source, for keys and values.

    Sequence items have no key; their key position is the item's own position. A path that
    is not recorded (a key the user left out) falls back to its nearest recorded ancestor.
    """

    source: str
    keys: dict[str, Mark] = field(default_factory=dict)
    values: dict[str, Mark] = field(default_factory=dict)

    def value(self, path: str) -> Mark:
        while path not in self.values and path:
            path = path.rpartition(".")[0]
        return self.values.get(path, Mark(1, 1))

    def key(self, path: str) -> Mark:
        return self.keys[path] if path in self.keys else self.value(path)

    def __contains__(self, path: str) -> bool:
        return path in self.values


@dataclass
class YamlDocument:
    data: Any
    positions: Positions
    problems: list[Problem]
