"""The inputs of an Azure set-up: the config's ids (its ${VAR}s filled in where they are set, else left for the
shell), the GitHub repository (--repo, GITHUB_REPOSITORY, or the git remote), and the options."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agentdeploy.config.placeholders import missing_variables, substitute
from agentdeploy.config.rules import EnvironmentRef, parse_environment_id
from agentdeploy.errors import ConfigError, Location, MissingVariablesError, Problem, UsageError
from agentdeploy.image.registry import ACR_SUFFIXES
from agentdeploy.setup.model import AzureSetup, IdentityRef, Repository

if TYPE_CHECKING:
    from agentdeploy.config.loader import LoadedConfig
    from agentdeploy.config.models import AzureTargetConfig

AZURE_KEYS = ("deployment", "target", "azure")
IDENTITY_ID = re.compile(
    r"^/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<group>[^/]+)"
    r"/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/(?P<name>[^/]+)/?$",
    re.IGNORECASE,
)
OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
REPO = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
REMOTE = re.compile(r"github\.com[:/](?P<owner>[^/]+)/(?P<name>[^/]+?)(?:\.git)?/?$")


@dataclass(frozen=True)
class SetupOptions:
    repository: str | None = None  # OWNER/NAME
    github_environments: Sequence[str] = ()
    branches: Sequence[str] = ()
    identity: str | None = None
    key_vaults: Sequence[str] = ()
    resolve_all: bool = False  # --check: every ${VAR} must be set (Azure is read with the real ids)


def azure_setup(
    config: LoadedConfig, environ: Mapping[str, str], options: SetupOptions, remote_url: str | None
) -> AzureSetup:
    azure = config.deploy.target.azure
    registry = config.deploy.registry
    if azure is None or registry is None:
        raise ConfigError(
            f"{config.path.name} has no Azure target to set up",
            location=Location(str(config.path)),
            hint="add deployment.target.azure (subscription_id, resource_group, environment_name) and "
            "deployment.registry, as in examples/azure-agent/agent.yaml",
        )
    ids, unresolved = _ids(config, azure, environ, resolve_all=options.resolve_all)
    environment = _environment(config, azure, ids)
    repository = _repository(options.repository, environ, remote_url)
    host = registry.url.split("/", 1)[0]
    acr = host.split(".", 1)[0] if host.lower().rsplit(":", 1)[0].endswith(ACR_SUFFIXES) else None
    pull = _pull_identity(config, azure.registry_identity)
    if options.key_vaults and pull is None:
        raise UsageError(
            "--key-vault needs the app's user-assigned identity: the config has no target.azure.registry_identity "
            "naming one",
            hint="create one (az identity create), put its id in target.azure.registry_identity, and run this again",
        )
    subscription, group = ids["subscription_id"], ids["resource_group"]
    return AzureSetup(
        agent=config.agent.name,
        subscription=subscription,
        resource_group=group,
        location=azure.location,
        environment_subscription=environment.subscription,
        environment_group=environment.resource_group,
        environment=environment.name,
        environment_given_by_id=azure.environment_id is not None,
        registry_host=host,
        acr_name=acr,
        pull_identity=pull,
        system_pull_identity=(azure.registry_identity or "").lower() == "system",
        deployer=IdentityRef(subscription, group, options.identity or _deployer_name(repository)),
        repository=repository,
        github_environments=tuple(options.github_environments or ("production", f"production-{config.agent.name}")),
        branches=tuple(options.branches or ("main",)),
        key_vaults=tuple(options.key_vaults),
        unresolved=unresolved,
    )


def _ids(
    config: LoadedConfig, azure: AzureTargetConfig, environ: Mapping[str, str], *, resolve_all: bool
) -> tuple[dict[str, str], tuple[str, ...]]:
    """The Azure ids with each ${VAR} filled in when set; unset ones stay `${VAR}` (the shell expands them), or,
    when Azure is to be read, are an error naming each one where the config uses it."""
    ids: dict[str, str] = {}
    unresolved: list[str] = []
    problems: list[Problem] = []
    for key in (
        "subscription_id",
        "resource_group",
        "environment_name",
        "environment_id",
        "environment_resource_group",
    ):
        value = getattr(azure, key)
        if value is None:
            continue
        missing = missing_variables(value, environ)
        unresolved += [name for name in missing if name not in unresolved]
        problems += [
            Problem(f"${{{name}}} is not set", config.locate((*AZURE_KEYS, key)), key=".".join((*AZURE_KEYS, key)))
            for name in missing
        ]
        ids[key] = substitute(value, {**{name: f"${{{name}}}" for name in missing}, **environ})
    if problems and resolve_all:
        raise MissingVariablesError(
            f"{len(unresolved)} environment variable(s) needed to read Azure are not set: " + ", ".join(unresolved),
            problems=problems,
            hint="export them (the same values the workflow gives the deploy)",
        )
    return ids, tuple(unresolved)


def _environment(config: LoadedConfig, azure: AzureTargetConfig, ids: Mapping[str, str]) -> EnvironmentRef:
    if "environment_id" in ids:
        parsed = parse_environment_id(ids["environment_id"])
        if isinstance(parsed, str):
            keys = (*AZURE_KEYS, "environment_id")
            raise ConfigError(
                f"environment_id is not a Container Apps environment id: {parsed}",
                problems=[Problem(parsed, config.locate(keys), key=".".join(keys))],
            )
        return parsed
    group = ids.get("environment_resource_group") or ids["resource_group"]
    return EnvironmentRef(ids["subscription_id"], group, ids.get("environment_name") or "")


def _pull_identity(config: LoadedConfig, value: str | None) -> IdentityRef | None:
    if not value or value.lower() == "system":
        return None
    match = IDENTITY_ID.match(value.strip())
    if match is None:
        keys = (*AZURE_KEYS, "registry_identity")
        raise ConfigError(
            "registry_identity is neither 'system' nor a user-assigned identity id",
            problems=[Problem(repr(value), config.locate(keys), key=".".join(keys))],
            hint="/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.ManagedIdentity/"
            "userAssignedIdentities/<name> (az identity show -g <group> -n <name> --query id -o tsv)",
        )
    return IdentityRef(match["subscription"], match["group"], match["name"])


def _repository(given: str | None, environ: Mapping[str, str], remote_url: str | None) -> Repository:
    """--repo, else GITHUB_REPOSITORY (inside a workflow), else the git remote `origin` on github.com."""
    text, source = given, "--repo"
    if not text and environ.get("GITHUB_REPOSITORY"):
        text, source = environ["GITHUB_REPOSITORY"], "GITHUB_REPOSITORY"
    if not text and remote_url:
        match = REMOTE.search(remote_url.strip())
        text, source = (f"{match['owner']}/{match['name']}" if match else None), "the git remote origin"
    if not text:
        raise UsageError(
            "cannot tell which GitHub repository deploys this agent: no --repo, no GITHUB_REPOSITORY, and no "
            "git remote origin on github.com",
            hint="pass --repo OWNER/NAME (the federated credentials trust that repository's workflows only)",
        )
    owner, _, name = text.partition("/")
    if not OWNER.match(owner) or not REPO.match(name) or name in (".", ".."):
        raise UsageError(f"{source} gives {text!r}, which is not a GitHub repository", hint="use OWNER/NAME")
    return Repository(owner, name)


def _deployer_name(repository: Repository) -> str:
    # Identity names: 3-128 letters, digits, '-' and '_', starting with a letter or digit.
    return re.sub(r"[^A-Za-z0-9_-]+", "-", f"agentdeploy-{repository.name}")[:128]


def remote_url(directory: Path) -> str | None:
    """The URL of the git remote `origin` of the checkout holding `directory`, if any."""
    from agentdeploy.git import run_git

    try:
        result = run_git(directory, ["remote", "get-url", "origin"])
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None
