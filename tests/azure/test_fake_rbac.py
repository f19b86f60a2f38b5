"""The fake ARM's Microsoft.ManagedIdentity and Microsoft.Authorization reads (fakes.rbac) behave as the REST
reference says (Azure/azure-rest-api-specs: ManagedIdentity 2023-01-31, Authorization 2022-04-01 role
assignments; see the module's docstring), asked directly over HTTPS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from fakes.arm import FakeArm
from testkit import AZURE_RESOURCE_GROUP, AZURE_SUBSCRIPTION

SUB, RG = AZURE_SUBSCRIPTION, AZURE_RESOURCE_GROUP
TOKEN = "rbac-test-token"
ROLE = "7f951dda-4ed3-4680-a7ca-43fe172d538d"


@pytest.fixture
def arm(start_arm: Callable[..., FakeArm]) -> FakeArm:
    return start_arm(token=TOKEN)


def get(arm: FakeArm, tls_files: Any, path: str, method: str = "GET", **params: str) -> requests.Response:
    url = path if path.startswith("https://") else arm.base_url + path
    query = params if not path.startswith("https://") else None
    return requests.request(
        method,
        url,
        params=query,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
        verify=str(tls_files.ca),
    )


def test_an_identity_reads_as_the_reference_shows_it_and_a_missing_one_is_404(arm: FakeArm, tls_files: Any) -> None:
    identity = arm.rbac.add_identity(SUB, RG, "deployer")
    path = (
        f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/deployer"
    )
    body = get(arm, tls_files, path, **{"api-version": "2023-01-31"}).json()
    assert body["type"] == "Microsoft.ManagedIdentity/userAssignedIdentities"
    assert body["id"] == path.replace("resourceGroups", "resourcegroups")  # as the reference's example spells it
    assert body["properties"] == {
        "clientId": identity.client_id,
        "principalId": identity.principal_id,
        "tenantId": identity.tenant_id,
    }
    missing = get(arm, tls_files, path.replace("deployer", "nobody"), **{"api-version": "2023-01-31"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceNotFound"
    no_group = get(arm, tls_files, path.replace(RG, "no-rg"), **{"api-version": "2023-01-31"})
    assert no_group.status_code == 404 and no_group.json()["error"]["code"] == "ResourceGroupNotFound"
    assert get(arm, tls_files, path, "PUT", **{"api-version": "2023-01-31"}).status_code == 405


def test_federated_credentials_list_in_pages_with_next_link(arm: FakeArm, tls_files: Any) -> None:
    identity = arm.rbac.add_identity(SUB, RG, "deployer")
    for name in ("one", "two", "three"):
        arm.rbac.add_federated_credential(
            identity, name, f"repo:o/r:environment:{name}", issuer="https://i", audiences=["api://AzureADTokenExchange"]
        )
    path = (
        f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/deployer"
    )
    page = get(arm, tls_files, path + "/federatedIdentityCredentials", **{"api-version": "2023-01-31", "$top": "2"})
    first = page.json()
    assert [c["name"] for c in first["value"]] == ["one", "two"]
    assert first["value"][0]["properties"] == {
        "issuer": "https://i",
        "subject": "repo:o/r:environment:one",
        "audiences": ["api://AzureADTokenExchange"],
    }
    second = get(arm, tls_files, first["nextLink"]).json()
    assert [c["name"] for c in second["value"]] == ["three"] and "nextLink" not in second


def test_role_assignments_filter_by_principal_at_above_and_below_and_at_scope(arm: FakeArm, tls_files: Any) -> None:
    group = f"/subscriptions/{SUB}/resourceGroups/{RG}"
    vault = f"{group}/providers/Microsoft.KeyVault/vaults/kv"
    arm.rbac.add_role_assignment(f"/subscriptions/{SUB}", ROLE, "aaaaaaaa-0000-0000-0000-000000000001")
    arm.rbac.add_role_assignment(group, ROLE, "aaaaaaaa-0000-0000-0000-000000000001")
    arm.rbac.add_role_assignment(vault, ROLE, "aaaaaaaa-0000-0000-0000-000000000001")
    arm.rbac.add_role_assignment(vault, ROLE, "bbbbbbbb-0000-0000-0000-000000000002")
    api = {"api-version": "2022-04-01"}

    def scopes(path: str, **params: str) -> list[str]:
        answer = get(arm, tls_files, path + "/providers/Microsoft.Authorization/roleAssignments", **api, **params)
        assert answer.status_code == 200, answer.text
        return [a["properties"]["scope"] for a in answer.json()["value"]]

    mine = "principalId eq 'aaaaaaaa-0000-0000-0000-000000000001'"
    assert scopes(group, **{"$filter": mine}) == [f"/subscriptions/{SUB}", group, vault]
    assert scopes(group, **{"$filter": "atScope()"}) == [f"/subscriptions/{SUB}", group]
    assert scopes(f"/subscriptions/{SUB}") == [f"/subscriptions/{SUB}", group, vault, vault]
    listed = get(arm, tls_files, f"{vault}/providers/Microsoft.Authorization/roleAssignments", **api).json()["value"][0]
    assert listed["type"] == "Microsoft.Authorization/roleAssignments"
    assert listed["properties"]["roleDefinitionId"].endswith(
        f"/providers/Microsoft.Authorization/roleDefinitions/{ROLE}"
    )
    refused = get(arm, tls_files, group + "/providers/Microsoft.Authorization/roleAssignments", "PUT", **api)
    assert refused.status_code == 405
