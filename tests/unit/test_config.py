"""agent.yaml loading: positions, upstream fields and defaults, and every added rule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agentdeploy.config.loader import load_config, require_supported_target
from agentdeploy.errors import ConfigError, ExitCode, Location, UnsupportedProviderError

AGENT_HEAD = """
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


def problems_of(exc: pytest.ExceptionInfo[ConfigError]) -> list[tuple[str, Location | None]]:
    return [(p.message, p.location) for p in exc.value.problems]


def load_error(write_agent: Callable[..., Path], text: str) -> ConfigError:
    path = write_agent(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path, display_name="agent.yaml")
    assert exc.value.exit_code == ExitCode.CONFIG
    return exc.value


def test_upstream_defaults_are_kept(write_agent: Callable[..., Path]) -> None:
    config = load_config(write_agent(AGENT_HEAD + AZURE))
    deploy = config.deploy
    azure = deploy.target.azure
    assert azure is not None
    assert (deploy.port, deploy.protocol, deploy.health_check_path, deploy.platform) == (
        8080,
        "rest",
        "/health",
        "linux/amd64",
    )
    assert deploy.registry is not None and deploy.registry.tag_strategy == "git_sha"
    assert (azure.location, azure.cpu, azure.memory, azure.ingress_external) == ("eastus", 1.0, "2Gi", False)
    assert (azure.min_replicas, azure.max_replicas) == (0, 10)
    assert deploy.rollout.strategy == "replace" and deploy.rollout.auto_rollback is True


def test_no_deployment_section_means_local_docker(write_agent: Callable[..., Path]) -> None:
    config = load_config(write_agent(AGENT_HEAD))
    assert config.agent.deployment is None
    assert require_supported_target(config) == "docker"


def test_unknown_key_gets_did_you_mean_with_position(write_agent: Callable[..., Path]) -> None:
    error = load_error(
        write_agent,
        AGENT_HEAD
        + """
deployment:
  regsitry: {url: ghcr.io, repository: org/a}
""",
    )
    [problem] = error.problems
    assert problem.message == "unknown key 'regsitry'"
    assert problem.hint == "did you mean 'registry'?"
    assert problem.location == Location("agent.yaml", 6, 3)


def test_unknown_top_level_key(write_agent: Callable[..., Path]) -> None:
    error = load_error(write_agent, AGENT_HEAD + "instuctions_extra: 1\ndeploymnet: {}\n")
    hints = {p.message: p.hint for p in error.problems}
    assert hints["unknown key 'deploymnet'"] == "did you mean 'deployment'?"
    assert "instuctions_extra" in " ".join(hints)


def test_every_upstream_top_level_section_is_accepted(write_agent: Callable[..., Path], compat: Path) -> None:
    import json

    schema = json.loads((compat / "holodeck/schemas/agent.schema.json").read_text())
    from agentdeploy.config.models import AgentConfig

    assert set(schema["properties"]) <= set(AgentConfig.model_fields)
    extra = "\n".join(
        f"{key}: null" for key in schema["properties"] if key not in ("name", "model", "instructions", "deployment")
    )
    config = load_config(write_agent(AGENT_HEAD + extra + "\n"))
    assert config.agent.name == "demo-agent"


def test_wrong_type_suggests_quoting(write_agent: Callable[..., Path]) -> None:
    error = load_error(write_agent, AGENT_HEAD + "deployment:\n  environment:\n    RETRIES: 3\n")
    [problem] = error.problems
    assert problem.message == "expected text, got the number 3"
    assert problem.hint is not None and 'quote it: "3"' in problem.hint
    assert problem.location == Location("agent.yaml", 6, 14)


def test_all_schema_errors_are_reported_together(write_agent: Callable[..., Path]) -> None:
    error = load_error(
        write_agent,
        AGENT_HEAD + "deployment:\n  port: http\n  protocol: grpc\n  target: {provider: azur}\n",
    )
    keys = sorted(p.key or "" for p in error.problems)
    assert keys == ["deployment.port", "deployment.protocol", "deployment.target.provider"]


