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

from agentdeploy.errors import DeployError
from agentdeploy.targets.azure.body import AppSpec
from agentdeploy.targets.azure.release import AzureRelease
from fakes.arm import FakeArm
from fakes.arm_state import ACTIVATION_FAILED
from testkit import StaticCredential, app_spec, arm_client, azure_release

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
    return arm_client(arm.base_url, tls_files.ca, SUB, StaticCredential(TOKEN))


@pytest.fixture
def target(arm: FakeArm, tls_files: Any) -> AzureRelease:
    lines: list[str] = []
    made = azure_release(sdk_client(arm, tls_files), resource_group=RG, app_name=APP, probe=arm.probe, say=lines.append)
    made.lines = lines  # type: ignore[attr-defined]
    return made


SPEC: AppSpec = app_spec(image=image(1))  # type: ignore[assignment]


def deploy(target: AzureRelease, spec: AppSpec, tag: str, *, timeout: float = 10) -> Any:
    return target.deploy(spec, tag=tag, environment=ENV, timeout=timeout, auto_rollback=True, blue_green=False)


def weights(arm: FakeArm) -> dict[str, int]:
    return {r["name"]: r["properties"]["trafficWeight"] for r in arm.revisions(SUB, RG, APP)}


# -- 1. a revision stuck in Activating, with no probe from here ----------------------------------------------------


@pytest.mark.parametrize("unprobed", ["internal", "ip_allow"])
def test_a_revision_stuck_in_activating_fails_the_gate_when_it_cannot_be_probed(
    arm: FakeArm, target: AzureRelease, unprobed: str, tls_files: Any
) -> None:
    """Without a probe of our own, Activating is not ready: in Multiple mode the release would otherwise move 100 %
    of the traffic to a revision that never starts."""
    spec = replace(SPEC, multiple=True)
    if unprobed == "internal":
        spec = replace(spec, external=False)
    else:  # ip_allow shuts this machine out: the revision's own state decides
        spec = replace(spec, ip_allow=("203.0.113.0/24",))
        target = azure_release(
            sdk_client(arm, tls_files), resource_group=RG, app_name=APP, probe=arm.probe, ip_restricted=True
        )
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
    arm: FakeArm, target: AzureRelease, tls_files: Any
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


def test_an_image_pull_failure_in_running_state_details_keeps_the_pull_hint(arm: FakeArm, target: AzureRelease) -> None:
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
    arm: FakeArm, target: AzureRelease
) -> None:
    first = deploy(target, SPEC, "v1")
    arm.set_image_behaviour(image(2), "crashloop")
    second = deploy(target, replace(SPEC, image=image(2)), "v2", timeout=10)
    assert second.status == "rolled-back" and second.revision == first.revision
    assert second.reason.endswith(
        ": Container crashing: CrashLoopBackOff; Deployment Progress Deadline Exceeded. 0/1 replicas ready."
    )


def test_the_sdk_passes_running_state_details_through(arm: FakeArm, target: AzureRelease) -> None:
    """The REST spec lacks the field: the client reads it only because the SDK keeps what it does not know."""
    deploy(target, SPEC, "v1")
    arm.set_image_behaviour(image(2), "never-starts")
    arm.provisioning_delay = 0.0
    template = {"containers": [{"name": APP, "image": image(2)}], "revisionSuffix": "stuck"}
    target.session.patch({"properties": {"template": template}}, "a change")
    [stuck] = [r["name"] for r in arm.revisions(SUB, RG, APP) if r["properties"]["runningState"] == "Activating"]
    arm.fail_revision(SUB, RG, APP, stuck, "VolumeMountFailure: the share is not reachable")
    read = target.session.revision(stuck)
    assert read is not None
    assert read["properties"]["runningStateDetails"] == "VolumeMountFailure: the share is not reachable"


# -- 3. the service normalises what it echoes ----------------------------------------------------------------------


def test_a_redeploy_of_what_serves_is_unchanged_although_the_service_normalised_its_echo(
    arm: FakeArm, target: AzureRelease
) -> None:
    """ "1.0Gi" comes back as "1Gi", `env: []` without `env`, `ipSecurityRestrictions: []` as null (the recordings):
    compared as sent, every deploy would make a new revision and run a full gate."""
    spec = replace(SPEC, cpu=0.5, memory="1.0Gi", env={}, secret_env={}, ip_allow=())
    first = deploy(target, spec, "v1")
    assert first.status == "succeeded", first.reason
    [revision] = arm.revisions(SUB, RG, APP)
    [container] = revision["properties"]["template"]["containers"]
    assert container["resources"]["memory"] == "1Gi" and "env" not in container  # the echo, as recorded
    ingress = target.session.get_app()["properties"]["configuration"]["ingress"]  # type: ignore[index]
    assert ingress["ipSecurityRestrictions"] is None

    writes = len(arm.writes())
    again = deploy(target, spec, "v1")
    assert again.status == "unchanged" and again.details["changes"] == [], again.details["changes"]
    assert len(arm.writes()) == writes
    assert [r["name"] for r in arm.revisions(SUB, RG, APP)] == [first.revision]


