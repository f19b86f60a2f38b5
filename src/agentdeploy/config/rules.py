"""Rules upstream HoloDeck does not check, each with its own message and fix.

Pure functions over the parsed model: they return violations with the key path they concern,
and the loader turns those paths into file:line:column. The Azure target's rules are in azure_rules.py, the forms
of values (and their parsers, which the targets use too) in patterns.py.
"""

from __future__ import annotations

from collections.abc import Iterator

from agentdeploy.config.azure_rules import azure_rules
from agentdeploy.config.docker_rules import docker_rules
from agentdeploy.config.models import AgentConfig, DeploymentConfig
from agentdeploy.config.patterns import (
    ACR_SUFFIXES,
    AGENT_NAME_FORM,
    AGENT_NAME_RE,
    BUILD_ARG_RE,
    DOCKER_TAG_RE,
    ENV_NAME_RE,
    ENVIRONMENT_ID_FORM,
    HEALTH_PATH_RE,
    IMAGE_REF_RE,
    PLACEHOLDER_FIELDS,
    PLATFORM_RE,
    REGISTRY_HOST_RE,
    REPOSITORY_RE,
    RUNTIME_VERSION_RE,
    EnvironmentRef,
    environment_name,
    ip_ranges,
    memory_bytes,
    parse_environment_id,
)
from agentdeploy.config.placeholders import find_placeholders, malformed_placeholder
from agentdeploy.config.runtime import is_reserved, looks_secret, runtime_settings
from agentdeploy.config.violation import Violation
from agentdeploy.config.yamlsource import KeyPath

__all__ = [  # what other layers import from here
    "ACR_SUFFIXES",
    "DOCKER_TAG_RE",
    "ENVIRONMENT_ID_FORM",
    "PLACEHOLDER_FIELDS",
    "EnvironmentRef",
    "Violation",
    "check_agent",
    "check_deployment",
    "environment_name",
    "ip_ranges",
    "memory_bytes",
    "parse_environment_id",
]


def check_agent(agent: AgentConfig) -> list[Violation]:
    found: list[Violation] = []
    if not agent.name.strip():
        found.append(Violation(("name",), "the agent name is empty", "give the agent a name"))
    elif not AGENT_NAME_RE.match(agent.name):
        found.append(
            Violation(
                ("name",),
                f"{agent.name!r} is not a valid agent name: it names the agent's files and image",
                f"use {AGENT_NAME_FORM}, e.g. support-agent",
            )
        )
    instructions = agent.instructions
    if (instructions.file is None) == (instructions.inline is None):
        found.append(
            Violation(
                ("instructions",),
                "instructions needs exactly one of `file` or `inline`",
                "keep one of them",
            )
        )
    if agent.test_cases_file is not None and agent.test_cases is not None:
        found.append(
            Violation(
                ("test_cases_file",),
                "test_cases_file and test_cases cannot both be set (upstream: mutually exclusive)",
                "keep the inline test_cases or the file, not both",
                at_key=True,
            )
        )
    if agent.deployment is not None:
        found.extend(check_deployment(agent.deployment, agent.name))
    return found


def check_deployment(deploy: DeploymentConfig, agent_name: str) -> list[Violation]:
    found = list(_placeholder_rules(deploy))
    # A misplaced ${VAR} is the one thing to say about that value; its format rules would only add noise.
    placeholder_keys = {violation.keys for violation in found}
    for rule in (_registry_rules, _serve_rules, _health_rules, _setting_rules, _build_rules):
        found.extend(v for v in rule(deploy) if v.keys not in placeholder_keys)
    target = deploy.target
    if target.azure is not None:
        found.extend(azure_rules(target.azure, deploy, agent_name))
    elif target.provider == "azure":
        found.append(
            Violation(
                ("deployment", "target"),
                "provider is azure but there is no `azure:` block",
                "add target.azure with subscription_id and resource_group",
            )
        )
    if target.provider == "azure" and deploy.registry is None:
        found.append(
            Violation(
                ("deployment",),
                "deploying to azure needs a `registry:` to push the image to",
                "add deployment.registry with url and repository (for example ghcr.io and org/agent)",
            )
        )
    found.extend(docker_rules(deploy, placeholder_keys))
    return found


