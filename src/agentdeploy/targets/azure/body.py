"""Container Apps request bodies (pure): what to PUT on create, what to PATCH on update.

ARM JSON (camelCase) in, ARM JSON out. An update is a JSON merge patch that carries only the
parts agentdeploy manages, and only when they differ from what runs, so everything else on the
app (identity, tags, Dapr, custom domains, secrets and containers we did not set) is left alone.
Arrays in a merge patch replace the whole array: where we must send one (secrets, registries,
containers), it is rebuilt from the live app with our entries swapped in.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from agentdeploy.jsonvalue import (
    JsonArray,
    JsonObject,
    JsonValue,
    array,
    object_at,
    objects_at,
    text_at,
)
from agentdeploy.targets.azure.access import ip_restrictions, same_restrictions
from agentdeploy.targets.azure.views import normalised

SUFFIX_MAX = 54  # len(app) + 2 + len(suffix) <= 54 (FACTS.md)
REGISTRY_PASSWORD_SECRET = "registry-password"
MANAGED_TAG = "managed-by"


@dataclass(frozen=True)
class Registry:
    server: str
    identity: str | None = None  # "system" or a user-assigned identity resource id
    username: str | None = None  # with password in secrets[REGISTRY_PASSWORD_SECRET]


@dataclass(frozen=True)
class AuthSpec:
    """Built-in authentication with an existing Microsoft Entra app registration (the authConfigs/current child)."""

    client_id: str
    tenant_id: str
    unauthenticated: str = "401"  # "401" | "redirect"
    client_secret_setting: str | None = None  # the app's secret that holds the registration's client secret


@dataclass(frozen=True)
class AppSpec:
    """Everything agentdeploy decides about the app."""

    name: str
    location: str
    environment_id: str
    image: str  # registry/repo@sha256:...
    port: int
    external: bool
    cpu: float
    memory: str
    min_replicas: int
    max_replicas: int
    health_path: str
    multiple: bool  # activeRevisionsMode Multiple (blue-green)
    env: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)  # env name -> secret value
    registry: Registry | None = None
    registry_password: str | None = field(default=None, repr=False)
    ready_path: str = ""  # the readiness probe's path ("" = health_path); HoloDeck's runtime offers /ready
    workload_profile: str | None = None  # workloadProfileName; None: not managed (the environment's default)
    ip_allow: tuple[str, ...] | None = None  # CIDR ranges that may reach the ingress; None: rules not managed
    auth: AuthSpec | None = None  # None: the app's authentication is not managed


def secret_name(env_name: str) -> str:
    """Container Apps secret names are lower-case letters, digits and '-'."""
    name = re.sub(r"[^a-z0-9]+", "-", env_name.lower()).strip("-")
    return name or "secret"


def managed_secrets(spec: AppSpec) -> dict[str, str]:
    """secret name -> value, for every secret agentdeploy sets."""
    secrets = {secret_name(env): value for env, value in spec.secret_env.items()}
    if spec.registry and spec.registry.username and spec.registry_password is not None:
        secrets[REGISTRY_PASSWORD_SECRET] = spec.registry_password
    return secrets


def _env_list(spec: AppSpec) -> JsonArray:
    plain: JsonArray = [{"name": key, "value": value} for key, value in sorted(spec.env.items())]
    secret: JsonArray = [{"name": key, "secretRef": secret_name(key)} for key in sorted(spec.secret_env)]
    return plain + secret


def container(spec: AppSpec) -> JsonObject:
    # Container Apps' HTTP probes judge the status code only (HoloDeck answers 200 whatever its verdict):
    # liveness on the health path, readiness on the runtime's readiness route; the gate reads the verdicts.
    probe: JsonObject = {"path": spec.health_path, "port": spec.port, "scheme": "HTTP"}
    ready: JsonObject = {"path": spec.ready_path or spec.health_path, "port": spec.port, "scheme": "HTTP"}
    return {
        "name": spec.name,
        "image": spec.image,
        "env": _env_list(spec),
        "resources": {"cpu": spec.cpu, "memory": spec.memory},
        "probes": [
            {
                "type": "Liveness",
                "httpGet": probe,
                "initialDelaySeconds": 10,
                "periodSeconds": 10,
                "failureThreshold": 3,
            },
            {
                "type": "Readiness",
                "httpGet": ready,
                "initialDelaySeconds": 3,
                "periodSeconds": 5,
                "failureThreshold": 3,
            },
        ],
    }


def template_digest(spec: AppSpec) -> str:
    """Identifies the revision-scope content we manage: same digest, same revision."""
    canonical = json.dumps(
        {"container": container(spec), "scale": [spec.min_replicas, spec.max_replicas]}, sort_keys=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def revision_suffix(app: str, tag: str, spec: AppSpec, taken: Collection[str] = ()) -> str:
    """Readable (the tag) and unique (a hash of the template); never one already used by the app."""
    readable = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", tag.lower())).strip("-") or "rev"
    if not readable[0].isalpha():
        readable = "r" + readable
    unique = template_digest(spec)[:6]
    room = SUFFIX_MAX - len(app) - 2 - len(unique) - 1
    base = f"{readable[: max(room, 1)].rstrip('-')}-{unique}"
    suffix, counter = base, 1
    while f"{app}--{suffix}" in taken:
        counter += 1
        extra = f"-{counter}"
        suffix = f"{readable[: max(room - len(extra), 1)].rstrip('-')}-{unique}{extra}"
    return suffix


def create_body(spec: AppSpec, suffix: str, traffic: list[JsonObject] | None = None) -> JsonObject:
    ingress: JsonObject = {"external": spec.external, "targetPort": spec.port, "transport": "auto"}
    if traffic is not None:
        ingress["traffic"] = array(traffic)
    if spec.ip_allow:
        ingress["ipSecurityRestrictions"] = ip_restrictions(spec)
    secrets: JsonArray = [{"name": name, "value": value} for name, value in sorted(managed_secrets(spec).items())]
    configuration: JsonObject = {
        "activeRevisionsMode": "Multiple" if spec.multiple else "Single",
        "ingress": ingress,
        "secrets": secrets,
    }
    registries = _registry_entries(spec, [])
    if registries:
        configuration["registries"] = array(registries)
    identity = _identity(spec)
    properties: JsonObject = {
        "environmentId": spec.environment_id,
        "configuration": configuration,
        "template": {
            "revisionSuffix": suffix,
            "containers": [container(spec)],
            "scale": {"minReplicas": spec.min_replicas, "maxReplicas": spec.max_replicas},
        },
    }
    if spec.workload_profile is not None:
        properties["workloadProfileName"] = spec.workload_profile
    body: JsonObject = {"location": spec.location, "tags": {MANAGED_TAG: "agentdeploy"}, "properties": properties}
    if identity:
        body["identity"] = identity
    return body


def _identity(spec: AppSpec) -> JsonObject | None:
    if spec.registry is None or spec.registry.identity is None:
        return None
    if spec.registry.identity == "system":
        return {"type": "SystemAssigned"}
    return {"type": "UserAssigned", "userAssignedIdentities": {spec.registry.identity: {}}}


def _registry_entries(spec: AppSpec, existing: list[JsonObject]) -> list[JsonObject]:
    others = [entry for entry in existing if entry.get("server") != (spec.registry.server if spec.registry else None)]
    if spec.registry is None:
        return existing
    if spec.registry.identity:
        ours: JsonObject = {"server": spec.registry.server, "identity": spec.registry.identity}
    elif spec.registry.username:
        ours = {
            "server": spec.registry.server,
            "username": spec.registry.username,
            "passwordSecretRef": REGISTRY_PASSWORD_SECRET,
        }
    else:
        return existing  # anonymous pull: nothing to configure
    return [*others, ours]


def _our_container(existing: JsonObject, name: str) -> JsonObject | None:
    containers = objects_at(existing, "properties", "template", "containers")
    return next((c for c in containers if c.get("name") == name), None)


def _same_container(live: JsonObject | None, wanted: JsonObject) -> bool:
    if live is None:
        return False

    def managed(container: JsonObject) -> JsonValue:
        resources = object_at(container, "resources")
        picked: JsonObject = {key: container.get(key) for key in ("image", "probes")}
        # A secret's env var by its name only: the service rewrites the secretRef of a Key Vault-backed secret in
        # the revisions it emits (to `capp-<app>`, microsoft/azure-container-apps#1705), and ours follows from the
        # variable's name (secret_name) anyway.
        picked["env"] = array(
            {**variable, "secretRef": "(a secret)"} if variable.get("secretRef") else variable
            for variable in objects_at(container, "env")
        )
        picked["resources"] = {key: resources.get(key) for key in ("cpu", "memory")}
        return normalised(picked)

    return managed(live) == managed(wanted)


@dataclass(frozen=True)
class UpdatePlan:
    patch: JsonObject | None  # None: nothing to change, no write at all
    changes: list[str]  # human words for what changes
    new_revision: bool  # the patch changes the template: a new revision will be made


def spec_secret_values(spec: AppSpec) -> dict[str, str]:
    """Secret name -> value of the secrets the container reads (not the registry password)."""
    return {secret_name(env): value for env, value in spec.secret_env.items()}


def update_patch(
    spec: AppSpec,
    existing: JsonObject,
    live_secret_values: dict[str, str],
    suffix: str,
    *,
    traffic: list[JsonObject] | None = None,
    secret_references: Mapping[str, JsonObject] | None = None,
) -> UpdatePlan:
    """The smallest merge patch that makes the live app what `spec` says, or None when it already is."""
    configuration = object_at(existing, "properties", "configuration")
    changes: list[str] = []
    patch_template = _template_patch(spec, existing, suffix, changes)
    patch_configuration: JsonObject = {}
    mode = "Multiple" if spec.multiple else "Single"
    if text_at(configuration, "activeRevisionsMode").lower() != mode.lower():
        patch_configuration["activeRevisionsMode"] = mode
        changes.append(f"revision mode {mode}")
    ingress_patch = _ingress_patch(spec, object_at(configuration, "ingress"), traffic, changes)
    if ingress_patch:
        patch_configuration["ingress"] = ingress_patch
    references = secret_references or {}
    secrets = _secrets_patch(spec, live_secret_values, references)
    if secrets is not None:
        patch_configuration["secrets"] = secrets
        changes.append("secrets")
        rotated = {name: value for name, value in spec_secret_values(spec).items() if name not in references}
        if any(live_secret_values.get(name) != value for name, value in rotated.items()):
            # A new secret value does not reach running revisions (FACTS.md): a new revision (a new suffix is a
            # revision-scope change) starts with it, and passes the gate before it serves.
            patch_template["revisionSuffix"] = suffix
    existing_registries = objects_at(configuration, "registries")
    wanted_registries = _registry_entries(spec, existing_registries)
    if normalised(array(wanted_registries)) != normalised(array(existing_registries)):
        patch_configuration["registries"] = array(wanted_registries)
        changes.append("registry credentials")
    return _plan(spec, existing, patch_configuration, patch_template, changes)


def _template_patch(spec: AppSpec, existing: JsonObject, suffix: str, changes: list[str]) -> JsonObject:
    """The template's part of the patch (our container, the scale), with the suffix of the revision it makes."""
    template = object_at(existing, "properties", "template")
    patch_template: JsonObject = {}
    wanted_container = container(spec)
    if not _same_container(_our_container(existing, spec.name), wanted_container):
        containers = [c for c in objects_at(template, "containers") if c.get("name") != spec.name]
        patch_template["containers"] = array([wanted_container, *containers])
        changes.append("container (image, env, resources or probes)")
    scale = object_at(template, "scale")
    if (scale.get("minReplicas"), scale.get("maxReplicas")) != (spec.min_replicas, spec.max_replicas):
        patch_template["scale"] = {"minReplicas": spec.min_replicas, "maxReplicas": spec.max_replicas}
        changes.append(f"scale {spec.min_replicas}..{spec.max_replicas}")
    if patch_template:
        patch_template["revisionSuffix"] = suffix
    return patch_template


