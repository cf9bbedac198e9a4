"""pydantic's ValidationError as config problems: each error's loc mapped back to the keys
of the raw YAML (aliases, camelCase, union branch names skipped), the closest union branch
kept, and unknown keys answered with "did you mean" from the models that could hold them."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel

from trainctl.config.problems import RawProblem, describe
from trainctl.registry import did_you_mean, snake_case

Path = tuple[Any, ...]  # a path of keys and indices into the raw config
MISSING = object()


def find_key(mapping: dict, part: Any) -> Any:
    """The key of `mapping` that pydantic's loc `part` names (loc may use the alias)."""
    if part in mapping:
        return part
    for key in mapping:
        if str(key) == str(part):
            return key
    for key in mapping:
        if isinstance(key, str) and isinstance(part, str) and snake_case(key) == snake_case(part):
            return key
    return MISSING


def clean_loc(loc: tuple, raw: Any, kind: str) -> tuple[list[Any], list[tuple[int, str]]]:
    """pydantic's loc → the path of keys in `raw`, and the union branches skipped on the way
    (pydantic puts a branch's name, like 'CsvSource' or 'list[int]', into the loc)."""
    path: list[Any] = []
    branches: list[tuple[int, str]] = []
    node = raw
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, dict):
            key = find_key(node, part)
            if key is not MISSING:
                path.append(key)
                node = node[key]
                continue
            if last and kind == "missing":
                path.append(part)
                node = MISSING
                continue
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
            continue
        if isinstance(part, str):
            branches.append((len(path), part))
            continue
        path.append(part)
        node = MISSING
    return path, branches


def unwrap_models(annotation: Any) -> list[type[BaseModel]]:
    """The model classes an annotation may hold (through Optional, Union, list, dict)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return unwrap_models(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, tuple, set, frozenset, dict):
        args = typing.get_args(annotation)
        if origin is dict:
            args = args[1:]
        return [model for arg in args for model in unwrap_models(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def models_at(model_cls: type[BaseModel], path: list[Any]) -> list[type[BaseModel]]:
    models = [model_cls]
    for part in path:
        if not isinstance(part, str):
            continue  # a list index or dict key: the item type was unwrapped already
        found = []
        for model in models:
            for name, info in model.model_fields.items():
                if part in (name, info.alias) or snake_case(part) == name:
                    found.extend(unwrap_models(info.annotation))
        models = found
        if not models:
            break
    return models


def pydantic_problems(error: ValidationError, raw: Any, prefix: Path,
                      model_cls: type[BaseModel], extra_keys: tuple[str, ...] = ()) -> list[RawProblem]:
    """Each of pydantic's errors as a RawProblem in plain English, under `prefix`.

    Where a union was tried, only the errors of its closest branch (fewest errors) are kept.
    """
    entries = []
    for err in error.errors(include_url=False):
        path, branches = clean_loc(tuple(err["loc"]), raw, err["type"])
        entries.append((path, branches, err))
    counts: dict[tuple, int] = {}
    for path, branches, _ in entries:
        for depth, branch in branches:
            point = (tuple(path[:depth]), branch)
            counts[point] = counts.get(point, 0) + 1
    best: dict[tuple, tuple[int, str]] = {}
    for (point, branch), count in counts.items():
        if point not in best or count < best[point][0]:
            best[point] = (count, branch)

    problems: list[RawProblem] = []
    for path, branches, err in entries:
        if any(best[tuple(path[:depth])][1] != branch for depth, branch in branches):
            continue
        kind = err["type"]
        full = tuple(prefix) + tuple(path)
        if kind == "missing" and path:
            name = snake_case(str(path[-1]))
            problems.append(RawProblem(full[:-1], "parent", f"missing required key {name!r}",
                                       missing=name))
        elif kind == "extra_forbidden" and path:
            key = path[-1]
            choices = sorted({name for model in models_at(model_cls, path[:-1])
                              for name in model.model_fields})
            if len(path) == 1:
                choices = sorted(set(choices) | set(extra_keys))
            hint = did_you_mean(str(key), choices) if choices else None
            name = snake_case(str(key))
            if name in choices:  # `batch_size` beside `batchSize`: pydantic keeps one, calls the other unknown
                other = to_camel(name) if str(key) == name else name
                problems.append(RawProblem(full, "key", f"{other!r} and {str(key)!r} are two spellings of "
                                           "one key; give it once"))
                continue
            if hint:
                message = f"unknown key {str(key)!r}; did you mean {hint!r}?"
            elif choices:
                message = f"unknown key {str(key)!r}; valid keys: {', '.join(choices)}"
            else:
                message = f"unknown key {str(key)!r}"
            problems.append(RawProblem(full, "key", message, suggestion=hint))
        else:
            problems.append(RawProblem(full, "value", describe(err)))
    return problems
