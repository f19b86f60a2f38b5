"""Rules of the Azure Container Apps target: names, sizes, the managed environment, who may reach the app, and how
Azure pulls the image (FACTS.md)."""

from __future__ import annotations

from collections.abc import Iterator

from agentdeploy.config.models import AzureAuthConfig, AzureTargetConfig, DeploymentConfig, RegistryConfig
from agentdeploy.config.patterns import (
    ACR_SUFFIXES,
    AGENT_NAME_FORM,
    AGENT_NAME_RE,
    APP_NAME_RE,
    CONSUMPTION_PAIRS,
    CONSUMPTION_PROFILE,
    CONSUMPTION_PROFILE_MAX_CPU,
    ENVIRONMENT_ID_FORM,
    IDENTITY_ID_RE,
    MEMORY_RE,
    SECRET_NAME_RE,
    UUID_RE,
    WORKLOAD_PROFILE_RE,
    environment_name,
    fmt_gi,
    loose_range,
    parse_environment_id,
    parse_ip_range,
)
from agentdeploy.config.placeholders import single_placeholder
from agentdeploy.config.violation import Violation
from agentdeploy.config.yamlsource import KeyPath


def azure_rules(azure: AzureTargetConfig, deploy: DeploymentConfig, agent_name: str) -> Iterator[Violation]:
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
    if deploy.rollout.strategy == "blue-green" and azure.revision_mode == "single":
        yield Violation(
            (*keys, "revision_mode"),
            "blue-green needs two active revisions, which single revision mode does not allow",
            "set revision_mode: multiple, or remove it (blue-green implies multiple)",
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
                f"use memory: {fmt_gi(CONSUMPTION_PAIRS[azure.cpu])} for cpu {azure.cpu:g} "
                "(pairs: " + ", ".join(f"{c:g}/{fmt_gi(m)}" for c, m in CONSUMPTION_PAIRS.items()) + ")",
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
                f"use memory: {fmt_gi(azure.cpu * 2)} for cpu {azure.cpu:g} (0.5Gi per 0.25 vCPU, up to "
                f"{CONSUMPTION_PROFILE_MAX_CPU:g} vCPU / {fmt_gi(CONSUMPTION_PROFILE_MAX_CPU * 2)})",
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
            loose = loose_range(value)
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
