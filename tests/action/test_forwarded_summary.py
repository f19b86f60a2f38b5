"""The Action's job summary lists every variable of the step's environment that reaches the agent (name, the
container variable it fills, secret or plain), never a value; and a config that would forward the runner's own
token without naming it under deployment.secrets stops with an annotation at its line."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from action.test_action import Runner
from testkit import ROOT

WORKFLOW_TOKEN = "ghs_fake_workflow_token_123"  # what Runner gives the github-token input, as a runner would


def offline_runner(project: Path, tmp_path: Path) -> Runner:
    """The composite's run step, the Python it runs swapped for tests/fakes/offline_cli.py (the process target)."""
    runner = Runner(project, tmp_path)
    offline = ROOT / "tests" / "fakes" / "offline_cli.py"
    python = runner.temp / "agentdeploy-venv" / "bin" / "python"
    python.write_text(
        f'#!/bin/sh\n[ "$1 $2" = "-m agentdeploy" ] && shift 2\nexec "{sys.executable}" "{offline}" "$@"\n'
    )
    runner.extra_env = {"REGION": "westeurope", "TOY_KEY": "sk-toy-secret-0123456789"}
    return runner


def test_plan_and_deploy_summaries_list_the_forwarded_variables_by_name(tmp_path: Path, free_port: Any) -> None:
    project = tmp_path / "workspace"
    project.mkdir()
    (project / "agent.yaml").write_text(
        "# ${ACTIONS_ID_TOKEN_REQUEST_TOKEN} in a comment is no variable\n"
        "name: toy\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: hi}\n"
        f"deployment:\n  port: {free_port()}\n  health: {{timeout_seconds: 5}}\n"
        "  environment: {REGION: '${REGION}'}\n"
        "  secrets: {OPENAI_API_KEY: '${TOY_KEY}', GH_TOKEN: '${GITHUB_TOKEN}'}\n"
    )
    runner = offline_runner(project, tmp_path)
    row = (
        "| Variables | `REGION` (plain)<br>`TOY_KEY` as `OPENAI_API_KEY` (secret)<br>"
        "`GITHUB_TOKEN` as `GH_TOKEN` (secret) |"
    )
    try:
        for command in ("plan", "deploy"):
            result = runner.run({"config": "agent.yaml", "target": "process", "command": command})
            assert result.returncode == 0, result.stdout + result.stderr
            summary = runner.summary.read_text()
            assert row in summary.splitlines(), summary
            for value in (WORKFLOW_TOKEN, "sk-toy-secret-0123456789", "westeurope"):
                assert value not in summary
        running = (project / ".process-target.json").read_text()
        assert "ACTIONS_ID_TOKEN_REQUEST_TOKEN" not in running  # what the agent was started with
    finally:
        runner.run({"config": "agent.yaml", "target": "process", "command": "destroy", "confirm-destroy": "true"})


def test_the_workflow_token_under_environment_stops_with_an_annotation(tmp_path: Path) -> None:
    project = tmp_path / "workspace"
    project.mkdir()
    (project / "agent.yaml").write_text(
        "name: toy\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: hi}\n"
        "deployment:\n  environment:\n    GH: ${GITHUB_TOKEN}\n"
    )
    runner = offline_runner(project, tmp_path)
    result = runner.run({"config": "agent.yaml", "target": "process"})
    assert result.returncode == 3, result.stdout
    assert re.search(
        r"^::error title=deployment\.environment\.GH,file=agent\.yaml,line=6,endLine=6,col=9,endColumn=9::"
        r"\$\{GITHUB_TOKEN\} is a variable of the CI runner or of agentdeploy ",
        result.stdout,
        re.M,
    ), result.stdout
    assert runner.outputs()["status"] == "failed"
    assert not (project / ".process-target.json").exists()  # nothing deployed
