"""What a deploy would do (pure): desired (the config) vs recorded (the state) vs live (the target).

Actions, in PromptKit's words: CREATE (nothing recorded, nothing running), UPDATE (the config or
the image inputs changed since the last deployment: the fields that change are listed), NO_CHANGE,
and DRIFT (the live app or container differs from the record: someone changed it by hand).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    NO_CHANGE = "NO_CHANGE"
    DRIFT = "DRIFT"


CREATE, UPDATE, NO_CHANGE, DRIFT = Action.CREATE, Action.UPDATE, Action.NO_CHANGE, Action.DRIFT


@dataclass(frozen=True)
class Desired:
    config_hash: str
    inputs_digest: str  # everything that decides the image's content
    deployment: dict[str, Any]  # canonical deployment section, placeholders unresolved (no secret values)


@dataclass(frozen=True)
class Recorded:
    config_hash: str
    inputs_digest: str
    deployment: dict[str, Any]
    image: str


@dataclass(frozen=True)
class Live:
    exists: bool
    image: str = ""  # what runs now
    config_hash: str = ""  # as labelled on the container (docker); "" when the target does not keep it
    serving: bool = True  # the recorded revision/container is the one serving


@dataclass(frozen=True)
class PlanItem:
    resource: str
    action: Action
    changes: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"resource": self.resource, "action": self.action, "changes": self.changes, "drift": self.drift}


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "deployment") -> list[str]:
    """Dotted paths whose values differ (dicts are compared key by key, anything else as a whole)."""
    paths: list[str] = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}.{key}"
        before, after = old.get(key), new.get(key)
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            paths.extend(changed_fields(before, after, path))
        elif before != after:
            paths.append(path)
    return paths


def plan_release(resource: str, desired: Desired, recorded: Recorded | None, live: Live) -> PlanItem:
    if recorded is None:
        if live.exists:
            return PlanItem(
                resource, DRIFT, ["first deployment by agentdeploy"], ["it exists but agentdeploy has no record of it"]
            )
        return PlanItem(resource, CREATE, ["everything"])
    changes = changed_fields(recorded.deployment, desired.deployment)
    if desired.config_hash != recorded.config_hash and not changes:
        changes.append("agent config outside deployment:")
    if desired.inputs_digest != recorded.inputs_digest:
        changes.append("image content (agent files, Dockerfile, platform or build args)")
    drift: list[str] = []
    if not live.exists:
        drift.append("recorded as deployed, but it does not exist")
    else:
        if live.image and recorded.image and live.image != recorded.image:
            drift.append(f"runs {live.image}, recorded {recorded.image}")
        if live.config_hash and live.config_hash != recorded.config_hash:
            drift.append("its configuration label differs from the record")
        if not live.serving:
            drift.append("the recorded revision is not the one serving")
    if drift:
        return PlanItem(resource, DRIFT, changes, drift)
    return PlanItem(resource, UPDATE if changes else NO_CHANGE, changes)


def render_table(items: list[PlanItem]) -> str:
    lines = [f"{'RESOURCE':<36} {'ACTION':<10} DETAILS"]
    for item in items:
        details = "; ".join([*(f"change: {c}" for c in item.changes), *(f"drift: {d}" for d in item.drift)]) or "-"
        lines.append(f"{item.resource:<36} {item.action:<10} {details}")
    return "\n".join(lines)


def canonical_deployment(deployment: Mapping[str, Any]) -> str:
    return json.dumps(deployment, sort_keys=True, separators=(",", ":"))
