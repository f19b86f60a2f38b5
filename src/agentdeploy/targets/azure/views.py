"""Pure readers of a container app's and a revision's ARM JSON (hosts, URLs, the traffic and what it
serves, why a revision failed, the revision mode), the merge patch that sets the traffic, and a release's
outcome: no I/O, so the release, the gate, the lease and the target share one reading of what ARM returned."""

from __future__ import annotations

import re
from collections.abc import Sequence

from agentdeploy.errors import DeployError
from agentdeploy.jsonvalue import JsonObject, JsonValue, array, int_at, objects_at, text_at, value_at
from agentdeploy.targets.base import Status, TargetOutcome


def failure_details(revision_properties: JsonObject) -> str:
    """Why a revision failed, in the service's words: `provisioningError` (in the REST spec) and
    `runningStateDetails` (not in the spec, but sent, and passed through by the SDK: where the service says
    "Deployment Progress Deadline Exceeded" or why an image pull failed); both when both are there."""
    parts = [text_at(revision_properties, key) for key in ("provisioningError", "runningStateDetails")]
    return "; ".join(dict.fromkeys(part for part in parts if part))


def revision_failure(revision: str, last: str, detail: str, verb: str = "failed: ") -> str:
    reason = f"revision {revision} {verb}{last}" + (f": {detail}" if detail else "")
    if "ImagePull" in detail or "UNAUTHORIZED" in detail.upper():
        reason += (
            "; Container Apps could not pull the image: give the app pull access (target.azure.registry_identity "
            "with AcrPull on an Azure Container Registry, or <PREFIX>_USERNAME/_PASSWORD for the registry)"
        )
    return reason


def raw_traffic(app: JsonObject) -> list[JsonObject]:
    """The traffic entries as configured (not resolved to names): changed only by a write of the traffic."""
    return objects_at(app, "properties", "configuration", "ingress", "traffic")


PREVIEW_TAG = "agentdeploy-preview-"  # + a preview's name: the app's tag that says its label is a preview's


def kept_previews(app: JsonObject) -> list[JsonObject]:
    """The previews' traffic entries (a label with the app's preview tag, targets/azure/preview.py): what a production
    traffic change keeps as it is, so a release never takes a pull request's preview away."""
    tags = value_at(app, "tags")
    names = (
        {key[len(PREVIEW_TAG) :] for key in tags if key.startswith(PREVIEW_TAG)} if isinstance(tags, dict) else set()
    )
    return [dict(entry) for entry in raw_traffic(app) if entry.get("label") and entry.get("label") in names]


def traffic_patch(traffic: list[JsonObject]) -> JsonObject:
    """The merge patch that sets the ingress traffic (the whole array: arrays are replaced, not merged)."""
    return {"properties": {"configuration": {"ingress": {"traffic": array(traffic)}}}}


def has_secrets(app: JsonObject) -> bool:
    return bool(value_at(app, "properties", "configuration", "secrets"))


def app_host(app: JsonObject) -> str | None:
    return text_at(app, "properties", "configuration", "ingress", "fqdn") or None


def app_url(app: JsonObject) -> str:
    host = app_host(app)
    return f"https://{host}" if host else ""


def named_traffic(app: JsonObject) -> list[JsonObject]:
    """The traffic as ARM has it, for people: a `latestRevision` entry also names the revision it means, the latest
    READY one (a newer revision that never got ready serves nothing)."""
    latest = text_at(app, "properties", "latestReadyRevisionName")
    entries = []
    for entry in objects_at(app, "properties", "configuration", "ingress", "traffic"):
        entry = dict(entry)
        if entry.get("latestRevision") and not entry.get("revisionName") and latest:
            entry["revisionName"] = latest
        entries.append(entry)
    return entries


def revision_host(revision: JsonObject | None) -> str | None:
    return text_at(revision, "properties", "fqdn") or None


def revision_host_in(app: JsonObject, revision: str) -> str | None:
    """A revision's fqdn from the app's, with no read: `<app>.<domain>` -> `<app>--<suffix>.<domain>` (FACTS.md:
    the recorded revision fqdn); None when the app has no ingress host."""
    host = app_host(app)
    name = text_at(app, "name")
    if not host or not name or not host.startswith(f"{name}.") or not revision.startswith(f"{name}--"):
        return None
    return f"{revision}{host[len(name) :]}"


def revision_image(revision: JsonObject | None) -> str:
    containers = objects_at(revision, "properties", "template", "containers")
    return text_at(containers[0], "image") if containers else ""


