"""The Azure deployer through the real azure-mgmt-appcontainers SDK, against the fake ARM over HTTPS."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from agentdeploy.errors import DeployError, TargetUnavailableError
from agentdeploy.targets.azure.body import AppSpec, create_body
from agentdeploy.targets.azure.release import AzureRelease
from agentdeploy.targets.azure.settings import NO_VERIFY, Verify
from agentdeploy.targets.health import ChatCheck
from fakes.arm import FakeArm
from testkit import StaticCredential, app_spec, arm_client, azure_release

SUB = "0b1f6471-1bf0-4dda-aec3-111122223333"
RG = "agents-rg"
ENV = "agents-env"
TOKEN = "static-test-token"
IMAGE = "127.0.0.1:5000/team/agent@sha256:"


def image(n: int) -> str:
    return IMAGE + f"{n:064x}"


@pytest.fixture
def arm(start_arm: Callable[..., FakeArm]) -> FakeArm:
    return start_arm(token=TOKEN)


def client(arm: FakeArm, tls_files: Any, credential: Any = None) -> Any:
    return arm_client(arm.base_url, tls_files.ca, SUB, credential or StaticCredential(TOKEN))


@pytest.fixture
def target(arm: FakeArm, tls_files: Any) -> AzureRelease:
    lines: list[str] = []
    made = azure_release(
        client(arm, tls_files),
        resource_group=RG,
        app_name="support-agent",
        probe=arm.probe,
        say=lines.append,
        poll_interval=0.1,
    )
    made.lines = lines  # type: ignore[attr-defined]
    return made


SPEC: AppSpec = app_spec(image=image(1))  # type: ignore[assignment]


def deploy(
    target: AzureRelease,
    spec: AppSpec,
    tag: str,
    *,
    timeout: float = 10,
    blue_green: bool = False,
    verify: Verify = NO_VERIFY,
) -> Any:
    return target.deploy(
        spec, tag=tag, environment=ENV, timeout=timeout, auto_rollback=True, blue_green=blue_green, verify=verify
    )


def test_first_deploy_then_update_then_no_op(arm: FakeArm, target: AzureRelease) -> None:
    first = deploy(target, SPEC, "v1")
    assert first.status == "succeeded", first.reason
    assert first.revision.startswith("support-agent--v1-")
    assert first.url.startswith("https://support-agent.")
    assert arm.probe(first.url + "/health") == 200
    app = arm.app(SUB, RG, "support-agent")
    assert app is not None
    assert app["properties"]["latestReadyRevisionName"] == first.revision
    [container] = app["properties"]["template"]["containers"]
    assert container["image"] == image(1)  # by digest

    second = deploy(target, replace(SPEC, image=image(2)), "v2")
    assert second.status == "succeeded", second.reason
    assert second.revision.startswith("support-agent--v2-") and second.previous == first.revision
    assert second.details["changes"] == ["container (image, env, resources or probes)"]
    patches = [r for r in arm.requests if r.method == "PATCH"]
    # The change carries this run's lease (an ARM tag), given up when the release ends.
    update, release = patches[-2:]
    assert set(update.body["properties"]) == {"template"}  # only what changed
    assert update.body["tags"]["agentdeploy-lease"].endswith(";held=1")
    assert set(release.body) == {"tags"} and release.body["tags"]["agentdeploy-lease"].endswith(";held=0")

    before = len(arm.writes())
    again = deploy(target, replace(SPEC, image=image(2)), "v2")
    assert again.status == "unchanged"
    assert len(arm.writes()) == before  # a no-op deploy writes nothing


def test_secrets_never_travel_as_plain_env(arm: FakeArm, target: AzureRelease) -> None:
    assert deploy(target, SPEC, "v1").status == "succeeded"
    rotated = replace(SPEC, secret_env={"OPENAI_API_KEY": "sk-sentinel-0002"})
    assert deploy(target, rotated, "v1").status == "succeeded"
    sent = [r for r in arm.requests if r.method in ("PUT", "PATCH") and r.body]
    assert sent
    for request in sent:
        for container in (request.body.get("properties", {}).get("template") or {}).get("containers") or []:
            for variable in container.get("env") or []:
                assert "sk-sentinel" not in json.dumps(variable)
                if variable["name"] == "OPENAI_API_KEY":
                    assert variable == {"name": "OPENAI_API_KEY", "secretRef": "openai-api-key"}
    # GET never shows the value; the stored secret is the rotated one.
    assert "sk-sentinel" not in json.dumps(target.session.get_app())
    stored = arm.app(SUB, RG, "support-agent")
    assert {"name": "openai-api-key", "value": "sk-sentinel-0002"} in stored["properties"]["configuration"]["secrets"]


def test_unhealthy_revision_is_rolled_back(arm: FakeArm, target: AzureRelease) -> None:
    first = deploy(target, SPEC, "v1")
    arm.set_image_behaviour(image(2), "unhealthy")
    bad = deploy(target, replace(SPEC, image=image(2)), "v2", timeout=3)
    assert bad.status == "rolled-back"
    assert bad.revision == first.revision
    assert "not healthy" in bad.reason and "healthState Unhealthy" in bad.reason
    revisions = {r["name"]: r["properties"] for r in arm.revisions(SUB, RG, "support-agent")}
    new = next(name for name in revisions if name.startswith("support-agent--v2-"))
    assert revisions[new]["active"] is False
    assert revisions[first.revision]["active"] is True
    app = arm.app(SUB, RG, "support-agent")
    # Single mode: the traffic follows the latest READY revision, which the new one never became.
    assert app["properties"]["configuration"]["ingress"]["traffic"] == [{"weight": 100, "latestRevision": True}]
    assert arm.probe(first.url + "/health") == 200
    good = deploy(target, replace(SPEC, image=image(3)), "v3")
    assert good.status == "succeeded", good.reason
    assert arm.app(SUB, RG, "support-agent")["properties"]["configuration"]["ingress"]["traffic"] == [
        {"weight": 100, "latestRevision": True}
    ]


def test_crash_loop_fails_fast_or_at_the_deadline_and_rolls_back(arm: FakeArm, target: AzureRelease) -> None:
    first = deploy(target, SPEC, "v1")
    arm.set_image_behaviour(image(4), "crashloop")
    bad = deploy(target, replace(SPEC, image=image(4)), "v4", timeout=4)
    assert bad.status == "rolled-back" and bad.revision == first.revision


def test_slow_start_within_the_limit_is_fine(arm: FakeArm, target: AzureRelease) -> None:
    deploy(target, SPEC, "v1")
    arm.set_image_behaviour(image(5), "slow", start_seconds=1.5)
    slow = deploy(target, replace(SPEC, image=image(5)), "v5", timeout=8)
    assert slow.status == "succeeded", slow.reason


def test_first_deploy_unhealthy_has_nothing_to_roll_back_to(arm: FakeArm, target: AzureRelease) -> None:
    arm.set_image_behaviour(image(6), "unhealthy")
    outcome = deploy(target, replace(SPEC, image=image(6)), "v6", timeout=2)
    assert outcome.status == "failed" and "nothing to roll back to" in outcome.reason


def test_blue_green_deploy_promote_and_roll_back(arm: FakeArm, target: AzureRelease) -> None:
    blue_spec = replace(SPEC, multiple=True)
    first = deploy(target, blue_spec, "v1", blue_green=True)
    assert first.status == "succeeded", first.reason
    candidate = deploy(target, replace(blue_spec, image=image(2)), "v2", blue_green=True)
    assert candidate.status == "candidate", candidate.reason
    assert candidate.label_url == first.url.replace("support-agent.", "support-agent---green.")
    assert arm.probe(candidate.label_url + "/health") == 200
    traffic = arm.app(SUB, RG, "support-agent")["properties"]["configuration"]["ingress"]["traffic"]
    assert sorted((t["revisionName"], t["weight"], t.get("label")) for t in traffic) == sorted(
        [(first.revision, 100, "blue"), (candidate.revision, 0, "green")]
    )
    promoted = target.moves.promote("/health", 10, external=True)
    assert promoted.status == "promoted" and promoted.revision == candidate.revision
    traffic = arm.app(SUB, RG, "support-agent")["properties"]["configuration"]["ingress"]["traffic"]
    # What served stays active at 0% for an instant rollback, with no label: it is not a candidate.
    assert sorted((t["revisionName"], t["weight"], t.get("label")) for t in traffic) == sorted(
        [(candidate.revision, 100, "blue"), (first.revision, 0, None)]
    )
    with pytest.raises(DeployError, match="has no candidate"):
        target.moves.promote("/health", 10, external=True)
    back = target.moves.shift_to(first.revision, "/health", 10, multiple=True, external=True)
    assert back.status == "succeeded"
    traffic = arm.app(SUB, RG, "support-agent")["properties"]["configuration"]["ingress"]["traffic"]
    assert [(t["revisionName"], t["weight"], t.get("label")) for t in traffic] == [(first.revision, 100, "blue")]
    active = {r["name"]: r["properties"]["active"] for r in arm.revisions(SUB, RG, "support-agent")}
    assert active == {first.revision: True, candidate.revision: False}  # the rolled-back one is stopped

    # A new candidate: what is neither blue nor green any more is stopped, never left running unrouted.
    third = deploy(target, replace(blue_spec, image=image(3)), "v3", blue_green=True)
    assert third.status == "candidate", third.reason
    promoted = target.moves.promote("/health", 10, external=True)
    fourth = deploy(target, replace(blue_spec, image=image(4)), "v4", blue_green=True)
    assert fourth.status == "candidate", fourth.reason
    active = {r["name"]: r["properties"]["active"] for r in arm.revisions(SUB, RG, "support-agent")}
    assert [name for name, on in active.items() if on] == [third.revision, fourth.revision]
    assert promoted.revision == third.revision


def test_unhealthy_blue_green_candidate_never_gets_traffic(arm: FakeArm, target: AzureRelease) -> None:
    blue_spec = replace(SPEC, multiple=True)
    first = deploy(target, blue_spec, "v1", blue_green=True)
    arm.set_image_behaviour(image(7), "unhealthy")
    bad = deploy(target, replace(blue_spec, image=image(7)), "v7", blue_green=True, timeout=2)
    assert bad.status == "rolled-back" and bad.revision == first.revision
    traffic = arm.app(SUB, RG, "support-agent")["properties"]["configuration"]["ingress"]["traffic"]
    assert traffic == [{"revisionName": first.revision, "weight": 100, "label": "blue"}]


def test_unmanaged_settings_survive_a_deploy(arm: FakeArm, target: AzureRelease, tls_files: Any) -> None:
    sdk = client(arm, tls_files)
    body = create_body(
        replace(
            SPEC,
            environment_id=f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.App/managedEnvironments/{ENV}",
        ),
        "v0-manual",
    )
    body["tags"] = {"team": "ai", "cost-center": "42"}
    body["identity"] = {"type": "SystemAssigned"}
    body["properties"]["configuration"]["secrets"].append({"name": "someone-elses", "value": "keep-me"})
    body["properties"]["configuration"]["dapr"] = {"enabled": True, "appId": "support", "appPort": 8080}
    sdk.container_apps.begin_create_or_update(RG, "support-agent", body, polling_interval=0.1).result()
    outcome = deploy(target, replace(SPEC, image=image(2), secret_env={"OPENAI_API_KEY": "sk-new"}), "v2")
    assert outcome.status == "succeeded", outcome.reason
    app = arm.app(SUB, RG, "support-agent")
    lease = app["tags"].pop("agentdeploy-lease")
    assert app["tags"] == {"team": "ai", "cost-center": "42"}  # others' tags kept, ours beside them
    assert lease.startswith("run=") and lease.endswith(";held=0")  # given up: the next run starts at once
    assert app["identity"]["type"] == "SystemAssigned"
    assert app["properties"]["configuration"]["dapr"]["appId"] == "support"
    secrets = {s["name"]: s.get("value") for s in app["properties"]["configuration"]["secrets"]}
    assert secrets == {"openai-api-key": "sk-new", "someone-elses": "keep-me"}


def test_throttling_and_unavailability_are_survived(arm: FakeArm, target: AzureRelease) -> None:
    arm.inject(status=429, count=2, retry_after=0.2, method="GET")
    arm.inject(status=503, count=2, retry_after=0.2, method="PUT")
    outcome = deploy(target, SPEC, "v1")
    assert outcome.status == "succeeded", outcome.reason
    statuses = [r.status for r in arm.requests]
    assert statuses.count(429) == 2 and statuses.count(503) == 2


def test_a_connection_reset_is_retried(arm: FakeArm, target: AzureRelease) -> None:
    arm.inject(reset=True, count=1, method="GET")
    assert deploy(target, SPEC, "v1").status == "succeeded"


def test_lock_conflict_is_waited_out(arm: FakeArm, tls_files: Any) -> None:
    target = made_target(arm, tls_files, sleep=lambda seconds: None)
    deploy(target, SPEC, "v1")
    arm.inject(
        status=409, count=2, method="PATCH", body={"error": {"code": "ContainerAppLockConflict", "message": "locked"}}
    )
    outcome = deploy(target, replace(SPEC, image=image(2)), "v2")
    assert outcome.status == "succeeded", outcome.reason
    assert sum("another operation holds support-agent" in line for line in target.lines) == 2  # type: ignore[attr-defined]


def test_a_failed_operation_is_reported(arm: FakeArm, target: AzureRelease) -> None:
    deploy(target, SPEC, "v1")
    arm.fail_next_operation("ContainerAppOperationError", "Failed to provision revision: quota")
    with pytest.raises(DeployError) as exc:
        deploy(target, replace(SPEC, image=image(2)), "v2")
    assert "ContainerAppOperationError" in exc.value.message


def test_missing_environment_and_resource_group(arm: FakeArm, tls_files: Any) -> None:
    lost = azure_release(
        client(arm, tls_files), resource_group="nope-rg", app_name="other-agent", probe=arm.probe, poll_interval=0.1
    )
    with pytest.raises(DeployError) as exc:
        lost.deploy(
            replace(SPEC, name="other-agent"),
            tag="v1",
            environment=ENV,
            timeout=5,
            auto_rollback=True,
            blue_green=False,
        )
    assert exc.value.hint


def test_unauthorized_is_explained(arm: FakeArm, tls_files: Any) -> None:
    stranger = azure_release(
        client(arm, tls_files, StaticCredential("not-issued")),
        resource_group=RG,
        app_name="support-agent",
        probe=arm.probe,
        poll_interval=0.1,
    )
    with pytest.raises(TargetUnavailableError) as exc:
        stranger.deploy(SPEC, tag="v1", environment=ENV, timeout=5, auto_rollback=True, blue_green=False)
    assert "Azure refused the credentials" in exc.value.message
    assert "federated credential" in (exc.value.hint or "")


def test_status_uses_the_services_words(arm: FakeArm, target: AzureRelease) -> None:
    deploy(target, SPEC, "v1")
    status = target.status()
    assert status["provisioning"] == "Succeeded" and status["revision_mode"] == "Single"
    [revision] = [r for r in status["revisions"] if r["active"]]
    assert (revision["provisioning"], revision["running"], revision["health"]) == ("Provisioned", "Running", "Healthy")
    assert "Enum" not in json.dumps(status) and "." not in str(status["provisioning"])


HEARD = Verify((ChatCheck("Are you there?", expect=("heard",)),))


@pytest.fixture
def holodeck_target(arm: FakeArm, tls_files: Any) -> AzureRelease:
    """A target that reads the answers a HoloDeck revision gives (JSON verdicts, chat); its releases (HEARD) must
    hear the agent answer one chat turn at the new revision's own URL."""
    lines: list[str] = []
    made = azure_release(
        client(arm, tls_files),
        resource_group=RG,
        app_name="support-agent",
        probe=arm.http,
        post=arm.chat,
        say=lines.append,
        poll_interval=0.1,
    )
    made.lines = lines  # type: ignore[attr-defined]
    return made


