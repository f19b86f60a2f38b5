"""Who may reach the app (pure): the ingress IP rules for `ip_allow`, and built-in authentication
(authConfigs/current) laid over what the app already has, so settings someone else made are kept."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from agentdeploy.jsonvalue import JsonArray, JsonObject, JsonValue, array, object_at
from agentdeploy.targets.azure.views import normalised

if TYPE_CHECKING:
    from agentdeploy.targets.azure.body import AppSpec


def ip_rule_name(cidr: str) -> str:
    """A stable rule name from the range, so reordering ip_allow renames nothing: 203.0.113.0/24 ->
    allow-203-0-113-0-24."""
    return "allow-" + re.sub(r"[^0-9a-z]+", "-", cidr.lower()).strip("-")


def ip_restrictions(spec: AppSpec) -> JsonArray:
    """ingress.ipSecurityRestrictions for ip_allow: Allow rules only (ARM refuses Allow mixed with Deny)."""
    return [{"name": ip_rule_name(cidr), "ipAddressRange": cidr, "action": "Allow"} for cidr in spec.ip_allow or ()]


def _restriction_key(rule: JsonValue) -> str:
    return json.dumps(normalised(rule), sort_keys=True)


def same_restrictions(live: JsonValue, wanted: JsonArray) -> bool:
    """The same rules in any order (null and [] are both no rules; ARM may echo a null description)."""
    entries = live if isinstance(live, list) else []
    return sorted(map(_restriction_key, entries)) == sorted(map(_restriction_key, wanted))


OPENID_ISSUER = "https://login.microsoftonline.com/{tenant}/v2.0"
ENTRA_PROVIDER = "azureactivedirectory"  # redirectToProvider's word for Microsoft Entra ID


def auth_excluded_paths(spec: AppSpec) -> list[str]:
    """The paths built-in authentication lets through: the runtime's health and readiness routes, so the
    platform's probes and the gate's verdict reach the agent; chat stays behind the sign-in."""
    paths: list[str] = []
    for path in (spec.health_path, spec.ready_path or spec.health_path):
        bare = path.split("?", 1)[0]
        if bare not in paths:
            paths.append(bare)
    return paths


def auth_properties(spec: AppSpec) -> JsonObject:
    """The parts of authConfigs/current agentdeploy decides (ARM JSON)."""
    auth = spec.auth
    assert auth is not None
    validation: JsonObject = {
        "unauthenticatedClientAction": "RedirectToLoginPage" if auth.unauthenticated == "redirect" else "Return401",
        "excludedPaths": array(auth_excluded_paths(spec)),
    }
    if auth.unauthenticated == "redirect":
        validation["redirectToProvider"] = ENTRA_PROVIDER
    registration: JsonObject = {"clientId": auth.client_id, "openIdIssuer": OPENID_ISSUER.format(tenant=auth.tenant_id)}
    if auth.client_secret_setting:
        registration["clientSecretSettingName"] = auth.client_secret_setting
    return {
        "platform": {"enabled": True},
        "globalValidation": validation,
        "identityProviders": {"azureActiveDirectory": {"enabled": True, "registration": registration}},
    }


def auth_config_body(spec: AppSpec, live: JsonObject) -> JsonObject | None:
    """The PUT body of authConfigs/current: the live settings with ours laid over them (other providers, token
    store, login settings and excluded paths someone else set are kept), or None when the live config already
    says what the spec does."""
    wanted = auth_properties(spec)
    current = object_at(live, "properties")
    if _contains(current, wanted):
        return None
    return {"properties": _overlay(current, wanted)}


def _contains(live: JsonValue, wanted: JsonValue, key: str = "") -> bool:
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(_contains(live.get(k), v, k) for k, v in wanted.items())
    if key == "excludedPaths" and isinstance(wanted, list):
        return isinstance(live, list) and set(map(str, wanted)) <= set(map(str, live))
    return normalised(live) == normalised(wanted)


def _overlay(live: JsonValue, wanted: JsonValue, key: str = "") -> JsonValue:
    if isinstance(wanted, dict) and isinstance(live, dict):
        merged = dict(live)
        for k, v in wanted.items():
            merged[k] = _overlay(live.get(k), v, k)
        return merged
    if key == "excludedPaths" and isinstance(wanted, list) and isinstance(live, list):
        return [*live, *(path for path in wanted if path not in live)]
    return wanted
