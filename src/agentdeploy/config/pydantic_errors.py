"""pydantic's errors in our words: each one a Violation at its key path, with "did you mean" for a misspelt key."""

from __future__ import annotations

import difflib
import types
import typing
from typing import TYPE_CHECKING

from pydantic import BaseModel

from agentdeploy.config.holodeck_check import yaml_type
from agentdeploy.config.violation import Violation, dotted
from agentdeploy.config.yamlsource import KeyPath

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

_TYPE_WORDS = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "dict_type": "a mapping (key: value lines)",
    "model_type": "a mapping (key: value lines)",
    "list_type": "a list",
}

_BOUNDS = {
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "more than"),
    "less_than_equal": ("le", "at most"),
    "less_than": ("lt", "less than"),
}


def violation_from_pydantic(error: ErrorDetails, root: type[BaseModel], prefix: KeyPath = ()) -> Violation:
    """One error of `root`'s validation of the mapping found at `prefix`."""
    inner: KeyPath = tuple(error["loc"])
    keys: KeyPath = (*prefix, *inner)
    kind = error["type"]
    if kind == "extra_forbidden":
        name = str(keys[-1])
        allowed = _allowed_keys(root, inner[:-1])
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else None
        if allowed and not close:
            hint = "allowed keys here: " + ", ".join(allowed)
        return Violation(keys, f"unknown key {name!r}", hint, at_key=True)
    if kind == "missing":
        parent = dotted(keys[:-1]) or "the top level"
        return Violation(
            keys, f"required key {keys[-1]!r} is missing from {parent}", f"add `{keys[-1]}:`", where=keys[:-1]
        )
    value = error.get("input")
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return Violation(keys, f"{value!r} is not allowed", f"use one of {expected}")
    if kind in _BOUNDS:
        bound, words = _BOUNDS[kind]
        return Violation(keys, f"{value!r} is out of range: it must be {words} {error.get('ctx', {}).get(bound)}")
    if kind in _TYPE_WORDS:
        hint = None
        if kind == "string_type" and isinstance(value, int | float | bool):
            hint = f'quote it: "{value}" (YAML reads the unquoted value as {yaml_type(value)})'
        return Violation(keys, f"expected {_TYPE_WORDS[kind]}, got {yaml_type(value)}", hint)
    return Violation(keys, error.get("msg", "invalid value"))


def _model_at(root: type[BaseModel], keys: KeyPath) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping found at `keys` under `root`, for "did you mean"."""
    current: object = root
    for part in keys:
        model = _as_model(current)
        if model is not None and isinstance(part, str) and part in model.model_fields:
            current = model.model_fields[part].annotation
            continue
        current = _container_item(current)
        if current is None:
            return None
    return _as_model(current)


def _as_model(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            model = _as_model(arg)
            if model is not None:
                return model
    return None


def _container_item(annotation: object) -> object:
    for candidate in (annotation, *typing.get_args(annotation)):
        origin = typing.get_origin(candidate)
        if origin is list:
            return typing.get_args(candidate)[0]
        if origin is dict:
            return typing.get_args(candidate)[1]
    return None


def _allowed_keys(root: type[BaseModel], keys: KeyPath) -> list[str]:
    model = _model_at(root, keys)
    return list(model.model_fields) if model is not None else []