def test_a_revision_whose_verdict_is_unhealthy_is_rolled_back(arm: FakeArm, holodeck_target: AzureRelease) -> None:
    """Container Apps calls it Healthy (HoloDeck answers 200), but the body says unhealthy."""
    first = deploy(holodeck_target, SPEC, "v1", verify=HEARD)
    assert first.status == "succeeded", first.reason
    arm.set_image_behaviour(image(2), "verdict-unhealthy")
    second = deploy(holodeck_target, replace(SPEC, image=image(2)), "v2", timeout=3, verify=HEARD)
    assert second.status == "rolled-back"
    assert "status 'unhealthy'" in second.reason and "/health was not healthy within" in second.reason
    # Container Apps took it (Single mode switched to it): the old template comes back as a new revision.
    assert second.revision == f"{first.revision}-r1"
    revisions = {r["name"]: r["properties"] for r in arm.revisions(SUB, RG, "support-agent")}
    assert revisions[second.attempted]["active"] is False
    assert revisions[second.revision]["template"]["containers"][0]["image"] == image(1)
    app = arm.app(SUB, RG, "support-agent")
    assert app is not None and app["properties"]["configuration"]["ingress"]["traffic"] == [
        {"weight": 100, "latestRevision": True}
    ]


def test_the_new_revision_must_answer_a_chat_turn_at_its_own_url(arm: FakeArm, holodeck_target: AzureRelease) -> None:
    first = deploy(holodeck_target, SPEC, "v1", verify=HEARD)
    assert first.status == "succeeded", first.reason
    assert arm.chats == [(first.revision, "Are you there?")]  # asked at the revision, before it was trusted
    arm.set_image_behaviour(image(2), "mute")
    second = deploy(holodeck_target, replace(SPEC, image=image(2)), "v2", verify=HEARD)
    assert second.status == "rolled-back"
    assert second.reason == "verify turn 1 ('Are you there?'): the chat request got HTTP 500: " + (
        '{"title": "Internal Server Error", "status": 500}'
    )
    assert second.revision == f"{first.revision}-r1"  # Single mode: the old template as a new revision
    # The turn went to the new revision's own URL (and it failed there), never to the app's URL.
    [(_, _), (asked, _)] = arm.chats
    assert asked.startswith("support-agent--v2-") and asked != first.revision


