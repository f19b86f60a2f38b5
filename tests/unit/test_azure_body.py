"""Container Apps request bodies: what is PUT on create and the smallest merge patch on update."""

from __future__ import annotations

import copy
import re
from dataclasses import replace
from typing import Any

from agentdeploy.targets.azure.access import auth_config_body
from agentdeploy.targets.azure.body import (
    REGISTRY_PASSWORD_SECRET,
    AppSpec,
    AuthSpec,
    Registry,
    container,
    create_body,
    revision_suffix,
    secret_name,
    update_patch,
)
from testkit import app_spec

ENV_ID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/managedEnvironments/env"
SUFFIX_RE = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")

SPEC: AppSpec = app_spec(  # type: ignore[assignment]
    environment_id=ENV_ID, image="ghcr.io/org/agent@sha256:" + "a" * 64, secret_env={"OPENAI_API_KEY": "sk-live-1"}
)


def live_app(spec: AppSpec, suffix: str = "v1-aaaaaa") -> dict[str, Any]:
    """The app as GET returns it after create_body(spec): secrets without values, extra fields filled in."""
    body = copy.deepcopy(create_body(spec, suffix))
    properties = body["properties"]
    properties["configuration"]["secrets"] = [{"name": s["name"]} for s in properties["configuration"]["secrets"]]
    properties["configuration"]["ingress"].update(
        {
            "fqdn": "support-agent.nice.eastus.azurecontainerapps.io",
            "transport": "Auto",
            "traffic": [{"weight": 100, "latestRevision": True}],
        }
    )
    properties["configuration"]["activeRevisionsMode"] = "Single"
    for probe in properties["template"]["containers"][0]["probes"]:
        probe["timeoutSeconds"] = 1  # defaults the service fills in
        probe["httpGet"]["scheme"] = "HTTP"
    properties.update({"provisioningState": "Succeeded", "latestReadyRevisionName": f"support-agent--{suffix}"})
    body["identity"] = {"type": "None"}
    return body


def test_create_body() -> None:
    body = create_body(SPEC, "v1-abc123")
    configuration = body["properties"]["configuration"]
    assert configuration["activeRevisionsMode"] == "Single"
    assert configuration["ingress"] == {"external": True, "targetPort": 8080, "transport": "auto"}
    assert configuration["secrets"] == [{"name": "openai-api-key", "value": "sk-live-1"}]
    [app_container] = body["properties"]["template"]["containers"]
    assert app_container["image"] == SPEC.image  # by digest
    # The secret reaches the container only as a secretRef, never as a plain value.
    assert app_container["env"] == [
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "OPENAI_API_KEY", "secretRef": "openai-api-key"},
    ]
    assert "sk-live-1" not in str(app_container)
    assert [p["type"] for p in app_container["probes"]] == ["Liveness", "Readiness"]
    assert all(p["httpGet"] == {"path": "/health", "port": 8080, "scheme": "HTTP"} for p in app_container["probes"])
    assert body["properties"]["template"]["scale"] == {"minReplicas": 0, "maxReplicas": 3}
    assert body["properties"]["environmentId"] == ENV_ID
    assert "identity" not in body


def test_unchanged_app_needs_no_write() -> None:
    plan = update_patch(
        SPEC, live_app(SPEC), {"openai-api-key": "sk-live-1"}, "x", traffic=[{"weight": 100, "latestRevision": True}]
    )
    assert plan.patch is None and plan.changes == [] and not plan.new_revision


def test_new_image_patches_only_the_template() -> None:
    new = replace(SPEC, image="ghcr.io/org/agent@sha256:" + "b" * 64)
    plan = update_patch(new, live_app(SPEC), {"openai-api-key": "sk-live-1"}, "v2-bbbbbb")
    assert plan.new_revision
    assert set(plan.patch or {}) == {"properties"}
    assert set(plan.patch["properties"]) == {"template"}  # type: ignore[index]
    template = plan.patch["properties"]["template"]  # type: ignore[index]
    assert template["revisionSuffix"] == "v2-bbbbbb"
    assert [c["image"] for c in template["containers"]] == [new.image]