@pytest.mark.parametrize(
    ("snippet", "key", "expected"),
    [
        ("      app_name: Bad_Name\n", "deployment.target.azure.app_name", "not a valid Container Apps name"),
        ("      app_name: a--b\n", "deployment.target.azure.app_name", "not a valid Container Apps name"),
        ("      memory: 3Gi\n", "deployment.target.azure.memory", "does not match cpu 1"),
        ("      cpu: 0.3\n", "deployment.target.azure.cpu", "not a Container Apps size"),
        ("      memory: 2GB\n", "deployment.target.azure.memory", "not a memory size"),
        ("      min_replicas: 5\n      max_replicas: 2\n", "deployment.target.azure.min_replicas", "greater than"),
        ("      registry_identity: bob\n", "deployment.target.azure.registry_identity", "neither 'system'"),
    ],
)
def test_azure_rules(write_agent: Callable[..., Path], snippet: str, key: str, expected: str) -> None:
    error = load_error(write_agent, AGENT_HEAD + AZURE + snippet)
    [problem] = error.problems
    assert problem.key == key
    assert expected in problem.message
    assert problem.hint


def test_memory_hint_names_the_matching_size(write_agent: Callable[..., Path]) -> None:
    error = load_error(write_agent, AGENT_HEAD + AZURE + "      cpu: 0.5\n      memory: 2Gi\n")
    [problem] = error.problems
    assert problem.hint is not None and problem.hint.startswith("use memory: 1Gi for cpu 0.5")


def test_agent_name_is_checked_as_app_name_for_azure(write_agent: Callable[..., Path]) -> None:
    error = load_error(write_agent, AGENT_HEAD.replace("demo-agent", "Demo Agent") + AZURE)
    [problem] = error.problems
    assert problem.key == "name"
    assert problem.location == Location("agent.yaml", 1, 7)
    assert problem.hint is not None and "app_name" in problem.hint


def test_user_assigned_identity_and_system_are_accepted(write_agent: Callable[..., Path]) -> None:
    identity = "/subscriptions/x/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/pull"
    for value in ("system", identity):
        config = load_config(write_agent(AGENT_HEAD + AZURE + f"      registry_identity: {value}\n"))
        assert config.deploy.target.azure is not None
        assert config.deploy.target.azure.registry_identity == value


@pytest.mark.parametrize(
    ("deployment", "key", "expected"),
    [
        ("  protocol: both\n", "deployment.protocol", "only rest or ag-ui"),
        ("  health_check_path: health\n", "deployment.health_check_path", "must start with '/'"),
        ('  health: {path: "/h\'; rm -rf /"}\n', "deployment.health.path", "cannot go into a probe URL"),
        ("  platform: amd64\n", "deployment.platform", "is not a platform"),
        ("  environment: {1BAD: x}\n", "deployment.environment.1BAD", "not a valid environment variable name"),
        ("  secrets: {API_KEY: sk-123}\n", "deployment.secrets.API_KEY", "must come from the environment"),
        ("  registry: {url: 'https://ghcr.io', repository: org/a}\n", "deployment.registry.url", "has a scheme"),
        ("  registry: {url: 'ghcr io', repository: org/a}\n", "deployment.registry.url", "not a registry host"),
        ("  registry: {url: ghcr.io, repository: Org/A}\n", "deployment.registry.repository", "not a valid repository"),
        (
            "  registry: {url: ghcr.io, repository: org/a, tag_strategy: custom, custom_tag: 'v1 beta'}\n",
            "deployment.registry.custom_tag",
            "not a valid image tag",
        ),
        (
            "  registry: {url: ghcr.io, repository: org/a, tag_strategy: custom}\n",
            "deployment.registry.tag_strategy",
            "custom_tag is not set",
        ),
        ("  build: {base_image: 'python:3.12 AS x'}\n", "deployment.build.base_image", "not an image reference"),
        ("  build: {build_args: {NPM_TOKEN: x}}\n", "deployment.build.build_args.NPM_TOKEN", "looks like a secret"),
        ("  registry: {url: ghcr.io, repository: '${REPO}'}\n", "deployment.registry.repository", "not allowed here"),
        ("  environment: {A: '${BROKEN'}\n", "deployment.environment.A", "malformed placeholder"),
        ("  health: {timeout_seconds: 0}\n", "deployment.health.timeout_seconds", "out of range"),
        ("  target: {provider: azure}\n", "deployment.target", "no `azure:` block"),
    ],
)
def test_deployment_rules(write_agent: Callable[..., Path], deployment: str, key: str, expected: str) -> None:
    error = load_error(write_agent, AGENT_HEAD + "deployment:\n" + deployment)
    messages = {p.key: p.message for p in error.problems}
    assert key in messages, messages
    assert expected in messages[key]
    assert all(p.location is not None and p.location.line is not None for p in error.problems)


