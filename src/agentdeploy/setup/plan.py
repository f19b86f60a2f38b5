"""The ordered `az` commands that set Azure up for one agent config (pure: AzureSetup in, SetupPlan out).

Two identities, never one: the deployer (the workflow signs in as it through GitHub OIDC: federated credentials,
Container Apps Contributor on the resource group, AcrPush on the registry) and the app's own pull identity
(target.azure.registry_identity: AcrPull, Key Vault Secrets User). Code in the container can get tokens for the
app's identity, so that one must never hold the deployer's rights.

Both are user-assigned managed identities, not app registrations: creating one needs rights on the resource group
only (an app registration needs a directory role many Azure users lack), it lives and goes with the resources, and
it is an ARM resource, so `--check` reads it with the same credential and API as every other step.
"""

from __future__ import annotations

import re

from agentdeploy.setup.model import (
    ACR_PULL,
    ACR_PUSH,
    CONTAINER_APPS_CONTRIBUTOR,
    GITHUB_ISSUER,
    KEY_VAULT_SECRETS_USER,
    MANAGED_IDENTITY_OPERATOR,
    AzureSetup,
    Command,
    EnvironmentExists,
    GroupExists,
    IdentityExists,
    IdentityRef,
    Role,
    RoleHeld,
    Scope,
    SetupPlan,
    Step,
    SubjectTrusted,
)
from agentdeploy.targets.azure.auth import GITHUB_AUDIENCE

DEPLOYER_PRINCIPAL = "DEPLOYER_PRINCIPAL_ID"
DEPLOYER_CLIENT = "DEPLOYER_CLIENT_ID"
PULL_PRINCIPAL = "PULL_PRINCIPAL_ID"
REGISTRY_ID = "REGISTRY_ID"
TENANT = "AZURE_TENANT_ID"
_CREDENTIAL_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


def plan_azure(setup: AzureSetup) -> SetupPlan:
    steps = [
        *_account_steps(setup),
        *_resource_steps(setup),
        *_deployer_steps(setup),
        *_pull_steps(setup),
        *_key_vault_steps(setup),
        _github_step(setup),
    ]
    return SetupPlan(tuple(steps), _notes(setup))


def subjects(setup: AzureSetup) -> list[tuple[str, str]]:
    """(credential name, subject) for every GitHub context the workflows sign in from (FACTS.md: Azure cannot
    match tag wildcards, so tag releases run in a GitHub environment)."""
    repo = f"repo:{setup.repository.slug}"
    found = [(f"github-{name}", f"{repo}:environment:{name}") for name in setup.github_environments]
    found += [(f"github-branch-{name}", f"{repo}:ref:refs/heads/{name}") for name in setup.branches]
    return [(_credential_name(name), subject) for name, subject in found]


def _credential_name(text: str) -> str:
    # Federated credential names: 3-120 letters, digits, '-' and '_', starting with a letter or digit.
    return _CREDENTIAL_NAME_CHARS.sub("-", text).strip("-_")[:120]