def test_secret_change_keeps_secrets_we_did_not_set() -> None:
    existing = live_app(SPEC)
    existing["properties"]["configuration"]["secrets"].append({"name": "someone-elses"})
    live_values = {"openai-api-key": "sk-live-1", "someone-elses": "keep-me"}
    plan = update_patch(replace(SPEC, secret_env={"OPENAI_API_KEY": "sk-rotated"}), existing, live_values, "x")
    assert plan.patch == {
        "properties": {
            "configuration": {
                "secrets": [
                    {"name": "openai-api-key", "value": "sk-rotated"},
                    {"name": "someone-elses", "value": "keep-me"},
                ]
            },
            # A secret change alone makes no revision on the service, so running revisions keep the old value
            # (FACTS.md): a new suffix makes one, and it starts with the new value.
            "template": {"revisionSuffix": "x"},
        }
    }
    assert plan.new_revision


def test_sidecars_and_unmanaged_settings_survive() -> None:
    existing = live_app(SPEC)
    sidecar = {"name": "otel-collector", "image": "otel/collector:1", "resources": {"cpu": 0.25, "memory": "0.5Gi"}}
    existing["properties"]["template"]["containers"].append(sidecar)
    existing["properties"]["configuration"]["dapr"] = {"enabled": True, "appId": "x"}
    existing["properties"]["configuration"]["ingress"]["customDomains"] = [{"name": "agent.example.com"}]
    existing["tags"] = {"team": "ai"}
    new = replace(SPEC, image="ghcr.io/org/agent@sha256:" + "c" * 64)
    plan = update_patch(new, existing, {"openai-api-key": "sk-live-1"}, "v3-cccccc")
    containers = plan.patch["properties"]["template"]["containers"]  # type: ignore[index]
    assert [c["name"] for c in containers] == ["support-agent", "otel-collector"]
    assert containers[1] == sidecar
    assert "configuration" not in plan.patch["properties"]  # type: ignore[index]
    assert "tags" not in plan.patch  # type: ignore[operator]


def test_registry_password_goes_in_as_a_secret() -> None:
    spec = replace(SPEC, registry=Registry(server="myreg.example", username="bot"), registry_password="pw-123")
    body = create_body(spec, "v1-abc123")
    configuration = body["properties"]["configuration"]
    assert configuration["registries"] == [
        {"server": "myreg.example", "username": "bot", "passwordSecretRef": REGISTRY_PASSWORD_SECRET}
    ]
    assert {"name": REGISTRY_PASSWORD_SECRET, "value": "pw-123"} in configuration["secrets"]


def test_registry_identity_is_added_to_existing_identities() -> None:
    identity = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/pull"
    spec = replace(SPEC, registry=Registry(server="myreg.azurecr.io", identity=identity))
    existing = live_app(SPEC)
    existing["identity"] = {"type": "SystemAssigned"}
    existing["properties"]["configuration"]["registries"] = [{"server": "other.io", "identity": "system"}]
    plan = update_patch(spec, existing, {"openai-api-key": "sk-live-1"}, "x")
    assert plan.patch is not None
    assert plan.patch["identity"] == {"type": "SystemAssigned,UserAssigned", "userAssignedIdentities": {identity: {}}}
    assert plan.patch["properties"]["configuration"]["registries"] == [
        {"server": "other.io", "identity": "system"},
        {"server": "myreg.azurecr.io", "identity": identity},
    ]


def test_traffic_reset_after_a_pinned_rollback() -> None:
    existing = live_app(SPEC)
    existing["properties"]["configuration"]["ingress"]["traffic"] = [
        {"revisionName": "support-agent--v0-000000", "weight": 100}
    ]
    plan = update_patch(
        SPEC, existing, {"openai-api-key": "sk-live-1"}, "x", traffic=[{"weight": 100, "latestRevision": True}]
    )
    assert plan.patch == {
        "properties": {"configuration": {"ingress": {"traffic": [{"weight": 100, "latestRevision": True}]}}}
    }


