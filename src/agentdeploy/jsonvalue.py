"""JSON as a type: what ARM, HoloDeck's answers and the registry API send, and a few readers that walk it.

A reader takes a path of keys and narrows with isinstance at every step, so a missing key, a null or a
value of another shape gives the reader's default instead of an AttributeError three calls later.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeAlias

JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"
JsonObject: TypeAlias = "dict[str, JsonValue]"
JsonArray: TypeAlias = "list[JsonValue]"


def to_json(value: object) -> JsonValue:
    """`value` as JSON: mappings with string keys and lists (or tuples) of JSON, down to the scalars.

    For data that came from a library typed loosely (an SDK model's `as_dict()`): anything that is not
    JSON (a datetime, say) becomes its `str()`, as `json.dumps(default=str)` would write it.
    """
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    return str(value)


def to_object(value: object) -> JsonObject:
    """`value` as a JSON object; {} when it is not a mapping."""
    converted = to_json(value)
    return converted if isinstance(converted, dict) else {}


def array(items: Iterable[JsonValue]) -> JsonArray:
    """A JSON array of `items` (a list[str] is not a list[JsonValue]: lists are invariant)."""
    return list(items)


def value_at(data: JsonValue, *path: str) -> JsonValue:
    """The value at `path` under `data`; None where a step is missing or not an object."""
    current = data
    for key in path:
        if not isinstance(current, dict):
            return None
        current = current.get(key)
    return current


def object_at(data: JsonValue, *path: str) -> JsonObject:
    """The object at `path`; {} where it is missing, null or not an object."""
    found = value_at(data, *path)
    return found if isinstance(found, dict) else {}


def objects_at(data: JsonValue, *path: str) -> list[JsonObject]:
    """The objects in the array at `path`; [] where it is missing or not an array. Other items are skipped."""
    found = value_at(data, *path)
    if not isinstance(found, list):
        return []
    return [item for item in found if isinstance(item, dict)]


def text_at(data: JsonValue, *path: str, default: str = "") -> str:
    """The scalar at `path` as a string (a number as its digits); `default` for null, missing or not a scalar."""
    found = value_at(data, *path)
    if isinstance(found, str):
        return found
    if isinstance(found, bool | int | float):
        return str(found)
    return default


def float_at(data: JsonValue, *path: str, default: float = 0.0) -> float:
    """The number at `path` as a float (a numeric string too); `default` for anything else."""
    found = value_at(data, *path)
    if isinstance(found, bool | int | float):
        return float(found)
    if isinstance(found, str):
        try:
            return float(found)
        except ValueError:
            return default
    return default


def int_at(data: JsonValue, *path: str, default: int = 0) -> int:
    """The number at `path` as an int (a numeric string too); `default` for anything else."""
    found = value_at(data, *path)
    if isinstance(found, bool | int | float):
        return int(found)
    if isinstance(found, str):
        try:
            return int(found)
        except ValueError:
            return default
    return default
