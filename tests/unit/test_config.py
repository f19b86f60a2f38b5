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
    error = load_error(write_agent, AGENT_HEAD.replace("demo-agent", "Demo_Agent") + AZURE)
    [problem] = error.problems
    assert problem.key == "name"
    assert problem.location == Location("agent.yaml", 1, 7)
    assert problem.hint is not None and "app_name" in problem.hint


def test_user_assigned_identity_and_system_are_accepted(write_agent: Callable[..., Path]) -> None:
    identity = "/subscriptions/x/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/pull"
    acr = AZURE.replace("url: ghcr.io", "url: myreg.azurecr.io")  # a managed identity pulls from ACR only
    for value in ("system", identity):
        config = load_config(write_agent(AGENT_HEAD + acr + f"      registry_identity: {value}\n"))
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
    error = load_error(
        write_agent, "name: x\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {file: a.md, inline: hi}\n"
    )
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
    path = write_agent(
        "name: a\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: hi}\ndeployment:\n" + deployment
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    [problem] = raised.value.problems
    assert (problem.message, (problem.location.line, problem.location.column)) == (message, where)


# -- where the app lives, its workload profile, and who can reach it (issue 10) --------------------------------

AZURE_NO_ENV = AZURE.replace("      environment_name: env\n", "")  # the snippet under test starts at line 12
SHARED_ENV = "/subscriptions/0b1f6471-1bf0-4dda-aec3-111122223333/resourceGroups/shared-rg/providers/Microsoft.App/managedEnvironments/shared-env"  # noqa: E501


def one_problem(write_agent: Callable[..., Path], snippet: str, base: str = AZURE_NO_ENV) -> tuple[str, str, Location]:
    error = load_error(write_agent, AGENT_HEAD + base + snippet)
    [problem] = error.problems
    assert problem.location is not None and problem.hint
    return problem.key or "", problem.message, problem.location


def test_environment_id_names_an_environment_in_any_resource_group(write_agent: Callable[..., Path]) -> None:
    from agentdeploy.config.rules import EnvironmentRef, environment_name, parse_environment_id

    # ARM reads ids without regard to case: a lower-case provider segment is the same id.
    for value in (
        SHARED_ENV,
        SHARED_ENV.replace("Microsoft.App/managedEnvironments", "microsoft.app/managedenvironments"),
    ):
        config = load_config(write_agent(AGENT_HEAD + AZURE_NO_ENV + f"      environment_id: {value}\n"))
        azure = config.deploy.target.azure
        assert azure is not None and azure.environment_id == value
        assert environment_name(azure) == "shared-env"  # the state file keeps the environment's name
        assert parse_environment_id(value) == EnvironmentRef(
            "0b1f6471-1bf0-4dda-aec3-111122223333", "shared-rg", "shared-env"
        )
    config = load_config(
        write_agent(AGENT_HEAD + AZURE + "      environment_resource_group: shared-rg\n", name="other.yaml")
    )
    assert config.deploy.target.azure is not None
    assert config.deploy.target.azure.environment_resource_group == "shared-rg"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "shared-env",
            "'shared-env' is not a Container Apps environment id: it is not of the form /subscriptions/<subscription "
            "id>/resourceGroups/<resource group>/providers/Microsoft.App/managedEnvironments/<name>",
        ),
        (
            SHARED_ENV.replace("managedEnvironments", "containerApps"),
            f"{SHARED_ENV.replace('managedEnvironments', 'containerApps')!r} is not a Container Apps environment id: "
            "it names a Microsoft.App/containerApps resource, not a managed environment",
        ),
        (
            SHARED_ENV.replace("0b1f6471-1bf0-4dda-aec3-111122223333", "my-sub"),
            f"{SHARED_ENV.replace('0b1f6471-1bf0-4dda-aec3-111122223333', 'my-sub')!r} is not a Container Apps "
            "environment id: its subscription 'my-sub' is not a subscription id (a UUID)",
        ),
    ],
)
def test_a_malformed_environment_id_is_refused_with_its_position(
    write_agent: Callable[..., Path], value: str, message: str
) -> None:
    key, text, where = one_problem(write_agent, f"      environment_id: {value}\n")
    assert (key, text, where) == ("deployment.target.azure.environment_id", message, Location("agent.yaml", 12, 23))


