"""Only the variables the user named reach the agent: a `${VAR}` in a comment is no variable, the runner's own
variables (GITHUB_*, ACTIONS_*, RUNNER_*, AGENTDEPLOY_*, AZURE_FEDERATED_TOKEN*) go only where deployment.secrets
names them, a value from a placeholder is a secret unless `environment:` lists it, and `plan` says what is
forwarded, by name, never by value."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agentdeploy.cli import main
from agentdeploy.config.loader import load_config, resolve_for_deploy
from agentdeploy.config.runtime import forwarded_variables, is_reserved, runtime_settings
from agentdeploy.errors import ConfigError, ExitCode, Location
from testkit import ROOT

OFFLINE_CLI = ROOT / "tests" / "fakes" / "offline_cli.py"
HEAD = "name: demo\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: hi}\n"
RUNNER = {  # what a GitHub runner puts in every step's environment
    "GITHUB_TOKEN": "ghs_job_token_0123456789",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc_request_token_0123456789",
    "ACTIONS_ID_TOKEN_REQUEST_URL": "https://token.actions.example/x",
}


def run(*argv: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), environ=environ or {}, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    "name",
    [
        "GITHUB_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "RUNNER_TEMP",
        "AGENTDEPLOY_REGISTRY_PASSWORD",
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_FEDERATED_TOKEN",
        "github_token",
    ],
)
def test_the_runners_variables_are_reserved(name: str) -> None:
    assert is_reserved(name)


@pytest.mark.parametrize("name", ["GH_TOKEN", "OPENAI_API_KEY", "AZURE_CLIENT_ID", "MY_GITHUB_TOKEN", "RUNNER"])
def test_other_variables_are_not(name: str) -> None:
    assert not is_reserved(name)


def test_a_runner_variable_under_environment_is_a_config_error(write_agent: Callable[..., Path]) -> None:
    config = write_agent(HEAD + "deployment:\n  environment:\n    LOG_LEVEL: info\n    TOKEN: ${GITHUB_TOKEN}\n")
    code, out, err = run("validate", str(config), "--resolve", environ=RUNNER)
    assert (code, out) == (ExitCode.CONFIG, "")
    assert err.splitlines() == [
        f"error: {config} is not a valid agent config (1 problem)",
        f"  {config}:7:12: deployment.environment.TOKEN: ${{GITHUB_TOKEN}} is a variable of the CI runner or of "
        "agentdeploy (GITHUB_*, ACTIONS_*, RUNNER_*, AGENTDEPLOY_*, AZURE_FEDERATED_TOKEN*): it is not forwarded "
        "to the agent unless deployment.secrets names it",
        "      fix: to give it to the agent on purpose, as a secret: "
        'deployment.secrets: {GITHUB_TOKEN: "${GITHUB_TOKEN}"}',
    ]


def test_a_runner_variable_the_runtime_would_read_is_a_config_error_where_it_is_written(
    write_agent: Callable[..., Path],
) -> None:
    config = write_agent(
        "name: demo\nmodel:\n  provider: openai\n  api_key: 'Bearer ${ACTIONS_ID_TOKEN_REQUEST_TOKEN}'\n"
        "  name: gpt-4o\n"
        "instructions: {inline: hi}\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(config, display_name="agent.yaml")
    [problem] = raised.value.problems
    assert problem.location == Location("agent.yaml", 4, 20)
    assert problem.message.startswith("${ACTIONS_ID_TOKEN_REQUEST_TOKEN} is a variable of the CI runner")
    assert problem.key is None  # not a deployment key: the line of the agent's own config


def test_a_runner_variable_named_under_secrets_is_forwarded_as_a_secret(write_agent: Callable[..., Path]) -> None:
    config = load_config(
        write_agent(
            # The runtime reads it too, from the container: the secret gives it there, nothing else is forwarded.
            "name: demo\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: 'token ${GITHUB_TOKEN}'}\n"
            "deployment:\n  secrets:\n    GITHUB_TOKEN: ${GITHUB_TOKEN}\n"
        )
    )
    resolved = resolve_for_deploy(config, {**RUNNER, "PATH": "/usr/bin"}).runtime
    assert resolved.secrets == {"GITHUB_TOKEN": RUNNER["GITHUB_TOKEN"]}
    assert resolved.env == {}
    settings = runtime_settings(config.deploy, config.runtime_variables)
    assert [f.describe() for f in forwarded_variables(settings)] == ["GITHUB_TOKEN (secret)"]


def test_a_runner_variable_is_no_azure_id(write_agent: Callable[..., Path]) -> None:
    config = write_agent(
        HEAD.replace("demo", "demo-agent")
        + "deployment:\n  registry: {url: ghcr.io, repository: team/demo}\n  target:\n    provider: azure\n"
        "    azure:\n      subscription_id: ${GITHUB_RUN_ID}\n      resource_group: rg\n"
        "      environment_name: env\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(config, display_name="agent.yaml")
    [problem] = raised.value.problems
    assert (problem.key, problem.location) == ("deployment.target.azure.subscription_id", Location("agent.yaml", 9, 24))
    assert problem.message == "${GITHUB_RUN_ID} is a variable of the CI runner or of agentdeploy, not an Azure id"


COMMENTED = """\
# Read the key from ${GITHUB_TOKEN}, or ${ACTIONS_ID_TOKEN_REQUEST_TOKEN} in CI
name: demo
model:
  provider: openai   # not ${RUNNER_TEMP} either
  api_key: "${OPENAI_API_KEY}"
  name: gpt-4o
