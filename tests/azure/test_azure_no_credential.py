"""The fix matches the cause: with no Azure credential at all, one line says none was found and how to provide
one, not DefaultAzureCredential's dozen-line report ending "Azure refused the credentials" (none were sent); a
credential that was found and refused names itself and Entra's reason. The real CLI in a process of its own,
with the real azure-identity chain (its managed-identity probe pointed at a closed loopback port, so nothing
leaves the machine), against the fake Entra and ARM on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fakes.arm import FakeArm
from testkit import AZURE_SUBSCRIPTION, write_azure_agent

TENANT, CLIENT = "66666666-7777-8888-9999-000000000000", "11111111-2222-3333-4444-555555555555"
NO_CREDENTIAL = (
    "error: no Azure credential was found on this machine\n"
    "  fix: locally run `az login`; in GitHub Actions set AZURE_CLIENT_ID and AZURE_TENANT_ID and give the job "
    "`permissions: id-token: write` (OIDC); for a service principal set AZURE_TENANT_ID, AZURE_CLIENT_ID and "
    "AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH)\n"
)
# What azure-identity prints (through logging's last-resort handler) and raises when the chain finds nothing.
CHAIN_LINES = (
    "DefaultAzureCredential failed to retrieve a token",
    "Attempted credentials:",
    "EnvironmentCredential authentication unavailable",
    "To mitigate this issue",
    "Azure refused the credentials",
)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def plan(config: Path, home: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """`agentdeploy plan` as a user runs it: a clean environment (no az CLI on PATH, an empty HOME)."""
    environ = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "AZURE_SUBSCRIPTION_ID": AZURE_SUBSCRIPTION,
        "API_KEY": "sk-none",
        # The managed-identity probe (169.254.169.254 on a real machine) goes to a closed loopback port.
        "AZURE_POD_IDENTITY_AUTHORITY_HOST": f"http://127.0.0.1:{closed_port()}",
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-m", "agentdeploy", "plan", str(config)],
        env=environ, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def arm(start_arm: Callable[..., FakeArm]) -> FakeArm:
    return start_arm()


def test_no_credential_at_all_is_one_line_with_the_ways_to_provide_one(arm: FakeArm, tmp_path: Path) -> None:
    config = write_azure_agent(tmp_path / "agent", "it/no-credential", "busybox:1")
    result = plan(config, tmp_path / "home", AGENTDEPLOY_ARM_ENDPOINT=arm.base_url)
    assert result.returncode == 11, result.stderr
    assert result.stderr == NO_CREDENTIAL
    assert not any(line in result.stderr for line in CHAIN_LINES)
    assert arm.requests == []  # nothing was asked of Azure (or of its Entra) without a credential


def test_a_credential_found_and_refused_names_itself_and_entras_reason(
    arm: FakeArm, tmp_path: Path, tls_files: Any
) -> None:
    arm.identity.client_secrets[CLIENT] = "the-right-secret"
    config = write_azure_agent(tmp_path / "agent", "it/refused-credential", "busybox:1")
    result = plan(
        config,
        tmp_path / "home",
        AGENTDEPLOY_ARM_ENDPOINT=arm.base_url,
        AZURE_AUTHORITY_HOST=arm.base_url,
        AZURE_TENANT_ID=TENANT,
        AZURE_CLIENT_ID=CLIENT,
        AZURE_CLIENT_SECRET="a-wrong-secret",
        REQUESTS_CA_BUNDLE=str(tls_files.ca),
    )
    assert result.returncode == 11, result.stderr
    first, fix = result.stderr.splitlines()
    assert first.startswith("error: Azure refused the credential of EnvironmentCredential: "), first
    assert "AADSTS7000215" in first and "a-wrong-secret" not in result.stderr
    assert fix == (
        "  fix: sign in again (az login), or check AZURE_TENANT_ID, AZURE_CLIENT_ID and the secret, certificate or "
        "federated credential of that identity"
    )
    assert not any(line in result.stderr for line in CHAIN_LINES)
