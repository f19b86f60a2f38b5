"""`agentdeploy setup azure CONFIG --check` against the HTTPS fake ARM (identities, federated credentials and role
assignments served by fakes.rbac), signed in the production way (GitHub OIDC -> Entra -> ARM, all fakes): it says
per step what is present and what is missing, and it only ever reads."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from agentdeploy.errors import ExitCode
from fakes.arm import FakeArm
from fakes.rbac import Identity
from setupkit import RG, SUB, run, write_setup_agent
from testkit import azure_cli_environ

ISSUER = "https://token.actions.githubusercontent.com"
AUDIENCE = "api://AzureADTokenExchange"
CONTAINER_APPS_CONTRIBUTOR = "358470bc-b998-42bd-ab17-a7e34c199c0f"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
ACR_PUSH, ACR_PULL = "8311e382-0749-4cb8-b61a-304f252e45ec", "7f951dda-4ed3-4680-a7ca-43fe172d538d"
IDENTITY_OPERATOR = "f1a07417-d97a-45cb-824c-7a7467783830"
REGISTRY_SCOPE = (
    f"/subscriptions/{SUB}/resourceGroups/shared-rg/providers/Microsoft.ContainerRegistry/registries/myagents"
)
SUBJECTS = (
    "repo:acme/agents:environment:production",
    "repo:acme/agents:environment:production-faq-agent",
    "repo:acme/agents:ref:refs/heads/main",
)


@pytest.fixture
def arm(start_arm: Callable[..., FakeArm]) -> FakeArm:
    return start_arm()


def environ_for(arm: FakeArm) -> dict[str, str]:
    return azure_cli_environ(arm)


def arm_methods(arm: FakeArm) -> list[str]:
    return [r.method for r in arm.requests if r.path.lower().startswith("/subscriptions/")]


def set_up(arm: FakeArm, *, subjects: tuple[str, ...] = SUBJECTS) -> tuple[Identity, Identity]:
    """What running the printed commands makes (the fake's set-up calls stand in for az)."""
    deployer = arm.rbac.add_identity(SUB, RG, "agentdeploy-agents")
    pull = arm.rbac.add_identity(SUB, RG, "faq-pull")
    for subject in subjects:
        name = "github-" + subject.rsplit(":", 1)[-1].replace("/", "-")
        arm.rbac.add_federated_credential(deployer, name, subject, issuer=ISSUER, audiences=[AUDIENCE])
    arm.rbac.add_role_assignment(
        f"/subscriptions/{SUB}/resourceGroups/{RG}", CONTAINER_APPS_CONTRIBUTOR, deployer.principal_id
    )
    arm.rbac.add_role_assignment(REGISTRY_SCOPE, ACR_PUSH, deployer.principal_id)
    arm.rbac.add_role_assignment(pull.id, IDENTITY_OPERATOR, deployer.principal_id)
    arm.rbac.add_role_assignment(REGISTRY_SCOPE, ACR_PULL, pull.principal_id)
    return deployer, pull


def test_check_of_a_subscription_without_the_set_up_says_what_is_missing_and_only_reads(arm: FakeArm, tmp_path) -> None:
    config = write_setup_agent(tmp_path / "agent")
    code, out, err = run(environ_for(arm), "setup", "azure", str(config), "--repo", "acme/agents", "--check")
    assert code == ExitCode.FAILURE
    deployer_missing = "missing: identity agentdeploy-agents in agents-rg"
    assert out.splitlines() == [
        f"1. Work in subscription {SUB}: not checked: every other check reads this subscription",
        "2. Resource group agents-rg in eastus: present",
        "3. Container Apps environment agents-env in agents-rg: present",
        "4. Azure Container Registry myagents: not checked: its roles are checked below",
        f"5. Deployer identity agentdeploy-agents (user-assigned managed identity): {deployer_missing}",
        f"6. Trust GitHub tokens with subject {SUBJECTS[0]}: {deployer_missing}",
        f"7. Trust GitHub tokens with subject {SUBJECTS[1]}: {deployer_missing}",
        f"8. Trust GitHub tokens with subject {SUBJECTS[2]}: {deployer_missing}",
        f"9. Container Apps Contributor for agentdeploy-agents on resource group agents-rg: {deployer_missing}",
        f"10. AcrPush for agentdeploy-agents on registry myagents: {deployer_missing}",
        "11. The app's identity faq-pull (target.azure.registry_identity): missing: identity faq-pull in agents-rg",
        f"12. Managed Identity Operator for agentdeploy-agents on identity faq-pull: {deployer_missing}",
        "13. AcrPull for faq-pull on registry myagents: missing: identity faq-pull in agents-rg",
        "14. GitHub environments and variables of acme/agents: not checked: GitHub is not read",
    ]
    assert err.splitlines()[-1].startswith("9 step(s) missing: run their commands (agentdeploy setup azure ")
    assert arm_methods(arm) and set(arm_methods(arm)) == {"GET"}
    assert arm.writes() == []


def test_check_after_the_set_up_finds_every_step_present_reading_only(arm: FakeArm, tmp_path) -> None:
    set_up(arm)
    config = write_setup_agent(tmp_path / "agent")
    code, out, err = run(environ_for(arm), "setup", "azure", str(config), "--repo", "acme/agents", "--check", "--json")
    assert code == ExitCode.OK, err
    report = json.loads(out)
    assert report["missing"] == 0
    assert {s["key"]: s["status"] for s in report["steps"] if s["status"] != "present"} == {
        "subscription": "not checked",
        "registry": "not checked",
        "github": "not checked",
    }
    assert all(s["detail"] == "" for s in report["steps"] if s["status"] == "present")
    methods = arm_methods(arm)
    assert set(methods) == {"GET"}
    # Each identity read once, its role assignments once (filtered by principal), the credentials once.
    paths = [r.path.lower() for r in arm.requests if r.path.lower().startswith("/subscriptions/")]
    assert sum(p.endswith("/userassignedidentities/agentdeploy-agents") for p in paths) == 1
    assert len(paths) == 7  # group, environment, 2 identities, 1 credential list, 2 role assignment lists
    assert sum(p.endswith("/roleassignments") for p in paths) == 2
    filters = [r.query.get("$filter") for r in arm.requests if r.path.lower().endswith("/roleassignments")]
    principals = {i.principal_id for i in arm.rbac.identities.values()}
    assert {f"principalId eq '{p}'" for p in principals} == set(filters)


def test_check_says_what_is_wrong_with_each_step(arm: FakeArm, tmp_path) -> None:
    deployer = arm.rbac.add_identity(SUB, RG, "agentdeploy-agents")
    arm.rbac.add_identity(SUB, RG, "faq-pull")
    # A subject typed with the owner in another case, one from another issuer, and the branch one right.
    arm.rbac.add_federated_credential(
        deployer, "prod", "repo:Acme/agents:environment:production", issuer=ISSUER, audiences=[AUDIENCE]
    )
    arm.rbac.add_federated_credential(
        deployer, "agent", SUBJECTS[1], issuer="https://gitlab.example.com", audiences=[AUDIENCE]
    )
    arm.rbac.add_federated_credential(deployer, "main", SUBJECTS[2], issuer=ISSUER, audiences=[AUDIENCE])
    arm.rbac.add_role_assignment(f"/subscriptions/{SUB}", CONTRIBUTOR, deployer.principal_id)  # broad, but enough
    config = write_setup_agent(tmp_path / "agent")
    code, out, _ = run(environ_for(arm), "setup", "azure", str(config), "--repo", "acme/agents", "--check")
    assert code == ExitCode.FAILURE
    lines = out.splitlines()
    assert lines[4].endswith(": present")
    assert lines[5] == (
        f"6. Trust GitHub tokens with subject {SUBJECTS[0]}: missing: federated credential subject {SUBJECTS[0]} "
        "(one has repo:Acme/agents:environment:production: Azure compares it exactly)"
    )
    assert lines[6] == (
        f"7. Trust GitHub tokens with subject {SUBJECTS[1]}: missing: the credential agent for {SUBJECTS[1]} trusts "
        "issuer https://gitlab.example.com"
    )
    assert lines[7] == f"8. Trust GitHub tokens with subject {SUBJECTS[2]}: present"
    broader = f"present: as Contributor at /subscriptions/{SUB}, broader than needed"
    assert lines[8] == f"9. Container Apps Contributor for agentdeploy-agents on resource group agents-rg: {broader}"
    assert lines[9] == f"10. AcrPush for agentdeploy-agents on registry myagents: {broader}"
    assert lines[11] == f"12. Managed Identity Operator for agentdeploy-agents on identity faq-pull: {broader}"
    assert (
        lines[12]
        == "13. AcrPull for faq-pull on registry myagents: missing: role AcrPull for faq-pull on registry myagents"
    )
    assert set(arm_methods(arm)) == {"GET"}


def test_check_refused_by_azure_names_the_read_and_the_fix(arm: FakeArm, tmp_path) -> None:
    set_up(arm)
    arm.inject(
        status=403, path_regex="roleAssignments", body={"error": {"code": "AuthorizationFailed", "message": "no"}}
    )
    config = write_setup_agent(tmp_path / "agent")
    code, out, err = run(environ_for(arm), "setup", "azure", str(config), "--repo", "acme/agents", "--check")
    assert code == ExitCode.TARGET_UNAVAILABLE and out == ""
    assert err.splitlines()[0] == (
        f"error: Azure refused reading /subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments: "
        "HTTP 403 AuthorizationFailed: no"
    )
    assert "Reader is enough" in err
    assert set(arm_methods(arm)) == {"GET"}


def test_the_set_up_staged_through_the_fakes_control_routes_is_what_check_sees(
    arm: FakeArm, tls_files: Any, tmp_path: Path
) -> None:
    """The same staging over HTTPS, as a workflow does against the fake running as a process (tests/fakes/serve.py)."""

    def stage(route: str, body: dict[str, Any]) -> Any:
        answer = requests.post(
            f"{arm.base_url}/_fake{route}", data=json.dumps(body), verify=str(tls_files.ca), timeout=10
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    ids = {
        name: stage("/identities", {"subscription": SUB, "resource_group": RG, "name": name})
        for name in ("agentdeploy-agents", "faq-pull")
    }
    deployer = ids["agentdeploy-agents"]["properties"]["principalId"]
    for number, subject in enumerate(SUBJECTS):
        stage(
            f"/identities/{SUB}/{RG}/agentdeploy-agents/credentials", {"name": f"github-{number}", "subject": subject}
        )
    group = f"/subscriptions/{SUB}/resourceGroups/{RG}"
    stage("/role-assignments", {"scope": group, "role": CONTAINER_APPS_CONTRIBUTOR, "principal_id": deployer})
    config = write_setup_agent(tmp_path / "agent")
    code, out, _ = run(environ_for(arm), "setup", "azure", str(config), "--repo", "acme/agents", "--check", "--json")
    assert code == ExitCode.FAILURE
    status = {s["key"]: s["status"] for s in json.loads(out)["steps"]}
    assert [key for key, value in status.items() if value == "missing"] == [
        "deployer-role:registry",
        "deployer-role:pull-identity",
        "pull-role:registry",
    ]
    refused = requests.post(f"{arm.base_url}/_fake/role-assignments", data="{}", verify=str(tls_files.ca), timeout=10)
    assert (refused.status_code, refused.json()) == (400, {"error": "the body lacks 'scope'"})