def _group_id(subscription: str, group: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{group}"


def _account_steps(setup: AzureSetup) -> list[Step]:
    return [
        Step(
            "subscription",
            f"Work in subscription {setup.subscription}",
            "every command below acts in this subscription; Container Apps and its logs need their resource "
            "providers registered once per subscription",
            (
                Command(("az", "account", "set", "--subscription", setup.subscription)),
                Command(("az", "provider", "register", "--namespace", "Microsoft.App", "--wait")),
                Command(("az", "provider", "register", "--namespace", "Microsoft.OperationalInsights", "--wait")),
                Command(("az", "account", "show", "--query", "tenantId", "--output", "tsv"), assign=TENANT),
            ),
        )
    ]


def _resource_steps(setup: AzureSetup) -> list[Step]:
    sub, group = setup.subscription, setup.resource_group
    steps = [
        Step(
            "resource-group",
            f"Resource group {group} in {setup.location}",
            "the container app goes here (target.azure.resource_group), and so do the identities below",
            (Command(("az", "group", "create", "--name", group, "--location", setup.location)),),
            (GroupExists(sub, group),),
        )
    ]
    environment = EnvironmentExists(setup.environment_subscription, setup.environment_group, setup.environment)
    elsewhere = _elsewhere(setup.environment_subscription, setup)
    if setup.environment_given_by_id:
        why = "the config names a shared environment by its id: it is made by its owners; created here only if missing"
    else:
        why = "the Container Apps environment the app runs in (target.azure.environment_name); created if missing"
    steps.append(
        Step(
            "environment",
            f"Container Apps environment {setup.environment} in {setup.environment_group}",
            why,
            (
                Command(
                    (
                        *("az", "containerapp", "env", "create", "--name", setup.environment),
                        *("--resource-group", setup.environment_group, "--location", setup.location, *elsewhere),
                    ),
                    unless=(
                        *("az", "containerapp", "env", "show", "--name", setup.environment),
                        *("--resource-group", setup.environment_group, *elsewhere),
                    ),
                ),
            ),
            (environment,),
        )
    )
    if setup.acr_name:
        steps.append(_registry_step(setup, setup.acr_name))
    return steps


def _registry_step(setup: AzureSetup, name: str) -> Step:
    return Step(
        "registry",
        f"Azure Container Registry {name}",
        f"the image is pushed to {setup.registry_host} and Container Apps pulls it from there; created (in the app's "
        "resource group) only if no registry has that name; its id scopes the roles below",
        (
            Command(
                ("az", "acr", "create", "--name", name, "--resource-group", setup.resource_group, "--sku", "Basic"),
                unless=("az", "acr", "show", "--name", name),
            ),
            Command(("az", "acr", "show", "--name", name, "--query", "id", "--output", "tsv"), assign=REGISTRY_ID),
        ),
    )


def _elsewhere(subscription: str, setup: AzureSetup) -> tuple[str, ...]:
    """--subscription for a resource outside the config's subscription (the commands work in that one)."""
    return ("--subscription", subscription) if subscription != setup.subscription else ()


def _identity_commands(identity: IdentityRef, setup: AzureSetup) -> list[Command]:
    where = ("--name", identity.name, "--resource-group", identity.resource_group)
    elsewhere = _elsewhere(identity.subscription, setup)
    return [Command(("az", "identity", "create", *where, "--location", setup.location, *elsewhere))]


def _show(identity: IdentityRef, setup: AzureSetup, field: str, variable: str) -> Command:
    elsewhere = _elsewhere(identity.subscription, setup)
    return Command(
        (
            *("az", "identity", "show", "--name", identity.name, "--resource-group", identity.resource_group),
            *(*elsewhere, "--query", field, "--output", "tsv"),
        ),
        assign=variable,
    )


def _role_step(key: str, identity: IdentityRef, principal: str, role: Role, scope: Scope, why: str) -> Step:
    return Step(
        key,
        f"{role.name} for {identity.name} on {scope.label}",
        why,
        (
            Command(
                (
                    *("az", "role", "assignment", "create", "--assignee-object-id", f"${principal}"),
                    *("--assignee-principal-type", "ServicePrincipal", "--role", role.name, "--scope", scope.shown),
                )
            ),
        ),
        (RoleHeld(identity, role, scope),),
    )


def _deployer_steps(setup: AzureSetup) -> list[Step]:
    deployer = setup.deployer
    steps = [
        Step(
            "deployer-identity",
            f"Deployer identity {deployer.name} (user-assigned managed identity)",
            "the workflow signs in to Azure as this identity through GitHub OIDC: no secret is stored anywhere",
            (
                *_identity_commands(deployer, setup),
                _show(deployer, setup, "principalId", DEPLOYER_PRINCIPAL),
                _show(deployer, setup, "clientId", DEPLOYER_CLIENT),
            ),
            (IdentityExists(deployer),),
        )
    ]
    for name, subject in subjects(setup):
        steps.append(
            Step(
                f"federated-credential:{name}",
                f"Trust GitHub tokens with subject {subject}",
                "GitHub sends this subject for a job of the repository in that environment (or on that branch); "
                "Azure matches it exactly, no wildcards",
                (
                    Command(
                        (
                            *("az", "identity", "federated-credential", "create", "--name", name),
                            *("--identity-name", deployer.name, "--resource-group", deployer.resource_group),
                            *("--issuer", GITHUB_ISSUER, "--subject", subject, "--audiences", GITHUB_AUDIENCE),
                        )
                    ),
                ),
                (SubjectTrusted(deployer, subject),),
            )
        )
    group = _group_id(setup.subscription, setup.resource_group)
    steps.append(
        _role_step(
            "deployer-role:resource-group",
            deployer,
            DEPLOYER_PRINCIPAL,
            CONTAINER_APPS_CONTRIBUTOR,
            Scope(group, f"resource group {setup.resource_group}", resource_id=group),
            "a release reads, creates, updates and deletes the container app, its revisions, secrets, auth config "
            "and lease tag (Microsoft.App/containerApps/*), and reads and joins the environment; nothing else",
        )
    )
    return steps + _deployer_extra_steps(setup)


def _deployer_extra_steps(setup: AzureSetup) -> list[Step]:
    steps = []
    deployer = setup.deployer
    same_group = (setup.environment_subscription, setup.environment_group.lower()) == (
        setup.subscription,
        setup.resource_group.lower(),
    )
    if not same_group:
        env_id = (
            _group_id(setup.environment_subscription, setup.environment_group)
            + f"/providers/Microsoft.App/managedEnvironments/{setup.environment}"
        )
        steps.append(
            _role_step(
                "deployer-role:environment",
                deployer,
                DEPLOYER_PRINCIPAL,
                CONTAINER_APPS_CONTRIBUTOR,
                Scope(env_id, f"environment {setup.environment}", resource_id=env_id),
                "the environment lives in another resource group: creating the app there needs "
                "Microsoft.App/managedEnvironments/read and join/action on it, scoped to that environment only",
            )
        )
    if setup.acr_name:
        steps.append(
            _role_step(
                "deployer-role:registry",
                deployer,
                DEPLOYER_PRINCIPAL,
                ACR_PUSH,
                _registry_scope(setup.acr_name),
                "the workflow pushes the image with an Entra token exchanged at the registry (no admin user)",
            )
        )
    return steps


def _registry_scope(name: str) -> Scope:
    return Scope(
        f"${REGISTRY_ID}",
        f"registry {name}",
        suffix=f"/providers/Microsoft.ContainerRegistry/registries/{name}",
    )


def _pull_steps(setup: AzureSetup) -> list[Step]:
    pull = setup.pull_identity
    if pull is None:
        return []
    steps = [
        Step(
            "pull-identity",
            f"The app's identity {pull.name} (target.azure.registry_identity)",
            "Container Apps pulls the image (and reads Key Vault references) as this identity; it exists before "
            "the app does, so it can hold its roles before the first revision pulls",
            (*_identity_commands(pull, setup), _show(pull, setup, "principalId", PULL_PRINCIPAL)),
            (IdentityExists(pull),),
        ),
        _role_step(
            "deployer-role:pull-identity",
            setup.deployer,
            DEPLOYER_PRINCIPAL,
            MANAGED_IDENTITY_OPERATOR,
            Scope(pull.id, f"identity {pull.name}", resource_id=pull.id),
            "giving the app this identity needs Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action on "
            "it, and the deployer gets it on this one identity only",
        ),
    ]
    if setup.acr_name:
        steps.append(
            _role_step(
                "pull-role:registry",
                pull,
                PULL_PRINCIPAL,
                ACR_PULL,
                _registry_scope(setup.acr_name),
                "Container Apps pulls the image with this identity (configuration.registries[].identity)",
            )
        )
    return steps


def _key_vault_steps(setup: AzureSetup) -> list[Step]:
    pull = setup.pull_identity
    if pull is None:
        return []
    steps = []
    for vault in setup.key_vaults:
        variable = "KEY_VAULT_ID_" + re.sub(r"[^A-Za-z0-9]", "_", vault).upper()
        step = _role_step(
            f"pull-role:key-vault:{vault}",
            pull,
            PULL_PRINCIPAL,
            KEY_VAULT_SECRETS_USER,
            Scope(f"${variable}", f"key vault {vault}", suffix=f"/providers/Microsoft.KeyVault/vaults/{vault}"),
            "the app's Key Vault secret references ({name, keyVaultUrl, identity}) are read with this identity; "
            "the vault must use Azure RBAC (not access policies)",
        )
        show = Command(("az", "keyvault", "show", "--name", vault, "--query", "id", "--output", "tsv"), assign=variable)
        steps.append(Step(step.key, step.title, step.why, (show, *step.commands), step.expects))
    return steps


def _github_step(setup: AzureSetup) -> Step:
    repo = setup.repository.slug
    commands = [
        Command(("gh", "api", "--method", "PUT", f"repos/{repo}/environments/{name}"))
        for name in setup.github_environments
    ]
    commands += [
        Command(("gh", "variable", "set", "AZURE_CLIENT_ID", "--repo", repo, "--body", f"${DEPLOYER_CLIENT}")),
        Command(("gh", "variable", "set", "AZURE_TENANT_ID", "--repo", repo, "--body", f"${TENANT}")),
        Command(("gh", "variable", "set", "AZURE_SUBSCRIPTION_ID", "--repo", repo, "--body", setup.subscription)),
    ]
    return Step(
        "github",
        f"GitHub environments and variables of {repo}",
        "the workflows run in these environments (the subjects above) and read vars.AZURE_CLIENT_ID, "
        "AZURE_TENANT_ID and AZURE_SUBSCRIPTION_ID (ids, not secrets); not read by --check",
        tuple(commands),
    )


def _notes(setup: AzureSetup) -> tuple[str, ...]:
    notes = [
        "run these as someone who may create resources and role assignments in the resource group (Owner, or "
        "Contributor plus Role Based Access Control Administrator)",
    ]
    if setup.unresolved:
        names = ", ".join(setup.unresolved)
        notes.append(
            f"the config's {names} is not set here: export it before running the commands (the shell fills it in)"
        )
    if setup.system_pull_identity:
        notes.append(
            "registry_identity: system exists only once the app does, so it cannot hold AcrPull before the first "
            "revision pulls: use a user-assigned identity (its id in target.azure.registry_identity)"
        )
    elif setup.acr_name and setup.pull_identity is None:
        notes.append(
            f"the config has no target.azure.registry_identity: Container Apps pulls from {setup.registry_host} with "
            "REGISTRY_USERNAME/REGISTRY_PASSWORD; a user-assigned identity with AcrPull needs no secret"
        )
    if setup.pull_identity and setup.pull_identity.subscription != setup.subscription and not setup.unresolved:
        notes.append(
            f"registry_identity is in subscription {setup.pull_identity.subscription}, not {setup.subscription}: "
            "check that it is the identity you mean (az identity show ... --query id)"
        )
    return tuple(notes)
