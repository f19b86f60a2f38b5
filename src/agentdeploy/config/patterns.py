"""The forms a deployment value must have (Container Apps names, registries, images, sizes, ids) and the small
parsers of ids, IP ranges and sizes that the rules and the targets share."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentdeploy.config.placeholders import find_placeholders
from agentdeploy.config.yamlsource import KeyPath

if TYPE_CHECKING:
    from agentdeploy.config.models import AzureTargetConfig

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


def fmt_gi(value: float) -> str:
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
    loose = loose_range(value)
    if loose is None:
        return "is not an IP address or a CIDR range"
    return f"has bits set after its /{loose.prefixlen} prefix: the range is {loose}"


def loose_range(value: str) -> IpRange | None:
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


def memory_bytes(value: str) -> int | None:
    """Bytes of a size written 2Gi or 512Mi (None when it is not one)."""
    match = LIMIT_MEMORY_RE.match(value)
    if match is None:
        return None
    return int(float(match.group(1)) * (1024**3 if match.group(2) == "Gi" else 1024**2))
