"""Rules upstream HoloDeck does not check, each with its own message and fix.

Pure functions over the parsed model: they return violations with the key path they concern,
and the loader turns those paths into file:line:column.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from agentdeploy.config.models import (
    AgentConfig,
    AzureAuthConfig,
    AzureTargetConfig,
    DeploymentConfig,
    RegistryConfig,
)
from agentdeploy.config.placeholders import find_placeholders, malformed_placeholder, single_placeholder
from agentdeploy.config.runtime import is_reserved, looks_secret, runtime_settings
from agentdeploy.config.yamlsource import KeyPath


@dataclass(frozen=True)
class Violation:
    keys: KeyPath
    message: str
    hint: str | None = None
    at_key: bool = False  # point at the key rather than its value
    warning: bool = False  # reported, but does not make the config invalid


# Container Apps (FACTS.md): 2-32 chars, lower-case letters, digits and '-', starts with a
# letter, ends with a letter or digit, no '--'.
APP_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
# The agent's name goes into file names (the state record), image names and matrix legs: one path segment, never
# `..` or a slash. Checked before anything uses it.
AGENT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
AGENT_NAME_FORM = "1 to 63 letters, digits, '.', '_' and '-', starting with a letter or digit"
# Container Apps accepts these env var names; stricter than POSIX in no way that matters here.
ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
DOCKER_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
REPOSITORY_RE = re.compile(r"^[a-z0-9][a-z0-9._/-]*[a-z0-9]$")  # upstream's regex
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
REGISTRY_HOST_RE = re.compile(rf"^(?:{_HOST_LABEL})(?:\.{_HOST_LABEL})*(?::[0-9]{{1,5}})?$")
PLATFORM_RE = re.compile(r"^(linux|windows)/(amd64|arm64|arm|386|ppc64le|s390x|riscv64|mips64le)(/v[5-8])?$")
# A path we can hand to a shell-free probe and to Azure: no quotes, spaces or shell characters.
HEALTH_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/%-]*(\?[A-Za-z0-9._~=%-]*)?$")
_REF_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REF_RE = re.compile(
    rf"^(?:(?:{_HOST_LABEL})(?:\.{_HOST_LABEL})*(?::[0-9]+)?/)?"
    rf"{_REF_COMPONENT}(?:/{_REF_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
BUILD_ARG_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
IDENTITY_ID_RE = re.compile(
    r"^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.managedidentity/"
    r"userassignedidentities/[^/]+$",
    re.IGNORECASE,
)
MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)Gi$")
LIMIT_MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)(Gi|Mi)$")
MIN_LIMIT_MEMORY = 64 * 1024 * 1024  # less and the runtime cannot even import its packages
# ARM reads resource ids without regard to case (FACTS.md: the environment often lives in another group).
ENVIRONMENT_ID_RE = re.compile(
    r"^/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<group>[^/]+)/providers/Microsoft\.App/"
    r"managedEnvironments/(?P<name>[^/]+)$",
    re.IGNORECASE,
)
ENVIRONMENT_ID_FORM = (
    "/subscriptions/<subscription id>/resourceGroups/<resource group>/providers/Microsoft.App/"
    "managedEnvironments/<name>"
)
WORKLOAD_PROFILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
SECRET_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")  # Container Apps secret names
CONSUMPTION_PROFILE = "Consumption"  # the Consumption profile of a workload-profiles environment
CONSUMPTION_PROFILE_MAX_CPU = 4.0  # FACTS.md: up to 4 vCPU / 8Gi, 0.5Gi per 0.25 vCPU
DOCKER_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
# Azure Container Registry hosts: public cloud, Azure Government, Azure China (as image/registry.ACR_SUFFIXES).
ACR_SUFFIXES = (".azurecr.io", ".azurecr.us", ".azurecr.cn")

# Consumption plan cpu -> memory (Gi) pairs (FACTS.md).
CONSUMPTION_PAIRS = {0.25: 0.5, 0.5: 1.0, 0.75: 1.5, 1.0: 2.0, 1.25: 2.5, 1.5: 3.0, 1.75: 3.5, 2.0: 4.0}

# Fields of `deployment:` that may hold ${VAR}: runtime values and the Azure ids CI keeps out of
# files. Everything else shapes the image, and building must never need a variable.
RUNTIME_VERSION_RE = re.compile(r"^\d+(\.\d+){1,3}((a|b|rc)\d+)?(\.post\d+)?$")
PLACEHOLDER_FIELDS: frozenset[KeyPath] = frozenset(
    {
        ("deployment", "target", "azure", "subscription_id"),
        ("deployment", "target", "azure", "resource_group"),
        ("deployment", "target", "azure", "environment_name"),
        ("deployment", "target", "azure", "environment_id"),
        ("deployment", "target", "azure", "environment_resource_group"),
        ("deployment", "target", "azure", "auth", "client_id"),
        ("deployment", "target", "azure", "auth", "tenant_id"),
    }
)


def _fmt_gi(value: float) -> str:
    return f"{value:g}Gi"


@dataclass(frozen=True)
class EnvironmentRef:
    """A managed environment named by its full resource id."""

    subscription: str
    resource_group: str
    name: str


def parse_environment_id(value: str) -> EnvironmentRef | str:
    """The environment an id names, or what is wrong with it (placeholders stand for any one segment)."""
    match = ENVIRONMENT_ID_RE.match(value.strip())
    if match is None:
        parts = [part for part in value.split("/") if part]
        if len(parts) == 8 and parts[4].lower() == "providers" and parts[6].lower() != "managedenvironments":
            return f"it names a {parts[5]}/{parts[6]} resource, not a managed environment"
        if len(parts) == 8 and parts[4].lower() == "providers" and parts[5].lower() != "microsoft.app":
            return f"its provider is {parts[5]}, not Microsoft.App"
        return "it is not of the form " + ENVIRONMENT_ID_FORM
    subscription = match["subscription"]
    if not find_placeholders(subscription) and not UUID_RE.match(subscription):
        return f"its subscription {subscription!r} is not a subscription id (a UUID)"
    return EnvironmentRef(subscription, match["group"], match["name"])


def environment_name(azure: AzureTargetConfig) -> str | None:
    """The environment's name as the config gives it (environment_name, or the last segment of environment_id)."""
    if azure.environment_name is not None:
        return azure.environment_name
    if azure.environment_id is not None:
        return azure.environment_id.rstrip("/").rsplit("/", 1)[-1] or None
    return None


