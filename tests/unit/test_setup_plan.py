"""`agentdeploy setup azure CONFIG`: the ordered az commands a config needs, as JSON and as a shell script that
runs as exactly those commands."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from agentdeploy.errors import ExitCode
from setupkit import PULL_ID, RG, SUB, run, write_setup_agent
from testkit import git

ENVIRON = {"AZURE_SUBSCRIPTION_ID": SUB, "PATH": "/usr/bin:/bin"}
ISSUER = "https://token.actions.githubusercontent.com"


def plan_of(config: Path, *extra: str, environ: dict[str, str] | None = None) -> dict[str, object]:
    code, out, err = run(environ or ENVIRON, "setup", "azure", str(config), "--json", *extra)
    assert code == ExitCode.OK, err
    return json.loads(out)


def step(plan: dict[str, object], key: str) -> dict[str, object]:
    steps = plan["steps"]
    assert isinstance(steps, list)
    return next(s for s in steps if s["key"] == key)


def test_an_acr_agent_gets_every_step_in_order_with_least_privilege_roles(tmp_path: Path) -> None:
    plan = plan_of(write_setup_agent(tmp_path / "agent"), "--repo", "acme/agents")
    assert [s["key"] for s in plan["steps"]] == [
        "subscription",
        "resource-group",
        "environment",
        "registry",
        "deployer-identity",
        "federated-credential:github-production",
        "federated-credential:github-production-faq-agent",
        "federated-credential:github-branch-main",
        "deployer-role:resource-group",
        "deployer-role:registry",
        "pull-identity",
        "deployer-role:pull-identity",
        "pull-role:registry",
        "github",
    ]
    assert step(plan, "federated-credential:github-production")["argv"] == [
        [
            *("az", "identity", "federated-credential", "create", "--name", "github-production"),
            *("--identity-name", "agentdeploy-agents", "--resource-group", RG, "--issuer", ISSUER),
            *("--subject", "repo:acme/agents:environment:production", "--audiences", "api://AzureADTokenExchange"),
        ]
    ]
    assert (
        step(plan, "federated-credential:github-branch-main")["argv"][0][13] == "repo:acme/agents:ref:refs/heads/main"
    )
    role = ["az", "role", "assignment", "create", "--assignee-object-id"]
    assert step(plan, "deployer-role:resource-group")["argv"] == [
        [
            *(*role, "$DEPLOYER_PRINCIPAL_ID", "--assignee-principal-type", "ServicePrincipal"),
            *("--role", "Container Apps Contributor", "--scope", f"/subscriptions/{SUB}/resourceGroups/{RG}"),
        ]
    ]
    assert step(plan, "deployer-role:registry")["argv"][0][-4:] == ["--role", "AcrPush", "--scope", "$REGISTRY_ID"]
    assert step(plan, "deployer-role:pull-identity")["argv"][0][-4:] == [
        "--role",
        "Managed Identity Operator",
        "--scope",
        PULL_ID,
    ]
    assert step(plan, "pull-role:registry")["argv"][0][5:] == [
        "$PULL_PRINCIPAL_ID",
        "--assignee-principal-type",
        "ServicePrincipal",
        "--role",
        "AcrPull",
        "--scope",
        "$REGISTRY_ID",
    ]
    assert step(plan, "registry")["commands"][1] == (
        "REGISTRY_ID=$(az acr show --name myagents --query id --output tsv)"
    )
    assert [s["checked"] for s in plan["steps"]].count(False) == 3  # subscription, registry, github
    roles = {s["argv"][0][-3] for s in plan["steps"] if "-role:" in s["key"]}
    assert roles == {"Container Apps Contributor", "AcrPush", "Managed Identity Operator", "AcrPull"}  # no Contributor


def test_the_script_runs_as_exactly_the_planned_commands(tmp_path: Path) -> None:
    """The printed script, run by bash with az and gh standing in as recorders: every command gets exactly the
    planned arguments (quoting kept a subject with a space whole; ${AZURE_SUBSCRIPTION_ID} and the variables the
    script sets from earlier commands' output were filled in by the shell)."""
    config = write_setup_agent(tmp_path / "agent")
    extra = ("--repo", "acme/agents", "--github-environment", "prod west")
    environ = {"PATH": "/usr/bin:/bin"}  # the subscription is left to the shell
    code, text, err = run(environ, "setup", "azure", str(config), *extra)
    assert code == ExitCode.OK, err
    assert 'az account set --subscription "${AZURE_SUBSCRIPTION_ID}"' in text.splitlines()
    plan = plan_of(config, *extra, environ=environ)
    log = tmp_path / "calls"
    # Each stand-in records its arguments (NUL-separated, one call a line) and prints out-<tool>-<call number>;
    # `az ... show` without --query fails, as for a resource that does not exist yet.
    stubs = (
        f'record() {{ printf "%s\\0" "$@" >> {log}; printf "\\n" >> {log}; echo "out-$1-$(wc -l < {log})"; }}\n'
        'az() { record az "$@"; case " $* " in *" show "*"--query "*) ;; *" show "*) return 3 ;; esac; }\n'
        'gh() { record gh "$@"; }\nset -eu\n'
    )
    subprocess.run(
        ["bash", "-c", stubs + text],
        check=True,
        stdout=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "AZURE_SUBSCRIPTION_ID": SUB},
    )
    calls = [line.split("\0") for line in log.read_text().split("\0\n")[:-1]]
    expected, variables = [], {}
    for planned in plan["steps"]:
        for rendered, argv, unless in zip(planned["commands"], planned["argv"], planned["unless"], strict=True):
            if unless:  # read first; it fails here (nothing exists), so the create runs
                expected.append(unless)
            words = [variables.get(w, w.replace("${AZURE_SUBSCRIPTION_ID}", SUB)) for w in argv]
            expected.append(words)
            if "=$(" in rendered.split(" ", 1)[0]:
                variables["$" + rendered.split("=", 1)[0]] = f"out-{argv[0]}-{len(expected)}"
    assert calls == expected
    assert set(variables) == {
        "$AZURE_TENANT_ID",
        "$REGISTRY_ID",
        "$DEPLOYER_PRINCIPAL_ID",
        "$DEPLOYER_CLIENT_ID",
        "$PULL_PRINCIPAL_ID",
    }
    subjects = [c[c.index("--subject") + 1] for c in calls if "--subject" in c]
    assert subjects == ["repo:acme/agents:environment:prod west", "repo:acme/agents:ref:refs/heads/main"]
    assert [c[c.index("--name") + 1] for c in calls if "--subject" in c] == ["github-prod-west", "github-branch-main"]


