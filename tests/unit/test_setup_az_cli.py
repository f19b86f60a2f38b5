"""Every `az` command `agentdeploy setup azure` prints is one the az CLI accepts.

Always: each command, option and choice exists in tests/fixtures/az_cli_params.json, which
scripts/az_cli_params.py wrote from the az CLI's own argument parser (azure-cli from PyPI; the version is in the
file), and every option the parser requires is given. Where an az CLI is installed (AGENTDEPLOY_AZ_CLI, or `az`
on PATH): each command is run through that CLI with no account signed in, and must get past the parser and the
argument validators to the point where az asks for a sign-in (exit 1), never the parser's refusal (exit 2)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agentdeploy.errors import ExitCode
from setupkit import RG, SUB, run, write_setup_agent
from testkit import FIXTURES

AZ = json.loads((FIXTURES / "az_cli_params.json").read_text())
SHARED_ENV = f"/subscriptions/{SUB}/resourceGroups/platform-rg/providers/Microsoft.App/managedEnvironments/shared-env"
GROUP = f"/subscriptions/{SUB}/resourceGroups/{RG}"
SAMPLE_VALUES = {  # what the script's own variables hold when it runs
    "${AZURE_SUBSCRIPTION_ID}": SUB,
    "$DEPLOYER_PRINCIPAL_ID": "3f8d2a51-7c44-4d0e-9a1b-2c3d4e5f6a7b",
    "$PULL_PRINCIPAL_ID": "8a9b0c1d-2e3f-4a5b-8c7d-9e0f1a2b3c4d",
    "$REGISTRY_ID": f"{GROUP}/providers/Microsoft.ContainerRegistry/registries/myagents",
    "$KEY_VAULT_ID_AGENTS_KV": f"{GROUP}/providers/Microsoft.KeyVault/vaults/agents-kv",
}


def az_commands(tmp_path: Path) -> list[list[str]]:
    """The az commands of three configs that between them take every branch of the plan."""
    configs = [
        (write_setup_agent(tmp_path / "acr"), ("--key-vault", "agents-kv", "--branch", "main")),
        (write_setup_agent(tmp_path / "shared", environment=f"environment_id: {SHARED_ENV}"), ()),
        (write_setup_agent(tmp_path / "ghcr", registry="ghcr.io", registry_identity=None), ()),
    ]
    commands = []
    for config, extra in configs:
        code, out, err = run(
            {"PATH": "/usr/bin:/bin"}, "setup", "azure", str(config), "--repo", "acme/agents", "--json", *extra
        )
        assert code == ExitCode.OK, err
        for step in json.loads(out)["steps"]:
            commands += [argv for argv in step["unless"] + step["argv"] if argv and argv[0] == "az"]
    return [
        [SAMPLE_VALUES.get(word, word.replace("${AZURE_SUBSCRIPTION_ID}", SUB)) for word in argv] for argv in commands
    ]


def command_of(argv: list[str]) -> tuple[str, list[str]]:
    """(the az command, its option words): the longest run of leading words the fixture knows as a command."""
    words = argv[1:]
    for length in range(len(words), 0, -1):
        name = " ".join(words[:length])
        if name in AZ["commands"]:
            return name, words[length:]
    raise AssertionError(f"the az CLI {AZ['azure-cli']} has no command {' '.join(argv)!r}")


def problems_of(argv: list[str]) -> list[str]:
    name, rest = command_of(argv)
    options: dict[str, Any] = AZ["commands"][name]
    by_alias = {alias: option for option in options.values() for alias in option["aliases"]}
    found, given, index = [], set(), 0
    while index < len(rest):
        word = rest[index]
        option = by_alias.get(word)
        if option is None:
            found.append(f"az {name}: no option {word!r}")
            index += 1
            continue
        given.add(max(option["aliases"], key=len))
        if option["takes_value"]:
            value = rest[index + 1] if index + 1 < len(rest) else None
            if value is None or (value.startswith("-") and value in by_alias):
                found.append(f"az {name}: {word} needs a value")
            elif option["choices"] and value not in option["choices"]:
                found.append(f"az {name}: {word} {value!r} is not one of {option['choices']}")
            index += 2
        else:
            index += 1
    found += [
        f"az {name}: {required} is required"
        for required, o in options.items()
        if o["required"] and required not in given
    ]
    return found


def test_every_az_command_option_and_choice_exists_in_the_az_cli(tmp_path: Path) -> None:
    commands = az_commands(tmp_path)
    assert {command_of(argv)[0] for argv in commands} == set(AZ["commands"])  # each command the fixture holds is used
    assert [problem for argv in commands for problem in problems_of(argv)] == []


def test_the_check_catches_a_wrong_flag_a_missing_one_and_a_bad_choice() -> None:
    base = ["az", "identity", "federated-credential", "create", "--name", "n", "--identity-name", "i"]
    assert problems_of([*base, "--resource-group", "g", "--audience", "api://AzureADTokenExchange"]) == [
        "az identity federated-credential create: no option '--audience'",
        "az identity federated-credential create: no option 'api://AzureADTokenExchange'",
    ]
    assert problems_of(base) == ["az identity federated-credential create: --resource-group is required"]
    role = ["az", "role", "assignment", "create", "--role", "AcrPull", "--scope", "/subscriptions/x"]
    assert problems_of([*role, "--assignee-principal-type", "App"]) == [
        "az role assignment create: --assignee-principal-type 'App' is not one of "
        "['ForeignGroup', 'Group', 'ServicePrincipal', 'User']"
    ]


def installed_az() -> str | None:
    return os.environ.get("AGENTDEPLOY_AZ_CLI") or shutil.which("az")


SIGN_IN = re.compile(r"Please run 'az login'|doesn't exist in cloud")  # past parsing and validation


@pytest.mark.skipif(
    installed_az() is None,
    reason="optional tool: no az CLI (set AGENTDEPLOY_AZ_CLI, e.g. after `python3 -m venv /tmp/az && "
    "/tmp/az/bin/pip install azure-cli`, to run the commands through its parser)",
)
def test_every_az_command_passes_the_az_clis_own_parser(tmp_path: Path) -> None:
    az = installed_az()
    assert az is not None
    home = tmp_path / "az-home"  # no account signed in: az stops right after parsing and validation
    environ = {"PATH": os.environ["PATH"], "AZURE_CONFIG_DIR": str(home), "AZURE_CORE_COLLECT_TELEMETRY": "no"}

    def parse(argv: list[str]) -> tuple[int, str]:
        done = subprocess.run([az, *argv[1:]], env=environ, capture_output=True, text=True, timeout=120, check=False)
        return done.returncode, done.stderr

    refused = parse(["az", "identity", "create", "--name", "x", "--resource-group", "g", "--audiences", "a"])
    assert refused[0] == 2 and "unrecognized arguments: --audiences a" in refused[1]  # the parser does refuse
    for argv in az_commands(tmp_path):
        code, err = parse(argv)
        assert (code, bool(SIGN_IN.search(err))) == (1, True), f"{' '.join(argv)}\n{err}"