def test_after_a_failed_operation_the_next_deploy_compares_with_what_serves(
    arm: FakeArm, target: AzureRelease, tls_files: Any
) -> None:
    """The app's template is the last one REQUESTED, also when that operation failed (FACTS.md): a re-run must
    not call the version that never served "unchanged"."""
    first = deploy(target, SPEC, "v1")
    assert first.status == "succeeded", first.reason
    arm.fail_next_operation()
    v2 = replace(SPEC, image=image(2))
    with pytest.raises(DeployError):
        deploy(target, v2, "v2")
    app = arm.app(SUB, RG, "support-agent")
    assert app is not None
    # Our own failed release gives the app the template of what serves back as it gives its lease up (any
    # later write, a tag even, would otherwise provision the failed template with no gate).
    assert app["properties"]["template"]["containers"][0]["image"] == image(1)
    assert [r["name"] for r in arm.revisions(SUB, RG, "support-agent")] == [first.revision]

    # A client killed after its write (no lease given up) leaves the requested template changed.
    arm.fail_next_operation()
    sdk = client(arm, tls_files)
    containers = app["properties"]["template"]["containers"]
    containers[0]["image"] = image(2)
    with pytest.raises(Exception, match="Operation expired"):
        sdk.container_apps.begin_update(
            RG,
            "support-agent",
            {"properties": {"template": {"containers": containers, "revisionSuffix": "killed"}}},
            polling_interval=0.1,
        ).result()
    app = arm.app(SUB, RG, "support-agent")
    assert app is not None
    assert app["properties"]["template"]["containers"][0]["image"] == image(2)  # requested, never served
    assert app["properties"]["latestReadyRevisionName"] == first.revision
    assert target.live(first.revision).image == image(1)  # what serves, for the planner

    again = deploy(target, v2, "v2")
    assert again.status == "succeeded", again.reason
    assert again.revision != first.revision
    served = [r for r in arm.revisions(SUB, RG, "support-agent") if r["name"] == again.revision]
    assert served[0]["properties"]["template"]["containers"][0]["image"] == image(2)
    app = arm.app(SUB, RG, "support-agent")
    assert app is not None and app["properties"]["latestReadyRevisionName"] == again.revision


