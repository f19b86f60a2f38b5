"""Load YAML into plain Python data while keeping the file position of every key and value.

PyYAML's composer gives each node a start mark; we build the data ourselves from the node tree so
that any later error (schema, rules, placeholders) can point at file:line:column.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from agentdeploy.errors import ConfigError, Location, Problem

KeyPath = tuple[str | int, ...]
# What SafeLoader makes of a scalar: a timestamp is a date (or datetime), !!binary is bytes.
YamlScalar: TypeAlias = "str | int | float | bool | datetime.date | bytes | None"
YamlValue: TypeAlias = "YamlScalar | list[YamlValue] | dict[str, YamlValue]"


@dataclass
class YamlDocument:
    """Parsed YAML plus where each piece of it came from."""

    path: Path
    display_name: str
    text: str
    data: dict[str, YamlValue]  # the top level of an agent config is a mapping
    value_marks: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def locate(self, keys: KeyPath, *, key: bool = False) -> Location:
        """Location of the value at `keys` (or of its key), falling back to the nearest parent."""
        probe = tuple(keys)
        while True:
            table = self.key_marks if key else self.value_marks
            mark = table.get(probe) or self.value_marks.get(probe)
            if mark is not None:
                return Location(self.display_name, mark[0], mark[1])
            if not probe:
                return Location(self.display_name, 1, 1)
            probe = probe[:-1]
            key = False


def load_yaml_document(path: Path, display_name: str | None = None) -> YamlDocument:
    """Read and parse `path`. Raises ConfigError (with the position) on any syntax problem."""
    name = display_name or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {name} does not exist", hint="pass the path of your agent.yaml") from None
    except IsADirectoryError:
        raise ConfigError(f"{name} is a directory", hint="pass the path of the agent.yaml inside it") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {name}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name} is not UTF-8 text (byte {exc.start})", hint="save the file as UTF-8") from None
    return parse_yaml_text(text, path=path, display_name=name)


def parse_yaml_text(text: str, *, path: Path, display_name: str) -> YamlDocument:
    doc = YamlDocument(path=path, display_name=display_name, text=text, data={})
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise ConfigError(
                f"{display_name} is empty",
                hint="an agent config needs at least `name`, `model` and `instructions`",
                location=Location(display_name, 1, 1),
            )
        problems: list[Problem] = []
        data = _convert(loader, root, (), doc, problems)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        location = Location(display_name, mark.line + 1, mark.column + 1) if mark else None
        reason = exc.problem or "invalid YAML"
        raise ConfigError(
            f"YAML syntax error: {reason}",
            location=location,
            hint="check indentation and quoting around this line",
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error in {display_name}: {exc}") from None
    finally:
        loader.dispose()
    if problems:
        raise ConfigError(f"{display_name} has {_count(problems)}", problems=problems)
    if not isinstance(data, dict):
        raise ConfigError(
            "the top level of an agent config must be a mapping of keys (name:, model:, ...)",
            location=Location(display_name, root.start_mark.line + 1, root.start_mark.column + 1),
        )
    doc.data = data
    return doc


def _count(problems: list[Problem]) -> str:
    return "1 problem" if len(problems) == 1 else f"{len(problems)} problems"


def _mark(node: Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _convert(
    loader: yaml.SafeLoader, node: Node, keys: KeyPath, doc: YamlDocument, problems: list[Problem]
) -> YamlValue:
    doc.value_marks[keys] = _mark(node)
    if isinstance(node, MappingNode):
        loader.flatten_mapping(node)  # resolves `<<:` merge keys the way SafeLoader does
        result: dict[str, YamlValue] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            where = Location(doc.display_name, *_mark(key_node))
            if not isinstance(key, str):
                problems.append(Problem(f"key {key!r} is not a string", where, hint="quote the key"))
                continue
            if key in result:
                first = doc.key_marks.get((*keys, key))
                problems.append(
                    Problem(
                        f"duplicate key {key!r}" + (f" (first defined at line {first[0]})" if first else ""),
                        where,
                        hint="keep one of them; YAML would silently use the last",
                    )
                )
                continue
            doc.key_marks[(*keys, key)] = _mark(key_node)
            result[key] = _convert(loader, value_node, (*keys, key), doc, problems)
        return result
    if isinstance(node, SequenceNode):
        return [_convert(loader, item, (*keys, index), doc, problems) for index, item in enumerate(node.value)]
    assert isinstance(node, ScalarNode)
    scalar: YamlScalar = loader.construct_object(node, deep=True)
    return scalar
