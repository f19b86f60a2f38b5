"""Reads of Microsoft.ManagedIdentity and Microsoft.Authorization for the fake ARM: user-assigned identities, their
federated identity credentials, and role assignments. Pure logic; fakes.arm mounts it (FakeArm.rbac).

Built from the REST API reference and its examples (Azure/azure-rest-api-specs):
- specification/msi/resource-manager/Microsoft.ManagedIdentity/stable/2023-01-31: `UserAssignedIdentities_Get`
  (GET .../userAssignedIdentities/{name} -> {id, name, type, location, tags, properties: {tenantId, principalId,
  clientId}}; the example's id has a lower-case `resourcegroups`) and `FederatedIdentityCredentials_List` (GET
  .../federatedIdentityCredentials -> {value: [{id, name, type, properties: {issuer, subject, audiences}}],
  nextLink}; `$top` pages it).
- specification/authorization/resource-manager/Microsoft.Authorization/stable/2022-04-01: `RoleAssignments_ListFor
  Subscription|ResourceGroup|Resource|Scope` (GET {scope}/providers/Microsoft.Authorization/roleAssignments ->
  {value: [{id, name, type, properties: {roleDefinitionId, principalId, principalType, scope, ...}}]}). `$filter=
  atScope()` gives the assignments at or above the scope; `$filter=principalId eq {id}` those of that principal at,
  above or below it; without a filter, those at, above or below it.
- Not found: 404 ResourceGroupNotFound for a missing group, 404 ResourceNotFound for a missing identity (the ARM
  message shape of the Microsoft.App fake, with this provider's type).

Only reads are served: a write to these routes is answered 405 by ARM's rule for a method a route lacks, so a client
that should only read cannot write here unnoticed.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from fakes.arm_state import ApiError, ArmState, Reply, error_reply

MSI = "microsoft.managedidentity"
AUTHZ = "microsoft.authorization"
IDENTITY_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"
CREDENTIAL_TYPE = IDENTITY_TYPE + "/federatedIdentityCredentials"
ASSIGNMENT_TYPE = "Microsoft.Authorization/roleAssignments"
PRINCIPAL_FILTER = re.compile(r"^\s*principalId\s+eq\s+'?([0-9a-fA-F-]{36})'?\s*$")
DEFAULT_TENANT = "66666666-7777-8888-9999-000000000000"


@dataclass
class FederatedCredential:
    name: str
    issuer: str
    subject: str
    audiences: list[str]


@dataclass
class Identity:
    subscription: str
    resource_group: str
    name: str
    location: str
    principal_id: str
    client_id: str
    tenant_id: str
    credentials: list[FederatedCredential] = field(default_factory=list)

    @property
    def id(self) -> str:
        # The REST example's id spells the group segment in lower case.
        group = f"/subscriptions/{self.subscription}/resourcegroups/{self.resource_group}"
        return f"{group}/providers/{IDENTITY_TYPE}/{self.name}"


@dataclass
class Assignment:
    name: str
    scope: str
    role_definition: str  # the role's GUID
    principal_id: str
    principal_type: str


class RbacState:
    def __init__(self, arm: ArmState) -> None:
        self.arm = arm  # resource groups live there
        self.identities: dict[tuple[str, str, str], Identity] = {}
        self.assignments: list[Assignment] = []

    # -- set-up (what a test or an operator made with az) ----------------------------------------------------------

    def add_identity(
        self, subscription: str, resource_group: str, name: str, location: str = "eastus", *, tenant: str | None = None
    ) -> Identity:
        self.arm.require_group(subscription, resource_group)
        identity = Identity(
            subscription,
            resource_group,
            name,
            location,
            principal_id=str(uuid.uuid4()),
            client_id=str(uuid.uuid4()),
            tenant_id=tenant or DEFAULT_TENANT,
        )
        self.identities[(subscription.lower(), resource_group.lower(), name.lower())] = identity
        return identity

    def add_federated_credential(
        self, identity: Identity, name: str, subject: str, *, issuer: str, audiences: list[str]
    ) -> None:
        identity.credentials.append(FederatedCredential(name, issuer, subject, list(audiences)))

    def add_role_assignment(self, scope: str, role_definition: str, principal_id: str) -> None:
        self.assignments.append(Assignment(str(uuid.uuid4()), scope, role_definition, principal_id, "ServicePrincipal"))

    # -- routes ----------------------------------------------------------------------------------------------------

    def route(self, method: str, seg: list[str], low: list[str], query: dict[str, str]) -> Reply | None:
        """The reply for an ARM path of these providers, or None when the path is not theirs."""
        if AUTHZ in low and low[-1] == "roleassignments" and low[-2] == AUTHZ and low[-3] == "providers":
            if method != "GET":
                return _method_not_allowed(method)
            return self._list_assignments(seg[:-3], query)
        if len(low) >= 8 and low[2] == "resourcegroups" and low[4:7] == ["providers", MSI, "userassignedidentities"]:
            if method != "GET":
                return _method_not_allowed(method)
            identity = self._require_identity(seg[1], seg[3], seg[7])
            if len(low) == 8:
                return Reply(200, _render_identity(identity))
            if len(low) == 9 and low[8] == "federatedidentitycredentials":
                return self._list_credentials(identity, query)
            return error_reply(
                404, "InvalidResourceType", f"The resource type could not be found for '{'/'.join(seg)}'."
            )
        return None

    def _require_identity(self, subscription: str, resource_group: str, name: str) -> Identity:
        group = self.arm.require_group(subscription, resource_group)
        identity = self.identities.get((subscription.lower(), resource_group.lower(), name.lower()))
        if identity is None:
            raise ApiError(
                404,
                "ResourceNotFound",
                f"The Resource '{IDENTITY_TYPE}/{name}' under resource group '{group}' was not found. For more "
                "details please go to https://aka.ms/ARMResourceNotFoundFix",
            )
        return identity

    def _list_credentials(self, identity: Identity, query: dict[str, str]) -> Reply:
        rendered = [_render_credential(identity, c) for c in identity.credentials]
        top = int(query.get("$top") or 0)
        start = int(query.get("$skiptoken") or 0)
        if not top:
            return Reply(200, {"value": rendered})
        body: dict[str, Any] = {"value": rendered[start : start + top]}
        if start + top < len(rendered):
            body["nextLink"] = (
                f"{self.arm.base_url}{identity.id}/federatedIdentityCredentials"
                f"?api-version=2023-01-31&$top={top}&$skiptoken={start + top}"
            )
        return Reply(200, body)

    def _list_assignments(self, scope_segments: list[str], query: dict[str, str]) -> Reply:
        scope = ("/" + "/".join(scope_segments)).lower()
        wanted = query.get("$filter", "").strip()
        principal = PRINCIPAL_FILTER.match(wanted)
        if wanted and principal is None and wanted != "atScope()":
            raise ApiError(400, "InvalidFilter", f"The filter '{wanted}' is not supported.")
        found = []
        for assignment in self.assignments:
            at = assignment.scope.lower()
            above = scope == at or scope.startswith(at.rstrip("/") + "/")
            below = at.startswith(scope.rstrip("/") + "/")
            if wanted == "atScope()":
                keep = above
            elif principal is not None:
                keep = (above or below) and assignment.principal_id.lower() == principal.group(1).lower()
            else:
                keep = above or below
            if keep:
                found.append(_render_assignment(scope_segments[1], assignment))
        return Reply(200, {"value": found})


def _render_identity(identity: Identity) -> dict[str, Any]:
    return {
        "id": identity.id,
        "location": identity.location,
        "name": identity.name,
        "properties": {
            "clientId": identity.client_id,
            "principalId": identity.principal_id,
            "tenantId": identity.tenant_id,
        },
        "tags": {},
        "type": IDENTITY_TYPE,
    }


def _render_credential(identity: Identity, credential: FederatedCredential) -> dict[str, Any]:
    return {
        "id": f"{identity.id}/federatedIdentityCredentials/{credential.name}",
        "name": credential.name,
        "properties": {"issuer": credential.issuer, "subject": credential.subject, "audiences": credential.audiences},
        "type": CREDENTIAL_TYPE,
    }


def _render_assignment(subscription: str, assignment: Assignment) -> dict[str, Any]:
    return {
        "properties": {
            "roleDefinitionId": f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/"
            f"{assignment.role_definition}",
            "principalId": assignment.principal_id,
            "principalType": assignment.principal_type,
            "scope": assignment.scope,
        },
        "id": f"{assignment.scope}/providers/{ASSIGNMENT_TYPE}/{assignment.name}",
        "type": ASSIGNMENT_TYPE,
        "name": assignment.name,
    }


def _method_not_allowed(method: str) -> Reply:
    return error_reply(405, "MethodNotAllowed", f"The requested method {method} is not allowed (this fake reads only).")


# -- the tester's routes (/_fake/identities, /_fake/role-assignments: fakes.control mounts them) ----------------------


def control(rbac: RbacState, head: str, method: str, rest: list[str], raw: bytes) -> Reply:
    """Stage identities, federated credentials and role assignments on the fake running as a process, as the
    in-process tests do through RbacState; answers as fakes.control does ({"error": ...} on a bad request)."""
    if method == "GET" and not rest:
        return Reply(200, _staged(rbac))
    if method != "POST":
        return Reply(405, {"error": f"/_fake/{head} takes GET or POST, not {method}"})
    try:
        body = json.loads(raw or b"null")
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        if head == "role-assignments" and not rest:
            rbac.add_role_assignment(str(body["scope"]), str(body["role"]), str(body["principal_id"]))
            return Reply(200, _staged(rbac))
        if head == "identities" and not rest:
            made = rbac.add_identity(str(body["subscription"]), str(body["resource_group"]), str(body["name"]))
            return Reply(200, _render_identity(made))
        if head == "identities" and len(rest) == 4 and rest[3] == "credentials":
            identity = rbac.identities.get((rest[0].lower(), rest[1].lower(), rest[2].lower()))
            if identity is None:
                return Reply(404, {"error": f"no identity {rest[2]} in {rest[1]}"})
            audiences = body.get("audiences") or ["api://AzureADTokenExchange"]
            issuer = str(body.get("issuer") or "https://token.actions.githubusercontent.com")
            rbac.add_federated_credential(
                identity, str(body["name"]), str(body["subject"]), issuer=issuer, audiences=audiences
            )
            return Reply(
                200,
                _render_identity(identity)
                | {"credentials": [_render_credential(identity, c) for c in identity.credentials]},
            )
    except KeyError as missing:
        return Reply(400, {"error": f"the body lacks {missing}"})
    except (ValueError, ApiError) as error:
        return Reply(400, {"error": str(error)})
    return Reply(404, {"error": f"no route /_fake/{'/'.join([head, *rest])}"})


def _staged(rbac: RbacState) -> dict[str, Any]:
    return {
        "identities": [_render_identity(i) for i in rbac.identities.values()],
        "role_assignments": [
            {"scope": a.scope, "role": a.role_definition, "principal_id": a.principal_id} for a in rbac.assignments
        ],
    }