def test_a_scaled_to_zero_revision_is_woken_by_a_request_and_judged(arm: FakeArm, target: AzureRelease) -> None:
    """min replicas 0: a good revision waits in ScaledToZero until a request reaches its own fqdn (FACTS.md)."""
    first = deploy(target, SPEC, "v1")
    assert first.status == "succeeded", first.reason
    arm.set_image_behaviour(image(2), "scale-to-zero")
    second = deploy(target, replace(SPEC, image=image(2)), "v2", timeout=5)
    assert second.status == "succeeded", second.reason
    assert any("is ScaledToZero (min replicas 0): waking it with a request" in line for line in target.lines)  # type: ignore[attr-defined]
    [rev] = [r for r in arm.revisions(SUB, RG, "support-agent") if r["name"] == second.revision]
    assert rev["properties"]["runningState"] == "Running"  # woken, and then judged by its own answer


def test_a_scaled_to_zero_revision_behind_internal_ingress_counts_as_ready(arm: FakeArm, target: AzureRelease) -> None:
    """It cannot be woken from the runner; it starts at its first request (as vscode-azurecontainerapps#1088)."""
    internal = replace(SPEC, external=False)
    assert deploy(target, internal, "v1").status == "succeeded"
    arm.set_image_behaviour(image(2), "scale-to-zero")
    second = deploy(target, replace(internal, image=image(2)), "v2", timeout=5)
    assert second.status == "succeeded", second.reason
    assert "runningState ScaledToZero" in second.reason