def test_the_environment_is_named_exactly_one_way(write_agent: Callable[..., Path]) -> None:
    both = one_problem(write_agent, f"      environment_id: {SHARED_ENV}\n", base=AZURE)
    assert both == (
        "deployment.target.azure.environment_id",
        "environment_id and environment_name both name the Container Apps environment",
        Location("agent.yaml", 13, 7),
    )
    group = one_problem(write_agent, f"      environment_id: {SHARED_ENV}\n      environment_resource_group: rg2\n")
    assert group == (
        "deployment.target.azure.environment_resource_group",
        "environment_resource_group does not go with environment_id: the id names the resource group",
        Location("agent.yaml", 13, 7),
    )
    error = load_error(write_agent, AGENT_HEAD + AZURE_NO_ENV)
    [neither] = error.problems
    assert (neither.key, neither.message, neither.location) == (
        "deployment.target.azure",
        "the Container Apps environment is not named",
        Location("agent.yaml", 9, 5),
    )
    assert neither.hint == (
        "set environment_name (with environment_resource_group when it is not the app's) or environment_id"
    )


def test_an_environment_id_from_a_variable_is_checked_when_it_resolves(write_agent: Callable[..., Path]) -> None:
    from agentdeploy.config.loader import resolve_for_deploy

    config = load_config(
        write_agent(AGENT_HEAD + AZURE_NO_ENV + "      environment_id: ${ENV_ID}\n"), display_name="agent.yaml"
    )
    assert resolve_for_deploy(config, {"ENV_ID": SHARED_ENV}).azure_ids["environment_id"] == SHARED_ENV
    with pytest.raises(ConfigError) as raised:
        resolve_for_deploy(config, {"ENV_ID": "shared-env"})
    [problem] = raised.value.problems
    assert problem.location == Location("agent.yaml", 12, 23)
    assert problem.message.startswith("'shared-env': it is not of the form /subscriptions/")


@pytest.mark.parametrize(
    ("snippet", "key", "message"),
    [
        # Without a workload profile (a Consumption-only environment) the consumption pairs still rule.
        ("      cpu: 4\n      memory: 8Gi\n", "cpu", "cpu 4 is not a Container Apps size"),
        # The Consumption profile of a workload-profiles environment: up to 4 vCPU / 8Gi, 0.5Gi per 0.25 vCPU.
        (
            "      workload_profile: Consumption\n      cpu: 4.5\n      memory: 9Gi\n",
            "cpu",
            "cpu 4.5 is not a size of the Consumption workload profile",
        ),
        (
            "      workload_profile: Consumption\n      cpu: 3\n      memory: 4Gi\n",
            "memory",
            "memory 4Gi does not match cpu 3 on the Consumption workload profile",
        ),
        ("      workload_profile: gpu-d8\n      cpu: 0\n      memory: 8Gi\n", "cpu", "cpu 0 is not positive"),
        ("      workload_profile: 'my profile'\n", "workload_profile", "'my profile' is not a workload profile name"),
    ],
)
def test_cpu_and_memory_follow_the_workload_profile(
    write_agent: Callable[..., Path], snippet: str, key: str, message: str
) -> None:
    found_key, text, where = one_problem(write_agent, snippet, base=AZURE)
    assert (found_key, text) == (f"deployment.target.azure.{key}", message)
    assert where.line is not None and where.line >= 13


def test_sizes_a_workload_profile_allows(write_agent: Callable[..., Path]) -> None:
    for snippet in (
        "      workload_profile: Consumption\n      cpu: 4\n      memory: 8Gi\n",
        "      workload_profile: Consumption\n      cpu: 2.75\n      memory: 5.5Gi\n",
        "      workload_profile: gpu-d8\n      cpu: 8\n      memory: 30Gi\n",  # the profile's machine decides
    ):
        config = load_config(write_agent(AGENT_HEAD + AZURE + snippet))
        assert config.deploy.target.azure is not None and config.deploy.target.azure.workload_profile
    error = load_error(
        write_agent, AGENT_HEAD + AZURE + "      workload_profile: Consumption\n      cpu: 3\n      memory: 4Gi\n"
    )
    assert error.problems[0].hint == "use memory: 6Gi for cpu 3 (0.5Gi per 0.25 vCPU, up to 4 vCPU / 8Gi)"