def test_a_shared_environment_in_another_group_gets_a_role_scoped_to_it(tmp_path: Path) -> None:
    env_id = f"/subscriptions/{SUB}/resourceGroups/platform-rg/providers/Microsoft.App/managedEnvironments/shared-env"
    config = write_setup_agent(tmp_path / "agent", environment=f"environment_id: {env_id}")
    plan = plan_of(config, "--repo", "acme/agents")
    environment = step(plan, "environment")
    assert environment["argv"][0][4:8] == ["--name", "shared-env", "--resource-group", "platform-rg"]
    assert "shared environment" in environment["why"]
    scoped = step(plan, "deployer-role:environment")
    assert scoped["argv"][0][-4:] == ["--role", "Container Apps Contributor", "--scope", env_id]
    assert [s["key"] for s in plan["steps"]].index("deployer-role:environment") == 9  # right after the group's role


def test_a_ghcr_agent_has_no_registry_steps(tmp_path: Path) -> None:
    config = write_setup_agent(tmp_path / "agent", registry="ghcr.io", registry_identity=None)
    plan = plan_of(config, "--repo", "acme/agents", "--github-environment", "staging", "--branch", "release")
    assert [s["key"] for s in plan["steps"]] == [
        "subscription",
        "resource-group",
        "environment",
        "deployer-identity",
        "federated-credential:github-staging",
        "federated-credential:github-branch-release",
        "deployer-role:resource-group",
        "github",
    ]
    assert not any("registry_identity" in note for note in plan["notes"])  # AcrPull is for ACR only


def test_an_acr_agent_without_a_pull_identity_is_told_how_azure_will_pull(tmp_path: Path) -> None:
    plan = plan_of(write_setup_agent(tmp_path / "agent", registry_identity=None), "--repo", "acme/agents")
    assert "pull-role:registry" not in [s["key"] for s in plan["steps"]]
    assert (
        "the config has no target.azure.registry_identity: Container Apps pulls from myagents.azurecr.io with "
        "REGISTRY_USERNAME/REGISTRY_PASSWORD; a user-assigned identity with AcrPull needs no secret"
    ) in plan["notes"]


