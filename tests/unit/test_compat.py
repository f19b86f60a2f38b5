"""Real agent configs written by other people (../shared/compat): each gives what its README names."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agentdeploy.config.loader import load_config, require_supported_target, resolve_for_deploy
from agentdeploy.errors import ContextError, MissingVariablesError, UnsupportedProviderError
from agentdeploy.image.context import collect, required_files
from agentdeploy.image.dockerfile import render_dockerfile, spec_from_config


def test_upstream_deploy_fixture_validates_then_refuses_aws(compat: Path) -> None:
    config = load_config(compat / "holodeck/deploy/sample_agent/agent.yaml")
    registry = config.deploy.registry
    assert registry is not None
    assert (registry.url, registry.repository, registry.tag_strategy) == ("ghcr.io", "test-org/test-agent", "git_sha")
    entries, _ = collect(config)  # the build part is fine: its instructions file is there
    assert [e.target.as_posix() for e in entries] == ["agent.yaml", "instructions.md"]
    with pytest.raises(UnsupportedProviderError) as exc:
        require_supported_target(config)
    assert "provider 'aws' is not supported" in exc.value.message
    assert "'azure' and 'docker'" in exc.value.message


@pytest.mark.parametrize(("folder", "node"), [("claude_agent", False), ("claude_agent_with_mcp", True)])
def test_claude_agents_render_node_only_for_npx(compat: Path, folder: str, node: bool) -> None:
    config = load_config(compat / f"holodeck/{folder}/agent.yaml")
    assert config.deploy.registry is not None and config.deploy.registry.tag_strategy == "latest"
    dockerfile = render_dockerfile(spec_from_config(config))
    assert ("apt-get install -y --no-install-recommends nodejs" in dockerfile) is node
    with pytest.raises(UnsupportedProviderError):
        require_supported_target(config)


def test_agents_without_deployment_section(compat: Path) -> None:
    minimal = load_config(compat / "holodeck/agents/minimal_agent.yaml")
    assert minimal.agent.deployment is None
    assert require_supported_target(minimal) == "docker"
    entries, _ = collect(minimal)
    assert [e.target.as_posix() for e in entries] == ["minimal_agent.yaml"]

    valid = load_config(compat / "holodeck/agents/valid_agent.yaml")
    with pytest.raises(ContextError) as exc:
        collect(valid)
    assert sorted(p.message for p in exc.value.problems) == [
        "data/faqs.md does not exist",
        "tools/orders.py does not exist",
    ]


def test_customer_support_sample_reads_as_written(compat: Path) -> None:
    config = load_config(compat / "holodeck-samples/customer-support/openai/agent.yaml")
    assert config.agent.deployment is None
    assert [r.path for r in required_files(config)] == [
        "instructions/system-prompt.md",
        "data/knowledge_base.md",
        "data/faq.json",
        "data/product_catalog.json",
    ]
    entries, _ = collect(config)
    assert "config.yaml" not in [e.target.as_posix() for e in entries]  # not named by the agent
    assert "apt-get install" in render_dockerfile(spec_from_config(config))  # its memory MCP runs npx


def test_financial_assistant_sample(compat: Path, tmp_path: Path) -> None:
    folder = compat / "holodeck-samples/financial-assistant/claude"
    config = load_config(folder / "agent.yaml", display_name="agent.yaml")
    deploy = config.deploy
    azure = deploy.target.azure
    assert azure is not None
    assert (deploy.protocol, azure.ingress_external, azure.min_replicas, azure.max_replicas) == ("ag-ui", True, 0, 3)
    assert require_supported_target(config) == "azure"
    # Its API keys sit under environment:, and the user is told they are handled as secrets; its public ingress
    # has neither ip_allow nor auth in front of it, and the user is told that too.
    assert {w.key for w in config.warnings} == {
        "deployment.environment.CLAUDE_CODE_OAUTH_TOKEN",
        "deployment.environment.AZURE_OPENAI_API_KEY",
        "deployment.target.azure.ingress_external",
    }
    # Exactly the two files left out of the compat copy are missing.
    with pytest.raises(ContextError) as exc:
        collect(config)
    assert sorted(p.message for p in exc.value.problems) == [
        "data/convfinqa-source-5.pdf does not exist",
        "tools/financial_tools.py does not exist",
    ]
    # Deploy-time resolution needs the variables; building never does.
    with pytest.raises(MissingVariablesError):
        resolve_for_deploy(config, {})
    environ = {
        name: f"value-of-{name}"
        for name in (
            "CLAUDE_CODE_OAUTH_TOKEN",
            "AZURE_OPENAI_API_KEY",
            "AZURE_OPENAI_ENDPOINT",
            "AZURE_OPENAI_DEPLOYMENT_NAME",
            "AZURE_OPENAI_EMBEDDING_DEPLOYMENT_NAME",
            "QDRANT_REMOTE_URL",
        )
    }
    resolved = resolve_for_deploy(config, environ)
    assert set(resolved.runtime.secrets) == {"CLAUDE_CODE_OAUTH_TOKEN", "AZURE_OPENAI_API_KEY"}
    assert resolved.runtime.env["QDRANT_URL"] == "value-of-QDRANT_REMOTE_URL"
    assert resolved.runtime.env["HOLODECK_PROTOCOL"] == "ag-ui"
    # With placeholders for the two left-out files, the context is complete.
    copy = tmp_path / "claude"
    shutil.copytree(folder, copy)
    (copy / "tools").mkdir()
    (copy / "tools/financial_tools.py").write_text("def subtract(a, b): ...\n")
    (copy / "data/convfinqa-source-5.pdf").write_bytes(b"%PDF-1.4\n")
    entries, _ = collect(load_config(copy / "agent.yaml"))
    assert [e.target.as_posix() for e in entries] == [
        "agent.yaml",
        "data/convfinqa-source-5.pdf",
        "data/convfinqa_subset_retrieval.yaml",
        "instructions/system-prompt.md",
        "tools/financial_tools.py",
    ]
