"""An agent config for `agentdeploy setup azure` tests, and running the CLI in-process."""

from __future__ import annotations

import io
from pathlib import Path

from agentdeploy.cli import main
from testkit import AZURE_ENVIRONMENT, AZURE_RESOURCE_GROUP, AZURE_SUBSCRIPTION

SUB, RG, ENV = AZURE_SUBSCRIPTION, AZURE_RESOURCE_GROUP, AZURE_ENVIRONMENT
PULL_ID = (
    f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/faq-pull"
)


def write_setup_agent(
    directory: Path,
    *,
    registry: str = "myagents.azurecr.io",
    registry_identity: str | None = PULL_ID,
    environment: str = f"environment_name: {ENV}",
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "prompt.md").write_text("You answer questions.")
    identity = f"      registry_identity: {registry_identity}\n" if registry_identity else ""
    config = directory / "agent.yaml"
    config.write_text(
        "name: faq-agent\n"
        "model: {provider: openai, name: gpt-4o}\n"
        "instructions: {file: prompt.md}\n"
        "deployment:\n"
        f"  registry: {{url: {registry}, repository: agents/faq-agent}}\n"
        "  target:\n"
        "    provider: azure\n"
        "    azure:\n"
        "      subscription_id: ${AZURE_SUBSCRIPTION_ID}\n"
        f"      resource_group: {RG}\n"
        f"      {environment}\n"
        "      cpu: 0.5\n"
        "      memory: 1Gi\n" + identity
    )
    return config


def run(environ: dict[str, str], *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), environ=environ, out=out, err=err)
    return code, out.getvalue(), err.getvalue()