def test_the_repository_comes_from_the_git_remote(tmp_path: Path) -> None:
    config = write_setup_agent(tmp_path / "agent")
    git(tmp_path / "agent", "init", "-q")
    code, _, err = run(ENVIRON, "setup", "azure", str(config))
    assert code == ExitCode.USAGE
    assert err.splitlines()[0] == (
        "error: cannot tell which GitHub repository deploys this agent: no --repo, no GITHUB_REPOSITORY, and no git "
        "remote origin on github.com"
    )
    git(tmp_path / "agent", "remote", "add", "origin", "git@github.com:Acme-Labs/faq.bot.git")
    plan = plan_of(config)
    assert step(plan, "deployer-identity")["argv"][0][4] == "agentdeploy-faq-bot"
    assert step(plan, "federated-credential:github-production")["argv"][0][13] == (
        "repo:Acme-Labs/faq.bot:environment:production"
    )
    plan = plan_of(config, environ={**ENVIRON, "GITHUB_REPOSITORY": "other/repo"})  # inside a workflow
    assert step(plan, "github")["argv"][0][4] == "repos/other/repo/environments/production"
    code, _, err = run(ENVIRON, "setup", "azure", str(config), "--repo", "not a repo")
    assert code == ExitCode.USAGE and "--repo gives 'not a repo', which is not a GitHub repository" in err


def test_key_vault_access_goes_to_the_apps_identity(tmp_path: Path) -> None:
    config = write_setup_agent(tmp_path / "agent")
    plan = plan_of(config, "--repo", "acme/agents", "--key-vault", "agents-kv")
    vault = step(plan, "pull-role:key-vault:agents-kv")
    assert vault["commands"][0] == "KEY_VAULT_ID_AGENTS_KV=$(az keyvault show --name agents-kv --query id --output tsv)"
    assert vault["argv"][1][5:] == [
        "$PULL_PRINCIPAL_ID",
        "--assignee-principal-type",
        "ServicePrincipal",
        "--role",
        "Key Vault Secrets User",
        "--scope",
        "$KEY_VAULT_ID_AGENTS_KV",
    ]
    bare = write_setup_agent(tmp_path / "bare", registry_identity=None)
    code, out, err = run(ENVIRON, "setup", "azure", str(bare), "--repo", "acme/agents", "--key-vault", "agents-kv")
    assert code == ExitCode.USAGE and out == ""
    assert "--key-vault needs the app's user-assigned identity" in err


def test_check_needs_every_variable_the_ids_use(tmp_path: Path) -> None:
    config = write_setup_agent(tmp_path / "agent")
    code, out, err = run({"PATH": "/usr/bin:/bin"}, "setup", "azure", str(config), "--repo", "a/b", "--check")
    assert code == ExitCode.CONFIG and out == ""
    assert err.splitlines()[0] == (
        "error: 1 environment variable(s) needed to read Azure are not set: AZURE_SUBSCRIPTION_ID"
    )
    assert f"{config}:9:24: deployment.target.azure.subscription_id: ${{AZURE_SUBSCRIPTION_ID}} is not set" in err


def test_a_config_without_an_azure_target_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    (tmp_path / "prompt.md").write_text("hi")
    config.write_text("name: local\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {file: prompt.md}\n")
    code, out, err = run(ENVIRON, "setup", "azure", str(config), "--repo", "a/b")
    assert code == ExitCode.CONFIG and out == ""
    assert "agent.yaml has no Azure target to set up" in err.splitlines()[0]


def test_an_environment_in_another_subscription_is_read_and_scoped_there(tmp_path: Path) -> None:
    other = "9c8d7e6f-0000-4000-8000-123456789abc"
    env_id = f"/subscriptions/{other}/resourceGroups/platform-rg/providers/Microsoft.App/managedEnvironments/shared-env"
    plan = plan_of(write_setup_agent(tmp_path / "agent", environment=f"environment_id: {env_id}"), "--repo", "a/b")
    environment = step(plan, "environment")
    assert environment["unless"][0][-2:] == ["--subscription", other]
    assert environment["argv"][0][-2:] == ["--subscription", other]
    assert step(plan, "deployer-role:environment")["argv"][0][-1] == env_id
    same = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.App/managedEnvironments/agents-env"
    plan = plan_of(write_setup_agent(tmp_path / "same", environment=f"environment_id: {same}"), "--repo", "a/b")
    assert "deployer-role:environment" not in [s["key"] for s in plan["steps"]]  # the group's role covers it
