"""The canary release (targets/azure/canary.py) against the in-memory app (fakes/azure_memory.py, built from FACTS.md)
on a fake clock: the exact traffic each step set, what each step judged, and the way back when a step fails. The
same code over the real SDK and the HTTPS fake ARM: tests/azure/test_azure_canary.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from agentdeploy.errors import ConcurrentReleaseError
from agentdeploy.jsonvalue import JsonObject
from agentdeploy.targets.azure.canary import CanaryPlan
from agentdeploy.targets.azure.release import AzureRelease
from agentdeploy.targets.azure.settings import Adapters, AzureSettings
from agentdeploy.targets.base import Status, TargetOutcome
from fakes.azure_memory import DOMAIN, MemoryApp
from testkit import app_spec

APP = "support-agent"
NOW = 1_900_000_000.0
BAKE = 30.0


def image(n: int) -> str:
    return "127.0.0.1:5000/team/agent@sha256:" + f"{n:064x}"


class World:
    """The in-memory app, a fake clock, and the hooks a test sets to make the canary fail at a chosen step."""

    def __init__(self) -> None:
        self.memory = MemoryApp()
        self.now = 0.0
        self.lines: list[str] = []
        self.evaluated: list[tuple[str, str]] = []
        self.on_bake: Callable[[dict[str, int]], None] = lambda weights: None  # called once per bake sleep
        self.evaluation: Callable[[int], tuple[bool, JsonObject]] = lambda n: (True, {"passed": True})
        self.signal = ""

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.on_bake(self.memory.weights())

    def evaluate(self, canary_url: str, stable_url: str) -> tuple[bool, JsonObject]:
        self.evaluated.append((canary_url, stable_url))
        return self.evaluation(len(self.evaluated))

    def release(self, run_id: str = "run-a") -> AzureRelease:
        adapters = Adapters(
            probe=self.memory.probe,
            say=self.lines.append,
            sleep=self.sleep,
            clock=lambda: self.now,
            wall=lambda: NOW,
            interrupted=lambda: self.signal,
            evaluate=self.evaluate,
        )
        settings = AzureSettings(resource_group="agents-rg", app_name=APP, run_id=run_id)
        return AzureRelease(self.memory, settings, adapters)  # type: ignore[arg-type]  # the double: plain dicts

    def deploy(self, n: int, *, canary: CanaryPlan | None = None, rollback: bool = True) -> TargetOutcome:
        spec: Any = replace(app_spec(image=image(n), multiple=True), name=APP)  # type: ignore[type-var]
        return self.release().deploy(
            spec,
            tag=f"v{n}",
            environment="agents-env",
            timeout=30,
            auto_rollback=rollback,
            blue_green=False,
            canary=canary,
        )


def stable_and_canary(world: World) -> tuple[str, str, int]:
    """A v1 that serves, then the calls since: (v1's revision, the canary's name once made, calls before it)."""
    first = world.deploy(1)
    assert first.status is Status.SUCCEEDED, first.reason
    return first.revision, "", len(world.memory.calls)


def split(stable: str, canary: str, percent: int) -> list[dict[str, Any]]:
    return [
        {"revisionName": stable, "weight": 100 - percent, "label": "stable"},
        {"revisionName": canary, "weight": percent, "label": "canary"},
    ]


def test_a_good_canary_takes_the_traffic_step_by_step() -> None:
    world = World()
    stable, _, since = stable_and_canary(world)
    writes_before = len(world.memory.traffic_writes())

    outcome = world.deploy(2, canary=CanaryPlan(bake_seconds=BAKE))

    canary = outcome.revision
    assert outcome.status is Status.SUCCEEDED, outcome.reason
    assert canary.startswith(f"{APP}--v2-") and outcome.previous == stable
    # Created at 0% (pinned to what served), then 5 -> 25 -> 50 -> 100, nothing else.
    assert world.memory.traffic_writes()[writes_before:] == [
        [{"revisionName": stable, "weight": 100}],
        split(stable, canary, 5),
        split(stable, canary, 25),
        split(stable, canary, 50),
        [{"revisionName": canary, "weight": 100}],
    ]
    assert world.memory.weights() == {canary: 100}
    # Each step baked before it was judged, and each was judged at the revisions' own URLs.
    assert world.now >= 4 * BAKE
    assert world.evaluated == [(f"https://{canary}.{DOMAIN}", f"https://{stable}.{DOMAIN}")] * 4
    steps = outcome.details["canary"]["steps"]  # type: ignore[index,call-overload]
    assert [(s["percent"], s["passed"], s["gate"]["restarts"]) for s in steps] == [  # type: ignore[index]
        (5, True, 0),
        (25, True, 0),
        (50, True, 0),
        (100, True, 0),
    ]
    assert steps[1]["traffic"] == split(stable, canary, 25)  # type: ignore[index]
    assert steps[0]["gate"]["evaluation"] == {"passed": True}  # type: ignore[index]
    # The job summary's lines (github/action.py shows them in its Canary row).
    assert outcome.details["canary_summary"] == [
        f'{percent}%: passed (restarts 0; evaluation {{"passed": true}})' for percent in (5, 25, 50, 100)
    ]
    assert [call for call in world.memory.calls[since:] if call[0] == "list_replicas"] == [
        ("list_replicas", canary)
    ] * 5
    # Every step renewed this run's lease; the release gave it up at the end.
    updates = [call[1] for call in world.memory.calls[since:] if call[0] == "update"]
    assert all(u["tags"]["agentdeploy-lease"].startswith("run=run-a;") for u in updates)
    assert updates[-1].keys() == {"tags"} and updates[-1]["tags"]["agentdeploy-lease"].endswith("held=0")


@pytest.mark.parametrize("failing_step", [5, 25, 50, 100])
def test_a_canary_failing_its_evaluation_at_a_step_goes_back_to_the_stable_revision(failing_step: int) -> None:
    world = World()
    stable, _, _ = stable_and_canary(world)
    writes_before = len(world.memory.traffic_writes())
    failing_call = [5, 25, 50, 100].index(failing_step) + 1
    world.evaluation = lambda n: (n != failing_call, {"reason": "1 of 2 test cases failed", "pass_rate": 0.5})

    outcome = world.deploy(2, canary=CanaryPlan(bake_seconds=BAKE))

    canary = outcome.attempted
    assert outcome.status is Status.ROLLED_BACK and outcome.revision == stable
    assert outcome.reason == (
        f"canary {canary} failed at {failing_step}%: the evaluation gate failed: 1 of 2 test cases failed; "
        f"all traffic is back on {stable} (steps {' -> '.join(map(str, [5, 25, 50, 100][:failing_call]))} -> 0%)"
    )
    steps_taken = [5, 25, 50, 100][:failing_call]
    moves = [split(stable, canary, p) if p < 100 else [{"revisionName": canary, "weight": 100}] for p in steps_taken]
    assert world.memory.traffic_writes()[writes_before:] == [
        [{"revisionName": stable, "weight": 100}],
        *moves,
        [{"revisionName": stable, "weight": 100, "label": "blue"}],
    ]
    assert world.memory.weights() == {stable: 100} and world.memory.active() == {stable}
    details = outcome.details["canary"]
    assert details["failed_step"] == failing_step  # type: ignore[index,call-overload]
    assert [s["passed"] for s in details["steps"]] == [True] * (failing_call - 1) + [False]  # type: ignore[index]
    assert outcome.details["traffic_after"] == [{"revisionName": stable, "weight": 100, "label": "blue"}]


def test_restarts_during_a_step_fail_it() -> None:
    world = World()
    stable, _, _ = stable_and_canary(world)

    def crash_at_50(weights: dict[str, int]) -> None:
        canary = next((name for name, weight in weights.items() if name != stable and weight == 50), "")
        if canary and not world.memory.restarts:
            world.memory.restart(canary, 2)

    world.on_bake = crash_at_50
    outcome = world.deploy(2, canary=CanaryPlan(bake_seconds=BAKE))

    canary = outcome.attempted
    assert outcome.status is Status.ROLLED_BACK
    assert outcome.reason.startswith(f"canary {canary} failed at 50%: the replicas of {canary} restarted 2 time(s)")
    assert world.memory.weights() == {stable: 100} and canary not in world.memory.active()
    assert len(world.evaluated) == 2  # the restarts stop the step before its evaluation


def test_an_unhealthy_canary_fails_its_first_step() -> None:
    world = World()
    stable, _, _ = stable_and_canary(world)

    def sicken_at_5(weights: dict[str, int]) -> None:
        for name, weight in weights.items():
            if name != stable and weight == 5:
                world.memory.sicken(name)

    world.on_bake = sicken_at_5
    outcome = world.deploy(2, canary=CanaryPlan(bake_seconds=BAKE))

    assert outcome.status is Status.ROLLED_BACK and world.evaluated == []
    assert outcome.reason.startswith(
        f"canary {outcome.attempted} failed at 5%: revision {outcome.attempted} is no longer healthy "
        "(runningState Running, healthState Unhealthy)"
    )
    assert world.memory.weights() == {stable: 100}


def test_a_signal_mid_canary_puts_the_traffic_back_on_the_stable_revision() -> None:
    world = World()
    stable, _, _ = stable_and_canary(world)

    def stop_at_25(weights: dict[str, int]) -> None:
        if 25 in weights.values():
            world.signal = "SIGTERM"

    world.on_bake = stop_at_25
    outcome = world.deploy(2, canary=CanaryPlan(bake_seconds=BAKE))

    assert outcome.status is Status.ROLLED_BACK
    assert outcome.reason.startswith(f"canary {outcome.attempted} failed at 25%: interrupted by SIGTERM")
    assert world.memory.weights() == {stable: 100} and world.memory.active() == {stable}
    assert world.now < 2 * BAKE  # the bake ended at the signal


def test_traffic_changed_by_someone_else_mid_canary_stops_the_run_and_reverses_nothing() -> None:
    world = World()
    stable, _, _ = stable_and_canary(world)

    def portal_at_25(weights: dict[str, int]) -> None:
        assert world.memory.app is not None
        if 25 in weights.values():
            canary = next(name for name, weight in weights.items() if weight == 25)
            world.memory.app["properties"]["configuration"]["ingress"]["traffic"] = split(stable, canary, 40)

    world.on_bake = portal_at_25
    writes_before = len(world.memory.traffic_writes())
    with pytest.raises(ConcurrentReleaseError, match="changed by someone else during this release"):
        world.deploy(2, canary=CanaryPlan(bake_seconds=BAKE))
    assert len(world.memory.traffic_writes()) - writes_before == 3  # pinned, 5, 25: the 40/60 split left as it is
    assert 40 in world.memory.weights().values()


def paused_canary(world: World) -> tuple[str, str]:
    stable, _, _ = stable_and_canary(world)
    world.evaluation = lambda n: (n != 2, {"reason": "wrong answer"})
    outcome = world.deploy(2, canary=CanaryPlan(bake_seconds=BAKE), rollback=False)
    assert outcome.status is Status.FAILED
    assert outcome.reason.endswith(
        "paused there (auto_rollback is off): `agentdeploy promote` finishes it, `agentdeploy rollback` aborts it"
    )
    assert world.memory.weights() == {stable: 75, outcome.revision: 25}
    return stable, outcome.revision


def test_promote_finishes_a_paused_canary_at_once() -> None:
    world = World()
    stable, canary = paused_canary(world)

    promoted = world.release().moves.promote("/health", 30, external=True)

    assert promoted.status is Status.PROMOTED and promoted.revision == canary and promoted.previous == stable
    assert world.memory.traffic() == [
        {"revisionName": canary, "weight": 100, "label": "blue"},
        {"revisionName": stable, "weight": 0},
    ]


def test_rollback_aborts_a_paused_canary() -> None:
    world = World()
    stable, canary = paused_canary(world)
    # What `rollback` asks first: the stable version takes only part of the traffic, so it is not "what serves now".
    assert world.release().live(stable).serving is False

    back = world.release().moves.shift_to(stable, "/health", 30, multiple=True, external=True)

    assert back.status is Status.SUCCEEDED and back.revision == stable
    assert world.memory.weights() == {stable: 100} and world.memory.active() == {stable}
    assert canary in world.memory.revisions  # listed, inactive: `rollback --to` can bring it back
    assert world.release().live(stable).serving is True


def test_the_job_summary_shows_each_step_and_an_agents_words_as_text() -> None:
    from agentdeploy.github.inputs import ActionInputs
    from agentdeploy.github.summary import Details, summary_markdown

    world = World()
    stable_and_canary(world)
    world.evaluation = lambda n: (True, {"passed": True}) if n != 2 else (False, {"reason": "answered <b>nothing</b>"})
    outcome = world.deploy(2, canary=CanaryPlan(bake_seconds=BAKE), rollback=False)
    assert outcome.status is Status.FAILED

    inputs = ActionInputs.from_env({"AGENTDEPLOY_COMMAND": "deploy"})
    markdown = summary_markdown("agent.yaml", inputs, {"status": "failed"}, Details.read(outcome.details))

    [row] = [line for line in markdown.splitlines() if line.startswith("| Canary |")]
    assert row == (
        '| Canary | 5%: passed (restarts 0; evaluation {"passed": true})<br>'
        '`25%: failed (restarts 0; evaluation {"reason": "answered <b>nothing</b>"})`<br>'
        "`failed at 25%: the evaluation gate failed: answered <b>nothing</b>` |"
    )
