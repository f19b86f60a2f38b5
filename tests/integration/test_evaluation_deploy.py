"""A deploy whose evaluation gate cannot be built (broken test cases, an evaluator it cannot run yet) stops before the
build, through the CLI a user runs: one error at its file:line, its exit code, nothing built, started or recorded."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentdeploy.cli import main
from agentdeploy.errors import ExitCode

pytestmark = pytest.mark.docker


def deploy(config: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["deploy", str(config)], environ={"PATH": "/usr/bin:/bin"}, out=out, err=err)
    return code, err.getvalue()


def agent(write_agent: Callable[..., Path], container: str, tail: str, files: dict[str, str] | None = None) -> Path:
    return write_agent(
        "name: eval-agent\n"
        "model: {provider: openai, name: gpt-4o}\n"
        "instructions: {inline: Be helpful.}\n"
        f"{tail}"
        "deployment:\n"
        f"  target: {{docker: {{container_name: {container}}}}}\n"
        "  build: {base_image: 'agentdeploy-test-base:never-built'}\n"
        "  rollout: {evaluation: {check: regex}}\n",
        files,
    )


def test_broken_test_cases_stop_the_deploy_before_the_build(
    write_agent: Callable[..., Path], docker_client: Any, free_port: Callable[[], int]
) -> None:
    container = f"agentdeploy-eval-{free_port()}"
    config = agent(write_agent, container, "test_cases:\n  - {name: bad, input: Hi, ground_truth: '(unclosed'}\n")
    code, err = deploy(config)
    assert code == ExitCode.CONFIG, err
    assert err.splitlines()[-2:] == [
        "error: 1 problem(s) in the agent's test cases for the evaluation gate",
        f"  {config}:5:42: test_cases[0].ground_truth: `ground_truth` is not a valid regex (check: regex): "
        "missing ), unterminated subpattern at position 0",
    ]
    assert "image: build" not in err  # the build stage never started
    assert not docker_client.containers.list(all=True, filters={"name": container})
    assert not (config.parent / ".agentdeploy" / "eval-agent.local.json").exists()  # no record written


def test_holodecks_evaluators_are_refused_before_the_build(
    write_agent: Callable[..., Path], docker_client: Any, free_port: Callable[[], int]
) -> None:
    container = f"agentdeploy-eval-{free_port()}"
    config = agent(write_agent, container, "test_cases: [{input: Hi, ground_truth: Hello}]\n")
    config.write_text(config.read_text().replace("check: regex", "check: evaluators"))
    code, err = deploy(config)
    assert code == ExitCode.CONFIG, err
    assert err.splitlines()[-2:] == [
        f"error: {config}:8:33: check: evaluators (HoloDeck's own metrics: LLM judges, RAG metrics and code graders) "
        "is not supported by the evaluation gate yet",
        "  fix: use check: contains or check: regex (each ground_truth is then checked against the answer)",
    ]
    assert not docker_client.containers.list(all=True, filters={"name": container})
    assert not (config.parent / ".agentdeploy" / "eval-agent.local.json").exists()
