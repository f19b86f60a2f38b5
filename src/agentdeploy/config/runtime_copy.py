"""The copy of the agent's config files that goes into the image: what `holodeck serve` accepts (pure).

Only agent.yaml is copied: a project config.yaml beside it (which `holodeck serve` would merge in) is a
developer machine's setting, left out of the image as upstream's own deploy leaves it out (loading
says so, as a warning). The runtime validates the WHOLE agent.yaml with upstream's strict models,
`deployment:` included, so our additions there (build, health, secrets, rollout, provider docker, ...)
would stop it at start-up; and it never uses `deployment:`. It also substitutes every `${VAR}` in the
raw text of the file, comments included, and stops on an unset one; it knows no `${VAR:-default}`.
So the copy:

- drops the top-level `deployment:` section;
- keeps every other line as the user wrote it: comments, order and relative paths stay, except a comment
  that holds a `$`, which is cut from its line (the line stays): the runtime would substitute a
  placeholder in it, so a `${GITHUB_TOKEN}` in a comment would make the container need that variable;
- turns `${VAR:-default}` into `${VAR}`: the container gets VAR with the default applied at deploy time;
- lists every placeholder left, all of them inside a key or a value: each one is a variable the container must
  receive.

When the section cannot be cut out line by line (a flow-style file, an anchor defined inside it and
used elsewhere), the copy is the parsed data dumped again: the same meaning, without comments.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

import yaml

from agentdeploy.config.placeholders import PLACEHOLDER_RE
from agentdeploy.config.yamlsource import YamlDocument, YamlValue
from agentdeploy.errors import Location

# Files `holodeck serve` reads beside agent.yaml (the project config), in its order of preference.
PROJECT_CONFIG_NAMES = ("config.yml", "config.yaml")
DROPPED_SECTIONS = ("deployment",)


@dataclass(frozen=True)
class RuntimeVariable:
    """A `${VAR}` the runtime resolves itself from the container's environment."""

    name: str
    default: str | None  # from `${VAR:-default}`; None when the file gives none
    location: Location


@dataclass(frozen=True)
class RuntimeFile:
    """One config file as the image carries it."""

    name: str  # path relative to the agent's directory (and to /app in the image)
    text: str
    variables: tuple[RuntimeVariable, ...]


def runtime_file(document: YamlDocument, name: str) -> RuntimeFile:
    text = _without_sections(document)
    scalars = _scalar_spans(text)
    variables: list[RuntimeVariable] = []
    lines = text.splitlines(keepends=True)
    original_lines = _line_map(document.text, text)
    out: list[str] = []
    offset = 0  # index of the line's first character in `text`
    for index, line in enumerate(lines):
        comment = _comment_start(line, offset, scalars)
        if comment is not None and "$" in line[comment:]:
            ending = line[len(line.rstrip("\r\n")) :]
            line = line[:comment].rstrip() + ending
        for match in PLACEHOLDER_RE.finditer(line):
            variables.append(
                RuntimeVariable(
                    match["name"],
                    match["default"],
                    Location(document.display_name, original_lines.get(index, index) + 1, match.start() + 1),
                )
            )
        out.append(PLACEHOLDER_RE.sub(lambda m: "${" + m["name"] + "}", line))
        offset += len(lines[index])
    return RuntimeFile(name=name, text="".join(out), variables=tuple(variables))


def _scalar_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) character ranges of every scalar (keys and values, quoted or block) in `text`, sorted."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []
    spans: set[tuple[int, int]] = set()
    seen: set[int] = set()
    pending: list[yaml.Node] = [root] if root is not None else []
    while pending:
        node = pending.pop()
        if id(node) in seen:  # an alias: the same node again
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            spans.add((node.start_mark.index, node.end_mark.index))
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            pending.extend(child for pair in node.value for child in pair)
    return sorted(spans)


def _comment_start(line: str, offset: int, scalars: list[tuple[int, int]]) -> int | None:
    """Index in `line` of the `#` that starts a comment, if any: one outside every scalar, at the start of the line
    or after a blank."""
    for position, character in enumerate(line):
        if character != "#" or (position > 0 and line[position - 1] not in " \t"):
            continue
        at = offset + position
        slot = bisect.bisect_right(scalars, (at, float("inf"))) - 1
        if slot >= 0 and scalars[slot][0] <= at < scalars[slot][1]:
            continue  # inside a value: text, not a comment
        return position
    return None


def project_config_path(agent_path: Path) -> Path | None:
    """The config.yml / config.yaml the runtime merges into the agent (config.yml wins, as upstream)."""
    for candidate in PROJECT_CONFIG_NAMES:
        path = agent_path.parent / candidate
        if path.is_file() and path.resolve() != agent_path.resolve():
            return path
    return None


def runtime_files(agent_document: YamlDocument, agent_path: Path) -> list[RuntimeFile]:
    return [runtime_file(agent_document, agent_path.name)]


def _without_sections(document: YamlDocument) -> str:
    data = document.data
    if not any(section in data for section in DROPPED_SECTIONS):
        return document.text
    expected = {key: value for key, value in data.items() if key not in DROPPED_SECTIONS}
    cut = _cut_lines(document.text)
    if cut is not None and _same_data(cut, expected):
        return cut
    dumped = yaml.safe_dump(expected, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return "# Written by agentdeploy: the agent config without its deployment section.\n" + dumped


def _cut_lines(text: str) -> str | None:
    """`text` without the lines of the dropped top-level sections; None when that is not possible."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        return None
    lines = text.splitlines(keepends=True)
    drop: set[int] = set()
    for key_node, value_node in root.value:
        if not (isinstance(key_node, yaml.ScalarNode) and key_node.value in DROPPED_SECTIONS):
            continue
        first = key_node.start_mark.line
        end = value_node.end_mark
        last = end.line - 1 if end.column == 0 else end.line
        # Column-0 comments and blank lines at the end belong to what follows, not to the section.
        while last > first and (not lines[last].strip() or lines[last].startswith("#")):
            last -= 1
        drop.update(range(first, last + 1))
    return "".join(line for index, line in enumerate(lines) if index not in drop)


def _same_data(text: str, expected: dict[str, YamlValue]) -> bool:
    try:
        return bool(yaml.safe_load(text) == expected)
    except yaml.YAMLError:
        return False


def _line_map(original: str, copy: str) -> dict[int, int]:
    """Line index in `copy` -> line index in `original`, for the lines the copy kept unchanged."""
    original_lines = original.splitlines()
    mapping: dict[int, int] = {}
    cursor = 0
    for index, line in enumerate(copy.splitlines()):
        while cursor < len(original_lines) and original_lines[cursor] != line:
            cursor += 1
        if cursor < len(original_lines):
            mapping[index] = cursor
            cursor += 1
    return mapping