def test_revision_suffix_rules() -> None:
    for tag in ("v1.4.0", "0123abc", "release/2026-11", "V2_RC.1", "---"):
        suffix = revision_suffix("support-agent", tag, SPEC)
        assert SUFFIX_RE.match(suffix) and "--" not in suffix, suffix
        assert len("support-agent") + 2 + len(suffix) <= 54
    assert revision_suffix("support-agent", "v1.4.0", SPEC).startswith("v1-4-0-")
    assert revision_suffix("support-agent", "0123abc", SPEC).startswith("r0123abc-")
    long_app = "a" * 32
    assert len(long_app) + 2 + len(revision_suffix(long_app, "v" * 40, SPEC)) <= 54
    # Deterministic for the same template, different for another one, never one already taken.
    first = revision_suffix("support-agent", "v1", SPEC)
    assert first == revision_suffix("support-agent", "v1", SPEC)
    assert first != revision_suffix("support-agent", "v1", replace(SPEC, env={"LOG_LEVEL": "debug"}))
    second = revision_suffix("support-agent", "v1", SPEC, {f"support-agent--{first}"})
    assert second != first and SUFFIX_RE.match(second)


def test_secret_names() -> None:
    assert secret_name("AZURE_OPENAI_API_KEY") == "azure-openai-api-key"
    assert secret_name("db.password") == "db-password"


def test_probes_are_compared_ignoring_service_defaults() -> None:
    live = container(SPEC)
    live["probes"][0]["timeoutSeconds"] = 1
    existing = live_app(SPEC)
    existing["properties"]["template"]["containers"] = [live]
    assert update_patch(SPEC, existing, {"openai-api-key": "sk-live-1"}, "x").patch is None


def test_readiness_probes_holodecks_ready_route() -> None:
    """HoloDeck offers /ready for readiness; the liveness probe stays on the health path."""
    body = create_body(replace(SPEC, ready_path="/ready"), "v1-aaaaaa")
    probes = {p["type"]: p["httpGet"]["path"] for p in body["properties"]["template"]["containers"][0]["probes"]}
    assert probes == {"Liveness": "/health", "Readiness": "/ready"}


def test_key_vault_references_are_resent_as_references() -> None:
    existing = live_app(SPEC)
    reference = {"name": "db-password", "keyVaultUrl": "https://kv.vault.azure.net/secrets/db", "identity": "system"}
    plan = update_patch(
        replace(SPEC, secret_env={"OPENAI_API_KEY": "sk-rotated"}),
        existing,
        {"openai-api-key": "sk-live-1"},
        "x",
        secret_references={"db-password": reference},
    )
    assert plan.patch is not None
    assert plan.patch["properties"]["configuration"]["secrets"] == [
        reference,
        {"name": "openai-api-key", "value": "sk-rotated"},
    ]


# -- workload profile, ip_allow and built-in authentication (issue 10) -----------------------------------------

LIVE_SECRETS = {"openai-api-key": "sk-live-1"}
RANGES = ("203.0.113.0/24", "2001:db8::/32")


def test_create_body_carries_the_workload_profile_and_the_allowed_ranges() -> None:
    body = create_body(replace(SPEC, workload_profile="Consumption", ip_allow=RANGES), "v1-abc123")
    assert body["properties"]["workloadProfileName"] == "Consumption"
    assert body["properties"]["configuration"]["ingress"]["ipSecurityRestrictions"] == [
        {"name": "allow-203-0-113-0-24", "ipAddressRange": "203.0.113.0/24", "action": "Allow"},
        {"name": "allow-2001-db8-32", "ipAddressRange": "2001:db8::/32", "action": "Allow"},
    ]
    plain = create_body(SPEC, "v1-abc123")  # neither set: neither sent (the environment's defaults)
    assert "workloadProfileName" not in plain["properties"]
    assert "ipSecurityRestrictions" not in plain["properties"]["configuration"]["ingress"]


def test_the_same_allowed_ranges_are_no_change_in_any_order() -> None:
    spec = replace(SPEC, ip_allow=RANGES)
    existing = live_app(spec)
    rules = existing["properties"]["configuration"]["ingress"]["ipSecurityRestrictions"]
    existing["properties"]["configuration"]["ingress"]["ipSecurityRestrictions"] = [
        {**rule, "description": None}
        for rule in reversed(rules)  # as ARM may echo them
    ]
    assert update_patch(spec, existing, LIVE_SECRETS, "x").patch is None