IpRange = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ip_range(value: str) -> IpRange | str:
    """An IPv4/IPv6 address (a range of one) or CIDR range, or what is wrong with it."""
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError:
        pass
    loose = _loose_range(value)
    if loose is None:
        return "is not an IP address or a CIDR range"
    return f"has bits set after its /{loose.prefixlen} prefix: the range is {loose}"


def _loose_range(value: str) -> IpRange | None:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None


def ip_ranges(values: Sequence[str]) -> tuple[str, ...]:
    """The CIDR ranges of a valid `ip_allow` (an address becomes /32 or /128), in the config's order."""
    ranges: list[str] = []
    for value in values:
        parsed = parse_ip_range(value)
        if not isinstance(parsed, str) and str(parsed) not in ranges:
            ranges.append(str(parsed))
    return tuple(ranges)


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
    for rule in (_registry_rules, _runtime_rules, _build_rules):
        found.extend(v for v in rule(deploy) if v.keys not in placeholder_keys)
    target = deploy.target
    if target.azure is not None:
        found.extend(_azure_rules(target.azure, deploy, agent_name))
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
    container_name = target.docker.container_name if target.docker else None
    if container_name is not None and not DOCKER_NAME_RE.match(container_name):
        found.append(
            Violation(
                ("deployment", "target", "docker", "container_name"),
                f"{container_name!r} is not a valid container name",
                "use letters, digits, '_', '.', '-' (starting with a letter or digit)",
            )
        )
    bind = target.docker.bind if target.docker else None
    if bind is not None and ("deployment", "target", "docker", "bind") not in placeholder_keys:
        try:
            ipaddress.ip_address(bind)
        except ValueError:
            found.append(
                Violation(
                    ("deployment", "target", "docker", "bind"),
                    f"{bind!r} is not an IP address",
                    "write 127.0.0.1 (this machine only, the default), 0.0.0.0 (every interface) or one address "
                    "of this machine",
                )
            )
    for index, path in enumerate((target.docker.writable if target.docker else None) or []):
        if not path.startswith("/") or posixpath.normpath(path) != path or path == "/":
            found.append(
                Violation(
                    ("deployment", "target", "docker", "writable", index),
                    f"{path!r} is not an absolute path below /",
                    "write the path inside the container, e.g. /opt/npm-cache (no '..', no trailing '/')",
                )
            )
    found.extend(_resource_rules(deploy))
    return found