def test_blue_green_conflicts_with_single_revision_mode(write_agent: Callable[..., Path]) -> None:
    error = load_error(
        write_agent, AGENT_HEAD + AZURE + "      revision_mode: single\n  rollout: {strategy: blue-green}\n"
    )
    [problem] = error.problems
    assert problem.key == "deployment.target.azure.revision_mode"


def test_health_path_alias(write_agent: Callable[..., Path]) -> None:
    config = load_config(write_agent(AGENT_HEAD + "deployment:\n  health_check_path: /ready\n"))
    assert config.deploy.effective_health_path == "/ready"
    config = load_config(write_agent(AGENT_HEAD + "deployment:\n  health: {path: /livez}\n"))
    assert config.deploy.effective_health_path == "/livez"
    error = load_error(write_agent, AGENT_HEAD + "deployment:\n  health_check_path: /a\n  health: {path: /b}\n")
    assert "contradicts" in error.problems[0].message


def test_azure_ids_may_be_placeholders(write_agent: Callable[..., Path]) -> None:
    text = AGENT_HEAD + AZURE.replace("0b1f6471-1bf0-4dda-aec3-111122223333", "${AZURE_SUBSCRIPTION_ID}")
    config = load_config(write_agent(text))
    assert config.deploy.target.azure is not None
    assert config.deploy.target.azure.subscription_id == "${AZURE_SUBSCRIPTION_ID}"


def test_unsupported_provider_names_the_supported_ones(write_agent: Callable[..., Path]) -> None:
    config = load_config(
        write_agent(AGENT_HEAD + "deployment:\n  target: {provider: gcp, gcp: {project_id: p}}\n"),
        display_name="agent.yaml",
    )
    with pytest.raises(UnsupportedProviderError) as exc:
        require_supported_target(config)
    assert exc.value.exit_code == ExitCode.CONFIG
    assert "'azure' and 'docker'" in exc.value.message
    assert exc.value.location == Location("agent.yaml", 5, 22)


def test_yaml_syntax_error_points_at_the_line(write_agent: Callable[..., Path]) -> None:
    error = load_error(write_agent, AGENT_HEAD + "deployment:\n  port: [8080\n")
    assert error.message.startswith("YAML syntax error")
    assert error.location is not None and error.location.line in (6, 7)


def test_duplicate_keys_are_refused(write_agent: Callable[..., Path]) -> None:
    error = load_error(write_agent, AGENT_HEAD + "deployment:\n  port: 80\n  port: 81\n")
    [problem] = error.problems
    assert problem.message == "duplicate key 'port' (first defined at line 5)"
    assert problem.location == Location("agent.yaml", 6, 3)


def test_empty_and_non_mapping_files(write_agent: Callable[..., Path]) -> None:
    assert "is empty" in load_error(write_agent, "# nothing\n").message
    assert "must be a mapping" in load_error(write_agent, "- a\n- b\n").message


def test_missing_required_key(write_agent: Callable[..., Path]) -> None:
    error = load_error(write_agent, "name: x\ninstructions: {inline: hi}\n")
    [problem] = error.problems
    assert problem.message == "required key 'model' is missing from the top level"


def test_instructions_need_exactly_one_source(write_agent: Callable[..., Path]) -> None:
    error = load_error(write_agent, "name: x\nmodel: {}\ninstructions: {file: a.md, inline: hi}\n")
    assert error.problems[0].key == "instructions"


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "nope.yaml")
    assert "does not exist" in exc.value.message


@pytest.mark.parametrize(
    ("deployment", "message", "where"),
    [
        (
            "  protocol: ag-ui\n  verify: {chat: [{message: hi}]}\n",
            "verify chat turns are sent to the REST chat endpoint, but this agent serves ag-ui",
            (6, 18),
        ),
        ("  build: {holodeck_version: latest}\n", "'latest' is not a holodeck-ai release version", (5, 29)),
        ("  verify: {chat: [{message: ' '}]}\n", "the message is empty", (5, 29)),
    ],
)
def test_runtime_and_verify_rules(
    write_agent: Callable[..., Path], deployment: str, message: str, where: tuple[int, int]
) -> None:
    path = write_agent("name: a\nmodel: {}\ninstructions: {inline: hi}\ndeployment:\n" + deployment)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    [problem] = raised.value.problems
    assert (problem.message, (problem.location.line, problem.location.column)) == (message, where)
