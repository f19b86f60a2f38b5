"""The evaluation gate against the REAL HoloDeck runtime (holodeck-ai 0.7.1, the real base image), through the CLI
as a separate process, on the local Docker engine; the model is the fake on 127.0.0.1 (tests/fakes/llm.py), which
makes the agent call its vector-store search tool for every question, so `tool_calls` in the runtime's own answer
is what the gate judges."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit import ROOT, offline_agent_env, post_json

pytestmark = [pytest.mark.docker, pytest.mark.realruntime]

API_KEY = "sk-test-evaluation-gate-0123456789"
KNOWS_ITSELF = {
    "name": "knows-itself",
    "input": "What does agentdeploy do when a release is unhealthy?",
    "expected_tools": ["knowledge_search"],
    "ground_truth": r"rolls\s+back",
}
NEVER_SAID = {"name": "mars", "input": "Where does agentdeploy deploy to?", "ground_truth": "deploys (to|on) Mars"}
OTHER_TOOL = {"name": "orders", "input": "Where is my order?", "expected_tools": [{"name": "order_status", "count": 1}]}


def agentdeploy(*argv: str) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "OPENAI_API_KEY": API_KEY}
    if "DOCKER_HOST" in os.environ:
        environ["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    command = [sys.executable, "-m", "agentdeploy", *argv]
    return subprocess.run(command, capture_output=True, text=True, env=environ, timeout=600)


@pytest.fixture
def hello(
    tmp_path: Path, real_base: str, fake_llm: Any, free_port: Callable[[], int], docker_client: Any
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The hello-agent example on the real base, pointed at the fake model, in its own container and port."""
    project = tmp_path / "hello-agent"
    shutil.copytree(ROOT / "examples" / "hello-agent", project, ignore=shutil.ignore_patterns(".agentdeploy"))
    data = yaml.safe_load((project / "agent.yaml").read_text())
    deployment = data["deployment"]
    container = f"agentdeploy-eval-{uuid.uuid4().hex[:8]}"
    deployment.update(port=free_port(), build={"base_image": real_base})
    deployment["environment"].update(offline_agent_env(fake_llm.base_url))
    deployment["target"] = {"provider": "docker", "docker": {"container_name": container}}
    yield project / "agent.yaml", data
    for name in (container, container + "-previous"):
        with contextlib.suppress(Exception):
            docker_client.containers.get(name).remove(force=True, v=True)


def write(config: Path, data: dict[str, Any], cases: list[dict[str, Any]], check: str) -> None:
    data["test_cases"] = cases
    data["deployment"]["rollout"] = {"evaluation": {"check": check, "pass_rate": 1.0, "timeout_seconds": 90}}
    config.write_text(yaml.safe_dump(data, sort_keys=False))


def case_lines(err: str) -> list[str]:
    return [re.sub(r"\(\d+ ms, ", "(N ms, ", line) for line in err.splitlines() if "case '" in line]


def test_the_real_runtimes_answers_pass_one_case_and_fail_two_and_the_deploy_rolls_back(
    hello: tuple[Path, dict[str, Any]],
) -> None:
    config, data = hello
    write(config, data, [KNOWS_ITSELF], "regex")
    first = agentdeploy("deploy", str(config))
    assert first.returncode == 0, first.stderr
    assert case_lines(first.stderr) == ["  case 'knows-itself': passed (N ms, 30 tokens)"]
    assert "evaluation passed: 1 of 1 case(s) passed (100%; 100% required)" in first.stderr.splitlines()

    write(config, data, [KNOWS_ITSELF, NEVER_SAID, OTHER_TOOL], "regex")
    second = agentdeploy("deploy", str(config))

    assert second.returncode == 9, second.stderr  # rolled back
    # 30 tokens a case: the runtime's own tokens_used (the fake model reports 15 a response, two responses a turn)
    lines = second.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("error: "))
    assert lines[start] == (
        "error: the new version failed its health gate (the evaluation gate failed: 1 of 3 case(s) passed (33%; "
        "at least 100% required)"
    )
    # The ground truth judged on the runtime's own words, and the tool judged on its own tool_calls.
    assert re.fullmatch(
        r"    case 'mars': the answer does not match the ground truth regex 'deploys \(to\|on\) Mars': "
        r"'From my tools: \[knowledge_search\] .*'",
        lines[start + 1],
    ), lines[start + 1]
    assert re.fullmatch(
        r"    case 'orders': the agent did not call 'order_status' \(tools called: knowledge_search\): "
        r"'From my tools: \[knowledge_search\] .*'\); rolled back to .*, which serves at http://127\.0\.0\.1:\d+ again",
        lines[start + 2],
    ), lines[start + 2]
    assert case_lines(second.stderr)[:3] == [
        "  case 'knows-itself': passed (N ms, 30 tokens)",
        "  case 'mars': FAILED: the answer does not match the ground truth regex 'deploys (to|on) Mars': "
        + lines[start + 1].split("Mars': ", 1)[1]
        + " (N ms, 30 tokens)",
        "  case 'orders': FAILED: "
        + lines[start + 2].split("case 'orders': ", 1)[1].split("); rolled back")[0]
        + " (N ms, 30 tokens)",
    ]
    # The first version serves again and still answers from its own knowledge.
    port = data["deployment"]["port"]
    status, answer = post_json(f"http://127.0.0.1:{port}/agent/hello-agent/chat", {"message": "Hi"}, timeout=90)
    assert status == 200 and [call["name"] for call in answer["tool_calls"]] == ["knowledge_search"], answer