# -- 5. the smaller mismatches ---------------------------------------------------------------------------------------


def arm_url(arm: FakeArm, path: str, api_version: str = "2026-07-01") -> str:
    group = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.App/containerApps/{APP}"
    return f"{arm.base_url}{group}{path}?api-version={api_version}"


def call(arm: FakeArm, tls_files: Any, method: str, url: str, body: Any = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return requests.request(method, url, json=body, headers=headers, verify=str(tls_files.ca), timeout=10)


def test_an_auth_config_put_while_an_app_operation_runs_succeeds(
    arm: FakeArm, target: AzureRelease, tls_files: Any
) -> None:
    deploy(target, SPEC, "v1")
    missing = call(arm, tls_files, "GET", arm_url(arm, "/authConfigs/current"))
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "AuthConfigNotFound")
    arm.provisioning_delay = 30.0
    change = call(arm, tls_files, "PATCH", arm_url(arm, ""), {"properties": {"template": {"revisionSuffix": "busy"}}})
    assert change.status_code == 202
    assert arm.app(SUB, RG, APP)["properties"]["provisioningState"] == "InProgress"  # type: ignore[index]
    settings = {"properties": {"platform": {"enabled": True}}}
    put = call(arm, tls_files, "PUT", arm_url(arm, "/authConfigs/current"), settings)
    assert put.status_code == 200 and put.json()["properties"] == settings["properties"]


def test_a_put_on_an_existing_app_answers_201(arm: FakeArm, target: AzureRelease, tls_files: Any) -> None:
    deploy(target, SPEC, "v1")
    app = arm.app(SUB, RG, APP)  # with the secret values, which a GET never shows
    assert app is not None
    again = call(
        arm, tls_files, "PUT", arm_url(arm, ""), {"location": app["location"], "properties": app["properties"]}
    )
    assert again.status_code == 201 and "Azure-AsyncOperation" in again.headers, again.text


def test_an_app_in_the_preview_labels_mode_is_refused_with_nothing_changed(
    arm: FakeArm, target: AzureRelease, tls_files: Any
) -> None:
    first = deploy(target, SPEC, "v1")
    labels = {"properties": {"configuration": {"activeRevisionsMode": "Labels"}}}
    stable = call(arm, tls_files, "PATCH", arm_url(arm, ""), labels)
    assert stable.status_code == 400  # the mode exists in preview api-versions only
    preview = call(arm, tls_files, "PATCH", arm_url(arm, "", "2025-10-02-preview"), labels)
    assert preview.status_code == 202
    for _ in range(100):
        if arm.app(SUB, RG, APP)["properties"]["provisioningState"] == "Succeeded":  # type: ignore[index]
            break
        time.sleep(0.05)
    writes = len(arm.writes())
    with pytest.raises(DeployError) as refused:
        deploy(target, replace(SPEC, image=image(2)), "v2")
    assert str(refused.value) == (
        f"container app {APP} is in the Labels revision mode, which agentdeploy does not manage (it deploys in Single "
        "or Multiple mode); nothing was changed"
    )
    assert refused.value.hint is not None and "az containerapp revision set-mode" in refused.value.hint
    assert len(arm.writes()) == writes
    app = arm.app(SUB, RG, APP)
    assert app is not None and app["properties"]["configuration"]["activeRevisionsMode"] == "Labels"
    assert [r["name"] for r in arm.revisions(SUB, RG, APP)] == [first.revision]


def test_key_vault_references_rewritten_in_the_revision_are_no_change(
    arm: FakeArm, target: AzureRelease, tls_files: Any
) -> None:
    """Someone moves the agent's secret to Key Vault: the revision the service then emits names it `capp-<app>`
    (microsoft/azure-container-apps#1705). The next deploy of the same version is unchanged: no new revision, and
    the reference is not overwritten by a plain value."""
    first = deploy(target, SPEC, "v1")
    app = arm.app(SUB, RG, APP)
    assert app is not None
    vault = {"name": "openai-api-key", "keyVaultUrl": "https://kv.vault.azure.net/secrets/openai", "identity": "system"}
    secrets = [s for s in app["properties"]["configuration"]["secrets"] if s["name"] != "openai-api-key"] + [vault]
    template = app["properties"]["template"]
    moved = {"properties": {"configuration": {"secrets": secrets}, "template": {**template, "revisionSuffix": "kv"}}}
    assert call(arm, tls_files, "PATCH", arm_url(arm, ""), moved).status_code == 202
    for _ in range(100):
        serving = [r for r in arm.revisions(SUB, RG, APP) if r["properties"]["trafficWeight"] == 100]
        if serving and serving[0]["name"] == f"{APP}--kv":
            break
        time.sleep(0.05)
    [served] = [r for r in arm.revisions(SUB, RG, APP) if r["name"] == f"{APP}--kv"]
    env = served["properties"]["template"]["containers"][0]["env"]
    assert {"name": "OPENAI_API_KEY", "secretRef": f"capp-{APP}"} in env  # rewritten by the service

    writes = len(arm.writes())
    again = deploy(target, SPEC, "v1")
    assert again.status == "unchanged", again.details["changes"]
    assert len(arm.writes()) == writes
    stored = arm.app(SUB, RG, APP)
    assert stored is not None and vault in stored["properties"]["configuration"]["secrets"]
    assert first.revision != f"{APP}--kv"


