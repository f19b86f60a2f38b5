"""An in-memory Container Apps app behind AppApi (targets/azure/api.py), for fast tests of the release logic.

Built from FACTS.md, not from what our client sends:
- a PATCH is a JSON merge patch (objects merged, arrays replaced whole, null deletes); secrets left out are kept;
- a new revision `<app>--<template.revisionSuffix>` is made only when the template changes; a suffix used before
  fails the operation (ContainerAppOperationError), and the app keeps the template it was asked for;
- the app's `latestRevisionName` is the newest revision, `latestReadyRevisionName` the newest that got ready;
- Single mode takes no traffic by revision name ("Revision weights can not be used in this mode"): a
  `latestRevision` entry goes to the latest READY revision, and a revision that gets ready there replaces the
  one before it (deactivated); in Multiple mode `latestRevision` sends traffic to the newest revision at once;
- weights sum to 100; a label names one revision; activate/deactivate flip a revision's `active`;
- GET never returns secret values, listSecrets does;
- a running revision lists its replicas (one per minimum replica, at least one), each container with its
  `restartCount` (the replicas API; none while it is inactive or not running).
How a new revision runs is set per image (`behave`): healthy, `crashes` (ActivationFailed), `never-starts`
(Activating), or `unhealthy-url` (Running and Healthy to the platform, its health path answers 503)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from agentdeploy.errors import DeployError
from agentdeploy.targets.azure.api import AppBusy

DOMAIN = "calmsea-1a2b3c4d.eastus.azurecontainerapps.io"
ENVIRONMENT_ID = "/subscriptions/sub/resourceGroups/agents-rg/providers/Microsoft.App/managedEnvironments/agents-env"
STATES = {
    "healthy": ("Provisioned", "Running", "Healthy"),
    "unhealthy-url": ("Provisioned", "Running", "Healthy"),
    "crashes": ("Provisioned", "ActivationFailed", "Unhealthy"),
    "never-starts": ("Provisioned", "Activating", "None"),
}


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge(merged.get(key), value)
    return merged


@dataclass
class MemoryApp:
    """One container app in memory; `calls` is every call it received, in order."""

    name: str = "support-agent"
    app: dict[str, Any] | None = None
    revisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    secret_values: dict[str, dict[str, Any]] = field(default_factory=dict)
    behaviour: dict[str, str] = field(default_factory=dict)  # image -> how its revisions run
    busy: list[str] = field(default_factory=list)  # codes the next writes are refused with
    restarts: dict[str, int] = field(default_factory=dict)  # revision -> restarts of its first replica's container
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    version: int = 0

    # -- the knobs of a test ---------------------------------------------------------------------
    def behave(self, image: str, how: str) -> None:
        self.behaviour[image] = how

    def restart(self, revision: str, times: int = 1) -> None:
        """The revision's container restarts (a crash the platform recovered from: it runs and is Healthy again)."""
        self.restarts[revision] = self.restarts.get(revision, 0) + times

    def sicken(self, revision: str) -> None:
        """The revision turns Unhealthy (its probes fail) and its URL answers 503."""
        self.revisions[revision]["properties"]["healthState"] = "Unhealthy"

    def traffic_writes(self) -> list[list[dict[str, Any]]]:
        """The traffic lists the writes set, in order."""
        found = []
        for call in self.calls:
            if call[0] == "update":
                traffic = call[1].get("properties", {}).get("configuration", {}).get("ingress", {}).get("traffic")
                if traffic is not None:
                    found.append(traffic)
        return found

    def writes(self) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] in ("create", "update", "set_active", "delete")]

    def traffic(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._props().get("configuration", {}).get("ingress", {}).get("traffic", []))

    def weights(self) -> dict[str, int]:
        """Revision -> share of the traffic (none: left out), as the service resolves the entries."""
        shares: dict[str, int] = {}
        for entry in self.traffic():
            name = entry.get("revisionName") or self._latest_target()
            shares[name] = shares.get(name, 0) + int(entry.get("weight", 0))
        return {name: weight for name, weight in shares.items() if name and weight}

    def active(self) -> set[str]:
        return {name for name, rev in self.revisions.items() if rev["properties"]["active"]}

    def probe(self, url: str) -> int:
        """The health path of a revision, label or app URL: 200 when the revision behind it is up and healthy."""
        host = url.split("://", 1)[1].split("/", 1)[0]
        label = host.split(".", 1)[0].split("---", 1)
        if len(label) == 2:
            name = next((e["revisionName"] for e in self.traffic() if e.get("label") == label[1]), "")
        elif host.startswith(f"{self.name}--"):
            name = host.split(".", 1)[0]
        else:
            name = max(self.weights().items(), key=lambda item: item[1], default=("", 0))[0]
        revision = self.revisions.get(name)
        if revision is None or not revision["properties"]["active"]:
            return 404
        image = revision["properties"]["template"]["containers"][0]["image"]
        sick = revision["properties"]["healthState"] != "Healthy"
        return 200 if self.behaviour.get(image, "healthy") == "healthy" and not sick else 503

    # -- AppApi ------------------------------------------------------------------------------------
    def get_app(self) -> dict[str, Any] | None:
        self.calls.append(("get_app",))
        return self._view()

    def _view(self) -> dict[str, Any] | None:
        if self.app is None:
            return None
        shown = copy.deepcopy(self.app)
        for secret in shown["properties"]["configuration"].get("secrets", []):
            secret.pop("value", None)  # GET never returns secret values
        shown["systemData"] = {"lastModifiedAt": f"2026-01-01T00:00:{self.version:02d}Z"}
        return shown

    def list_revisions(self) -> list[dict[str, Any]]:
        self.calls.append(("list_revisions",))
        return [self._shown(name) for name in self.revisions]

    def get_revision(self, name: str) -> dict[str, Any] | None:
        self.calls.append(("get_revision", name))
        return self._shown(name) if name in self.revisions else None

    def list_replicas(self, revision: str) -> list[dict[str, Any]]:
        self.calls.append(("list_replicas", revision))
        props = self.revisions[revision]["properties"] if revision in self.revisions else {}
        if not props.get("active") or props.get("runningState") != "Running":
            return []
        count = max(1, int(props["template"].get("scale", {}).get("minReplicas") or 0))
        containers = props["template"]["containers"]
        return [
            {
                "name": f"{revision}-replica{index}",
                "properties": {
                    "runningState": "Running",
                    "containers": [
                        {
                            "name": c["name"],
                            "ready": True,
                            "restartCount": self.restarts.get(revision, 0) if index == 0 and i == 0 else 0,
                        }
                        for i, c in enumerate(containers)
                    ],
                },
            }
            for index in range(count)
        ]

    def list_secrets(self) -> list[dict[str, Any]]:
        self.calls.append(("list_secrets",))
        return [copy.deepcopy(secret) for secret in self.secret_values.values()]

    def create(self, body: dict[str, Any], action: str) -> dict[str, Any]:
        self.calls.append(("create", copy.deepcopy(body)))
        self._refuse_if_busy()
        configuration = copy.deepcopy(body["properties"]["configuration"])
        configuration["activeRevisionsMode"] = str(configuration.get("activeRevisionsMode") or "single").capitalize()
        ingress = configuration.setdefault("ingress", {})
        ingress["fqdn"] = f"{self.name}.{DOMAIN}"
        ingress.setdefault("traffic", [{"weight": 100, "latestRevision": True}])
        self._store_secrets(configuration.get("secrets", []))
        self.app = {
            "name": self.name,
            "location": body.get("location"),
            "tags": copy.deepcopy(body.get("tags", {})),
            "properties": {"configuration": configuration, "template": {}, "provisioningState": "Succeeded"},
        }
        return self._write({"properties": {"template": body["properties"]["template"]}}, action)

    def update(self, patch: dict[str, Any], action: str) -> dict[str, Any]:
        self.calls.append(("update", copy.deepcopy(patch)))
        self._refuse_if_busy()
        if self.app is None:
            raise DeployError(f"{action}: ResourceNotFound")
        return self._write(patch, action)

    def set_active(self, revision: str, active: bool) -> None:
        self.calls.append(("set_active", revision, active))
        if revision not in self.revisions:
            raise DeployError(f"revision {revision}: ResourceNotFound")
        self.revisions[revision]["properties"]["active"] = active

    def delete(self) -> None:
        self.calls.append(("delete",))
        self.app, self.revisions = None, {}

    def environment_id(self, group: str, name: str) -> str:
        self.calls.append(("environment_id", group, name))
        if (group, name) != ("agents-rg", "agents-env"):
            raise DeployError(f"reading Container Apps environment {name} in resource group {group}: not found")
        return ENVIRONMENT_ID

    def auth_configs(self) -> list[dict[str, Any]]:
        self.calls.append(("auth_configs",))
        return []

    def put_auth_config(self, body: dict[str, Any]) -> None:
        self.calls.append(("put_auth_config", copy.deepcopy(body)))

    # -- the service's side ------------------------------------------------------------------------
    def _props(self) -> dict[str, Any]:
        return self.app["properties"] if self.app else {}

    def _refuse_if_busy(self) -> None:
        if self.busy:
            raise AppBusy(self.busy.pop(0))

    def _single(self) -> bool:
        return self._props()["configuration"]["activeRevisionsMode"] == "Single"

    def _latest_target(self) -> str:
        """Where a `latestRevision` entry sends traffic (FACTS.md)."""
        props = self._props()
        return props.get("latestReadyRevisionName", "") if self._single() else props.get("latestRevisionName", "")

    def _write(self, patch: dict[str, Any], action: str) -> dict[str, Any]:
        assert self.app is not None
        before = copy.deepcopy(self.app["properties"].get("template"))
        wanted = patch.get("properties", {}).get("configuration", {}).get("secrets")
        self.app = merge(self.app, patch)
        self.version += 1
        if wanted is not None:
            self._store_secrets(wanted)
        self._check_traffic(action)
        template = self.app["properties"]["template"]
        if template != before:
            self._provision(template, action)
        return self._view() or {}

    def _store_secrets(self, wanted: list[dict[str, Any]]) -> None:
        for secret in wanted:
            if "value" not in secret and "keyVaultUrl" not in secret:
                raise DeployError(f"ContainerAppSecretNull: secret {secret['name']} has no value")
        self.secret_values = {secret["name"]: copy.deepcopy(secret) for secret in wanted}

    def _check_traffic(self, action: str) -> None:
        traffic = self.traffic()
        if sum(int(entry.get("weight", 0)) for entry in traffic) != 100:
            raise DeployError(f"{action}: ContainerAppInvalidTraffic: the weights do not sum to 100")
        if self._single() and any(entry.get("revisionName") for entry in traffic):
            raise DeployError(f"{action}: Revision weights can not be used in this mode")

    def _provision(self, template: dict[str, Any], action: str) -> None:
        name = f"{self.name}--{template.get('revisionSuffix') or f'gen{self.version}'}"
        if name in self.revisions:
            raise DeployError(f"{action}: ContainerAppOperationError: revision {name} already exists")
        image = template["containers"][0]["image"]
        provisioning, running, health = STATES[self.behaviour.get(image, "healthy")]
        self.revisions[name] = {
            "name": name,
            "properties": {
                "active": True,
                "template": copy.deepcopy(template),
                "provisioningState": provisioning,
                "runningState": running,
                "healthState": health,
                "replicas": 1 if running == "Running" else 0,
                "fqdn": f"{name}.{DOMAIN}",
            },
        }
        props = self._props()
        props["latestRevisionName"] = name
        if running == "Running":
            if self._single():
                for other in self.revisions.values():
                    other["properties"]["active"] = other["name"] == name
            props["latestReadyRevisionName"] = name

    def _shown(self, name: str) -> dict[str, Any]:
        shown = copy.deepcopy(self.revisions[name])
        shown["properties"]["trafficWeight"] = self.weights().get(name, 0)
        return shown
