"""`${VAR}` and `${VAR:-default}` placeholders.

Upstream HoloDeck substitutes `${VAR}` in the raw text of the whole file. We keep the file as it is
(the agent inside the container resolves its own placeholders at run time) and resolve only the
deployment values we hand to a target, and only when deploying: building never needs a secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
PLACEHOLDER_RE = re.compile(r"\$\{(?P<name>" + _NAME + r")(?::-(?P<default>[^}]*))?\}")
_ANY_OPENING = re.compile(r"\$\{")


@dataclass(frozen=True)
class Placeholder:
    name: str
    default: str | None  # None when no `:-` was written; "" is a real (empty) default


def find_placeholders(value: str) -> list[Placeholder]:
    return [Placeholder(m["name"], m["default"]) for m in PLACEHOLDER_RE.finditer(value)]


def malformed_placeholder(value: str) -> str | None:
    """The first `${...` in `value` that is not a well-formed placeholder, if any."""
    well_formed = {m.start() for m in PLACEHOLDER_RE.finditer(value)}
    for opening in _ANY_OPENING.finditer(value):
        if opening.start() not in well_formed:
            end = value.find("}", opening.start())
            return value[opening.start() : end + 1 if end != -1 else None]
    return None


def single_placeholder(value: str) -> Placeholder | None:
    """The placeholder when `value` is exactly one `${VAR}` (or `${VAR:-default}`), else None."""
    match = PLACEHOLDER_RE.fullmatch(value.strip())
    return Placeholder(match["name"], match["default"]) if match else None


def missing_variables(value: str, environ: Mapping[str, str]) -> list[str]:
    return [p.name for p in find_placeholders(value) if p.name not in environ and p.default is None]


def substitute(value: str, environ: Mapping[str, str]) -> str:
    """Replace every placeholder. Callers check missing_variables first."""

    def replace(match: re.Match[str]) -> str:
        name, default = match["name"], match["default"]
        # Shell semantics: `${VAR:-d}` takes d when VAR is unset or empty.
        if default is not None and not environ.get(name):
            return default
        if name in environ:
            return environ[name]
        raise KeyError(name)

    return PLACEHOLDER_RE.sub(replace, value)
