"""rollout.strategy canary in the config: its steps and bake time, the rules on them, the revision mode it needs, and
the docker target's refusal (a canary splits traffic between two versions; the local engine runs one)."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

from agentdeploy.config.loader import load_config
from agentdeploy.errors import ConfigError, ExitCode
from agentdeploy.image.tags import config_hash

AGENT = """
name: demo-agent
model: {provider: openai, name: gpt-4o}
instructions: {inline: Be helpful.}
"""

AZURE = """
deployment:
  registry: {url: ghcr.io, repository: org/demo-agent}
  target:
    provider: azure
    azure:
      subscription_id: 0b1f6471-1bf0-4dda-aec3-111122223333
      resource_group: rg
      environment_name: env
"""


def test_canary_defaults_to_5_25_50_100(write_agent: Callable[..., Path]) -> None:
    rollout = load_config(write_agent(AGENT + AZURE + "  rollout: {strategy: canary}\n")).deploy.rollout
    assert (rollout.strategy, rollout.steps, rollout.bake_seconds) == ("canary", [5, 25, 50, 100], 60)
    given = load_config(
        write_agent(AGENT + AZURE + "  rollout: {strategy: canary, steps: [10, 100], bake_seconds: 5}\n")
    )
    assert (given.deploy.rollout.steps, given.deploy.rollout.bake_seconds) == ([10, 100], 5)


@pytest.mark.parametrize("steps", ["[5, 25, 50]", "[25, 5, 100]", "[0, 50, 100]", "[5, 5, 100]", "[50, 150]", "[]"])
def test_steps_must_rise_from_1_and_end_at_100(write_agent: Callable[..., Path], steps: str) -> None:
    path = write_agent(AGENT + AZURE + f"  rollout:\n    strategy: canary\n    steps: {steps}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, display_name="agent.yaml")
    assert caught.value.exit_code == ExitCode.CONFIG
    [problem] = caught.value.problems
    given = steps.replace(" ", "").replace(",", ", ")
    assert problem.message == f"steps {given} must rise, each 1 to 100, and end at 100 (e.g. [5, 25, 50, 100])"
    assert problem.key == "deployment.rollout.steps"
    assert problem.location is not None and (problem.location.file, problem.location.line) == ("agent.yaml", 15)


def test_canary_refuses_single_revision_mode(write_agent: Callable[..., Path]) -> None:
    path = write_agent(AGENT + AZURE + "      revision_mode: single\n  rollout: {strategy: canary}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, display_name="agent.yaml")
    [problem] = caught.value.problems
    assert problem.message == "canary needs two active revisions, which single revision mode does not allow"
    assert problem.hint == "set revision_mode: multiple, or remove it (canary implies multiple)"


def test_a_config_that_is_no_canary_keeps_its_config_hash(write_agent: Callable[..., Path]) -> None:
    """steps and bake_seconds were added later: a replace or blue-green config must not seem changed by them."""
    plain = load_config(write_agent(AGENT + AZURE))
    assert "steps" not in plain.deploy.model_dump(mode="json")["rollout"]
    assert config_hash(plain) == config_hash(
        load_config(write_agent(AGENT + AZURE + "  rollout: {steps: [50, 100]}\n"))
    )
    canary = load_config(write_agent(AGENT + AZURE + "  rollout: {strategy: canary}\n"))
    assert canary.deploy.model_dump(mode="json")["rollout"]["steps"] == [5, 25, 50, 100]


def test_the_docker_target_refuses_a_canary_before_building(write_agent: Callable[..., Path], tmp_path: Path) -> None:
    from agentdeploy.cli import main

    path = write_agent(AGENT + "deployment:\n  rollout:\n    strategy: canary\n")
    out, err = io.StringIO(), io.StringIO()
    code = main(["deploy", str(path), "--target", "docker"], environ={}, out=out, err=err)
    assert code == ExitCode.USAGE
    assert (
        f"error: {path}:6:15: rollout.strategy canary is not supported on the docker target: it runs one container, "
        "with no traffic split between two versions; nothing was built or deployed" in err.getvalue()
    )
    assert "fix: deploy with --target azure for a canary, or set rollout.strategy: replace for docker" in err.getvalue()
    assert "Traceback" not in err.getvalue() and "image: build" not in err.getvalue() + out.getvalue()
    assert not list((path.parent / ".agentdeploy").glob("*.json"))  # nothing recorded (a lock file only)
