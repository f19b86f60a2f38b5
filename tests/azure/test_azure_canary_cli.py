"""`agentdeploy deploy` with `rollout.strategy: canary` end to end (real build and push to the loopback registry, the
OIDC credential path, the real SDK on the HTTPS fake ARM): a canary paused at a failed step (auto_rollback off) is
aborted by `rollback` and finished by `promote`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentdeploy.errors import ExitCode
from fakes.arm import FakeArm
from testkit import (
    AZURE_ENVIRONMENT,
    AZURE_RESOURCE_GROUP,
    AZURE_SUBSCRIPTION,
    REGISTRY,
    azure_cli_environ,
    run_cli,
    write_azure_agent,
)

pytestmark = pytest.mark.docker

SUB, RG, ENV = AZURE_SUBSCRIPTION, AZURE_RESOURCE_GROUP, AZURE_ENVIRONMENT
CANARY = "  rollout: {strategy: canary, steps: [50, 100], bake_seconds: 10, auto_rollback: false}\n"


@pytest.fixture
def arm(start_arm: Callable[..., FakeArm]) -> FakeArm:
    return start_arm()


def environ_for(arm: FakeArm) -> dict[str, str]:
    return azure_cli_environ(arm, API_KEY="sk-cli-sentinel-42")


run = run_cli  # testkit.run_cli: the CLI in this process


def traffic(arm: FakeArm) -> list[dict[str, Any]]:
    return list(arm.app(SUB, RG, "cli-agent")["properties"]["configuration"]["ingress"]["traffic"])


def active(arm: FakeArm) -> set[str]:
    return {r["name"] for r in arm.revisions(SUB, RG, "cli-agent") if r["properties"]["active"]}


def paused_canary(arm: FakeArm, environ: dict[str, str], config: Path, version: str, stable: str, why: str) -> str:
    """`version` deployed as a canary that goes bad at its 50% step (`why`): paused there; its revision's name."""
    config.write_text(config.read_text().replace("custom_tag: v1", f"custom_tag: {version}"))
    (config.parent / "prompt.md").write_text(f"Be brief ({version}).")  # new image content
    code, _, err = run(environ, "deploy", str(config))
    assert code == ExitCode.DEPLOY, err
    canary = next(entry["revisionName"] for entry in traffic(arm) if entry.get("label") == "canary")
    assert traffic(arm) == [
        {"revisionName": stable, "weight": 50, "label": "stable"},
        {"revisionName": canary, "weight": 50, "label": "canary"},
    ]
    assert f"canary {canary} failed at 50%: {why.format(canary=canary)}" in err
    assert (
        "paused there (auto_rollback is off): `agentdeploy promote` finishes it, `agentdeploy rollback` aborts it"
        in err
    )
    config.write_text(config.read_text().replace(f"custom_tag: {version}", "custom_tag: v1"))
    return canary


def test_a_paused_canary_is_aborted_by_rollback_and_finished_by_promote(
    arm: FakeArm, tmp_path: Path, base_image: str, repository_name: str
) -> None:
    config = write_azure_agent(tmp_path / "agent", repository_name, base_image)
    config.write_text(config.read_text().replace("  target:\n", CANARY + "  target:\n"))
    environ = environ_for(arm)
    code, out, err = run(environ, "deploy", str(config), "--json")
    assert code == ExitCode.OK, err
    stable = json.loads(out)["revision"]
    # Revisions made from now on run well at first, and turn Unhealthy 6 s after they start: past the gate at 0%,
    # before the 50% step is judged (10 s of bake).
    arm.set_image_behaviour(f"{REGISTRY}/{repository_name}", "healthy", fails_after=6.0, failure="unhealthy")

    canary = paused_canary(arm, environ, config, "v2", stable, "revision {canary} is no longer healthy")
    code, out, err = run(environ, "rollback", str(config), "--json")  # previous: the stable version, whole again
    assert code == ExitCode.OK, err
    assert json.loads(out)["revision"] == stable
    assert traffic(arm) == [{"revisionName": stable, "weight": 100, "label": "blue"}]
    assert canary not in active(arm)

    # This one's container restarts (3 times) and comes back Healthy: promote can still give it the traffic.
    arm.set_image_behaviour(f"{REGISTRY}/{repository_name}", "healthy", fails_after=6.0, failure="restarts")
    canary = paused_canary(arm, environ, config, "v3", stable, "the replicas of {canary} restarted 3 time(s)")
    code, out, err = run(environ, "promote", str(config), "--json")
    assert code == ExitCode.OK, err
    promoted = json.loads(out)
    assert (promoted["status"], promoted["revision"]) == ("promoted", canary)
    assert traffic(arm) == [
        {"revisionName": canary, "weight": 100, "label": "blue"},
        {"revisionName": stable, "weight": 0},
    ]