def label_host_of(app: JsonObject, label: str) -> str | None:
    host = app_host(app)
    name = text_at(app, "name")
    if not host or not name or not host.startswith(f"{name}."):
        return None
    return f"{name}---{label}{host[len(name) :]}"


def serving_in(traffic: list[JsonObject]) -> str:
    best = max(traffic, key=lambda t: int_at(t, "weight"), default=None)
    return text_at(best, "revisionName")


def stamp(app: JsonObject) -> tuple[str, ...]:
    """What changes whenever the app's revisions or secrets may have: any write moves lastModifiedAt."""
    return (
        text_at(app, "systemData", "lastModifiedAt"),
        text_at(app, "properties", "latestRevisionName"),
        text_at(app, "properties", "latestReadyRevisionName"),
    )


def secrets_in(listed: JsonObject) -> list[JsonObject]:
    """The secrets of a listSecrets answer ({"value": [...]})."""
    return objects_at(listed, "value")


def serving_revision(app: JsonObject) -> str:
    """The revision with the largest share of the traffic (a `latestRevision` entry means the latest READY
    one: a newer revision that never got ready takes no traffic)."""
    ready = text_at(app, "properties", "latestReadyRevisionName")
    best, weight = "", -1
    for entry in objects_at(app, "properties", "configuration", "ingress", "traffic"):
        name = text_at(entry, "revisionName") or (ready if entry.get("latestRevision") else "")
        share = int_at(entry, "weight")
        if name and share > weight:
            best, weight = name, share
    return best or ready


def serving_names(app: JsonObject) -> set[str]:
    """The revisions that take a share of the traffic (a `latestRevision` entry: the latest ready one)."""
    traffic = objects_at(app, "properties", "configuration", "ingress", "traffic")
    names = {text_at(t, "revisionName") for t in traffic if int_at(t, "weight") > 0 and text_at(t, "revisionName")}
    if any(t.get("latestRevision") and int_at(t, "weight") > 0 for t in traffic):
        names.add(text_at(app, "properties", "latestReadyRevisionName"))
    return names


def check_known_mode(app: JsonObject, name: str) -> None:
    """Single or Multiple revision mode, else stop before any write: the preview `Labels` mode (FACTS.md) routes
    by label, and switching it back would drop the labels' traffic rules behind the owner's back."""
    mode = text_at(app, "properties", "configuration", "activeRevisionsMode")
    if mode and mode.lower() not in ("single", "multiple"):
        raise DeployError(
            f"container app {name} is in the {mode} revision mode, which agentdeploy does not manage "
            "(it deploys in Single or Multiple mode); nothing was changed",
            hint=f"switch the app to single or multiple mode yourself (az containerapp revision set-mode --name "
            f"{name} --mode single), or deploy to another app (deployment.target.azure.app_name)",
        )


def release_outcome(
    status: Status,
    app: JsonObject,
    revision: str,
    previous: str,
    reason: str = "",
    *,
    changes: Sequence[str] = (),
    before: Sequence[JsonObject] = (),
    after: Sequence[JsonObject] = (),
) -> TargetOutcome:
    """A release's outcome at `app`'s URL; the Azure-only facts (what changed, the traffic before and after, for
    the job summary) in its details."""
    return TargetOutcome(
        status=status,
        url=app_url(app),
        revision=revision,
        previous=previous,
        reason=reason,
        details={"changes": array(changes), "traffic_before": array(before), "traffic_after": array(after)},
    )


def changes_of(outcome: TargetOutcome) -> list[str]:
    changes = outcome.details.get("changes")
    return [str(change) for change in changes] if isinstance(changes, list) else []


_QUANTITY = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti)$")


def normalised(value: JsonValue) -> JsonValue:
    """Compare what we sent with what ARM returns, normalised as the service normalises its echo (FACTS.md):
    quantities in their shortest form ("1.0Gi" is "1Gi"), numbers as numbers (1 is 1.0), an empty list, an empty
    object and null all the same as a field left out (`env: []` comes back without `env`, `ipSecurityRestrictions:
    []` as null), defaults it fills in dropped, enums in any case."""
    if isinstance(value, dict):
        out: JsonObject = {}
        for key, item in sorted(value.items()):
            if key in ("timeoutSeconds", "successThreshold"):
                continue
            normal = normalised(item)
            if normal is not None and normal != [] and normal != {}:
                out[key] = normal
        return out
    if isinstance(value, list):
        return [normalised(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, str):
        if value.upper() in ("HTTP", "HTTPS", "LIVENESS", "READINESS", "STARTUP"):
            return value.upper()
        quantity = _QUANTITY.match(value)
        if quantity:
            return f"{float(quantity.group(1)):g}{quantity.group(2)}"
    return value