def _ingress_patch(
    spec: AppSpec, ingress: JsonObject, traffic: list[JsonObject] | None, changes: list[str]
) -> JsonObject:
    ingress_patch: JsonObject = {}
    if ingress.get("external") != spec.external or ingress.get("targetPort") != spec.port:
        ingress_patch.update({"external": spec.external, "targetPort": spec.port})
        changes.append(f"ingress ({'external' if spec.external else 'internal'}, port {spec.port})")
    if traffic is not None and normalised(ingress.get("traffic")) != normalised(array(traffic)):
        ingress_patch["traffic"] = array(traffic)
        changes.append("traffic")
    rules = ip_restrictions(spec)
    if spec.ip_allow is not None and not same_restrictions(ingress.get("ipSecurityRestrictions"), rules):
        # The whole list (arrays are replaced): ours are all Allow, so none of someone else's Deny rules can mix in.
        ingress_patch["ipSecurityRestrictions"] = rules
        changes.append("ip_allow (" + (", ".join(spec.ip_allow) or "no rules: open to every address") + ")")
    return ingress_patch


def _secrets_patch(
    spec: AppSpec, live_secret_values: dict[str, str], references: Mapping[str, JsonObject]
) -> JsonArray | None:
    """The whole secrets array when a secret we manage changes, else None. A secret the app holds as a Key Vault
    reference stays one: Key Vault is its source of truth, and its value is never sent to Azure from here (the
    container's env still names it)."""
    wanted_secrets = {name: value for name, value in managed_secrets(spec).items() if name not in references}
    if all(live_secret_values.get(name) == value for name, value in wanted_secrets.items()):
        return None
    # The whole array is sent: secrets we did not set keep their values, and Key Vault references stay
    # references ({name, keyVaultUrl, identity}); resent as {name, value: ""} they would be refused
    # (400 ContainerAppSecretNull) or, worse, turned into empty values.
    entries: dict[str, JsonObject] = {n: {"name": n, "value": v} for n, v in live_secret_values.items()}
    entries.update({n: dict(reference) for n, reference in references.items()})
    entries.update({n: {"name": n, "value": v} for n, v in wanted_secrets.items()})
    return array(entries[name] for name in sorted(entries))


