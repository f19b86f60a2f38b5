"""Load YAML into plain Python data while keeping the file position of every key and value.

PyYAML's composer gives each node a start mark; we build the data ourselves from the node tree so
that any later error (schema, rules, placeholders) can point at file:line:column.

A config comes from a repository that may be hostile, so reading it is bounded: the file's size
(MAX_CONFIG_BYTES), and the number of nodes the document expands to with every alias counted at each
use (MAX_EXPANDED_NODES: nine levels of nine aliases are 387 million nodes in 13 lines). A recursive
alias, a NUL byte or bytes that are not UTF-8 are config errors at their position.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from agentdeploy.errors import ConfigError, Location, Problem

KeyPath = tuple[str | int, ...]
# What SafeLoader makes of a scalar: a timestamp is a date (or datetime), !!binary is bytes.
YamlScalar: TypeAlias = "str | int | float | bool | datetime.date | bytes | None"
YamlValue: TypeAlias = "YamlScalar | list[YamlValue] | dict[str, YamlValue]"

MAX_CONFIG_BYTES = 1024 * 1024  # an agent config is a few kilobytes; 1 MiB leaves room for inline test cases
MAX_EXPANDED_NODES = 100_000  # nodes of the document with every alias expanded where it is used


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
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)  # never more: the file may be huge, or a device
    except FileNotFoundError:
        raise ConfigError(f"config file {name} does not exist", hint="pass the path of your agent.yaml") from None
    except IsADirectoryError:
        raise ConfigError(f"{name} is a directory", hint="pass the path of the agent.yaml inside it") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {name}: {exc.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{name} is larger than {MAX_CONFIG_BYTES // 1024} KiB, the most an agent config may be",
            hint="keep large data in files the config names (instructions.file, a tool's source, test_cases_file)",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        column = len(raw[line_start : exc.start].decode("utf-8")) + 1
        raise ConfigError(
            f"{name} is not UTF-8 text: byte 0x{raw[exc.start]:02x} cannot start or continue a character",
            location=Location(name, raw.count(b"\n", 0, exc.start) + 1, column),
            hint="save the file as UTF-8",
        ) from None
    return parse_yaml_text(text, path=path, display_name=name)


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of the character at `index`."""
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer counts the nodes the document expands to (an alias counts its whole subtree at
    each use) and refuses a recursive alias, so that nothing built from the document later can blow up."""

    def __init__(self, stream: str, display_name: str) -> None:
        super().__init__(stream)
        self.display_name = display_name
        self.expanded = 0
        self.sizes: dict[int, int] = {}  # id(node) -> nodes in its subtree, aliases expanded; set when complete

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(AliasEvent):
            event: AliasEvent = self.peek_event()  # type: ignore[no-untyped-call]
            anchored = self.anchors.get(event.anchor)
            if anchored is not None:
                size = self.sizes.get(id(anchored))
                mark = event.start_mark
                where = (
                    Location(self.display_name, mark.line + 1, mark.column + 1) if mark else Location(self.display_name)
                )
                if size is None:  # its anchor's node is still being composed: it would contain itself
                    raise ConfigError(
                        f"the alias *{event.anchor} refers to a node that contains it (a recursive alias)",
                        location=where,
                        hint="an agent config is a tree: write the value out instead of the alias",
                    )
                self._count(size, where, alias=event.anchor)
            return super().compose_node(parent, index)
        node = super().compose_node(parent, index)
        if node is not None and id(node) not in self.sizes:
            children: list[Node] = []
            if isinstance(node, SequenceNode):
                children = list(node.value)
            elif isinstance(node, MappingNode):
                children = [child for pair in node.value for child in pair]
            self.sizes[id(node)] = 1 + sum(self.sizes.get(id(child), 1) for child in children)
            self._count(1, Location(self.display_name, *_mark(node)), alias=None)
        return node

    def _count(self, nodes: int, where: Location, *, alias: str | None) -> None:
        self.expanded += nodes
        if self.expanded <= MAX_EXPANDED_NODES:
            return
        if alias is None:
            raise ConfigError(
                f"{self.display_name} has more than {MAX_EXPANDED_NODES:,} YAML nodes, "
                "the most an agent config may have",
                location=where,
                hint="keep large data in files the config names (a tool's source, test_cases_file)",
            )
        raise ConfigError(
            f"the alias *{alias} expands the document beyond {MAX_EXPANDED_NODES:,} nodes "
            "(each alias counts every node it refers to, at each use)",
            location=where,
            hint="write the values out, or use fewer nested aliases",
        )


def parse_yaml_text(text: str, *, path: Path, display_name: str) -> YamlDocument:
    doc = YamlDocument(path=path, display_name=display_name, text=text, data={})
    try:
        loader = _BoundedLoader(text, display_name)
    except ReaderError as exc:  # a NUL byte or another character YAML does not allow, found before parsing
        raise _unacceptable(exc, text, display_name) from None
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
    except ReaderError as exc:
        raise _unacceptable(exc, text, display_name) from None
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


def _unacceptable(exc: ReaderError, text: str, display_name: str) -> ConfigError:
    code = exc.character if isinstance(exc.character, int) else ord(exc.character)
    character = "a NUL byte" if code == 0 else f"the control character U+{code:04X}"
    return ConfigError(
        f"{display_name} contains {character}, which YAML does not allow",
        location=Location(display_name, *_position(text, exc.position)),
        hint="remove it; an agent config is plain text",
    )


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
