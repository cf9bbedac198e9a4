"""Config: YAML loading with source positions, pydantic schema, overrides, located errors.

    loaded = load_config("configs/mlp.yaml", ["fit.epochs=10"])
    loaded.config.fit.epochs          # 10
    config_to_yaml(loaded.config)     # the resolved config, as saved with a run

Every problem in the file and the --set values is reported at once, as a ConfigError whose
lines read `FILE:LINE:COL: dotted.path: message` or `--set dotted.path: message`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Iterable

from trainctl.config.dumper import dump_yaml
from trainctl.config.loader import Positions, YamlDocument, load_yaml, parse_yaml, read_yaml
from trainctl.config.overrides import (
    Override,
    apply_overrides,
    apply_overrides_located,
    parse_overrides,
    parse_overrides_collecting,
)
from trainctl.config.problems import Problem, RawProblem, raise_problems, show
from trainctl.config.schema import (
    Config,
    FitConfig,
    ModelConfig,
    Registries,
    TypedSpec,
    default_registries,
    dispatch_by_type,
    validate_config,
)

__all__ = [
    "Config",
    "FitConfig",
    "LoadedConfig",
    "ModelConfig",
    "Override",
    "Positions",
    "Registries",
    "TypedSpec",
    "apply_overrides",
    "config_from_dict",
    "config_hash",
    "config_to_yaml",
    "default_registries",
    "dispatch_by_type",
    "load_config",
    "load_config_text",
    "load_yaml",
    "parse_overrides",
    "parse_yaml",
    "validate_config",
]


@dataclass
class LoadedConfig:
    config: Config
    path: str
    raw: dict[str, Any]  # the file's data after --set overrides, before validation
    positions: Positions  # where each dotted path of the file sits (not the --set values)
    overrides: tuple[Override, ...] = ()  # the --set options, in order
    written: tuple[tuple | None, ...] = ()  # for each, the path of keys it set (None: a bad path)

    def problem(self, path: str, message: str, *, shown: str | None = None, at: str = "value") -> Problem:
        """A problem found after validation (a shape, the memory budget, a monitor) at dotted
        `path`, placed where its value came from: the --set that gave it (with the file's
        line:col of the key it overrides), or its line:col in the file. `shown` is the path
        printed, when it is not `path` itself."""
        return _locate(RawProblem(tuple(path.split(".")) if path else (), at, message), self.positions,
                       list(self.overrides), list(self.written), set(self.positions.values), shown)


def _locate(problem: RawProblem, positions: Positions, overrides: list[Override],
            resolved: list[tuple | None], file_paths: set[str], shown: str | None = None) -> Problem:
    """A RawProblem with its place: inside a --set value, at a key a --set created, or in the
    file. A --set's problem names the file's line:col of the key it replaced, when the file
    has that key."""
    path = tuple(str(part) for part in problem.path)
    dotted = problem.dotted
    shown = dotted if shown is None else shown
    applied = [(o, tuple(map(str, written))) for o, written in zip(overrides, resolved) if written is not None]
    # The last --set that wrote this path or an ancestor of it owns the value.
    for override, written in reversed(applied):
        if path[: len(written)] == written:
            # The path is printed unless the --set names it exactly as the config spells it.
            label = "" if path == written and shown == dotted and override.dotted == dotted else shown
            return override.problem(problem.message, label, _file_mark(positions, written, file_paths))
    # A key the file does not have, created on the way to a --set value.
    if dotted not in file_paths:
        for override, written in reversed(applied):
            if written[: len(path)] == path:
                return override.problem(problem.message, shown)
    mark = positions.key(dotted) if problem.at == "key" else positions.value(dotted)
    return Problem(positions.source, mark.line, mark.col, shown, problem.message)


def _file_mark(positions: Positions, written: tuple[str, ...], file_paths: set[str]) -> str:
    """`FILE:LINE:COL` of the key a --set replaced, or "" when the file did not have it."""
    dotted = ".".join(written)
    if dotted not in file_paths:
        return ""
    mark = positions.key(dotted)
    return f"{positions.source}:{mark.line}:{mark.col}"


def load_config(path: str | os.PathLike, overrides: Iterable[str] = (),
                registries: Registries | None = None) -> LoadedConfig:
    """Read, override and validate a config file. Raises ConfigError with every problem."""
    source = os.fspath(path)
    return _load(read_yaml(source), source, overrides, registries)


def load_config_text(text: str, source: str = "<config>", overrides: Iterable[str] = (),
                     registries: Registries | None = None) -> LoadedConfig:
    """`load_config` for YAML text already in memory (e.g. a run's saved config); problems
    are located in `source`."""
    return _load(parse_yaml(text, source), source, overrides, registries)


def _load(document: YamlDocument, source: str, overrides: Iterable[str],
          registries: Registries | None) -> LoadedConfig:
    problems = list(document.problems)
    parsed, set_problems = parse_overrides_collecting(overrides)
    problems += set_problems
    if document.data is not None and not isinstance(document.data, dict):
        problems.append(Problem(source, 1, 1, "", "the config must be a mapping of sections "
                                f"(name, model, optimizer, ...), got {show(document.data)}"))
    if not isinstance(document.data, dict):
        raise_problems(problems)
    raw, resolved, set_problems = apply_overrides_located(document.data, parsed)
    problems += set_problems
    config, raw_problems = validate_config(raw, registries)
    # Duplicate keys and refused tags are already reported; what the schema says about the
    # value left in their place would only repeat them.
    reported = [p.path for p in problems if p.path]
    raw_problems = [p for p in raw_problems
                    if not any(p.dotted == r or p.dotted.startswith(r + ".") for r in reported)]
    file_paths = set(document.positions.values)
    problems += [_locate(p, document.positions, parsed, resolved, file_paths) for p in raw_problems]
    raise_problems(problems)
    assert config is not None
    return LoadedConfig(config=config, path=source, raw=raw, positions=document.positions,
                        overrides=tuple(parsed), written=tuple(resolved))


def config_from_dict(data: dict[str, Any], source: str = "<config>",
                     registries: Registries | None = None) -> Config:
    """Validate plain data (e.g. a saved resolved config); ConfigError names paths, not lines."""
    config, raw_problems = validate_config(data, registries)
    raise_problems([Problem(source, None, None, p.dotted, p.message) for p in raw_problems])
    assert config is not None
    return config


def config_to_yaml(config: Config) -> str:
    """The resolved config as YAML; `load_config` on it gives an equal Config."""
    return dump_yaml(config.to_dict())


def config_hash(config: Config) -> str:
    """sha256 (hex) of the canonical resolved config: equal configs, however spelled, hash equal."""
    canonical = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
