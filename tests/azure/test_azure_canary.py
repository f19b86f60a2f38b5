"""The canary release through the real azure-mgmt-appcontainers SDK against the HTTPS fake ARM: the fake's request
log (the PATCH bodies' traffic lists, in order) proves the traffic sequence; the fake's /_fake/ control routes make the
candidate go bad at a chosen step (FAILURES in fakes/arm_state.py); a canary that died mid-way is repaired."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from agentdeploy.config.loader import load_config, resolve_for_deploy
from agentdeploy.jsonvalue import JsonObject
from agentdeploy.state.store import DeploymentRecord
from agentdeploy.targets.azure.canary import CanaryPlan
from agentdeploy.targets.azure.release import AzureRelease
from agentdeploy.targets.azure.target import ContainerAppTarget
from agentdeploy.targets.base import Status, TargetContext, TargetOutcome
from fakes.arm import FakeArm
from testkit import (
    AZURE_ENVIRONMENT,
    AZURE_RESOURCE_GROUP,
    AZURE_SUBSCRIPTION,
    StaticCredential,
    app_spec,
    arm_client,
    azure_release,
    write_azure_agent,
)

SUB, RG, ENV = AZURE_SUBSCRIPTION, AZURE_RESOURCE_GROUP, AZURE_ENVIRONMENT
TOKEN = "static-test-token"
APP = "cli-agent"
BAKE = 30.0


def image(n: int) -> str:
    return "127.0.0.1:5000/team/agent@sha256:" + f"{n:064x}"


@pytest.fixture
def arm(start_arm: Callable[..., FakeArm]) -> FakeArm:
    return start_arm(token=TOKEN)


class Run:
    """One run's release over the SDK; its clock is the fake's (a bake of 30 s takes none), `on_bake` sees each
    sleep, and the evaluation gate records the URLs it was given."""

    def __init__(self, arm: FakeArm, tls_files: Any, **adapters: Any) -> None:
        self.arm, self.now, self.lines = arm, 0.0, []
        self.evaluated: list[tuple[str, str]] = []
        self.on_bake: Callable[[], None] = lambda: None
        self.client = arm_client(arm.base_url, tls_files.ca, SUB, StaticCredential(TOKEN))
        self.release: AzureRelease = azure_release(
            self.client,
            resource_group=RG,
            app_name=APP,
            poll_interval=0.05,
            probe=arm.probe,
            say=self.lines.append,
            sleep=self.sleep,
            clock=lambda: self.now,
            **{"evaluate": self.evaluate, **adapters},  # a test may pass the real evaluation gate
        )

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.arm.advance(seconds)
        self.on_bake()

    def evaluate(self, canary_url: str, stable_url: str) -> tuple[bool, JsonObject]:
        self.evaluated.append((canary_url, stable_url))
        return True, {"passed": True, "cases": 2}

    def deploy(self, n: int, *, canary: CanaryPlan | None = None, rollback: bool = True) -> TargetOutcome:
        spec: Any = replace(app_spec(image=image(n), name=APP, multiple=True))  # type: ignore[type-var]
        return self.release.deploy(
            spec, tag=f"v{n}", environment=ENV, timeout=20, auto_rollback=rollback, blue_green=False, canary=canary
        )


def traffic_sent(arm: FakeArm, since: int = 0) -> list[list[dict[str, Any]]]:
    """The traffic lists of the PATCH bodies ARM received, in order (the fake's request log)."""
    sent = []
    for request in arm.requests[since:]:
        body = request.body if request.method == "PATCH" and isinstance(request.body, dict) else {}
        traffic = body.get("properties", {}).get("configuration", {}).get("ingress", {}).get("traffic")
        if traffic is not None:
            sent.append(traffic)
    return sent


def split(stable: str, canary: str, percent: int) -> list[dict[str, Any]]:
    return [
        {"revisionName": stable, "weight": 100 - percent, "label": "stable"},
        {"revisionName": canary, "weight": percent, "label": "canary"},
    ]


def control(arm: FakeArm, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """A tester's route of the fake (tests/fakes/control.py), over its HTTPS like any other client."""
    answer = requests.post(f"{arm.base_url}/_fake/{path}", json=body, timeout=10)  # CA: REQUESTS_CA_BUNDLE
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def weights(arm: FakeArm) -> dict[str, int]:
    traffic = arm.app(SUB, RG, APP)["properties"]["configuration"]["ingress"]["traffic"]
    return {entry["revisionName"]: entry["weight"] for entry in traffic if entry["weight"]}


def active(arm: FakeArm) -> set[str]:
    return {r["name"] for r in arm.revisions(SUB, RG, APP) if r["properties"]["active"]}


def stable_revision(arm: FakeArm, tls_files: Any) -> str:
    first = Run(arm, tls_files).deploy(1)
    assert first.status is Status.SUCCEEDED, first.reason
    return first.revision


def test_a_good_canary_reaches_100_through_every_step_and_the_stable_serves_throughout(
    arm: FakeArm, tls_files: Any
) -> None:
    stable = stable_revision(arm, tls_files)
    run, since = Run(arm, tls_files), len(arm.requests)
    domain = arm.app(SUB, RG, APP)["properties"]["configuration"]["ingress"]["fqdn"].split(".", 1)[1]
    served: list[int] = []
    run.on_bake = lambda: served.append(arm.probe(f"https://{stable}.{domain}/health") or 0)

    outcome = run.deploy(2, canary=CanaryPlan(bake_seconds=BAKE))

    canary = outcome.revision
    assert outcome.status is Status.SUCCEEDED, outcome.reason
    assert traffic_sent(arm, since) == [
        [{"revisionName": stable, "weight": 100}],
        split(stable, canary, 5),
        split(stable, canary, 25),
        split(stable, canary, 50),
        [{"revisionName": canary, "weight": 100}],
    ]
    assert weights(arm) == {canary: 100}
    assert served and set(served) == {200}  # the stable revision answered every probe during the canary
    assert run.evaluated == [(f"https://{canary}.{domain}", f"https://{stable}.{domain}")] * 4
    steps = outcome.details["canary"]["steps"]  # type: ignore[index,call-overload]
    assert [(s["percent"], s["passed"]) for s in steps] == [(5, True), (25, True), (50, True), (100, True)]  # type: ignore[index]
    # The replicas were read through the SDK's replicas API (GET .../revisions/{canary}/replicas), once per step.
    replica_reads = [r for r in arm.requests[since:] if r.method == "GET" and r.path.lower().endswith("/replicas")]
    assert len(replica_reads) == 5 and all(f"/revisions/{canary}/" in r.path for r in replica_reads)


@pytest.mark.parametrize(
    ("failure", "fails_after", "failing_step", "why"),
    [
        ("unhealthy", 45.0, 25, "is no longer healthy (runningState Running, healthState Unhealthy)"),
        ("restarts", 75.0, 50, "restarted 3 time(s) during the step"),
    ],
)
def test_a_candidate_going_bad_at_a_step_rolls_back_to_the_stable_revision(
    arm: FakeArm, tls_files: Any, failure: str, fails_after: float, failing_step: int, why: str
) -> None:
    stable = stable_revision(arm, tls_files)
    staged = control(
        arm, "images", {"image": image(2), "behaviour": "healthy", "fails_after": fails_after, "failure": failure}
    )
    assert staged["fails_after"] == fails_after and staged["failure"] == failure
    since = len(arm.requests)

    outcome = Run(arm, tls_files).deploy(2, canary=CanaryPlan(bake_seconds=BAKE))

    canary = outcome.attempted
    assert outcome.status is Status.ROLLED_BACK and outcome.revision == stable
    assert outcome.reason.startswith(f"canary {canary} failed at {failing_step}%: ") and why in outcome.reason
    taken = " -> ".join(str(p) for p in (5, 25, 50) if p <= failing_step)
    assert outcome.reason.endswith(f"; all traffic is back on {stable} (steps {taken} -> 0%)")
    moved = [split(stable, canary, p) for p in (5, 25, 50) if p <= failing_step]
    assert traffic_sent(arm, since) == [
        [{"revisionName": stable, "weight": 100}],
        *moved,
        [{"revisionName": stable, "weight": 100, "label": "blue"}],  # 5 -> ... -> 0 on the canary
    ]
    assert weights(arm) == {stable: 100} and active(arm) == {stable}
    assert outcome.details["canary"]["failed_step"] == failing_step  # type: ignore[index,call-overload]


def test_wrong_answers_at_a_step_fail_the_agents_own_test_cases_and_roll_back(arm: FakeArm, tls_files: Any) -> None:
    """The evaluation gate itself (targets/azure/evaluation.py over targets/evaluation/): the agent's test cases
    replayed through the revision's own chat route; the canary starts answering wrong at 25% (FAILURES)."""
    from agentdeploy.targets.azure.evaluation import canary_evaluator
    from agentdeploy.targets.evaluation import EvalCase, EvalTurn, EvaluationPlan

    stable = stable_revision(arm, tls_files)
    control(arm, "images", {"image": image(2), "behaviour": "healthy", "fails_after": 45.0, "failure": "wrong-answers"})
    plan = EvaluationPlan((EvalCase("echo", (EvalTurn("Where is order A-1?", "heard: Where is order A-1"),)),))
    lines: list[str] = []
    gate = canary_evaluator(plan, post=arm.chat, agent=APP, say=lines.append, clock=lambda: 0.0, sleep=lambda s: None)
    run = Run(arm, tls_files, evaluate=gate)
    since = len(arm.requests)

    outcome = run.deploy(2, canary=CanaryPlan(bake_seconds=BAKE))

    canary = outcome.attempted
    assert outcome.status is Status.ROLLED_BACK and outcome.revision == stable
    assert outcome.reason.startswith(f"canary {canary} failed at 25%: the evaluation gate failed: ")
    assert traffic_sent(arm, since)[-1] == [{"revisionName": stable, "weight": 100, "label": "blue"}]
    steps = outcome.details["canary"]["steps"]  # type: ignore[index,call-overload]
    assert [(s["percent"], s["passed"]) for s in steps] == [(5, True), (25, False)]  # type: ignore[index]
    # The stable revision's own rate was measured once, through its own chat route; the canary's at each step.
    asked = [revision for revision, _ in arm.chats]
    assert asked.count(stable) == 1 and asked.count(canary) == 2
    assert steps[1]["gate"]["evaluation"]["baseline"] == 1.0  # type: ignore[index]


def test_a_candidate_that_never_starts_never_gets_traffic(arm: FakeArm, tls_files: Any) -> None:
    stable = stable_revision(arm, tls_files)
    control(arm, "images", {"image": image(2), "behaviour": "never-starts"})
    since = len(arm.requests)

    outcome = Run(arm, tls_files).deploy(2, canary=CanaryPlan(bake_seconds=BAKE))

    assert outcome.status is Status.ROLLED_BACK and "runningState Activating" in outcome.reason
    assert traffic_sent(arm, since) == [
        [{"revisionName": stable, "weight": 100}],
        [{"revisionName": stable, "weight": 100, "label": "blue"}],
    ]
    assert "canary" not in outcome.details


class RunDied(BaseException):
    """The run stops where it is (as the process would at SIGKILL): nothing of the canary's own runs after it."""


def test_repair_puts_a_half_moved_canary_back_on_the_stable_revision(arm: FakeArm, tls_files: Any) -> None:
    stable = stable_revision(arm, tls_files)
    run = Run(arm, tls_files, run_id="ci pid 9")

    def die_at_25() -> None:
        if 75 in weights(arm).values():
            raise RunDied

    run.on_bake = die_at_25
    with pytest.raises(RunDied):
        run.deploy(2, canary=CanaryPlan(bake_seconds=BAKE))
    canary = next(name for name in weights(arm) if name != stable)
    assert weights(arm) == {stable: 75, canary: 25} and active(arm) == {stable, canary}

    config_path = write_azure_agent(Path(tempfile.mkdtemp()) / "agent", "team/agent", "unused-base:1")
    config_path.write_text(config_path.read_text() + "  rollout: {strategy: canary}\n")
    config = load_config(config_path)
    context = TargetContext(
        config=config,
        resolved=resolve_for_deploy(config, {"AZURE_SUBSCRIPTION_ID": SUB, "API_KEY": "sk-unused"}),
        environ={},
        on_line=lambda line: None,
        docker=lambda: None,  # type: ignore[arg-type,return-value]
        azure_client=lambda subscription: run.client,
        probe=arm.probe,
        run_id="ci pid 10",
    )
    pending = DeploymentRecord(action="deploy", status="pending", started_at="", image=image(2), run_id="ci pid 9")
    last_good = DeploymentRecord(action="deploy", status="succeeded", started_at="", image=image(1), revision=stable)
    since = len(arm.requests)

    repaired = ContainerAppTarget(context).repair(pending, last_good)

    assert repaired.status is Status.ROLLED_BACK and repaired.revision == stable, repaired.reason
    assert repaired.reason == f"traffic is back on {stable}, the revision that last passed the gate"
    assert traffic_sent(arm, since) == [[{"revisionName": stable, "weight": 100, "label": "blue"}]]
    assert weights(arm) == {stable: 100} and active(arm) == {stable}