def test_a_changed_list_patches_the_whole_list_and_names_it() -> None:
    existing = live_app(replace(SPEC, ip_allow=RANGES))
    plan = update_patch(replace(SPEC, ip_allow=("198.51.100.7/32",)), existing, LIVE_SECRETS, "x")
    assert plan.patch == {
        "properties": {
            "configuration": {
                "ingress": {
                    "ipSecurityRestrictions": [
                        {"name": "allow-198-51-100-7-32", "ipAddressRange": "198.51.100.7/32", "action": "Allow"}
                    ]
                }
            }
        }
    }
    assert plan.changes == ["ip_allow (198.51.100.7/32)"] and not plan.new_revision
    # ip_allow: [] lifts the rules; ip_allow unset leaves whatever the app has.
    cleared = update_patch(replace(SPEC, ip_allow=()), existing, LIVE_SECRETS, "x")
    assert cleared.patch == {"properties": {"configuration": {"ingress": {"ipSecurityRestrictions": []}}}}
    assert cleared.changes == ["ip_allow (no rules: open to every address)"]
    assert update_patch(SPEC, existing, LIVE_SECRETS, "x").patch is None


def test_a_changed_workload_profile_is_patched() -> None:
    existing = live_app(SPEC)
    existing["properties"]["workloadProfileName"] = "Consumption"
    assert update_patch(replace(SPEC, workload_profile="consumption"), existing, LIVE_SECRETS, "x").patch is None
    plan = update_patch(replace(SPEC, workload_profile="gpu-d8"), existing, LIVE_SECRETS, "x")
    assert plan.patch == {"properties": {"workloadProfileName": "gpu-d8"}}
    assert plan.changes == ["workload profile gpu-d8"]


AUTH = AuthSpec(client_id="11111111-2222-3333-4444-555555555555", tenant_id="66666666-7777-8888-9999-000000000000")


def test_auth_config_lets_the_health_and_ready_routes_through() -> None:
    spec = replace(SPEC, ready_path="/ready", auth=AUTH)
    body = auth_config_body(spec, {})
    assert body == {
        "properties": {
            "platform": {"enabled": True},
            "globalValidation": {"unauthenticatedClientAction": "Return401", "excludedPaths": ["/health", "/ready"]},
            "identityProviders": {
                "azureActiveDirectory": {
                    "enabled": True,
                    "registration": {
                        "clientId": AUTH.client_id,
                        "openIdIssuer": f"https://login.microsoftonline.com/{AUTH.tenant_id}/v2.0",
                    },
                }
            },
        }
    }
    # What ARM answers (id, name, type, and fields it fills in) is already what we want: nothing to write.
    live = {
        "id": "x",
        "name": "current",
        "properties": {**body["properties"], "login": {"preserveUrlFragments": False}},
    }
    assert auth_config_body(spec, live) is None


def test_auth_config_keeps_what_someone_else_set() -> None:
    spec = replace(
        SPEC, auth=replace(AUTH, unauthenticated="redirect", client_secret_setting="microsoft-provider-secret")
    )
    live = {
        "name": "current",
        "properties": {
            "platform": {"enabled": False},
            "globalValidation": {"unauthenticatedClientAction": "AllowAnonymous", "excludedPaths": ["/public"]},
            "identityProviders": {"gitHub": {"enabled": True, "registration": {"clientId": "gh"}}},
            "login": {"tokenStore": {"enabled": True}},
        },
    }
    body = auth_config_body(spec, live)
    assert body is not None
    properties = body["properties"]
    assert properties["platform"] == {"enabled": True}
    assert properties["globalValidation"] == {
        "unauthenticatedClientAction": "RedirectToLoginPage",
        "excludedPaths": ["/public", "/health"],
        "redirectToProvider": "azureactivedirectory",
    }
    assert properties["identityProviders"]["gitHub"] == {"enabled": True, "registration": {"clientId": "gh"}}
    registration = properties["identityProviders"]["azureActiveDirectory"]["registration"]
    assert registration["clientSecretSettingName"] == "microsoft-provider-secret"
    assert properties["login"] == {"tokenStore": {"enabled": True}}