instructions:
  inline: "a # in a value is text: ${PROMPT_STYLE}"
deployment:
  # ${AGENTDEPLOY_REGISTRY_PASSWORD}
  environment: {LOG_LEVEL: info}
"""


def test_a_placeholder_in_a_comment_is_no_variable(write_agent: Callable[..., Path]) -> None:
    config = load_config(write_agent(COMMENTED), display_name="agent.yaml")
    [copy] = config.runtime_files
    assert copy.text == (
        "\n"
        "name: demo\n"
        "model:\n"
        "  provider: openai\n"
        '  api_key: "${OPENAI_API_KEY}"\n'
        "  name: gpt-4o\n"
        "instructions:\n"
        '  inline: "a # in a value is text: ${PROMPT_STYLE}"\n'
    )
    assert [(v.name, str(v.location)) for v in config.runtime_variables] == [
        ("OPENAI_API_KEY", "agent.yaml:5:13"),
        ("PROMPT_STYLE", "agent.yaml:8:36"),
    ]
    environ = {**RUNNER, "OPENAI_API_KEY": "sk-1", "PROMPT_STYLE": "brief", "RUNNER_TEMP": "/tmp/r"}
    resolved = resolve_for_deploy(config, environ).runtime
    assert resolved.secrets == {"OPENAI_API_KEY": "sk-1", "PROMPT_STYLE": "brief"}  # from placeholders: secrets
    assert resolved.env == {"LOG_LEVEL": "info"}


# -- plan and the running agent: the real command line, the toy process target --------------------------------


@pytest.fixture
def project(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[Path]:
    (tmp_path / "agent.yaml").write_text(
        "# Uses ${GITHUB_TOKEN} and ${ACTIONS_ID_TOKEN_REQUEST_TOKEN} in CI: a comment, no variable\n"
        "name: toy\nmodel: {provider: openai, name: '${MODEL_NAME:-gpt-4o}'}\ninstructions: {inline: hi}\n"
        f"deployment:\n  port: {free_port()}\n  health: {{timeout_seconds: 5}}\n"
        "  environment: {REGION: '${REGION}', LOG_LEVEL: info}\n"
        "  secrets: {OPENAI_API_KEY: '${TOY_OPENAI_KEY}', GH_TOKEN: '${GITHUB_TOKEN}'}\n"
    )
    yield tmp_path
    offline(tmp_path, "destroy", "agent.yaml", "--target", "process", "--yes")


def offline(project: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTDEPLOY_", "GITHUB_", "ACTIONS_"))}
    env.update(RUNNER, REGION="westeurope", TOY_OPENAI_KEY="sk-toy-secret-0123456789")
    return subprocess.run(
        [sys.executable, str(OFFLINE_CLI), *argv],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_plan_lists_every_forwarded_variable_by_name_and_the_agent_gets_only_those(project: Path) -> None:
    planned = offline(project, "plan", "agent.yaml", "--target", "process")
    assert planned.returncode == ExitCode.OK, planned.stderr
    assert planned.stdout.splitlines()[-1] == (
        "process toy receives from the deploy's environment: REGION (plain), TOY_OPENAI_KEY as OPENAI_API_KEY "
        "(secret), GITHUB_TOKEN as GH_TOKEN (secret), MODEL_NAME (secret)"
    )
    as_json = json.loads(offline(project, "plan", "agent.yaml", "--target", "process", "--json").stdout)
    assert as_json["items"][0]["variables"] == [
        {"variable": "REGION", "as": "REGION", "secret": False},
        {"variable": "TOY_OPENAI_KEY", "as": "OPENAI_API_KEY", "secret": True},
        {"variable": "GITHUB_TOKEN", "as": "GH_TOKEN", "secret": True},
        {"variable": "MODEL_NAME", "as": "MODEL_NAME", "secret": True},
    ]
    for value in (*RUNNER.values(), "sk-toy-secret-0123456789"):
        assert value not in planned.stdout + planned.stderr

    deployed = offline(project, "deploy", "agent.yaml", "--target", "process")
    assert deployed.returncode == ExitCode.OK, deployed.stderr
    running = json.loads((project / ".process-target.json").read_text())
    # What the agent's process was given: the config's settings, nothing the comment named.
    assert running["env"] == {
        "REGION": "westeurope",
        "LOG_LEVEL": "info",
        "OPENAI_API_KEY": "sk-toy-secret-0123456789",
        "GH_TOKEN": RUNNER["GITHUB_TOKEN"],
        "MODEL_NAME": "gpt-4o",
    }
