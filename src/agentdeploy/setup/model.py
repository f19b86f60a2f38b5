"""What an Azure set-up is made of: the inputs a config gives, the steps (each with its `az` commands and what it
is for), and what `--check` reads to tell whether a step is done. Plain data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"  # the `iss` of every GitHub Actions OIDC token
# Built-in role ids (the same in every tenant: Learn, "Azure built-in roles").
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"


@dataclass(frozen=True)
class Role:
    name: str
    id: str
    also: tuple[str, ...] = ()  # ids of broader built-in roles that grant what this one does

    def grants(self, role_id: str) -> bool:
        return role_id.lower() in (self.id, *self.also)


CONTAINER_APPS_CONTRIBUTOR = Role(
    "Container Apps Contributor", "358470bc-b998-42bd-ab17-a7e34c199c0f", (OWNER, CONTRIBUTOR)
)
ACR_PUSH = Role("AcrPush", "8311e382-0749-4cb8-b61a-304f252e45ec", (OWNER, CONTRIBUTOR))
ACR_PULL = Role("AcrPull", "7f951dda-4ed3-4680-a7ca-43fe172d538d", (ACR_PUSH.id, OWNER, CONTRIBUTOR))
MANAGED_IDENTITY_OPERATOR = Role(
    "Managed Identity Operator",
    "f1a07417-d97a-45cb-824c-7a7467783830",
    ("e40ec5ca-96e0-45a2-b4ff-59039f2c2b59", OWNER, CONTRIBUTOR),  # Managed Identity Contributor
)
KEY_VAULT_SECRETS_USER = Role(
    "Key Vault Secrets User",
    "4633458b-17de-408a-b874-0445c86b69e6",
    ("b86a8fe4-44ce-4948-aee5-eccb2c155cd7", "00482a5a-887f-4fb3-b363-3b7fe8e74483"),  # Secrets Officer, Administrator
)
ROLE_NAMES = {
    role.id: role.name
    for role in (CONTAINER_APPS_CONTRIBUTOR, ACR_PUSH, ACR_PULL, MANAGED_IDENTITY_OPERATOR, KEY_VAULT_SECRETS_USER)
} | {OWNER: "Owner", CONTRIBUTOR: "Contributor"}


@dataclass(frozen=True)
class IdentityRef:
    """A user-assigned managed identity."""

    subscription: str
    resource_group: str
    name: str

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{self.name}"
        )


@dataclass(frozen=True)
class Repository:
    owner: str
    name: str

    @property
    def slug(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True)
class AzureSetup:
    """Everything the steps depend on, resolved from the config, the repository and the options."""

    agent: str
    subscription: str
    resource_group: str
    location: str
    environment_subscription: str
    environment_group: str
    environment: str
    environment_given_by_id: bool  # environment_id: someone else's (shared) environment, not ours to create
    registry_host: str
    acr_name: str | None  # the registry's name when it is an Azure Container Registry
    pull_identity: IdentityRef | None  # target.azure.registry_identity, when it is a user-assigned identity
    system_pull_identity: bool  # registry_identity: system
    deployer: IdentityRef
    repository: Repository
    github_environments: tuple[str, ...]
    branches: tuple[str, ...]
    key_vaults: tuple[str, ...]
    unresolved: tuple[str, ...] = ()  # ${VAR}s of the config left for the shell to expand


@dataclass(frozen=True)
class Scope:
    """Where a role is assigned: `shown` is the --scope argument (a shell variable when the id is looked up by an
    earlier command); `resource_id` the id when known here, else `suffix`, the end of the id (a registry or vault
    whose resource group the config does not say)."""

    shown: str
    label: str
    resource_id: str = ""
    suffix: str = ""


# What --check reads to tell whether a step is done.
@dataclass(frozen=True)
class GroupExists:
    subscription: str
    resource_group: str


@dataclass(frozen=True)
class EnvironmentExists:
    subscription: str
    resource_group: str
    name: str


@dataclass(frozen=True)
class IdentityExists:
    identity: IdentityRef


@dataclass(frozen=True)
class SubjectTrusted:
    identity: IdentityRef
    subject: str


@dataclass(frozen=True)
class RoleHeld:
    identity: IdentityRef
    role: Role
    scope: Scope


Expectation = GroupExists | EnvironmentExists | IdentityExists | SubjectTrusted | RoleHeld


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    assign: str | None = None  # NAME=$(command): its output is kept for the commands after it
    # A read that succeeds when the thing exists: then this command is not run (`unless || command`), so running
    # the script again, or on an existing environment or registry, never rewrites their settings.
    unless: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Step:
    key: str  # stable, for --json and scripts: resource-group, federated-credential:production, ...
    title: str
    why: str
    commands: tuple[Command, ...]
    expects: tuple[Expectation, ...] = ()  # none: --check cannot read it (a registry, GitHub)


@dataclass(frozen=True)
class SetupPlan:
    steps: tuple[Step, ...]
    notes: tuple[str, ...]
