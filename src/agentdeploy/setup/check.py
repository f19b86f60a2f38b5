"""`setup azure --check`: which steps of a set-up plan Azure already shows done, read through an ArmReader (GETs
only; the reader is passed in, so this logic runs against any double)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Protocol

from agentdeploy.jsonvalue import JsonObject, text_at
from agentdeploy.setup.model import (
    GITHUB_ISSUER,
    ROLE_NAMES,
    EnvironmentExists,
    Expectation,
    GroupExists,
    IdentityExists,
    IdentityRef,
    RoleHeld,
    Scope,
    SetupPlan,
    Step,
    SubjectTrusted,
)
from agentdeploy.targets.azure.auth import GITHUB_AUDIENCE

GROUPS_API = "2021-04-01"
APPS_API = "2024-03-01"
IDENTITY_API = "2023-01-31"
ROLES_API = "2022-04-01"
PRESENT, MISSING, NOT_CHECKED = "present", "missing", "not checked"
_UNCHECKED = {
    "subscription": "every other check reads this subscription",
    "registry": "its roles are checked below",
    "github": "GitHub is not read",
}


class ArmReader(Protocol):
    def get(self, path: str, api_version: str) -> JsonObject | None:
        """The resource at `path`, or None when ARM answers 404."""

    def list(self, path: str, api_version: str, params: Mapping[str, str] | None = None) -> list[JsonObject]:
        """Every item of a list operation (`value`, following `nextLink`)."""


def check_plan(plan: SetupPlan, reader: ArmReader) -> list[tuple[str, str]]:
    """(present | missing | not checked, detail) for each step, in order."""
    checker = _Checker(reader)
    return [checker.step(step) for step in plan.steps]


class _Checker:
    def __init__(self, reader: ArmReader) -> None:
        self.reader = reader
        self._principals: dict[str, str | None] = {}
        self._assignments: dict[tuple[str, str], list[JsonObject]] = {}
        self._credentials: dict[str, list[JsonObject]] = {}  # read once per identity, whatever the subjects

    def step(self, step: Step) -> tuple[str, str]:
        if not step.expects:
            return NOT_CHECKED, _UNCHECKED.get(step.key, "")
        missing: list[str] = []
        notes: list[str] = []
        for expectation in step.expects:
            found, detail = self._one(expectation)
            (notes if found else missing).append(detail)
        if missing:
            return MISSING, "; ".join(missing)
        return PRESENT, "; ".join(note for note in notes if note)

    def _one(self, expectation: Expectation) -> tuple[bool, str]:
        if isinstance(expectation, GroupExists):
            path = f"/subscriptions/{expectation.subscription}/resourcegroups/{expectation.resource_group}"
            found = self.reader.get(path, GROUPS_API) is not None
            return found, "" if found else f"resource group {expectation.resource_group}"
        if isinstance(expectation, EnvironmentExists):
            path = (
                f"/subscriptions/{expectation.subscription}/resourceGroups/{expectation.resource_group}"
                f"/providers/Microsoft.App/managedEnvironments/{expectation.name}"
            )
            found = self.reader.get(path, APPS_API) is not None
            where = f"environment {expectation.name} in {expectation.resource_group}"
            return found, "" if found else where
        if isinstance(expectation, IdentityExists):
            found = self._principal(expectation.identity) is not None
            return found, "" if found else _absent(expectation.identity)
        if isinstance(expectation, SubjectTrusted):
            return self._subject(expectation)
        return self._role(expectation)

    def _principal(self, identity: IdentityRef) -> str | None:
        key = identity.id.lower()
        if key not in self._principals:
            found = self.reader.get(identity.id, IDENTITY_API)
            principal = text_at(found.get("properties"), "principalId") if found else ""
            self._principals[key] = principal or None
        return self._principals[key]

    def _subject(self, expectation: SubjectTrusted) -> tuple[bool, str]:
        identity, subject = expectation.identity, expectation.subject
        if self._principal(identity) is None:
            return False, _absent(identity)
        key = identity.id.lower()
        if key not in self._credentials:
            self._credentials[key] = self.reader.list(identity.id + "/federatedIdentityCredentials", IDENTITY_API)
        credentials = self._credentials[key]
        same_subject = [c for c in credentials if text_at(c.get("properties"), "subject") == subject]
        for credential in same_subject:
            properties = credential.get("properties")
            issuer = text_at(properties, "issuer")
            audiences = properties.get("audiences") if isinstance(properties, dict) else None
            if issuer.rstrip("/") != GITHUB_ISSUER:
                return False, f"the credential {credential.get('name')} for {subject} trusts issuer {issuer}"
            if not isinstance(audiences, list) or GITHUB_AUDIENCE not in audiences:
                return False, f"the credential {credential.get('name')} for {subject} lacks audience {GITHUB_AUDIENCE}"
            return True, ""
        near = [c for c in credentials if text_at(c.get("properties"), "subject").lower() == subject.lower()]
        if near:
            told = text_at(near[0].get("properties"), "subject")
            return False, f"federated credential subject {subject} (one has {told}: Azure compares it exactly)"
        return False, f"federated credential subject {subject} on {identity.name}"

    def _role(self, expectation: RoleHeld) -> tuple[bool, str]:
        identity, role, scope = expectation.identity, expectation.role, expectation.scope
        principal = self._principal(identity)
        if principal is None:
            return False, _absent(identity)
        broader = None
        for assignment in self._assignments_of(identity.subscription, principal):
            properties = assignment.get("properties")
            role_id = text_at(properties, "roleDefinitionId").rsplit("/", 1)[-1].lower()
            at = text_at(properties, "scope")
            if not role.grants(role_id) or not _covers(at, scope):
                continue
            if role_id == role.id and _same(at, scope):
                return True, ""
            broader = f"as {ROLE_NAMES.get(role_id, role_id)} at {at}, broader than needed"
        if broader:
            return True, broader
        return False, f"role {role.name} for {identity.name} on {scope.label}"

    def _assignments_of(self, subscription: str, principal: str) -> list[JsonObject]:
        key = (subscription.lower(), principal.lower())
        if key not in self._assignments:
            # At, above or below the subscription, for this principal only (RoleAssignments_ListForSubscription).
            self._assignments[key] = self.reader.list(
                f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleAssignments",
                ROLES_API,
                {"$filter": f"principalId eq '{principal}'"},
            )
        return self._assignments[key]


def _absent(identity: IdentityRef) -> str:
    return f"identity {identity.name} in {identity.resource_group}"


def _same(assigned: str, scope: Scope) -> bool:
    at = assigned.lower().rstrip("/")
    if scope.resource_id:
        return at == scope.resource_id.lower()
    return at.endswith(scope.suffix.lower())


def _covers(assigned: str, scope: Scope) -> bool:
    """The assignment's scope is the wanted one or above it. For a scope known only by its end (a registry in a
    resource group the config does not name), an assignment on the whole subscription covers it too."""
    at = assigned.lower().rstrip("/")
    if scope.resource_id:
        wanted = scope.resource_id.lower()
        return at == wanted or wanted.startswith(at + "/")
    return at.endswith(scope.suffix.lower()) or re.fullmatch(r"/subscriptions/[^/]+", at) is not None or at == ""