@pytest.mark.parametrize(
    ("entries", "index", "message", "fix"),
    [
        (
            "['203.0.113.7', 'office']",
            1,
            "'office' is not an IP address or a CIDR range",
            "write an IPv4 or IPv6 address or a CIDR range, e.g. 203.0.113.7, 203.0.113.0/24 or 2001:db8::/32",
        ),
        (
            "['10.1.2.3/8']",
            0,
            "'10.1.2.3/8' has bits set after its /8 prefix: the range is 10.0.0.0/8",
            "write 10.0.0.0/8",
        ),
        ("['203.0.113.0/33']", 0, "'203.0.113.0/33' is not an IP address or a CIDR range", None),
        ("['2001:db8::/32', '2001:0db8::/32']", 1, "'2001:0db8::/32' is listed twice (as item 1 too)", None),
    ],
)
def test_ip_allow_takes_addresses_and_cidr_ranges(
    write_agent: Callable[..., Path], entries: str, index: int, message: str, fix: str | None
) -> None:
    error = load_error(write_agent, AGENT_HEAD + AZURE + f"      ip_allow: {entries}\n")
    [problem] = error.problems
    assert (problem.key, problem.message) == (f"deployment.target.azure.ip_allow[{index}]", message)
    assert problem.location is not None and problem.location.line == 13
    if fix:
        assert problem.hint == fix


def test_ip_allow_ranges_are_normalised() -> None:
    from agentdeploy.config.rules import ip_ranges

    assert ip_ranges(["203.0.113.7", "198.51.100.0/24", "2001:db8::1", "203.0.113.7/32"]) == (
        "203.0.113.7/32",
        "198.51.100.0/24",
        "2001:db8::1/128",
    )


def test_auth_is_checked(write_agent: Callable[..., Path]) -> None:
    good = (
        "      auth:\n"
        "        client_id: 11111111-2222-3333-4444-555555555555\n"
        "        tenant_id: ${AZURE_TENANT_ID}\n"
        "        unauthenticated: 401\n"  # a number in YAML
    )
    config = load_config(write_agent(AGENT_HEAD + AZURE + good))
    azure = config.deploy.target.azure
    assert azure is not None and azure.auth is not None and azure.auth.unauthenticated == "401"
    error = load_error(
        write_agent,
        AGENT_HEAD
        + AZURE
        + "      auth: {client_id: my-app, tenant_id: 66666666-7777-8888-9999-000000000000, "
        + "unauthenticated: redirect, client_secret_setting: MY_SECRET}\n",
    )
    assert [(p.key, p.message) for p in error.problems] == [
        ("deployment.target.azure.auth.client_id", "'my-app' is not an application (client) id (a UUID)"),
        ("deployment.target.azure.auth.client_secret_setting", "'MY_SECRET' is not a Container Apps secret name"),
    ]
    wrong = load_error(
        write_agent, AGENT_HEAD + AZURE + "      auth: {client_id: a, tenant_id: b, unauthenticated: 403}\n"
    )
    assert "deployment.target.azure.auth.unauthenticated" in {p.key for p in wrong.problems}


def test_a_public_agent_without_ip_allow_or_auth_is_warned_about(write_agent: Callable[..., Path]) -> None:
    config = load_config(write_agent(AGENT_HEAD + AZURE + "      ingress_external: true\n"), display_name="agent.yaml")
    [warning] = config.warnings
    assert warning.render() == (
        "agent.yaml:13:25: deployment.target.azure.ingress_external: external ingress and neither ip_allow nor "
        "auth: anyone on the internet can chat with the agent, at your model's token cost; set "
        "deployment.target.azure.ip_allow or deployment.target.azure.auth"
    )  # one line, naming the keys to set
    assert load_config(
        write_agent(AGENT_HEAD + AZURE + "      ingress_external: true\n      ip_allow: []\n")
    ).warnings, "an empty ip_allow lets everyone in"
    for guard in (
        "      ip_allow: [203.0.113.0/24]\n",
        "      auth:\n        client_id: 11111111-2222-3333-4444-555555555555\n"
        "        tenant_id: 66666666-7777-8888-9999-000000000000\n",
    ):
        assert load_config(write_agent(AGENT_HEAD + AZURE + "      ingress_external: true\n" + guard)).warnings == []
    assert load_config(write_agent(AGENT_HEAD + AZURE)).warnings == []  # internal ingress: the default


