"""What a rule reports: the key path it concerns (the loader turns it into file:line:column), what is wrong and
how to fix it."""

from __future__ import annotations

from dataclasses import dataclass

from agentdeploy.config.yamlsource import KeyPath


@dataclass(frozen=True)
class Violation:
    keys: KeyPath
    message: str
    hint: str | None = None
    at_key: bool = False  # point at the key rather than its value
    warning: bool = False  # reported, but does not make the config invalid
    where: KeyPath | None = None  # point here rather than at `keys` (a missing key: its parent)


def dotted(keys: KeyPath) -> str:
    """deployment.target.azure.memory, tools[0].type: a key path as the user reads it."""
    out = ""
    for part in keys:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
