"""GitHub OIDC -> Entra -> ARM: a fresh GitHub token for every Azure token request, so a deploy that
outlives one GitHub token (about 5 minutes in real life) does not break."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agentdeploy.errors import TargetUnavailableError
from agentdeploy.targets.azure.auth import azure_credential, github_oidc_token
from agentdeploy.targets.azure.body import AppSpec
from agentdeploy.targets.azure.release import AzureRelease
from fakes.arm import FakeArm
from testkit import app_spec, azure_release

SUB = "0b1f6471-1bf0-4dda-aec3-111122223333"
RG, ENV = "agents-rg", "agents-env"
TENANT, CLIENT = "66666666-7777-8888-9999-000000000000", "11111111-2222-3333-4444-555555555555"
SPEC: AppSpec = app_spec(  # type: ignore[assignment]
    name="cred-agent", external=False, max_replicas=1, env={}, secret_env={}
)


@pytest.fixture
def arm(start_arm: Callable[..., FakeArm]) -> FakeArm:
    fake = start_arm(provisioning_delay=1.5)
    fake.github_token_lifetime = 1.0  # stands in for GitHub's ~5 minutes
    fake.entra_token_lifetime = 1  # so the SDK asks for a new Azure token on every request
    return fake


def environ_for(arm: FakeArm) -> dict[str, str]:
    return {
        "ACTIONS_ID_TOKEN_REQUEST_URL": arm.oidc_request_url,
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": arm.oidc_request_token,
        "AZURE_CLIENT_ID": CLIENT,
        "AZURE_TENANT_ID": TENANT,
        "AZURE_AUTHORITY_HOST": arm.base_url,
    }


def target_with(arm: FakeArm, tls_files: Any, credential: Any) -> AzureRelease:
    from azure.mgmt.appcontainers import ContainerAppsAPIClient

    sdk = ContainerAppsAPIClient(credential, SUB, base_url=arm.base_url, connection_verify=str(tls_files.ca))
    return azure_release(sdk, resource_group=RG, app_name="cred-agent", probe=arm.probe, poll_interval=0.2)


def test_a_deploy_outliving_the_github_token_still_succeeds(arm: FakeArm, tls_files: Any) -> None:
    from azure.identity import ClientAssertionCredential

    credential = azure_credential(environ_for(arm))
    assert isinstance(credential, ClientAssertionCredential)
    outcome = target_with(arm, tls_files, credential).deploy(
        SPEC, tag="v1", environment=ENV, timeout=15, auto_rollback=True, blue_green=False
    )
    assert outcome.status == "succeeded", outcome.reason
    assert arm.github_tokens_issued >= 2  # one GitHub token would have expired half-way


def test_a_cached_github_token_fails_like_az_login_does(arm: FakeArm, tls_files: Any) -> None:
    from azure.identity import ClientAssertionCredential

    environ = environ_for(arm)
    fetched_once = github_oidc_token(environ)
    stale = ClientAssertionCredential(
        TENANT, CLIENT, lambda: fetched_once, authority=arm.base_url, disable_instance_discovery=True
    )
    with pytest.raises(TargetUnavailableError) as exc:
        target_with(arm, tls_files, stale).deploy(
            SPEC, tag="v1", environment=ENV, timeout=15, auto_rollback=True, blue_green=False
        )
    assert "AADSTS700024" in exc.value.render()


def test_one_token_request_per_process_and_tenant_whatever_the_number_of_agents(
    arm: FakeArm, tls_files: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every agent's ARM client and the registry's token exchange share one credential: Entra is asked once."""
    from agentdeploy.targets.azure.auth import arm_client_factory, arm_token_source

    arm.entra_token_lifetime = 3600
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files.ca))
    environ = {**environ_for(arm), "AGENTDEPLOY_ARM_ENDPOINT": arm.base_url}
    make = arm_client_factory(environ)
    for agent in ("agent-a", "agent-b", "agent-c", "agent-d"):
        target = azure_release(make(SUB), resource_group=RG, app_name=agent, probe=arm.probe)
        assert target.session.get_app() is None  # a real ARM round trip, authenticated
    exchange = arm_token_source(environ)
    assert exchange() == exchange()
    assert len(arm.issued_tokens) == 1 and arm.github_tokens_issued == 1
    assert exchange() == arm.issued_tokens[0]

    other_tenant = {**environ, "AZURE_TENANT_ID": "77777777-8888-9999-0000-111111111111"}
    azure_release(
        arm_client_factory(other_tenant)(SUB), resource_group=RG, app_name="agent-e", probe=arm.probe
    ).session.get_app()
    assert len(arm.issued_tokens) == 2  # a second tenant: its own token