# -- 4. Single mode takes no traffic by revision name -------------------------------------------------------------


def no_traffic_by_name(arm: FakeArm) -> None:
    for request in arm.requests:
        if request.method == "PATCH" and isinstance(request.body, dict):
            traffic = ((request.body.get("properties") or {}).get("configuration") or {}).get("ingress") or {}
            assert all("revisionName" not in entry for entry in traffic.get("traffic") or []), request.body


def test_the_fake_refuses_traffic_by_revision_name_in_single_mode(
    arm: FakeArm, target: AzureRelease, tls_files: Any
) -> None:
    first = deploy(target, SPEC, "v1")
    pinned = {
        "properties": {"configuration": {"ingress": {"traffic": [{"revisionName": first.revision, "weight": 100}]}}}
    }
    refused = call(arm, tls_files, "PATCH", arm_url(arm, ""), pinned)
    assert refused.status_code == 400
    assert refused.json()["error"]["message"].startswith("Revision weights can not be used in this mode")


def test_single_mode_rollback_of_a_revision_that_never_got_ready_leaves_the_old_one_serving(
    arm: FakeArm, target: AzureRelease
) -> None:
    first = deploy(target, SPEC, "v1")
    arm.set_image_behaviour(image(2), "unhealthy")
    bad = deploy(target, replace(SPEC, image=image(2)), "v2", timeout=2)
    assert bad.status == "rolled-back" and bad.revision == first.revision
    no_traffic_by_name(arm)
    # latestRevision: true means the latest READY revision: the one recorded and shown (not latestRevisionName).
    app = target.session.get_app()
    assert app is not None and app["properties"]["latestRevisionName"] == bad.attempted
    assert bad.details["traffic_after"] == [{"weight": 100, "latestRevision": True, "revisionName": first.revision}]
    assert weights(arm) == {first.revision: 100, bad.attempted: 0}
    assert {r["name"]: r["properties"]["active"] for r in arm.revisions(SUB, RG, APP)}[bad.attempted] is False


def test_single_mode_rollback_of_a_ready_revision_serves_a_copy_of_the_old_template(
    arm: FakeArm, tls_files: Any
) -> None:
    """The platform took the new revision (its probes pass) but its verdict says unhealthy: the old template comes
    back as a new revision, which the platform switches to once ready."""
    target = azure_release(sdk_client(arm, tls_files), resource_group=RG, app_name=APP, probe=arm.http)
    first = deploy(target, SPEC, "v1")
    arm.set_image_behaviour(image(2), "verdict-unhealthy")
    bad = deploy(target, replace(SPEC, image=image(2)), "v2", timeout=3)
    assert bad.status == "rolled-back", bad.reason
    assert bad.revision == f"{first.revision}-r1"
    no_traffic_by_name(arm)
    revisions = {r["name"]: r["properties"] for r in arm.revisions(SUB, RG, APP)}
    assert revisions[bad.revision]["template"]["containers"][0]["image"] == image(1)
    assert revisions[bad.revision]["trafficWeight"] == 100 and revisions[bad.attempted]["active"] is False
    assert bad.details["traffic_after"] == [{"weight": 100, "latestRevision": True, "revisionName": bad.revision}]
    assert arm.http(bad.url + "/health").status == 200


def test_single_mode_manual_rollback_to_an_inactive_revision_serves_a_copy(arm: FakeArm, target: AzureRelease) -> None:
    first = deploy(target, SPEC, "v1")
    second = deploy(target, replace(SPEC, image=image(2)), "v2")
    revisions = {r["name"]: r["properties"] for r in arm.revisions(SUB, RG, APP)}
    assert revisions[first.revision]["active"] is False  # Single mode deactivated it
    back = target.moves.shift_to(first.revision, "/health", 10, multiple=False, external=True)
    assert back.status == "succeeded", back.reason
    assert back.revision == f"{first.revision}-r1" and back.previous == second.revision
    no_traffic_by_name(arm)
    revisions = {r["name"]: r["properties"] for r in arm.revisions(SUB, RG, APP)}
    assert revisions[back.revision]["template"]["containers"][0]["image"] == image(1)
    assert revisions[back.revision]["trafficWeight"] == 100 and revisions[second.revision]["active"] is False
    assert not [r for r in arm.requests if r.method == "POST" and r.path.endswith("/activate")]
