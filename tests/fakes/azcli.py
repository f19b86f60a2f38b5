"""Stand-ins for the `az` and `gh` commands that `agentdeploy setup azure` prints, for running its script against
the fake Azure as a process (tests/fakes/serve.py), as a newcomer runs it against Azure (tests/action/
test_newcomer_azure.py puts them on PATH as `az` and `gh`).

    python tests/fakes/azcli.py az identity create --name agentdeploy-agents --resource-group agents-rg ...

What each command does to Azure is the Azure CLI's documented effect (learn.microsoft.com/cli/azure: `az identity`,
`az identity federated-credential`, `az role assignment create`, `az containerapp env`, `az acr`), done to the fake:
its writes through the fake's /_fake/ routes (fakes.control, fakes.rbac: the fake's ARM only reads identities and
role assignments), its reads through ARM with the logged-in token (AZ_TOKEN, which the test allows on the fake with
POST /_fake/tokens, as `az login` would give one). An Azure Container Registry, which the fake does not serve, and
GitHub's environments and variables (`gh`) are kept in JSON files under $STAND_IN_STATE. A command the script
could print that this does not know fails (exit 2), so the script cannot pass by skipping a step.

Environment: AGENTDEPLOY_ARM_ENDPOINT, REQUESTS_CA_BUNDLE (the fake's), AZURE_SUBSCRIPTION_ID (the logged-in
subscription: `--subscription` naming another is "not found", as for a login that has only this one),
AZURE_TENANT_ID, STAND_IN_STATE.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import requests

AZ_TOKEN = "az-login-token-of-the-newcomer"
# Azure's built-in role ids (learn.microsoft.com/azure/role-based-access-control/built-in-roles): what
# `az role assignment create --role NAME` resolves the name to.
BUILT_IN_ROLES = {
    "Container Apps Contributor": "358470bc-b998-42bd-ab17-a7e34c199c0f",
    "AcrPush": "8311e382-0749-4cb8-b61a-304f252e45ec",
    "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
    "Managed Identity Operator": "f1a07417-d97a-45cb-824c-7a7467783830",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
}


def _options(words: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command's words (`identity show`, `api repos/...`), and its --flag value pairs (no value: "true")."""
    positional, options = [], {}
    while words:
        word = words.pop(0)
        if word.startswith("--"):
            options[word] = words.pop(0) if words and not words[0].startswith("--") else "true"
        else:
            positional.append(word)
    return positional, options