def _walk_strings(value: object, keys: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    if isinstance(value, str):
        yield keys, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _walk_strings(v, (*keys, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk_strings(v, (*keys, i))


def _placeholder_rules(deploy: DeploymentConfig) -> Iterator[Violation]:
    raw = deploy.model_dump(exclude_defaults=True)
    for keys, text in _walk_strings(raw, ("deployment",)):
        bad = malformed_placeholder(text)
        if bad is not None:
            yield Violation(
                keys,
                f"malformed placeholder {bad!r}",
                "write ${NAME} or ${NAME:-default}; NAME is letters, digits and '_', not starting with a digit",
            )
            continue
        runtime_value = len(keys) >= 2 and keys[1] in ("environment", "secrets")
        if keys in PLACEHOLDER_FIELDS:
            for placeholder in find_placeholders(text):
                if is_reserved(placeholder.name):
                    yield Violation(
                        keys,
                        f"${{{placeholder.name}}} is a variable of the CI runner or of agentdeploy, not an Azure id",
                        "name a variable of your own, e.g. ${AZURE_SUBSCRIPTION_ID}",
                    )
        if find_placeholders(text) and not runtime_value and keys not in PLACEHOLDER_FIELDS:
            yield Violation(
                keys,
                "placeholders are not allowed here: this value shapes the image, and building must "
                "not depend on runtime variables",
                "write the value itself; ${VAR} works in environment, secrets, the azure "
                "subscription_id/resource_group/environment_name/environment_id/environment_resource_group "
                "and auth.client_id/tenant_id",
            )


def _registry_rules(deploy: DeploymentConfig) -> Iterator[Violation]:
    registry = deploy.registry
    if registry is None:
        return
    keys: KeyPath = ("deployment", "registry")
    url = registry.url
    if "://" in url:
        yield Violation(
            (*keys, "url"),
            f"registry url {url!r} has a scheme",
            f"write the host only, e.g. {url.split('://', 1)[1].rstrip('/')!r}",
        )
    else:
        host, _, path = url.partition("/")
        if not REGISTRY_HOST_RE.match(host):
            yield Violation(
                (*keys, "url"),
                f"{url!r} is not a registry host",
                "write host[:port], e.g. ghcr.io, myregistry.azurecr.io or localhost:5000",
            )
        elif path and not REPOSITORY_RE.match(path):
            yield Violation(
                (*keys, "url"),
                f"the path part {path!r} of the registry url is not a valid repository prefix",
                "move the path into `repository`",
            )
    if not REPOSITORY_RE.match(registry.repository) or "//" in registry.repository:
        yield Violation(
            (*keys, "repository"),
            f"{registry.repository!r} is not a valid repository name",
            "use lower-case letters, digits and . _ / - (e.g. my-org/my-agent), "
            "starting and ending with a letter or digit",
        )
    if registry.tag_strategy == "custom":
        if registry.custom_tag is None:
            yield Violation(
                (*keys, "tag_strategy"),
                "tag_strategy is custom but custom_tag is not set",
                "add custom_tag, e.g. custom_tag: v1.2.0",
            )
    elif registry.custom_tag is not None:
        yield Violation(
            (*keys, "custom_tag"),
            f"custom_tag is ignored because tag_strategy is {registry.tag_strategy}",
            "set tag_strategy: custom to use it, or remove custom_tag",
            warning=True,
        )
    if registry.custom_tag is not None and not DOCKER_TAG_RE.match(registry.custom_tag):
        yield Violation(
            (*keys, "custom_tag"),
            f"{registry.custom_tag!r} is not a valid image tag",
            "up to 128 letters, digits, '_', '.', '-', not starting with '.' or '-'",
        )
    prefix = registry.credentials_env_prefix
    if prefix is not None and not BUILD_ARG_RE.match(prefix):
        yield Violation(
            (*keys, "credentials_env_prefix"),
            f"{prefix!r} cannot prefix an environment variable name",
            "use letters, digits and '_', e.g. GHCR",
        )


def _serve_rules(deploy: DeploymentConfig) -> Iterator[Violation]:
    """What `holodeck serve` serves, and the chat turns sent to it."""
    if deploy.verify.chat and deploy.protocol != "rest":
        yield Violation(
            ("deployment", "verify", "chat"),
            f"verify chat turns are sent to the REST chat endpoint, but this agent serves {deploy.protocol}",
            "serve protocol rest, or remove deployment.verify.chat",
        )
    for index, turn in enumerate(deploy.verify.chat):
        if not turn.message.strip():
            yield Violation(("deployment", "verify", "chat", index, "message"), "the message is empty", "ask something")
    if deploy.protocol == "both":
        yield Violation(
            ("deployment", "protocol"),
            "protocol `both` is not served: `holodeck serve` accepts only rest or ag-ui, "
            "so the container would exit at start",
            "choose rest or ag-ui",
        )


def _health_rules(deploy: DeploymentConfig) -> Iterator[Violation]:
    """The health probe's path and patience, and the platform the image is built for."""
    for path_keys, path in (
        (("deployment", "health_check_path"), deploy.health_check_path),
        (("deployment", "health", "path"), deploy.health.path),
    ):
        if path is None:
            continue
        if not path.startswith("/"):
            yield Violation(path_keys, f"health path {path!r} must start with '/'", f"write '/{path}'")
        elif not HEALTH_PATH_RE.match(path):
            yield Violation(
                path_keys,
                f"health path {path!r} has characters that cannot go into a probe URL",
                "use letters, digits and . _ ~ / % - (and an optional ?query)",
            )
    explicit = deploy.model_fields_set
    if (
        deploy.health.path is not None
        and "health_check_path" in explicit
        and deploy.health.path != deploy.health_check_path
    ):
        yield Violation(
            ("deployment", "health", "path"),
            f"health.path {deploy.health.path!r} contradicts health_check_path {deploy.health_check_path!r}",
            "keep one of them",
        )
    if not 1 <= deploy.health.timeout_seconds <= 3600:
        yield Violation(
            ("deployment", "health", "timeout_seconds"),
            f"timeout_seconds {deploy.health.timeout_seconds} is out of range",
            "use 1 to 3600 seconds",
        )
    if not PLATFORM_RE.match(deploy.platform):
        yield Violation(
            ("deployment", "platform"),
            f"{deploy.platform!r} is not a platform",
            "write os/arch, e.g. linux/amd64 or linux/arm64",
        )


def _setting_rules(deploy: DeploymentConfig) -> Iterator[Violation]:
    """The runtime settings: valid names, secrets that come from the environment, no value in both places."""
    for section in ("environment", "secrets"):
        for name in getattr(deploy, section):
            if not ENV_NAME_RE.match(name):
                yield Violation(
                    ("deployment", section, name),
                    f"{name!r} is not a valid environment variable name",
                    "use letters, digits, '_', '.', '-', not starting with a digit (Container Apps rejects others)",
                    at_key=True,
                )
    for name, template in deploy.secrets.items():
        if not find_placeholders(template):
            yield Violation(
                ("deployment", "secrets", name),
                "a secret's value must come from the environment, not from this file",
                f'write {name}: "${{{name}}}" and provide {name} when deploying',
            )
        if name in deploy.environment:
            yield Violation(
                ("deployment", "secrets", name),
                f"{name} is set both under environment and under secrets",
                "keep it under secrets only",
                at_key=True,
            )
    for setting in runtime_settings(deploy):
        if setting.promoted:
            yield Violation(
                setting.keys,
                f"{setting.name} looks like a secret: it will be passed as a secret "
                "(a Container Apps secretRef), never as a plain value",
                "move it under deployment.secrets to say so explicitly",
                warning=True,
            )
        elif not setting.secret and looks_secret(setting.name) and setting.template:
            yield Violation(
                setting.keys,
                f"{setting.name} looks like a secret but its value is written in this file",
                f'keep secrets out of git: write {setting.name}: "${{{setting.name}}}" under secrets',
                warning=True,
            )


def _build_rules(deploy: DeploymentConfig) -> Iterator[Violation]:
    build = deploy.build
    keys: KeyPath = ("deployment", "build")
    if not RUNTIME_VERSION_RE.match(build.holodeck_version):
        yield Violation(
            (*keys, "holodeck_version"),
            f"{build.holodeck_version!r} is not a holodeck-ai release version",
            'write the version pip installs, e.g. "0.7.1" (quoted)',
        )
    if not IMAGE_REF_RE.match(build.base_image):
        yield Violation(
            (*keys, "base_image"),
            f"{build.base_image!r} is not an image reference",
            "write registry/repository:tag, e.g. ghcr.io/justinbarias/holodeck-base:latest",
        )
    if build.platform is not None and not PLATFORM_RE.match(build.platform):
        yield Violation(
            (*keys, "platform"),
            f"{build.platform!r} is not a platform",
            "write os/arch, e.g. linux/amd64 or linux/arm64",
        )
    for name in build.build_args:
        if not BUILD_ARG_RE.match(name):
            yield Violation(
                (*keys, "build_args", name),
                f"{name!r} is not a valid build argument name",
                "use letters, digits and '_', not starting with a digit",
                at_key=True,
            )
        elif looks_secret(name):
            yield Violation(
                (*keys, "build_args", name),
                f"build argument {name} looks like a secret; build arguments are visible in the image history",
                "pass secrets at run time under deployment.secrets",
                at_key=True,
            )
