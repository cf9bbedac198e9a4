"""A composed YAML node graph → plain dicts, lists and scalars, recording every key's and
value's position and every problem (duplicate keys, disallowed tags, bad numbers, cyclic or
exploding aliases: no "billion laughs").
"""

from __future__ import annotations

from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from trainctl.config.positions import Mark, Positions
from trainctl.config.problems import Problem, show
from trainctl.config.yaml12 import _PLAIN_TAGS, YAML_TAG, _AliasNode, _parse_float, _parse_int, _short_tag

MAX_ALIAS_EXPANSION = 100_000  # values produced through aliases before we call it a bomb


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
