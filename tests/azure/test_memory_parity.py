"""The in-memory app (fakes/azure_memory.py) that the fast release tests run on must behave as the HTTPS fake ARM
(which is itself checked against recorded real sessions): the same releases, run once through the real SDK on the
fake ARM and once on the in-memory app, end the same way, with the same writes, the same traffic and the same
active revisions. Revision names are the same in both: they come from the tag and the spec."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from agentdeploy.targets.azure.release import AzureRelease
from agentdeploy.targets.azure.settings import Adapters, AzureSettings
from fakes.arm import FakeArm
from fakes.azure_memory import MemoryApp
from testkit import StaticCredential, app_spec, arm_client, azure_release

SUB, RG, ENV, TOKEN, APP = (
    "0b1f6471-1bf0-4dda-aec3-111122223333",
    "agents-rg",
    "agents-env",
    "parity-token",
    "support-agent",
)
# The same way of running, in each fake's words.
BEHAVIOUR = {"crashes": "activation-failed", "never-starts": "never-starts", "healthy": "healthy"}


def image(n: int) -> str:
    return "127.0.0.1:5000/team/agent@sha256:" + f"{n:064x}"


class Side:
    """One of the two apps, with what a test asks of it."""

    def __init__(self, release: Callable[[], AzureRelease], behave: Callable[[str, str], None]) -> None:
        self.release, self.behave = release, behave
        self.weights: Callable[[], dict[str, int]]
        self.active: Callable[[], set[str]]
        self.writes: Callable[[], list[str]]


def arm_side(arm: FakeArm, tls_files: Any) -> Side:
    def release() -> AzureRelease:
        sdk = arm_client(arm.base_url, tls_files.ca, SUB, StaticCredential(TOKEN))
        made: AzureRelease = azure_release(sdk, app_name=APP, probe=arm.probe, poll_interval=0.1, run_id="run-a")
        return made

    side = Side(release, lambda n, how: arm.set_image_behaviour(n, BEHAVIOUR[how]))
    revisions = lambda: arm.revisions(SUB, RG, APP)  # noqa: E731
    side.weights = lambda: {
        r["name"]: r["properties"]["trafficWeight"] for r in revisions() if r["properties"]["trafficWeight"]
    }
    side.active = lambda: {r["name"] for r in revisions() if r["properties"]["active"]}

    def writes() -> list[str]:
        kinds = []
        for request in arm.writes():
            action = re.search(r"/revisions/([^/]+)/(activate|deactivate)$", request.path)
            kinds.append(f"{action.group(2)} {action.group(1)}" if action else request.method)
        return kinds

    side.writes = writes
    return side


def memory_side(memory: MemoryApp) -> Side:
    def release() -> AzureRelease:
        now = [0.0]
        adapters = Adapters(
            probe=memory.probe,
            sleep=lambda seconds: now.__setitem__(0, now[0] + seconds),
            clock=lambda: now[0],
        )
        return AzureRelease(memory, AzureSettings(resource_group=RG, app_name=APP, run_id="run-a"), adapters)  # type: ignore[arg-type]

    side = Side(release, lambda n, how: memory.behave(n, how))
    side.weights = memory.weights
    side.active = memory.active
    words = {"create": "PUT", "update": "PATCH"}
    side.writes = lambda: [
        words.get(call[0]) or f"{'activate' if call[2] else 'deactivate'} {call[1]}" for call in memory.writes()
    ]
    return side


@pytest.fixture
def sides(start_arm: Callable[..., FakeArm], tls_files: Any) -> list[Side]:
    arm = start_arm(token=TOKEN, provisioning_delay=0.0)
    return [arm_side(arm, tls_files), memory_side(MemoryApp())]


def deploy(side: Side, n: int, tag: str, *, multiple: bool = False, blue_green: bool = False) -> Any:
    spec = replace(app_spec(image=image(n), multiple=multiple or blue_green), name=APP)  # type: ignore[type-var]
    return side.release().deploy(
        spec,
        tag=tag,
        environment=ENV,
        timeout=3,
        auto_rollback=True,
        blue_green=blue_green,  # type: ignore[arg-type]
    )


def ended(side: Side, outcome: Any) -> tuple[Any, ...]:
    return (outcome.status, outcome.revision, outcome.attempted, outcome.previous, side.weights(), side.active())


@pytest.mark.parametrize(
    ("multiple", "how"),
    [(True, "crashes"), (False, "crashes"), (False, "never-starts"), (True, "healthy"), (False, "healthy")],
    ids=["multiple-crashes", "single-crashes", "single-never-starts", "multiple-healthy", "single-healthy"],
)
def test_an_update_ends_the_same_on_both(sides: list[Side], multiple: bool, how: str) -> None:
    results = []
    for side in sides:
        deploy(side, 1, "v1", multiple=multiple)
        side.behave(image(2), how)
        results.append((ended(side, deploy(side, 2, "v2", multiple=multiple)), side.writes()))
    assert results[0] == results[1]


def test_a_blue_green_candidate_and_its_promote_end_the_same_on_both(sides: list[Side]) -> None:
    results = []
    for side in sides:
        deploy(side, 1, "v1", blue_green=True)
        candidate = ended(side, deploy(side, 2, "v2", blue_green=True))
        promoted = ended(side, side.release().moves.promote("/health", 3, external=True))
        results.append((candidate, promoted, side.writes()))
    assert results[0] == results[1]


def test_a_single_mode_rollback_to_an_older_revision_serves_the_same_copy_on_both(sides: list[Side]) -> None:
    results = []
    for side in sides:
        first = deploy(side, 1, "v1")
        deploy(side, 2, "v2")
        back = side.release().moves.shift_to(first.revision, "/health", 3, multiple=False, external=True)
        results.append((ended(side, back), side.writes()))
    assert results[0] == results[1]
    assert results[0][0][1] == f"{first.revision}-r1"


def test_a_canary_walks_the_same_steps_on_both(sides: list[Side]) -> None:
    from agentdeploy.targets.azure.canary import CanaryPlan

    results = []
    for side in sides:
        deploy(side, 1, "v1", multiple=True)
        spec = replace(app_spec(image=image(2), multiple=True), name=APP)  # type: ignore[type-var]
        outcome = side.release().deploy(
            spec,  # type: ignore[arg-type]
            tag="v2",
            environment=ENV,
            timeout=3,
            auto_rollback=True,
            blue_green=False,
            canary=CanaryPlan(bake_seconds=0),
        )
        steps = [dict(step) for step in outcome.details["canary"]["steps"]]  # type: ignore[index,call-overload]
        for step in steps:  # each gate's probe: the revision's URL, whose domain is each fake's own
            step["gate"] = {k: v for k, v in step["gate"].items() if k != "health"}  # type: ignore[union-attr]
        results.append((ended(side, outcome), steps, side.writes()))
    assert results[0] == results[1]
    assert [step["percent"] for step in results[0][1]] == [5, 25, 50, 100]