def test_running_at_max_scale_is_healthy(arm: FakeArm, target: AzureRelease) -> None:
    assert deploy(target, SPEC, "v1").status == "succeeded"
    arm.set_image_behaviour(image(2), "max-scale")
    second = deploy(target, replace(SPEC, image=image(2)), "v2", timeout=5)
    assert second.status == "succeeded", second.reason


def test_activation_failed_ends_the_gate_at_once_with_the_reason(arm: FakeArm, target: AzureRelease) -> None:
    first = deploy(target, SPEC, "v1")
    arm.set_image_behaviour(image(2), "activation-failed")
    clock_before = arm.state.clock.now()
    second = deploy(target, replace(SPEC, image=image(2)), "v2", timeout=600)
    assert second.status == "rolled-back" and second.revision == first.revision
    assert "runningState ActivationFailed" in second.reason and "ImagePullFailure" in second.reason
    assert "Container Apps could not pull the image: give the app pull access" in second.reason
    assert arm.state.clock.now() - clock_before < 60  # terminal: the 600 s timeout was not waited for


def test_after_an_automatic_rollback_what_serves_is_the_record_and_a_retry_is_a_new_revision(
    arm: FakeArm, target: AzureRelease
) -> None:
    first = deploy(target, SPEC, "v1")
    arm.set_image_behaviour(image(2), "unhealthy")
    bad = replace(SPEC, image=image(2))
    second = deploy(target, bad, "v2", timeout=2)
    assert second.status == "rolled-back"
    # The planner sees v1 serving, as recorded: no drift after our own rollback.
    live = target.live(first.revision)
    assert (live.image, live.serving) == (image(1), True)
    names_before = {r["name"] for r in arm.revisions(SUB, RG, "support-agent")}
    again = deploy(target, bad, "v2", timeout=2)
    assert again.status == "rolled-back"
    made = {r["name"] for r in arm.revisions(SUB, RG, "support-agent")} - names_before
    assert len(made) == 1  # a new revision was gated, not the deactivated one again
    assert target.live(first.revision).image == image(1)


def test_key_vault_references_someone_else_added_are_kept(arm: FakeArm, target: AzureRelease, tls_files: Any) -> None:
    """A secret that references Key Vault has no value to read back; resending it as {name, value: ""} is
    400 ContainerAppSecretNull (FACTS.md). A deploy that rotates our secret must keep it a reference."""
    assert deploy(target, SPEC, "v1").status == "succeeded"
    ours = arm.app(SUB, RG, "support-agent")
    assert ours is not None
    reference = {
        "name": "db-password",
        "keyVaultUrl": "https://agents-kv.vault.azure.net/secrets/db-password",
        "identity": "system",
    }
    secrets = [*ours["properties"]["configuration"]["secrets"], reference]
    client(arm, tls_files).container_apps.begin_update(
        RG, "support-agent", {"properties": {"configuration": {"secrets": secrets}}}
    ).result()  # somebody else, in the portal

    rotated = deploy(target, replace(SPEC, secret_env={"OPENAI_API_KEY": "sk-sentinel-0002"}), "v2")
    assert rotated.status == "succeeded", rotated.reason
    after = arm.app(SUB, RG, "support-agent")
    assert after is not None
    by_name = {s["name"]: s for s in after["properties"]["configuration"]["secrets"]}
    assert by_name["db-password"] == reference
    assert by_name["openai-api-key"]["value"] == "sk-sentinel-0002"