def memory_bytes(value: str) -> int | None:
    """Bytes of a size written 2Gi or 512Mi (None when it is not one)."""
    match = LIMIT_MEMORY_RE.match(value)
    if match is None:
        return None
    return int(float(match.group(1)) * (1024**3 if match.group(2) == "Gi" else 1024**2))


def _resource_rules(deploy: DeploymentConfig) -> Iterator[Violation]:
    resources = deploy.resources
    if resources is None:
        return
    keys: KeyPath = ("deployment", "resources")
    if not resources.cpu > 0:
        yield Violation((*keys, "cpu"), f"cpu {resources.cpu:g} is not positive", "give the vCPU it needs, e.g. 1")
    size = memory_bytes(resources.memory)
    if size is None:
        yield Violation((*keys, "memory"), f"{resources.memory!r} is not a memory size", "write it as 2Gi or 512Mi")
    elif size < MIN_LIMIT_MEMORY:
        yield Violation(
            (*keys, "memory"), f"memory {resources.memory} is less than 64Mi", "give the agent at least 512Mi"
        )
    if resources.pids < 16:
        yield Violation(
            (*keys, "pids"),
            f"pids {resources.pids} is too few to run the runtime and its tools",
            "leave it out (512) or give at least 16",
        )


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


def _runtime_rules(deploy: DeploymentConfig) -> Iterator[Violation]:
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


def _azure_rules(azure: AzureTargetConfig, deploy: DeploymentConfig, agent_name: str) -> Iterator[Violation]:
    keys: KeyPath = ("deployment", "target", "azure")
    app_name = azure.app_name or agent_name
    where = (*keys, "app_name") if azure.app_name else ("name",)
    if not APP_NAME_RE.match(app_name) or "--" in app_name:
        yield Violation(
            where,
            f"{app_name!r} is not a valid Container Apps name",
            "2-32 characters: lower-case letters, digits and single '-', starting with a letter "
            "and ending with a letter or digit"
            + ("" if azure.app_name else "; or set deployment.target.azure.app_name"),
        )
    if single_placeholder(azure.subscription_id) is None and not UUID_RE.match(azure.subscription_id):
        yield Violation(
            (*keys, "subscription_id"),
            f"{azure.subscription_id!r} is not a subscription id (a UUID)",
            "copy it from `az account show --query id`, or write ${AZURE_SUBSCRIPTION_ID}",
        )
    yield from _environment_rules(azure)
    yield from _size_rules(azure)
    if not 0 <= azure.min_replicas <= 1000:
        yield Violation((*keys, "min_replicas"), "min_replicas must be 0 to 1000")
    if not 1 <= azure.max_replicas <= 1000:
        yield Violation((*keys, "max_replicas"), "max_replicas must be 1 to 1000")
    if azure.min_replicas > azure.max_replicas:
        yield Violation(
            (*keys, "min_replicas"),
            f"min_replicas {azure.min_replicas} is greater than max_replicas {azure.max_replicas}",
            "lower min_replicas or raise max_replicas",
        )
    identity = azure.registry_identity
    if identity is not None and identity != "system" and not IDENTITY_ID_RE.match(identity):
        yield Violation(
            (*keys, "registry_identity"),
            f"{identity!r} is neither 'system' nor a user-assigned identity id",
            "write system, or /subscriptions/<id>/resourceGroups/<rg>/providers/"
            "Microsoft.ManagedIdentity/userAssignedIdentities/<name>",
        )
    elif identity is not None and deploy.registry is not None:
        yield from _registry_identity_rule(deploy.registry)
    if deploy.rollout.strategy in ("blue-green", "canary") and azure.revision_mode == "single":
        strategy = deploy.rollout.strategy
        yield Violation(
            (*keys, "revision_mode"),
            f"{strategy} needs two active revisions, which single revision mode does not allow",
            f"set revision_mode: multiple, or remove it ({strategy} implies multiple)",
        )
    yield from _access_rules(azure)