class _StandIn:
    """The real tools' effect on the fake: az's writes through the fake's /_fake/ routes (what Azure's own APIs
    would create), its reads through ARM with the logged-in token; gh's writes kept in files the test reads."""

    def __init__(self) -> None:
        self.state = Path(os.environ["STAND_IN_STATE"])
        self.endpoint = os.environ["AGENTDEPLOY_ARM_ENDPOINT"]
        self.subscription = os.environ["AZURE_SUBSCRIPTION_ID"]

    def arm(self, path: str, api_version: str) -> requests.Response:
        return requests.get(
            f"{self.endpoint}{path}",
            params={"api-version": api_version},
            headers={"Authorization": f"Bearer {AZ_TOKEN}"},
            timeout=30,
        )

    def control(self, route: str, body: dict[str, Any]) -> Any:
        answer = requests.post(f"{self.endpoint}/_fake/{route}", data=json.dumps(body), timeout=30)
        if not answer.ok:
            raise SystemExit(f"ERROR: {answer.text}")
        return answer.json()

    def keep(self, name: str, value: Any) -> None:
        (self.state / name).write_text(json.dumps(value))

    def kept(self, name: str, default: Any) -> Any:
        path = self.state / name
        return json.loads(path.read_text()) if path.exists() else default

    def az(self, command: list[str], o: dict[str, str]) -> int:
        sub = o.pop("--subscription", self.subscription) if command != ["account", "set"] else self.subscription
        if sub != self.subscription:  # the newcomer's login has this one subscription
            return _fail(f"(SubscriptionNotFound) The subscription '{sub}' could not be found.")
        group = f"/subscriptions/{sub}/resourceGroups/{o.get('--resource-group', '')}"
        if command == ["account", "set"]:
            return 0 if o["--subscription"] == sub else _fail(f"subscription {o['--subscription']} not found")
        if command == ["provider", "register"]:
            return 0
        if command == ["account", "show"] and o == {"--query": "tenantId", "--output": "tsv"}:
            print(os.environ["AZURE_TENANT_ID"])
            return 0
        if command == ["group", "create"]:  # an existing group is left as it is
            found = self.arm(f"/subscriptions/{sub}/resourcegroups/{o['--name']}", "2022-09-01")
            if found.status_code == 404:
                self.control("resource-groups", {"subscription": sub, "name": o["--name"], "location": o["--location"]})
            return 0
        if command == ["containerapp", "env", "show"]:
            path = f"{group}/providers/Microsoft.App/managedEnvironments/{o['--name']}"
            return 0 if self.arm(path, "2024-03-01").status_code == 200 else 3  # az: 3 for ResourceNotFound
        if command == ["containerapp", "env", "create"]:
            body = {"subscription": sub, "resource_group": o["--resource-group"], "name": o["--name"]}
            self.control("environments", body | {"location": o["--location"]})
            return 0
        if command[:2] == ["acr", "show"] or command[:2] == ["acr", "create"]:
            return self.registry(command[1], o)
        if command == ["identity", "create"]:
            self.control(
                "identities", {"subscription": sub, "resource_group": o["--resource-group"], "name": o["--name"]}
            )
            return 0
        if command == ["identity", "show"] and o.get("--output") == "tsv":
            path = f"{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{o['--name']}"
            found = self.arm(path, "2023-01-31")
            if found.status_code != 200:
                return _fail(found.text)
            print(found.json()["properties"][o["--query"]])
            return 0
        if command == ["identity", "federated-credential", "create"]:
            route = f"identities/{sub}/{o['--resource-group']}/{o['--identity-name']}/credentials"
            body = {"name": o["--name"], "subject": o["--subject"], "issuer": o["--issuer"]}
            self.control(route, body | {"audiences": o["--audiences"].split()})
            return 0
        if command == ["role", "assignment", "create"] and o.get("--assignee-principal-type") == "ServicePrincipal":
            body = {
                "scope": o["--scope"],
                "role": BUILT_IN_ROLES[o["--role"]],
                "principal_id": o["--assignee-object-id"],
            }
            self.control("role-assignments", body)
            return 0
        return _fail(f"the az stand-in does not know `az {' '.join(command)}` with {sorted(o)}", code=2)

    def registry(self, verb: str, o: dict[str, str]) -> int:
        """Azure Container Registry, which the fake does not serve: kept by the stand-in (its id scopes roles)."""
        registries = self.kept("registries", {})
        name = o["--name"]
        if verb == "create" and o.get("--sku") == "Basic" and name not in registries:
            group = f"/subscriptions/{self.subscription}/resourceGroups/{o['--resource-group']}"
            registries[name] = f"{group}/providers/Microsoft.ContainerRegistry/registries/{name}"
            self.keep("registries", registries)
            return 0
        if verb == "show" and name in registries:
            if o.get("--query") == "id" and o.get("--output") == "tsv":
                print(registries[name])
            return 0
        return _fail(f"(ResourceNotFound) registry {name}", code=3)

    def gh(self, command: list[str], o: dict[str, str]) -> int:
        if command[:1] == ["api"] and o == {"--method": "PUT"} and len(command) == 2:
            found = re.fullmatch(r"repos/([\w.-]+/[\w.-]+)/environments/([\w.-]+)", command[1])
            if found:
                environments = self.kept("environments", {})
                environments.setdefault(found.group(1), []).append(found.group(2))
                self.keep("environments", environments)
                return 0
        if command[:2] == ["variable", "set"] and len(command) == 3 and set(o) == {"--repo", "--body"}:
            variables = self.kept("variables", {})
            variables.setdefault(o["--repo"], {})[command[2]] = o["--body"]
            self.keep("variables", variables)
            return 0
        return _fail(f"the gh stand-in does not know `gh {' '.join(command)}` with {sorted(o)}", code=2)


def _fail(message: str, code: int = 1) -> int:
    print(f"ERROR: {message}", file=sys.stderr)
    return code


def _stand_in(argv: list[str]) -> int:
    tool, words = argv[0], argv[1:]
    command, options = _options(list(words))
    tools = _StandIn()
    return tools.az(command, options) if tool == "az" else tools.gh(command, options)


if __name__ == "__main__":
    sys.exit(_stand_in(sys.argv[1:]))