def test_a_rotated_secret_reaches_the_agent_through_a_new_revision(arm: FakeArm, target: AzureRelease) -> None:
    """A new secret value does not reach running revisions (FACTS.md, Learn: manage-secrets): the deploy that
    rotates it makes a new revision, which is gated before it serves."""
    first = deploy(target, SPEC, "v1")
    rotated = deploy(target, replace(SPEC, secret_env={"OPENAI_API_KEY": "sk-sentinel-0002"}), "v1")
    assert rotated.status == "succeeded", rotated.reason
    assert rotated.revision != first.revision
    app = arm.app(SUB, RG, "support-agent")
    assert app is not None and app["properties"]["latestReadyRevisionName"] == rotated.revision
    [patch] = [r for r in arm.requests if r.method == "PATCH" and "properties" in r.body]
    assert patch.body["properties"]["template"] == {"revisionSuffix": rotated.revision.split("--", 1)[1]}


def test_multiple_mode_never_gives_an_unverified_revision_traffic(arm: FakeArm, target: AzureRelease) -> None:
    """Multiple revision mode with the replace strategy: the traffic stays pinned to what serves during the
    gate, moves after it, and a bad revision never gets any."""
    multiple = replace(SPEC, multiple=True)
    first = deploy(target, multiple, "v1")
    good = deploy(target, replace(multiple, image=image(2)), "v2")
    assert good.status == "succeeded", good.reason
    arm.set_image_behaviour(image(3), "unhealthy")
    bad = deploy(target, replace(multiple, image=image(3)), "v3", timeout=2)
    assert bad.status == "rolled-back" and bad.revision == good.revision

    weights: list[list[tuple[str, int]]] = [
        [
            (t.get("revisionName") or "latest", int(t["weight"]))
            for t in r.body["properties"]["configuration"]["ingress"]["traffic"]
        ]
        for r in arm.requests
        if r.method == "PATCH"
        and "traffic" in ((r.body.get("properties") or {}).get("configuration") or {}).get("ingress", {})
    ]
    # v2 was created with the traffic on v1, then given it; v3 was created with it on v2 and never got any.
    assert weights[0] == [(first.revision, 100)]
    assert weights[1] == [(good.revision, 100)]
    assert all(name != "latest" for entry in weights for name, _ in entry)
    bad_name = next(r["name"] for r in arm.revisions(SUB, RG, "support-agent") if "--v3-" in r["name"])
    assert all(weight == 0 for entry in weights for name, weight in entry if name == bad_name)


def test_a_pull_refused_for_credentials_says_how_to_give_access(arm: FakeArm, target: AzureRelease) -> None:
    """The service refuses the write at once (400, azure/container-apps-deploy-action#85)."""
    assert deploy(target, SPEC, "v1").status == "succeeded"
    message = (
        "The following field(s) are either invalid or missing. Field 'template.containers.support-agent.image' is "
        f'invalid with details: \'Invalid value: "{image(2)}": GET https://127.0.0.1:5000/v2/team/agent/manifests/'
        "sha256:x: UNAUTHORIZED: authentication required'"
    )
    arm.inject(
        status=400,
        method="PATCH",
        path_regex=r"/containerApps/support-agent$",
        body={"error": {"code": "InvalidParameterValueInContainerTemplate", "message": message}},
    )
    with pytest.raises(DeployError) as raised:
        deploy(target, replace(SPEC, image=image(2)), "v2")
    assert str(raised.value).startswith(
        "Azure refused updating container app support-agent: InvalidParameterValueInContainerTemplate: "
    )
    assert raised.value.hint is not None and raised.value.hint.startswith(
        "Container Apps was refused by the image's registry: give the app pull access"
    )


def test_an_expired_operation_says_what_to_look_at(arm: FakeArm, target: AzureRelease) -> None:
    assert deploy(target, SPEC, "v1").status == "succeeded"
    arm.fail_next_operation()  # the service's own words: "... Error details: Operation expired."
    with pytest.raises(DeployError) as raised:
        deploy(target, replace(SPEC, image=image(2)), "v2")
    assert "Operation expired" in str(raised.value)
    assert raised.value.hint is not None and raised.value.hint.startswith(
        "the revision did not come up before the operation expired"
    )


# -- where the app lives, its workload profile, and who can reach it (issue 10) --------------------------------

SHARED_ENV_ID = f"/subscriptions/{SUB}/resourceGroups/shared-rg/providers/Microsoft.App/managedEnvironments/shared-env"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
TENANT_ID = "66666666-7777-8888-9999-000000000000"


def made_target(arm: FakeArm, tls_files: Any, app: str = "support-agent", **options: Any) -> AzureRelease:
    lines: list[str] = []
    options.setdefault("probe", arm.probe)
    made = azure_release(
        client(arm, tls_files), resource_group=RG, app_name=app, say=lines.append, poll_interval=0.1, **options
    )
    made.lines = lines  # type: ignore[attr-defined]
    return made


