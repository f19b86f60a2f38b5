"""The Azure release logic (targets/azure/release.py, moves.py, gate.py, lease.py) against an in-memory app
(fakes/azure_memory.py, built from FACTS.md) on a fake clock: what the release asked of the app, and the traffic and
revisions it left. The same code over the real SDK and the HTTPS fake ARM is tested in tests/azure/."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agentdeploy.errors import ConcurrentReleaseError
from agentdeploy.targets.azure.lease import LEASE_TAG, Lease, lease_of
from agentdeploy.targets.azure.release import AzureRelease
from agentdeploy.targets.azure.settings import Adapters, AzureSettings
from agentdeploy.targets.base import Status, TargetOutcome
from fakes.azure_memory import MemoryApp
from testkit import app_spec

APP = "support-agent"
NOW = 1_900_000_000.0  # the wall clock every run here reads


def image(n: int) -> str:
    return "127.0.0.1:5000/team/agent@sha256:" + f"{n:064x}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def release_over(
    memory: MemoryApp, *, run_id: str = "run-a", lines: list[str] | None = None, interrupted: str = ""
) -> AzureRelease:
    clock = FakeClock()
    adapters = Adapters(
        probe=memory.probe,
        say=(lines if lines is not None else []).append,
        sleep=clock.sleep,
        clock=clock,
        wall=lambda: NOW,
        interrupted=lambda: interrupted,
    )
    settings = AzureSettings(resource_group="agents-rg", app_name=APP, run_id=run_id)
    return AzureRelease(memory, settings, adapters)  # type: ignore[arg-type]  # the double: plain dicts


def deploy(
    release: AzureRelease, n: int, tag: str, *, multiple: bool = False, blue_green: bool = False, rollback: bool = True
) -> TargetOutcome:
    spec = replace(app_spec(image=image(n), multiple=multiple or blue_green), name=APP)  # type: ignore[type-var]
    return release.deploy(
        spec,  # type: ignore[arg-type]
        tag=tag,
        environment="agents-env",
        timeout=30,
        auto_rollback=rollback,
        blue_green=blue_green,
    )


def lease_left(memory: MemoryApp) -> Lease | None:
    assert memory.app is not None
    return lease_of(memory.app)


def test_multiple_mode_gate_failure_puts_the_traffic_back_on_the_old_revision() -> None:
    memory = MemoryApp()
    first = deploy(release_over(memory), 1, "v1", multiple=True)
    assert first.status is Status.SUCCEEDED, first.reason
    memory.behave(image(2), "crashes")
    since = len(memory.calls)

    second = deploy(release_over(memory), 2, "v2", multiple=True)

    new = second.attempted
    assert second.status is Status.ROLLED_BACK and second.revision == first.revision and new.startswith(f"{APP}--v2-")
    assert second.reason.startswith(
        f"revision {new} failed: provisioningState Provisioned, runningState ActivationFailed"
    )
    writes = [call for call in memory.calls[since:] if call[0] in ("update", "set_active")]
    # The change pinned the traffic to what served; the rollback moved nothing but the label, then stopped the new one.
    assert writes[0][1]["properties"]["configuration"]["ingress"]["traffic"] == [
        {"revisionName": first.revision, "weight": 100}
    ]
    assert writes[1] == (
        "update",
        {
            "properties": {
                "configuration": {
                    "ingress": {"traffic": [{"revisionName": first.revision, "weight": 100, "label": "blue"}]}
                }
            }
        },
    )
    assert writes[2] == ("set_active", new, False)
    assert writes[3][1].keys() == {"tags"} and len(writes) == 4  # the lease ended, no template sent again
    assert memory.weights() == {first.revision: 100} and memory.active() == {first.revision}
    assert second.details["traffic_after"] == [{"revisionName": first.revision, "weight": 100, "label": "blue"}]
    left = lease_left(memory)
    assert left is not None and left.run == "run-a" and not left.held


def test_single_mode_gate_failure_serves_a_copy_of_the_old_template() -> None:
    """The new revision got ready (so the platform moved the traffic to it and stopped the old one) but its URL
    answers 503: Single mode takes no traffic by name, so the old template comes back as a new revision."""
    memory = MemoryApp()
    first = deploy(release_over(memory), 1, "v1")
    memory.behave(image(2), "unhealthy-url")
    since = len(memory.calls)

    second = deploy(release_over(memory), 2, "v2")

    copy_name = f"{first.revision}-r1"
    assert (second.status, second.revision, second.previous) == (Status.ROLLED_BACK, copy_name, first.revision)
    assert second.reason.endswith("/health was not healthy within 30s (last: HTTP 503)")
    restore = [c for c in memory.calls[since:] if c[0] == "update" and "template" in c[1].get("properties", {})][1]
    sent = restore[1]["properties"]["template"]
    old = memory.revisions[first.revision]["properties"]["template"]
    assert sent == {**old, "revisionSuffix": copy_name.split("--", 1)[1]} and restore[1].keys() == {"properties"}
    assert memory.weights() == {copy_name: 100} and memory.active() == {copy_name}
    assert memory.revisions[first.revision]["properties"]["active"] is False  # listed, stopped: the copy serves
    assert memory.revisions[copy_name]["properties"]["template"]["containers"][0]["image"] == image(1)


def test_single_mode_gate_failure_before_ready_only_stops_the_new_revision() -> None:
    memory = MemoryApp()
    first = deploy(release_over(memory), 1, "v1")
    memory.behave(image(2), "never-starts")
    before = len(memory.writes())

    second = deploy(release_over(memory), 2, "v2")

    assert (second.status, second.revision) == (Status.ROLLED_BACK, first.revision)
    assert second.reason == (
        f"revision {second.attempted} not healthy within 30s (provisioningState Provisioned, runningState "
        "Activating, healthState None)"
    )
    # The old revision still serves (the new one never got ready): no copy, the new one is only stopped.
    writes = [(call[0], sorted(call[1]) if call[0] == "update" else call[1:]) for call in memory.writes()[before:]]
    assert writes == [
        ("update", ["properties", "tags"]),
        ("set_active", (second.attempted, False)),
        ("update", ["tags"]),
    ]
    assert memory.weights() == {first.revision: 100} and memory.active() == {first.revision}


def test_a_lease_another_live_run_holds_refuses_before_any_write() -> None:
    memory = MemoryApp()
    deploy(release_over(memory), 1, "v1")
    assert memory.app is not None
    memory.app["tags"][LEASE_TAG] = Lease("run-b", NOW + 600, True).render()
    writes = len(memory.writes())

    with pytest.raises(ConcurrentReleaseError) as refused:
        deploy(release_over(memory, run_id="run-a"), 2, "v2")

    assert refused.value.message.startswith(
        f"another agentdeploy run (run-b) is releasing to container app {APP} (its lease runs until "
    )
    assert refused.value.message.endswith("nothing was changed") and refused.value.exit_code == 10
    assert len(memory.writes()) == writes and lease_left(memory) == Lease("run-b", NOW + 600, True)

    # Once it has expired, the lease is this run's to take.
    memory.app["tags"][LEASE_TAG] = Lease("run-b", NOW - 1, True).render()
    taken = deploy(release_over(memory, run_id="run-a"), 2, "v2")
    assert taken.status is Status.SUCCEEDED and lease_left(memory) == Lease("run-a", NOW, False)


def test_a_busy_app_is_waited_out_and_the_lease_checked_again_before_each_try() -> None:
    memory, lines = MemoryApp(), []
    deploy(release_over(memory), 1, "v1")
    memory.busy = ["ContainerAppOperationInProgress", "ContainerAppLockConflict"]
    since = len(memory.calls)

    outcome = deploy(release_over(memory, lines=lines), 2, "v2")

    assert outcome.status is Status.SUCCEEDED, outcome.reason
    updates = [i for i, call in enumerate(memory.calls[since:]) if call[0] == "update"]
    calls = memory.calls[since:]
    assert [calls[i + 1] for i in updates[:2]] == [("get_app",), ("get_app",)]  # the recheck after each refusal
    assert [line.split(";")[0] for line in lines if "holds" in line] == [
        f"another app's change in its environment (ContainerAppOperationInProgress) holds {APP}",
        f"another operation holds {APP}",
    ]


def test_a_deploy_of_what_serves_reads_three_times_and_writes_nothing() -> None:
    memory = MemoryApp()
    deploy(release_over(memory), 1, "v1")
    release, since = release_over(memory), len(memory.calls)

    assert release.live("").exists
    outcome = deploy(release, 1, "v1")

    assert outcome.status is Status.UNCHANGED and outcome.details["changes"] == []
    assert memory.calls[since:] == [("get_app",), ("list_revisions",), ("list_secrets",)]


def test_blue_green_candidate_waits_at_zero_then_promote_swaps() -> None:
    memory = MemoryApp()
    first = deploy(release_over(memory), 1, "v1", blue_green=True)
    candidate = deploy(release_over(memory), 2, "v2", blue_green=True)

    green = candidate.revision
    assert candidate.status is Status.CANDIDATE and candidate.label_url == f"https://{APP}---green.{memory_domain()}"
    assert memory.traffic() == [
        {"revisionName": first.revision, "weight": 100, "label": "blue"},
        {"revisionName": green, "weight": 0, "label": "green"},
    ]
    promoted = release_over(memory).moves.promote("/health", 30, external=True)
    assert (promoted.status, promoted.revision, promoted.previous) == (Status.PROMOTED, green, first.revision)
    assert memory.traffic() == [
        {"revisionName": green, "weight": 100, "label": "blue"},
        {"revisionName": first.revision, "weight": 0},
    ]
    assert memory.active() == {green, first.revision}  # the old one kept at 0% for an instant rollback


def test_an_unhealthy_candidate_never_gets_traffic_and_stops() -> None:
    memory = MemoryApp()
    first = deploy(release_over(memory), 1, "v1", blue_green=True)
    memory.behave(image(2), "crashes")

    outcome = deploy(release_over(memory), 2, "v2", blue_green=True)

    assert (outcome.status, outcome.revision) == (Status.ROLLED_BACK, first.revision)
    assert memory.traffic() == [{"revisionName": first.revision, "weight": 100, "label": "blue"}]
    assert outcome.attempted not in memory.active()


def test_an_interrupted_release_goes_back_even_without_auto_rollback() -> None:
    memory = MemoryApp()
    first = deploy(release_over(memory), 1, "v1", multiple=True)

    outcome = deploy(release_over(memory, interrupted="SIGTERM"), 2, "v2", multiple=True, rollback=False)

    assert (outcome.status, outcome.revision) == (Status.ROLLED_BACK, first.revision)
    assert outcome.reason == "interrupted by SIGTERM during the health gate"
    assert memory.weights() == {first.revision: 100} and outcome.attempted not in memory.active()


def memory_domain() -> str:
    from fakes.azure_memory import DOMAIN

    return DOMAIN
