"""Azure as the real service behaves (FACTS.md, "What recorded real Azure sessions show"): a revision stuck in
Activating, the reason in runningStateDetails, the values the service normalises in its echo, Single-mode traffic,
and the smaller mismatches; each staged on the fake ARM and driven through the real SDK."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import requests

from agentdeploy.targets.azure.body import AppSpec
from agentdeploy.targets.azure.client import AzureTarget
from fakes.arm import FakeArm
from fakes.arm_state import ACTIVATION_FAILED
from testkit import StaticCredential, app_spec

SUB = "0b1f6471-1bf0-4dda-aec3-111122223333"
RG = "agents-rg"
ENV = "agents-env"
TOKEN = "static-test-token"
APP = "support-agent"


def image(n: int) -> str:
    return "127.0.0.1:5000/team/agent@sha256:" + f"{n:064x}"


@pytest.fixture
def arm(start_arm: Callable[..., FakeArm]) -> FakeArm:
    return start_arm(token=TOKEN)


def sdk_client(arm: FakeArm, tls_files: Any) -> Any:
    from azure.mgmt.appcontainers import ContainerAppsAPIClient

    return ContainerAppsAPIClient(
        StaticCredential(TOKEN),
        SUB,
        base_url=arm.base_url,
        polling_interval=0.1,
        connection_verify=str(tls_files.ca),
        retry_backoff_factor=0.05,
    )


@pytest.fixture
def target(arm: FakeArm, tls_files: Any) -> AzureTarget:
    lines: list[str] = []
    made = AzureTarget(
        sdk_client(arm, tls_files), resource_group=RG, app_name=APP, probe=arm.probe, on_line=lines.append
    )
    made.lines = lines  # type: ignore[attr-defined]
    return made


SPEC: AppSpec = app_spec(image=image(1))  # type: ignore[assignment]


def deploy(target: AzureTarget, spec: AppSpec, tag: str, *, timeout: float = 10) -> Any:
    return target.deploy(spec, tag=tag, environment=ENV, timeout=timeout, auto_rollback=True, blue_green=False)


def weights(arm: FakeArm) -> dict[str, int]:
    return {r["name"]: r["properties"]["trafficWeight"] for r in arm.revisions(SUB, RG, APP)}


# -- 1. a revision stuck in Activating, with no probe from here ----------------------------------------------------


@pytest.mark.parametrize("unprobed", ["internal", "ip_allow"])
def test_a_revision_stuck_in_activating_fails_the_gate_when_it_cannot_be_probed(
    arm: FakeArm, target: AzureTarget, unprobed: str
) -> None:
    """Without a probe of our own, Activating is not ready: in Multiple mode the release would otherwise move 100 %
    of the traffic to a revision that never starts."""
    spec = replace(SPEC, multiple=True)
    if unprobed == "internal":
        spec = replace(spec, external=False)
    else:  # ip_allow shuts this machine out: the revision's own state decides
        spec = replace(spec, ip_allow=("203.0.113.0/24",))
        target.ip_restricted = True
    first = deploy(target, spec, "v1")
    assert first.status == "succeeded", first.reason
    arm.set_image_behaviour(image(2), "never-starts")
    second = deploy(target, replace(spec, image=image(2)), "v2", timeout=2)
    assert second.status == "rolled-back", second.reason
    assert second.revision == first.revision and second.attempted.startswith(f"{APP}--v2-")
    assert second.reason == (
        f"revision {second.attempted} not healthy within 2s (provisioningState Provisioned, runningState "
        "Activating, healthState None)"
    )
    assert weights(arm)[first.revision] == 100 and weights(arm).get(second.attempted, 0) == 0


def test_activating_then_failed_by_the_service_ends_the_gate_with_its_details(
    arm: FakeArm, target: AzureTarget, tls_files: Any
) -> None:
    """The service turns the stuck revision ActivationFailed (staged through the fake's /_fake/ route, as a test of
    the fake running as a process would): the gate ends at once with runningStateDetails."""
    spec = replace(SPEC, multiple=True, external=False)
    first = deploy(target, spec, "v1")
    arm.set_image_behaviour(image(2), "never-starts")
    failed: list[int] = []

    def fail_when_activating() -> None:
        for _ in range(200):
            stuck = [
                r["name"]
                for r in arm.revisions(SUB, RG, APP)
                if r["properties"]["runningState"] == "Activating" and r["name"] != first.revision
            ]
            if stuck:
                answer = requests.post(
                    f"{arm.base_url}/_fake/apps/{SUB}/{RG}/{APP}/revisions/{stuck[0]}/fail",
                    json={"details": "Deployment Progress Deadline Exceeded. 0/1 replicas ready."},
                    verify=str(tls_files.ca),
                    timeout=10,
                )
                failed.append(answer.status_code)
                return
            time.sleep(0.05)

    helper = threading.Thread(target=fail_when_activating)
    helper.start()
    started = time.monotonic()
    second = deploy(target, replace(spec, image=image(2)), "v2", timeout=60)
    helper.join()
    assert failed == [200]
    assert time.monotonic() - started < 30  # ended at the failure, not at the 60 s timeout
    assert second.status == "rolled-back" and second.revision == first.revision
    assert second.reason == (
        f"revision {second.attempted} failed: provisioningState Provisioned, runningState ActivationFailed, "
        "healthState Unhealthy: Deployment Progress Deadline Exceeded. 0/1 replicas ready."
    )
    assert weights(arm)[first.revision] == 100


# -- 2. the reason is in runningStateDetails ---------------------------------------------------------------------


def test_an_image_pull_failure_in_running_state_details_keeps_the_pull_hint(arm: FakeArm, target: AzureTarget) -> None:
    first = deploy(target, SPEC, "v1")
    arm.set_image_behaviour(image(2), "activation-failed")
    second = deploy(target, replace(SPEC, image=image(2)), "v2", timeout=600)
    assert second.status == "rolled-back" and second.revision == first.revision
    # The service's reason is in runningStateDetails, not in provisioningError (the fake sends only the first).
    assert second.reason.startswith(
        f"revision {second.attempted} failed: provisioningState Provisioned, runningState ActivationFailed, "
        f"healthState Unhealthy: {ACTIVATION_FAILED}; Container Apps could not pull the image: give the app pull "
        "access"
    )


def test_a_crash_loop_shows_the_provisioning_error_and_the_running_state_details(
    arm: FakeArm, target: AzureTarget
) -> None:
    first = deploy(target, SPEC, "v1")
    arm.set_image_behaviour(image(2), "crashloop")
    second = deploy(target, replace(SPEC, image=image(2)), "v2", timeout=10)
    assert second.status == "rolled-back" and second.revision == first.revision
    assert second.reason.endswith(
        ": Container crashing: CrashLoopBackOff; Deployment Progress Deadline Exceeded. 0/1 replicas ready."
    )


def test_the_sdk_passes_running_state_details_through(arm: FakeArm, target: AzureTarget) -> None:
    """The REST spec lacks the field: the client reads it only because the SDK keeps what it does not know."""
    deploy(target, SPEC, "v1")
    arm.set_image_behaviour(image(2), "never-starts")
    arm.provisioning_delay = 0.0
    template = {"containers": [{"name": APP, "image": image(2)}], "revisionSuffix": "stuck"}
    target.patch({"properties": {"template": template}}, "a change")
    [stuck] = [r["name"] for r in arm.revisions(SUB, RG, APP) if r["properties"]["runningState"] == "Activating"]
    arm.fail_revision(SUB, RG, APP, stuck, "VolumeMountFailure: the share is not reachable")
    read = target.revision(stuck)
    assert read is not None
    assert read["properties"]["runningStateDetails"] == "VolumeMountFailure: the share is not reachable"


# -- 3. the service normalises what it echoes ----------------------------------------------------------------------


def test_a_redeploy_of_what_serves_is_unchanged_although_the_service_normalised_its_echo(
    arm: FakeArm, target: AzureTarget
) -> None:
    """ "1.0Gi" comes back as "1Gi", `env: []` without `env`, `ipSecurityRestrictions: []` as null (the recordings):
    compared as sent, every deploy would make a new revision and run a full gate."""
    spec = replace(SPEC, cpu=0.5, memory="1.0Gi", env={}, secret_env={}, ip_allow=())
    first = deploy(target, spec, "v1")
    assert first.status == "succeeded", first.reason
    [revision] = arm.revisions(SUB, RG, APP)
    [container] = revision["properties"]["template"]["containers"]
    assert container["resources"]["memory"] == "1Gi" and "env" not in container  # the echo, as recorded
    ingress = target.get_app()["properties"]["configuration"]["ingress"]  # type: ignore[index]
    assert ingress["ipSecurityRestrictions"] is None

    writes = len(arm.writes())
    again = deploy(target, spec, "v1")
    assert again.status == "unchanged" and again.changes == [], again.changes
    assert len(arm.writes()) == writes
    assert [r["name"] for r in arm.revisions(SUB, RG, APP)] == [first.revision]