def test_an_environment_in_another_resource_group_by_name_or_by_id(arm: FakeArm, tls_files: Any) -> None:
    arm.add_managed_environment(SUB, "shared-rg", "shared-env", domain="calmsea-7c1d2e3f.eastus.azurecontainerapps.io")
    by_name = made_target(arm, tls_files, environment_group="shared-rg")
    first = deploy_to(by_name, SPEC, "shared-env")
    assert first.status == "succeeded", first.reason
    app = arm.app(SUB, RG, "support-agent")
    assert app is not None and app["properties"]["managedEnvironmentId"] == SHARED_ENV_ID
    [create] = [r for r in arm.requests if r.method == "PUT"]
    assert create.body["properties"]["environmentId"] == SHARED_ENV_ID
    assert any(
        r.method == "GET"
        and r.path.endswith("/resourceGroups/shared-rg/providers/Microsoft.App/managedEnvironments/shared-env")
        for r in arm.requests
    )

    # By its full id (the provider segment in any case, as ARM reads it): used as it is, with no look-up.
    looked_up = len([r for r in arm.requests if "/managedenvironments/" in r.path.lower()])
    by_id = made_target(arm, tls_files, app="other-agent")
    given = SHARED_ENV_ID.replace("Microsoft.App/managedEnvironments", "microsoft.app/managedenvironments")
    other = deploy_to(by_id, replace(SPEC, name="other-agent"), given)
    assert other.status == "succeeded", other.reason
    assert arm.app(SUB, RG, "other-agent")["properties"]["managedEnvironmentId"] == SHARED_ENV_ID  # type: ignore[index]
    assert [r.body["properties"]["environmentId"] for r in arm.requests if r.method == "PUT"][-1] == given
    assert len([r for r in arm.requests if "/managedenvironments/" in r.path.lower()]) == looked_up

    # Looked up in the app's own group, the name is not found, and the error says where it looked.
    with pytest.raises(DeployError, match="Container Apps environment shared-env in resource group agents-rg"):
        deploy_to(made_target(arm, tls_files, app="lost-agent"), replace(SPEC, name="lost-agent"), "shared-env")


def deploy_to(target: AzureRelease, spec: AppSpec, environment: str, tag: str = "v1") -> Any:
    return target.deploy(spec, tag=tag, environment=environment, timeout=10, auto_rollback=True, blue_green=False)


PROFILES = [
    {"name": "Consumption", "workloadProfileType": "Consumption"},
    {"name": "gpu-d8", "workloadProfileType": "D8", "minimumCount": 1, "maximumCount": 3},
]


def test_the_workload_profile_reaches_the_app(arm: FakeArm, tls_files: Any) -> None:
    domain = "brightfield-0a9b8c7d.eastus.azurecontainerapps.io"  # each environment has its own
    arm.add_managed_environment(SUB, RG, "profiles-env", domain=domain, workload_profiles=PROFILES)
    target = made_target(arm, tls_files)
    # The Consumption profile of a workload-profiles environment goes to 4 vCPU / 8Gi (FACTS.md).
    big = replace(SPEC, workload_profile="Consumption", cpu=4.0, memory="8Gi")
    first = deploy_to(target, big, "profiles-env")
    assert first.status == "succeeded", first.reason
    app = arm.app(SUB, RG, "support-agent")
    assert app is not None and app["properties"]["workloadProfileName"] == "Consumption"
    assert app["properties"]["template"]["containers"][0]["resources"]["cpu"] == 4.0
    assert deploy_to(target, big, "profiles-env").status == "unchanged"

    moved = deploy_to(target, replace(big, workload_profile="gpu-d8"), "profiles-env")
    assert moved.status == "succeeded", moved.reason
    assert moved.details["changes"] == ["workload profile gpu-d8"]
    assert arm.app(SUB, RG, "support-agent")["properties"]["workloadProfileName"] == "gpu-d8"  # type: ignore[index]

    # What ARM refuses, the fake refuses: 4 vCPU in a Consumption-only environment, a profile it does not have.
    plain = made_target(arm, tls_files, app="plain-agent")
    with pytest.raises(DeployError, match="ContainerAppInvalidResourceTotal"):
        deploy_to(plain, replace(big, name="plain-agent", workload_profile=None), ENV)
    with pytest.raises(DeployError, match="Workload profile 'gpu-d4' was not found"):
        deploy_to(plain, replace(big, name="plain-agent", workload_profile="gpu-d4"), "profiles-env")