def _plan(
    spec: AppSpec, existing: JsonObject, configuration: JsonObject, template: JsonObject, changes: list[str]
) -> UpdatePlan:
    """The patch from its parts, with the workload profile and the registry's managed identity."""
    patch_properties: JsonObject = {}
    profile = spec.workload_profile
    if profile is not None and text_at(existing, "properties", "workloadProfileName").lower() != profile.lower():
        patch_properties["workloadProfileName"] = profile
        changes.append(f"workload profile {profile}")
    if configuration:
        patch_properties["configuration"] = configuration
    if template:
        patch_properties["template"] = template
    patch: JsonObject = {"properties": patch_properties} if patch_properties else {}
    identity = _identity(spec)
    if identity and not _has_identity(object_at(existing, "identity"), identity):
        patch["identity"] = _merged_identity(object_at(existing, "identity"), identity)
        changes.append("managed identity for the registry")
    return UpdatePlan(patch or None, changes, bool(template))


def _has_identity(live: JsonObject, wanted: JsonObject) -> bool:
    kind = text_at(live, "type", default="None")
    if wanted["type"] == "SystemAssigned":
        return "SystemAssigned" in kind
    wanted_ids = {k.lower() for k in object_at(wanted, "userAssignedIdentities")}
    live_ids = {k.lower() for k in object_at(live, "userAssignedIdentities")}
    return "UserAssigned" in kind and wanted_ids <= live_ids


def _merged_identity(live: JsonObject, wanted: JsonObject) -> JsonObject:
    """Add ours to whatever identity the app has: never drop one someone else set."""
    kinds = {k.strip() for k in text_at(live, "type", default="None").split(",") if k.strip() and k.strip() != "None"}
    kinds |= {text_at(wanted, "type")}
    merged: JsonObject = {"type": ",".join(sorted(kinds, key=lambda k: k != "SystemAssigned"))}
    users = {**object_at(live, "userAssignedIdentities"), **object_at(wanted, "userAssignedIdentities")}
    if users:
        merged["userAssignedIdentities"] = {k: {} for k in users}
    return merged
