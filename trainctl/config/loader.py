"""YAML → plain dicts and lists, with the source position of every key and value.

The loader is PyYAML's safe loader with three changes:
- scalars resolve by the YAML 1.2 core schema: `1e-3` is a float (PyYAML's 1.1 rules read it
  as a string), `010` is ten, `yes`/`no`/`on`/`off` are strings, dates are strings;
- only plain tags are accepted (`!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!seq`,
  `!!map`); `!!python/object` and friends are refused, never constructed;
- duplicate keys are errors, and alias expansion is capped (no "billion laughs").

Every problem comes back as a `Problem` with its line and column; `load_yaml` raises them all
at once as a `ConfigError`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from trainctl.config.problems import Problem, raise_problems, show

MAX_FILE_BYTES = 1024 * 1024  # a config is a page of YAML; 1 MB is a mistake (and ~5 s to parse)
MAX_ALIAS_EXPANSION = 100_000  # values produced through aliases before we call it a bomb

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


def _mark(node_or_mark: Any) -> Mark:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return Mark(mark.line + 1, mark.column + 1)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _scalar_repr(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


class _Builder:
    """Turns a composed node graph into dicts/lists/scalars, recording positions and problems."""

    def __init__(self, source: str):
        self.source = source
        self.positions = Positions(source)
        self.problems: list[Problem] = []
        self.expanded = 0  # values produced while inside an alias
        self.alias_depth = 0
        self.outer_alias: tuple[Mark, str] = (Mark(1, 1), "")  # where alias expansion began
        self.in_progress: set[int] = set()  # node ids being built: a repeat means a cycle

    def problem(self, mark: Mark, path: str, message: str) -> None:
        self.problems.append(Problem(self.source, mark.line, mark.col, path, message))

    def build(self, node: Node, path: str, mark: Mark | None = None) -> Any:
        """Build `node`; `mark` is where its text starts here (an alias's own place)."""
        mark = mark or _mark(node)
        self.positions.values.setdefault(path, mark)
        if id(node) in self.in_progress:
            self.problem(mark, path, "an alias refers to the mapping or list that contains it")
            raise _Abort
        if self.alias_depth:
            self.expanded += 1
            if self.expanded > MAX_ALIAS_EXPANSION:
                outer_mark, outer_path = self.outer_alias
                self.problem(outer_mark, outer_path, f"aliases here expand to more than "
                             f"{MAX_ALIAS_EXPANSION} values; write the values out instead")
                raise _Abort
        if node.tag not in _PLAIN_TAGS:
            self.problem(mark, path, f"tag {_short_tag(node.tag)} is not allowed; a config holds "
                         "only plain strings, numbers, booleans, lists and mappings")
            return None
        if isinstance(node, ScalarNode):
            return self.scalar(node, path, mark)
        self.in_progress.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return self.sequence(node, path)
            return self.mapping(node, path)
        finally:
            self.in_progress.discard(id(node))

    def child(self, node: Node, path: str, mark: Mark) -> Any:
        """Build a child node; through an alias, count what it expands to."""
        if not isinstance(node, _AliasNode):
            return self.build(node, path, mark)
        if not self.alias_depth:
            self.outer_alias = (mark, path)
        self.alias_depth += 1
        try:
            return self.build(node.target, path, mark)
        finally:
            self.alias_depth -= 1

    def scalar(self, node: ScalarNode, path: str, mark: Mark) -> Any:
        tag = node.tag[len(YAML_TAG):]
        text = node.value
        if tag == "str":
            return text
        if tag == "null":
            return None
        if tag == "bool":
            return text.lower() == "true"
        if tag == "int":
            if len(text) > 40:  # past any sane count; int() of 5,000 digits is refused anyway
                self.problem(mark, path, f"an integer of {len(text.lstrip('+-'))} digits is far too large")
                return None
            try:
                return _parse_int(text)
            except ValueError:
                self.problem(mark, path, f"!!int {show(text)} is not an integer")
                return None
        if tag == "float":
            try:
                return _parse_float(text)
            except ValueError:
                self.problem(mark, path, f"!!float {show(text)} is not a number")
                return None
        self.problem(mark, path, f"{show(text)} cannot be used as a value here")
        return None

    def sequence(self, node: SequenceNode, path: str) -> list[Any]:
        items = []
        for index, item in enumerate(node.value):
            item_path = _join(path, index)
            item_mark = _mark(item)
            self.positions.keys.setdefault(item_path, item_mark)
            items.append(self.child(item, item_path, item_mark))
        return items

    def mapping(self, node: MappingNode, path: str) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        first_seen: dict[Any, Mark] = {}
        merged: set[Any] = set()  # keys that came from a `<<` merge may be overridden
        for key_node, value_node in node.value:
            key_mark = _mark(key_node)
            if key_node.tag == YAML_TAG + "merge":
                self.merge(value_node, path, result, merged)
                continue
            if not isinstance(key_node, ScalarNode) or key_node.tag not in _PLAIN_TAGS:
                self.problem(key_mark, path, "a key must be a plain string or number")
                continue
            key = self.scalar(key_node, path, key_mark)
            if isinstance(key, float) or key is None or isinstance(key, bool):
                key = key_node.value  # `1.5: x`, `null: x`, `true: x` are keys, kept as written
            key_path = _join(path, key)
            if key in first_seen:
                first = first_seen[key]
                self.problem(key_mark, key_path, f"duplicate key {_scalar_repr(key)} (first "
                             f"defined at line {first.line}, column {first.col})")
                continue
            first_seen[key] = key_mark
            if key in merged:  # an explicit key replaces a merged one, positions included
                merged.discard(key)
                for table in (self.positions.keys, self.positions.values):
                    for stale in [p for p in table if p == key_path or p.startswith(key_path + ".")]:
                        del table[stale]
            self.positions.keys[key_path] = key_mark
            value_mark = _mark(value_node)
            result[key] = self.child(value_node, key_path, value_mark)
        return result

    def merge(self, value_node: Node, path: str, result: dict, merged: set) -> None:
        """`<<: *base` or `<<: [*a, *b]`: copy the keys not set yet (earlier sources win)."""
        target = value_node.target if isinstance(value_node, _AliasNode) else value_node
        sources = target.value if isinstance(target, SequenceNode) else [value_node]
        for source in sources:
            inner = source.target if isinstance(source, _AliasNode) else source
            if not isinstance(inner, MappingNode):
                self.problem(_mark(source), path, "'<<' merges only mappings")
                continue
            # Positions already recorded (explicit keys) win over the merged mapping's.
            keys, values = dict(self.positions.keys), dict(self.positions.values)
            built = self.child(source, path, _mark(source))
            self.positions.keys.update(keys)
            self.positions.values.update(values)
            for key, value in built.items():
                if key not in result:
                    result[key] = value
                    merged.add(key)


class _Abort(Exception):
    """Stop building: the graph is cyclic or explodes; the problem is already recorded."""


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


def _decode(data: bytes, source: str) -> tuple[str | None, Problem | None]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        line = before.count(b"\n") + 1
        col = error.start - (before.rfind(b"\n") + 1) + 1
        byte = data[error.start]
        return None, Problem(source, line, col, "", f"not valid UTF-8 (byte 0x{byte:02x}); "
                             "save the config as UTF-8 text")
    return text, None


def parse_yaml(text: str, source: str, *, allow_empty: bool = False) -> YamlDocument:
    """Parse one YAML document. Problems are returned, not raised.

    `source` names the text in problems (a file path, or `--set a.b` for an override value).
    """
    positions = Positions(source)
    if "\0" in text:
        index = text.index("\0")
        line = text.count("\n", 0, index) + 1
        col = index - (text.rfind("\n", 0, index) + 1) + 1
        return YamlDocument(None, positions, [Problem(source, line, col, "",
                            "contains a NUL byte; a config is a text file")])
    loader = None
    try:
        loader = ConfigYamlLoader(text)
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        return YamlDocument(None, positions, [_syntax_problem(error, source)])
    except yaml.reader.ReaderError as error:  # a control character, found before any parsing
        line = text.count("\n", 0, error.position) + 1
        col = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        code = error.character if isinstance(error.character, int) else ord(error.character)
        return YamlDocument(None, positions, [Problem(source, line, col, "", f"control character "
                            f"U+{code:04X} is not allowed in YAML text")])
    except yaml.YAMLError as error:
        return YamlDocument(None, positions, [Problem(source, 1, 1, "", f"YAML error: {error}")])
    except RecursionError:
        return YamlDocument(None, positions, [Problem(source, 1, 1, "",
                            "lists or mappings are nested too deeply")])
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        if allow_empty:
            return YamlDocument(None, positions, [])
        return YamlDocument(None, positions, [Problem(source, 1, 1, "",
                            "the file is empty; expected a mapping with the config sections")])
    builder = _Builder(source)
    try:
        data = builder.build(node, "")
    except _Abort:
        data = None
    except RecursionError:
        data = None
        builder.problem(_mark(node), "", "lists or mappings are nested too deeply")
    return YamlDocument(data, builder.positions, builder.problems)


def _syntax_problem(error: yaml.MarkedYAMLError, source: str) -> Problem:
    mark = error.problem_mark or error.context_mark
    where = _mark(mark) if mark is not None else Mark(1, 1)
    problem = error.problem or "invalid YAML"
    if "'\\t'" in problem:
        message = "tab character; YAML indents with spaces, not tabs"
    elif isinstance(error, yaml.constructor.ConstructorError):
        message = problem
    else:
        context = f" ({error.context})" if error.context else ""
        message = f"YAML syntax error: {problem}{context}"
    return Problem(source, where.line, where.col, "", message)


def read_yaml(path: str | os.PathLike) -> YamlDocument:
    """Read and parse a config file; problems (also unreadable or oversized files) are returned."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        reason = error.strerror or str(error)
        return YamlDocument(None, Positions(source), [Problem(source, None, None, "",
                            f"cannot read the config: {reason}")])
    if len(data) > MAX_FILE_BYTES:
        size = os.path.getsize(source) if os.path.isfile(source) else len(data)
        return YamlDocument(None, Positions(source), [Problem(source, 1, 1, "",
                            f"the file is too large ({size:,} bytes); a config may have at "
                            f"most {MAX_FILE_BYTES:,} bytes")])
    text, problem = _decode(data, source)
    if problem is not None:
        return YamlDocument(None, Positions(source), [problem])
    return parse_yaml(text, source)


def load_yaml(path: str | os.PathLike) -> tuple[Any, Positions]:
    """(data, positions) of a YAML file; ConfigError with every located problem otherwise."""
    document = read_yaml(path)
    raise_problems(document.problems)
    return document.data, document.positions