def test_ip_allow_reaches_the_ingress_and_a_change_is_an_update(arm: FakeArm, tls_files: Any) -> None:
    target = made_target(arm, tls_files, ip_restricted=True)
    # 198.51.100.20 is where the fake sees this machine's probes come from (arm.state.client_address).
    admitted = replace(SPEC, ip_allow=("198.51.100.0/24", "2001:db8::/32"))
    first = deploy_to(target, admitted, ENV)
    assert first.status == "succeeded", first.reason
    assert "/health" in first.reason  # admitted: probed at its URL
    ingress = arm.app(SUB, RG, "support-agent")["properties"]["configuration"]["ingress"]  # type: ignore[index]
    assert ingress["ipSecurityRestrictions"] == [
        {"name": "allow-198-51-100-0-24", "ipAddressRange": "198.51.100.0/24", "action": "Allow"},
        {"name": "allow-2001-db8-32", "ipAddressRange": "2001:db8::/32", "action": "Allow"},
    ]
    writes = len(arm.writes())
    again = deploy_to(target, admitted, ENV)
    assert again.status == "unchanged" and len(arm.writes()) == writes

    # A list without this machine: an update of the list alone; the URL answers 403, so the revision's state decides.
    narrowed = replace(SPEC, ip_allow=("203.0.113.0/24",))
    second = deploy_to(target, narrowed, ENV)
    assert second.status == "succeeded", second.reason
    assert second.details["changes"] == ["ip_allow (203.0.113.0/24)"] and second.revision == first.revision
    [patch] = [r for r in arm.requests[writes:] if r.method == "PATCH" and "properties" in r.body]
    assert patch.body["properties"] == {
        "configuration": {
            "ingress": {
                "ipSecurityRestrictions": [
                    {"name": "allow-203-0-113-0-24", "ipAddressRange": "203.0.113.0/24", "action": "Allow"}
                ]
            }
        }
    }
    assert arm.probe(second.url + "/health") == 403
    assert second.reason.endswith("(ip_allow does not admit this machine: not probed from here)")
    assert any("ip_allow does not admit this machine (HTTP 403)" in line for line in target.lines)  # type: ignore[attr-defined]

    # A new revision behind it, scaled to zero: this machine cannot wake it, and idle counts as ready.
    arm.set_image_behaviour(image(2), "scale-to-zero")
    third = deploy_to(target, replace(narrowed, image=image(2)), ENV, tag="v2")
    assert third.status == "succeeded", third.reason
    assert third.revision.startswith("support-agent--v2-")


def test_ip_rules_are_all_allow_or_all_deny(arm: FakeArm, target: AzureRelease, tls_files: Any) -> None:
    from azure.core.exceptions import HttpResponseError

    assert deploy(target, SPEC, "v1").status == "succeeded"
    sdk = client(arm, tls_files)

    def set_rules(*rules: dict[str, str]) -> None:
        body = {"properties": {"configuration": {"ingress": {"ipSecurityRestrictions": list(rules)}}}}
        sdk.container_apps.begin_update(RG, "support-agent", body, polling_interval=0.1).result()

    allow = {"name": "office", "ipAddressRange": "203.0.113.0/24", "action": "Allow"}
    deny = {"name": "bad", "ipAddressRange": "192.0.2.0/24", "action": "Deny"}
    with pytest.raises(HttpResponseError) as raised:
        set_rules(allow, deny)
    assert raised.value.status_code == 400 and "all be Allow or all be Deny" in str(raised.value)
    set_rules(deny)  # someone else's Deny rules ...
    # ... are replaced whole by ip_allow's Allow rules, so the two never mix.
    outcome = deploy(target, replace(SPEC, ip_allow=("198.51.100.0/24",)), "v1")
    assert outcome.status == "succeeded", outcome.reason
    rules = arm.app(SUB, RG, "support-agent")["properties"]["configuration"]["ingress"]["ipSecurityRestrictions"]  # type: ignore[index]
    assert [r["action"] for r in rules] == ["Allow"]


def test_built_in_authentication_is_set_before_the_gate_and_leaves_health_open(arm: FakeArm, tls_files: Any) -> None:
    from agentdeploy.targets.azure.body import AuthSpec

    target = made_target(arm, tls_files, probe=arm.http, post=arm.chat)
    spec = replace(SPEC, ready_path="/ready", auth=AuthSpec(client_id=CLIENT_ID, tenant_id=TENANT_ID))
    first = deploy(target, spec, "v1")
    assert first.status == "succeeded", first.reason  # the gate read /health and /ready: they stay open
    assert "healthy" in first.reason
    [put] = [r for r in arm.requests if r.method == "PUT" and r.path.lower().endswith("/authconfigs/current")]
    assert put in arm.writes()
    registration = put.body["properties"]["identityProviders"]["azureActiveDirectory"]["registration"]
    assert registration["clientId"] == CLIENT_ID
    assert put.body["properties"]["globalValidation"] == {
        "unauthenticatedClientAction": "Return401",
        "excludedPaths": ["/health", "/ready"],
    }
    assert put.response_body["name"] == "current" and put.status == 200
    # Set after the app was created and before the gate first looked at the new revision.
    gate_reads = [i for i, r in enumerate(arm.requests) if r.method == "GET" and "/revisions/" in r.path]
    assert arm.requests.index(put) < gate_reads[0]
    # A caller without a sign-in cannot chat; the health routes answer.
    assert arm.chat(first.url + "/agent/support-agent/chat", {"message": "hi"}, 5).status == 401
    assert arm.http(first.url + "/health").status == 200
    # The same settings again: nothing is written.
    writes = len(arm.writes())
    assert target.apply_auth(spec) is False and len(arm.writes()) == writes
    assert target.apply_auth(replace(spec, auth=AuthSpec(CLIENT_ID, TENANT_ID, unauthenticated="redirect"))) is True
    assert arm.chat(first.url + "/agent/support-agent/chat", {"message": "hi"}, 5).status == 302
