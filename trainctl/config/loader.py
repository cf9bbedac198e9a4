"""YAML → plain dicts and lists, with the source position of every key and value.

Reading a config: the bytes (size cap, UTF-8, NUL and control characters), then PyYAML's safe
loader in trainctl's dialect (yaml12.py: YAML 1.2 scalars, plain tags only), then the values
built from the node graph with their positions (yaml_builder.py: duplicate keys are errors,
alias expansion is capped). Every problem comes back as a `Problem` with its line and column;
`load_yaml` raises them all at once as a `ConfigError`.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from trainctl.config.positions import Mark, Positions, YamlDocument
from trainctl.config.problems import Problem, raise_problems
from trainctl.config.yaml12 import YAML_TAG, ConfigYamlLoader, Yaml12Resolver
from trainctl.config.yaml_builder import MAX_ALIAS_EXPANSION, _Abort, _Builder, _mark

__all__ = ["MAX_ALIAS_EXPANSION", "MAX_FILE_BYTES", "YAML_TAG", "ConfigYamlLoader", "Mark", "Positions",
           "Yaml12Resolver", "YamlDocument", "load_yaml", "parse_yaml", "read_yaml"]

MAX_FILE_BYTES = 1024 * 1024  # a config is a page of YAML; 1 MB is a mistake (and ~5 s to parse)


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