def _registry_identity_rule(registry: RegistryConfig) -> Iterator[Violation]:
    """A managed identity pulls only from Azure Container Registry: with any other registry (ghcr.io is private by
    default) Container Apps could not pull the image, and the release would fail at its first revision."""
    host = registry.url.partition("/")[0].rsplit(":", 1)[0].lower()
    if host.endswith(ACR_SUFFIXES):
        return
    prefix = registry.credentials_env_prefix or "REGISTRY"
    where = (
        "the Action's registry-username and registry-password inputs"
        if prefix == "REGISTRY"
        else "the workflow step's env:"
    )
    yield Violation(
        ("deployment", "target", "azure", "registry_identity"),
        "registry_identity works only with Azure Container Registry (*.azurecr.io, *.azurecr.us, *.azurecr.cn), "
        f"and the image goes to {registry.url!r}",
        "push to an Azure Container Registry (registry.url: <name>.azurecr.io) and give this identity AcrPull on "
        f"it; or remove registry_identity and let Azure pull with registry credentials: {prefix}_USERNAME and "
        f"{prefix}_PASSWORD from secrets ({where}), a token that can read the image (for ghcr.io, whose packages "
        "are private by default, a personal access token with read:packages, and write:packages since it pushes too)",
    )


def _environment_rules(azure: AzureTargetConfig) -> Iterator[Violation]:
    """Exactly one way to name the managed environment: its name (and group), or its full id."""
    keys: KeyPath = ("deployment", "target", "azure")
    ways = "environment_name (with environment_resource_group when it is not the app's) or environment_id"
    if azure.environment_id is not None and azure.environment_name is not None:
        yield Violation(
            (*keys, "environment_id"),
            "environment_id and environment_name both name the Container Apps environment",
            f"keep one of them: {ways}",
            at_key=True,
        )
    elif azure.environment_id is not None and azure.environment_resource_group is not None:
        yield Violation(
            (*keys, "environment_resource_group"),
            "environment_resource_group does not go with environment_id: the id names the resource group",
            "remove environment_resource_group",
            at_key=True,
        )
    elif azure.environment_id is None and azure.environment_name is None:
        yield Violation(
            keys,
            "the Container Apps environment is not named",
            f"set {ways}",
            at_key=True,
        )
    name = environment_name(azure)
    if name is not None and "${" not in name and not AGENT_NAME_RE.match(name):
        field = "environment_name" if azure.environment_name is not None else "environment_id"
        yield Violation(
            (*keys, field),
            f"the environment name {name!r} is not one path segment: it names the agent's state file",
            f"use {AGENT_NAME_FORM}",
        )
    environment_id = azure.environment_id
    if environment_id is not None and single_placeholder(environment_id) is None:
        problem = parse_environment_id(environment_id)
        if isinstance(problem, str):
            yield Violation(
                (*keys, "environment_id"),
                f"{environment_id!r} is not a Container Apps environment id: {problem}",
                f"write {ENVIRONMENT_ID_FORM} (`az containerapp env show -n NAME -g GROUP --query id -o tsv` "
                "prints it)",
            )


