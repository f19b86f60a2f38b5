"""Check the HoloDeck part of agent.yaml as holodeck-ai's models would, before anything is built.

Upstream validates agent.yaml only when the container starts, and a misspelt provider or key there costs a build, a
crash and a rollback. This walks the YAML data against holodeck_schema.py and reports every key upstream refuses,
every required key that is missing, every value of the wrong type or outside its enum, with "did you mean" for the
near misses. Types are read as pydantic reads them by default (lax: "0.5" is a number, `yes` is true); a value holding
a ${VAR} placeholder passes, since upstream fills it in before it validates.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache

from agentdeploy.config.holodeck_schema import ENUMS, LIMITS, LOADER_KEYS, SECTIONS, TAGGED, VALIDATOR_LIMITS
from agentdeploy.config.violation import Violation, dotted
from agentdeploy.config.yamlsource import KeyPath

BOOL_WORDS = frozenset({"0", "1", "true", "false", "yes", "no", "on", "off", "t", "f", "y", "n"})  # pydantic's
TAG_KEY = "type"
NAME_PATTERN = "/^[0-9A-Za-z_]+$/"  # upstream's tool names
TAG_KINDS = {"Tool": "tool", "Metric": "metric"}


@dataclass(frozen=True)
class TypeExpr:
    alternatives: tuple[str, ...]
    nullable: bool


@cache
def parse_type(text: str) -> TypeExpr:
    """`A|B?` -> (A, B) accepting null; `|` inside [...] or {...} belongs to the inner type."""
    nullable = text.endswith("?")
    body = text[:-1] if nullable else text
    parts, depth, start = [], 0, 0
    for index, char in enumerate(body):
        depth += char in "[{"
        depth -= char in "]}"
        if char == "|" and depth == 0:
            parts.append(body[start:index])
            start = index + 1
    parts.append(body[start:])
    return TypeExpr(tuple(parts), nullable)


def check_holodeck(data: Mapping[str, object]) -> list[Violation]:
    """Every way the file's HoloDeck sections differ from what holodeck-ai accepts (deployment: is models.py's)."""
    found = list(_check_mapping("Agent", data, (), LOADER_KEYS))
    return found or list(_unique_tool_names(data))


def _check_mapping(
    section_name: str, data: Mapping[str, object], keys: KeyPath, extra: Mapping[str, str] | None = None
) -> Iterator[Violation]:
    section = SECTIONS[section_name]
    types = {**section.types(), **(extra or {})}
    for name, value in data.items():
        if name in types:
            problems = _check_value(types[name], value, (*keys, name))
            yield from problems or _check_limit(f"{section_name}.{name}", value, (*keys, name))
        elif section.closed:
            yield _unknown_key(str(name), list(types), (*keys, name))
    for name in section.required_keys():
        if name not in data:
            parent = dotted(keys) or "the top level"
            message = f"required key {name!r} is missing from {parent}"
            yield Violation((*keys, name), message, f"add `{name}:`", where=keys)


def _unknown_key(name: str, allowed: list[str], keys: KeyPath) -> Violation:
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "allowed keys here: " + ", ".join(allowed)
    return Violation(keys, f"unknown key {name!r}", hint, at_key=True)


def _check_value(type_text: str, value: object, keys: KeyPath) -> list[Violation]:
    expr = parse_type(type_text)
    if value is None:
        return [] if expr.nullable or "any" in expr.alternatives else [_wrong_type(expr, value, keys)]
    if isinstance(value, str) and "${" in value and not _is_container(expr):
        return []  # upstream substitutes the variable before it validates
    found: list[list[Violation]] = []
    for alternative in expr.alternatives:
        problems = list(_check_alternative(alternative, value, keys))
        if not problems:
            return []
        found.append(problems)
    shaped = [
        problems
        for alternative, problems in zip(expr.alternatives, found, strict=True)
        if _same_kind(alternative, value)
    ]
    return shaped[0] if len(shaped) == 1 else [_wrong_type(expr, value, keys)]


def _is_container(expr: TypeExpr) -> bool:
    return all(_kind(alternative) in ("mapping", "list") for alternative in expr.alternatives)


def _kind(alternative: str) -> str:
    if alternative.startswith("["):
        return "list"
    if alternative.startswith("{") or alternative == "obj" or alternative in SECTIONS or alternative in TAGGED:
        return "mapping"
    return "scalar"


def _same_kind(alternative: str, value: object) -> bool:
    kind = _kind(alternative)
    if kind == "list":
        return isinstance(value, list)
    if kind == "mapping":
        return isinstance(value, dict)
    return alternative in ENUMS and isinstance(value, str)


def _check_alternative(alternative: str, value: object, keys: KeyPath) -> Iterator[Violation]:
    if alternative.startswith("[") and isinstance(value, list):
        for index, item in enumerate(value):
            yield from _check_value(alternative[1:-1], item, (*keys, index))
    elif alternative.startswith("{") and isinstance(value, dict):
        for name, item in value.items():
            yield from _check_value(alternative[1:-1], item, (*keys, name))
    elif alternative in SECTIONS and isinstance(value, dict):
        yield from _check_mapping(alternative, value, keys)
        if alternative == "LLMProvider":
            yield from _endpoint_rule(value, keys)
    elif alternative in TAGGED and isinstance(value, dict):
        yield from _check_tagged(alternative, value, keys)
    elif alternative in ENUMS and isinstance(value, str):
        yield from _check_enum(ENUMS[alternative], value, keys)
    elif not _scalar_fits(alternative, value):
        yield _wrong_type(TypeExpr((alternative,), False), value, keys)


def _check_tagged(union: str, value: Mapping[str, object], keys: KeyPath) -> Iterator[Violation]:
    """A tool or metric: its `type` picks the section the rest is checked against."""
    tags = TAGGED[union]
    tag = value.get(TAG_KEY)
    kind = TAG_KINDS[union]
    if tag is None:
        yield Violation(keys, f"this {kind} has no `type`", "add `type:` with one of " + ", ".join(tags))
    elif not isinstance(tag, str) or tag not in tags:
        yield from _check_enum(tuple(tags), tag, (*keys, TAG_KEY), what=f"a {kind} type")
    else:
        yield from _check_mapping(tags[tag], value, keys)


def _check_limit(field: str, value: object, keys: KeyPath) -> Iterator[Violation]:
    """A bound or pattern of LIMITS (or of upstream's field validators) that a value of the right type breaks."""
    limit = LIMITS.get(field) or VALIDATOR_LIMITS.get(field)
    if limit is None or value is None or (isinstance(value, str) and "${" in value):
        return
    if limit.startswith("/"):
        if isinstance(value, str) and not re.fullmatch(limit[1:-1], value):
            hint = "use letters, digits and '_' only, e.g. web_search" if limit == NAME_PATTERN else None
            yield Violation(keys, f"{value!r} does not match {limit[1:-1]}", hint)
        return
    number = float(str(value)) if not isinstance(value, bool) else float(value)
    if limit.startswith(">"):
        if not number > float(limit[1:]):
            yield Violation(keys, f"{value!r} is out of range: it must be more than {limit[1:]}")
        return
    low, _, high = limit.partition("..")
    if (low and number < float(low)) or (high and number > float(high)):
        words = f"{low} to {high}" if low and high else (f"at least {low}" if low else f"at most {high}")
        yield Violation(keys, f"{value!r} is out of range: it must be {words}")


def _endpoint_rule(model: Mapping[str, object], keys: KeyPath) -> Iterator[Violation]:
    """Upstream's LLMProvider validator: Azure OpenAI needs its endpoint."""
    endpoint = model.get("endpoint")
    if model.get("provider") == "azure_openai" and not (isinstance(endpoint, str) and endpoint.strip()):
        yield Violation(
            (*keys, "endpoint"),
            "endpoint is required for the azure_openai provider",
            "add `endpoint:` with your Azure OpenAI resource's URL, e.g. https://NAME.openai.azure.com/",
            where=keys,
        )


def _unique_tool_names(data: Mapping[str, object]) -> Iterator[Violation]:
    """Upstream's Agent validator: every tool has its own name (checked once the tools are well formed)."""
    tools = data.get("tools")
    seen: dict[object, int] = {}
    for index, tool in enumerate(tools if isinstance(tools, list) else []):
        name = tool.get("name") if isinstance(tool, dict) else None
        if name in seen:
            yield Violation(
                ("tools", index, "name"),
                f"the tool name {name!r} is used twice (also by tools[{seen[name]}])",
                "give each tool its own name",
            )
        else:
            seen[name] = index


def _check_enum(allowed: tuple[str, ...], value: object, keys: KeyPath, what: str = "allowed") -> Iterator[Violation]:
    if isinstance(value, str) and value in allowed:
        return
    choices = ", ".join(allowed)
    close = difflib.get_close_matches(str(value), allowed, n=1, cutoff=0.6) if isinstance(value, str) else []
    hint = f"did you mean {close[0]!r}? (one of: {choices})" if close else f"use one of: {choices}"
    yield Violation(keys, f"{value!r} is not {what}" if what != "allowed" else f"{value!r} is not allowed", hint)


def _scalar_fits(alternative: str, value: object) -> bool:
    """pydantic's lax reading of a YAML scalar."""
    if alternative == "any":
        return True
    if alternative == "obj":
        return isinstance(value, dict)
    if alternative == "str":
        return isinstance(value, str)
    if alternative.startswith("="):
        return value == alternative[1:]
    if alternative == "bool":
        return isinstance(value, bool) or value in (0, 1) or (isinstance(value, str) and value.lower() in BOOL_WORDS)
    if alternative in ("int", "num"):
        return _number_fits(value, whole=alternative == "int")
    return False


def _number_fits(value: object, *, whole: bool) -> bool:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return False
    if not isinstance(value, int | float):
        return False
    return not whole or float(value).is_integer()


_WORDS = {"str": "text", "int": "a whole number", "num": "a number", "bool": "true or false", "any": "anything"}


def _describe(alternative: str) -> str:
    if alternative in _WORDS:
        return _WORDS[alternative]
    if alternative.startswith("="):
        return repr(alternative[1:])
    if alternative in ENUMS:
        return "one of " + ", ".join(ENUMS[alternative])
    return "a list" if _kind(alternative) == "list" else "a mapping (key: value lines)"


def _wrong_type(expr: TypeExpr, value: object, keys: KeyPath) -> Violation:
    expected = " or ".join(dict.fromkeys(_describe(alternative) for alternative in expr.alternatives))
    hint = None
    if "str" in expr.alternatives and isinstance(value, int | float | bool):
        hint = f'quote it: "{value}" (YAML reads the unquoted value as {yaml_type(value)})'
    return Violation(keys, f"expected {expected}, got {yaml_type(value)}", hint)


def yaml_type(value: object) -> str:
    """How YAML read a value, in the words an error shows."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {value!r}".lower()
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
