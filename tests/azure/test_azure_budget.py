"""The request budget of an Azure deploy, counted in the fake ARM's request log (counts, not time): ARM throttles per
subscription and principal (FACTS.md), and a deploy used to make 22 requests where upstream HoloDeck makes 4."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from agentdeploy.targets.azure.body import AppSpec
from agentdeploy.targets.azure.release import AzureRelease
from fakes.arm import FakeArm
from testkit import StaticCredential, app_spec, azure_release

SUB = "0b1f6471-1bf0-4dda-aec3-111122223333"
RG, ENV, TOKEN = "agents-rg", "agents-env", "static-test-token"
DEPLOY_BUDGET = 8  # requests of a deploy that changes the image, gate polls not counted
NO_OP_BUDGET = 3  # reads of a deploy that changes nothing


def image(n: int) -> str:
    return "127.0.0.1:5000/team/agent@sha256:" + f"{n:064x}"


@pytest.fixture
def arm(start_arm: Callable[..., FakeArm]) -> FakeArm:
    return start_arm(token=TOKEN, provisioning_delay=0.0)  # one operation poll per write: the count is exact


def made(arm: FakeArm, tls_files: Any) -> AzureRelease:
    from azure.mgmt.appcontainers import ContainerAppsAPIClient

    sdk = ContainerAppsAPIClient(
        StaticCredential(TOKEN), SUB, base_url=arm.base_url, polling_interval=0.05, connection_verify=str(tls_files.ca)
    )
    return azure_release(sdk, resource_group=RG, app_name="support-agent", probe=arm.probe, poll_interval=0.05)


def observe_then_deploy(target: AzureRelease, spec: AppSpec, tag: str) -> Any:
    """What a deploy run asks of the target: observe (the plan: live(), and the secrets it compares for rotation),
    then the release."""
    target.live("")
    target.session.secret_values()
    return target.deploy(spec, tag=tag, environment=ENV, timeout=30, auto_rollback=True, blue_green=False)


@pytest.mark.parametrize("multiple", [False, True], ids=["single", "multiple"])
def test_a_deploy_that_changes_the_image_and_a_no_op_stay_in_budget(
    arm: FakeArm, tls_files: Any, multiple: bool
) -> None:
    spec: AppSpec = app_spec(image=image(1), multiple=multiple)  # type: ignore[assignment]
    first = made(arm, tls_files)
    assert first.deploy(spec, tag="v1", environment=ENV, timeout=30, auto_rollback=True, blue_green=False).status == (
        "succeeded"
    )

    since = len(arm.requests)
    changed = observe_then_deploy(made(arm, tls_files), replace(spec, image=image(2)), "v2")
    assert changed.status == "succeeded", changed.reason
    counted = arm.budget(since)
    # observe: the app, its revisions, its secrets; release: the app again (the lease), the change and its result,
    # the gate, then one write that ends the lease (and, in Multiple mode, moves the traffic) and its result.
    assert counted["requests"] - counted["gate_polls"] == DEPLOY_BUDGET, counted
    assert counted["writes"] == 2 and counted["reads"] == 4 and counted["gate_polls"] >= 1

    since = len(arm.requests)
    unchanged = observe_then_deploy(made(arm, tls_files), replace(spec, image=image(2)), "v2")
    assert unchanged.status == "unchanged"
    counted = arm.budget(since)
    assert counted["requests"] == counted["reads"] == NO_OP_BUDGET, counted  # observe's reads, reused by the release