def _size_rules(azure: AzureTargetConfig) -> Iterator[Violation]:
    """cpu/memory: the consumption pairs without a workload profile; on the Consumption profile of a
    workload-profiles environment up to 4 vCPU / 8Gi at 0.5Gi per 0.25 vCPU; on a dedicated profile the profile
    sets the limits (FACTS.md)."""
    keys: KeyPath = ("deployment", "target", "azure")
    profile = azure.workload_profile
    if profile is not None and not WORKLOAD_PROFILE_RE.match(profile):
        yield Violation(
            (*keys, "workload_profile"),
            f"{profile!r} is not a workload profile name",
            "write Consumption, or the name of a dedicated profile of the environment "
            "(`az containerapp env workload-profile list`)",
        )
    memory = MEMORY_RE.match(azure.memory)
    if memory is None:
        yield Violation((*keys, "memory"), f"{azure.memory!r} is not a memory size", "write it in Gi, e.g. 2Gi")
        return
    gibibytes = float(memory.group(1))
    if profile is None:
        if azure.cpu not in CONSUMPTION_PAIRS:
            yield Violation(
                (*keys, "cpu"),
                f"cpu {azure.cpu:g} is not a Container Apps size",
                "use one of " + ", ".join(f"{c:g}" for c in CONSUMPTION_PAIRS),
            )
        elif gibibytes != CONSUMPTION_PAIRS[azure.cpu]:
            yield Violation(
                (*keys, "memory"),
                f"memory {azure.memory} does not match cpu {azure.cpu:g} on the consumption plan",
                f"use memory: {_fmt_gi(CONSUMPTION_PAIRS[azure.cpu])} for cpu {azure.cpu:g} "
                "(pairs: " + ", ".join(f"{c:g}/{_fmt_gi(m)}" for c, m in CONSUMPTION_PAIRS.items()) + ")",
            )
        return
    if profile == CONSUMPTION_PROFILE:
        quarters = azure.cpu * 4
        if not 0 < azure.cpu <= CONSUMPTION_PROFILE_MAX_CPU or quarters != int(quarters):
            yield Violation(
                (*keys, "cpu"),
                f"cpu {azure.cpu:g} is not a size of the Consumption workload profile",
                f"use 0.25 to {CONSUMPTION_PROFILE_MAX_CPU:g} vCPU in steps of 0.25, or a dedicated workload_profile",
            )
        elif gibibytes != azure.cpu * 2:
            yield Violation(
                (*keys, "memory"),
                f"memory {azure.memory} does not match cpu {azure.cpu:g} on the Consumption workload profile",
                f"use memory: {_fmt_gi(azure.cpu * 2)} for cpu {azure.cpu:g} (0.5Gi per 0.25 vCPU, up to "
                f"{CONSUMPTION_PROFILE_MAX_CPU:g} vCPU / {_fmt_gi(CONSUMPTION_PROFILE_MAX_CPU * 2)})",
            )
        return
    # A dedicated profile: its machine size sets the limits, which the config cannot know.
    if azure.cpu <= 0:
        yield Violation((*keys, "cpu"), f"cpu {azure.cpu:g} is not positive", "give the vCPU the agent needs, e.g. 1")
    if gibibytes <= 0:
        yield Violation((*keys, "memory"), f"memory {azure.memory} is not positive", "give it in Gi, e.g. 2Gi")


def _access_rules(azure: AzureTargetConfig) -> Iterator[Violation]:
    """Who can reach the agent: HoloDeck serves without authentication (FACTS.md)."""
    keys: KeyPath = ("deployment", "target", "azure")
    seen: dict[str, int] = {}
    for index, value in enumerate(azure.ip_allow or []):
        parsed = parse_ip_range(value)
        if isinstance(parsed, str):
            loose = _loose_range(value)
            fix = (
                f"write {loose}"
                if loose is not None
                else "write an IPv4 or IPv6 address or a CIDR range, e.g. 203.0.113.7, 203.0.113.0/24 or 2001:db8::/32"
            )
            yield Violation((*keys, "ip_allow", index), f"{value!r} {parsed}", fix)
        elif str(parsed) in seen:
            yield Violation(
                (*keys, "ip_allow", index),
                f"{value!r} is listed twice (as item {seen[str(parsed)] + 1} too)",
                "remove one of them",
            )
        else:
            seen[str(parsed)] = index
    if azure.auth is not None:
        yield from _auth_rules(azure.auth)
    if azure.ingress_external and not azure.ip_allow and azure.auth is None:
        yield Violation(
            (*keys, "ingress_external"),
            "external ingress and neither ip_allow nor auth: anyone on the internet can chat with the agent, "
            "at your model's token cost; set deployment.target.azure.ip_allow or deployment.target.azure.auth",
            warning=True,
        )


def _auth_rules(auth: AzureAuthConfig) -> Iterator[Violation]:
    keys: KeyPath = ("deployment", "target", "azure", "auth")
    for name, value in (("client_id", auth.client_id), ("tenant_id", auth.tenant_id)):
        if single_placeholder(value) is None and not UUID_RE.match(value):
            what = "application (client) id" if name == "client_id" else "directory (tenant) id"
            yield Violation(
                (*keys, name),
                f"{value!r} is not an {what} (a UUID)",
                "copy it from the app registration's overview in the Entra admin center"
                + (", or write ${AZURE_TENANT_ID}" if name == "tenant_id" else ""),
            )
    setting = auth.client_secret_setting
    if setting is not None and not SECRET_NAME_RE.match(setting):
        yield Violation(
            (*keys, "client_secret_setting"),
            f"{setting!r} is not a Container Apps secret name",
            "name the app's secret: lower-case letters, digits, '-' and '.' (a deployment.secrets entry "
            "MY_SECRET is the app's secret my-secret)",
        )