def test_unset_additions_leave_the_config_hash_and_record_as_they_were(write_agent: Callable[..., Path]) -> None:
    config = load_config(write_agent(AGENT_HEAD + AZURE))
    dumped = config.deploy.model_dump(mode="json")["target"]["azure"]
    assert not {"environment_id", "environment_resource_group", "workload_profile", "ip_allow", "auth"} & set(dumped)
    config = load_config(write_agent(AGENT_HEAD + AZURE + "      ip_allow: [203.0.113.0/24]\n"))
    assert config.deploy.model_dump(mode="json")["target"]["azure"]["ip_allow"] == ["203.0.113.0/24"]


def test_the_schema_describes_the_new_azure_keys() -> None:
    from agentdeploy.config.models import DeploymentConfig

    schema = DeploymentConfig.model_json_schema()
    azure = schema["$defs"]["AzureTargetConfig"]["properties"]
    assert {"environment_id", "environment_resource_group", "workload_profile", "ip_allow", "auth"} <= set(azure)
    auth = schema["$defs"]["AzureAuthConfig"]
    assert auth["required"] == ["client_id", "tenant_id"] and auth["additionalProperties"] is False
    assert auth["properties"]["unauthenticated"]["enum"] == ["401", "redirect"]


# -- registry_identity pulls from Azure Container Registry only (issue 13) ---------------------------------------


@pytest.mark.parametrize("url", ["ghcr.io", "docker.io", "localhost:5000", "myreg.azurecr.io.example.com"])
def test_registry_identity_is_refused_for_a_registry_that_is_not_acr(
    write_agent: Callable[..., Path], url: str
) -> None:
    text = AGENT_HEAD + AZURE.replace("url: ghcr.io", f"url: {url}") + "      registry_identity: system\n"
    error = load_error(write_agent, text)
    [problem] = error.problems
    assert problem.key == "deployment.target.azure.registry_identity"
    assert problem.location == Location("agent.yaml", 13, 26)  # the value, where the fix goes
    assert "works only with Azure Container Registry" in problem.message and repr(url) in problem.message
    assert problem.hint is not None
    assert "<name>.azurecr.io" in problem.hint and "REGISTRY_USERNAME and REGISTRY_PASSWORD" in problem.hint


def test_the_fix_names_the_configured_credentials_prefix(write_agent: Callable[..., Path]) -> None:
    text = AGENT_HEAD + AZURE.replace(
        "registry: {url: ghcr.io, repository: org/demo-agent}",
        "registry: {url: ghcr.io, repository: org/demo-agent, credentials_env_prefix: GHCR}",
    )
    error = load_error(write_agent, text + "      registry_identity: system\n")
    [problem] = error.problems
    assert problem.hint is not None and "GHCR_USERNAME and GHCR_PASSWORD" in problem.hint


@pytest.mark.parametrize("url", ["myreg.azurecr.io", "MyReg.AzureCR.io", "gov.azurecr.us", "cn.azurecr.cn:443"])
def test_registry_identity_is_accepted_for_acr_in_every_cloud(write_agent: Callable[..., Path], url: str) -> None:
    text = AGENT_HEAD + AZURE.replace("url: ghcr.io", f"url: {url}") + "      registry_identity: system\n"
    config = load_config(write_agent(text))
    assert config.deploy.target.azure is not None and config.deploy.target.azure.registry_identity == "system"


def test_the_config_rules_and_the_registry_agree_on_what_is_acr() -> None:
    from agentdeploy.config.rules import ACR_SUFFIXES
    from agentdeploy.image.registry import ACR_SUFFIXES as REGISTRY_ACR_SUFFIXES

    assert set(ACR_SUFFIXES) == set(REGISTRY_ACR_SUFFIXES)
