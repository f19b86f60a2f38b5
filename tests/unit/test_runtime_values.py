"""${VAR} placeholders, secrets vs plain settings, and deploy-time resolution."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agentdeploy.config.loader import load_config, resolve_for_deploy
from agentdeploy.config.placeholders import (
    find_placeholders,
    malformed_placeholder,
    missing_variables,
    substitute,
)
from agentdeploy.config.runtime import looks_secret, runtime_settings
from agentdeploy.errors import ExitCode, Location, MissingVariablesError

HEAD = "name: demo\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: hi}\n"


def test_placeholder_syntax() -> None:
    assert [(p.name, p.default) for p in find_placeholders("${A}-${B:-x}-${C:-}")] == [
        ("A", None),
        ("B", "x"),
        ("C", ""),
    ]
    assert malformed_placeholder("${A} ${1B}") == "${1B}"
    assert malformed_placeholder("ok ${A") == "${A"
    assert malformed_placeholder("${A:-b} $HOME") is None


def test_substitution_follows_shell_defaults() -> None:
    environ = {"A": "1", "EMPTY": ""}
    assert substitute("${A}/${B:-two}/${EMPTY:-three}/${EMPTY}", environ) == "1/two/three/"
    assert missing_variables("${A} ${B} ${C:-c}", environ) == ["B"]


@pytest.mark.parametrize(
    "name",
    ["OPENAI_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "DB_PASSWORD", "SQL_CONNECTION_STRING", "client_secret", "GH_PAT"],
)
def test_secret_looking_names(name: str) -> None:
    assert looks_secret(name)


@pytest.mark.parametrize("name", ["MAX_TOKENS", "KEYBOARD", "AZURE_OPENAI_ENDPOINT", "QDRANT_URL", "HOLODECK_PROTOCOL"])
def test_plain_names(name: str) -> None:
    assert not looks_secret(name)


def test_secret_placeholders_under_environment_become_secrets(write_agent: Callable[..., Path]) -> None:
    config = load_config(
        write_agent(
            HEAD
            + """deployment:
  environment:
    OPENAI_API_KEY: ${OPENAI_API_KEY}
    DATABASE_URL: postgres://app:${DB_PASSWORD}@db/app
    LOG_LEVEL: info
    ENDPOINT: ${ENDPOINT}
  secrets:
    GITHUB_TOKEN: ${GH_TOKEN}
"""
        ),
        display_name="agent.yaml",
    )
    kinds = {s.name: (s.secret, s.promoted) for s in runtime_settings(config.deploy)}
    assert kinds == {
        "OPENAI_API_KEY": (True, True),
        "DATABASE_URL": (True, True),
        "LOG_LEVEL": (False, False),
        "ENDPOINT": (False, False),
        "GITHUB_TOKEN": (True, False),
    }
    told = {w.key: w.location for w in config.warnings}
    assert told == {
        "deployment.environment.OPENAI_API_KEY": Location("agent.yaml", 6, 21),
        "deployment.environment.DATABASE_URL": Location("agent.yaml", 7, 19),
    }
    resolved = resolve_for_deploy(
        config, {"OPENAI_API_KEY": "sk-1", "DB_PASSWORD": "pw", "ENDPOINT": "https://e", "GH_TOKEN": "ghp"}
    )
    assert resolved.runtime.env == {"LOG_LEVEL": "info", "ENDPOINT": "https://e"}
    assert resolved.runtime.secrets == {
        "OPENAI_API_KEY": "sk-1",
        "DATABASE_URL": "postgres://app:pw@db/app",
        "GITHUB_TOKEN": "ghp",
    }


def test_all_missing_variables_in_one_error(write_agent: Callable[..., Path]) -> None:
    config = load_config(
        write_agent(
            HEAD
            + """deployment:
  environment:
    A: ${ONE}
    B: ${TWO:-fallback}
  secrets:
    C: ${THREE}
"""
        ),
        display_name="agent.yaml",
    )
    with pytest.raises(MissingVariablesError) as exc:
        resolve_for_deploy(config, {})
    assert exc.value.exit_code == ExitCode.CONFIG
    assert [(p.message, p.location) for p in exc.value.problems] == [
        ("${ONE} is not set", Location("agent.yaml", 6, 8)),
        ("${THREE} is not set", Location("agent.yaml", 9, 8)),
    ]


def test_azure_ids_resolve_at_deploy_time(write_agent: Callable[..., Path]) -> None:
    config = load_config(
        write_agent(
            HEAD
            + """deployment:
  registry: {url: ghcr.io, repository: org/demo}
  target:
    provider: azure
    azure: {subscription_id: "${SUB}", resource_group: "${RG:-agents}", environment_name: agents-env}
"""
        )
    )
    resolved = resolve_for_deploy(config, {"SUB": "0b1f6471-1bf0-4dda-aec3-111122223333"})
    assert resolved.azure_ids == {
        "subscription_id": "0b1f6471-1bf0-4dda-aec3-111122223333",
        "resource_group": "agents",
        "environment_name": "agents-env",
    }
    with pytest.raises(MissingVariablesError) as exc:
        resolve_for_deploy(config, {})
    assert [p.key for p in exc.value.problems] == ["deployment.target.azure.subscription_id"]
