"""The YAML dialect of a config: PyYAML's safe loader with YAML 1.2 core-schema scalars, only
plain tags, and aliases kept as nodes of their own (so the builder sees where each is used).

- scalars resolve by the YAML 1.2 core schema: `1e-3` is a float (PyYAML's 1.1 rules read it
  as a string), `010` is ten, `yes`/`no`/`on`/`off` are strings, dates are strings;
- only plain tags are accepted (`!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!seq`,
  `!!map`); `!!python/object` and friends are refused, never constructed (yaml_builder.py).
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from yaml.nodes import Node

YAML_TAG = "tag:yaml.org,2002:"
_PLAIN_TAGS = {YAML_TAG + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "merge")}

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), plus `_`-free ints.
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


class Yaml12Resolver(yaml.resolver.Resolver):
    """Plain-scalar resolution by the YAML 1.2 core schema instead of PyYAML's YAML 1.1."""

    yaml_implicit_resolvers: dict = {}


for _tag, _regexp, _first in (
    ("bool", _BOOL, "tTfF"),
    ("int", _INT, "-+0123456789"),
    ("float", _FLOAT, "-+.0123456789"),
    ("null", _NULL, ["~", "n", "N", ""]),
    ("merge", re.compile(r"^<<$"), "<"),
):
    Yaml12Resolver.add_implicit_resolver(YAML_TAG + _tag, _regexp, list(_first))


class _AliasNode(Node):
    """An alias (`*name`) where it is used: the anchored node plus the alias's own place."""

    def __init__(self, target: Node, start_mark: Any, end_mark: Any):
        super().__init__(target.tag, target.value, start_mark, end_mark)
        self.target = target


class ConfigYamlLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser,
                       yaml.composer.Composer, yaml.constructor.SafeConstructor, Yaml12Resolver):
    """A SafeLoader with YAML 1.2 scalars. Use `parse_yaml`, which builds values itself."""

    def __init__(self, stream: str):
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        Yaml12Resolver.__init__(self)

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(yaml.AliasEvent):
            event = self.get_event()
            if event.anchor not in self.anchors:
                raise yaml.composer.ComposerError(
                    None, None, f"found undefined alias {event.anchor!r}", event.start_mark)
            return _AliasNode(self.anchors[event.anchor], event.start_mark, event.end_mark)
        return super().compose_node(parent, index)


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(YAML_TAG):] if tag.startswith(YAML_TAG) else tag


def _parse_int(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if digits.startswith("0o"):
        return sign * int(digits[2:], 8)
    if digits.startswith("0x"):
        return sign * int(digits[2:], 16)
    return sign * int(digits, 10)


def _parse_float(text: str) -> float:
    lowered = text.lower()
    if lowered in (".nan", "+.nan", "-.nan"):
        return math.nan
    if lowered.lstrip("+-") == ".inf":
        return -math.inf if lowered.startswith("-") else math.inf
    return float(text)
