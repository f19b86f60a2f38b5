"""Agent configs as their authors meant them.

Three sources, from the strongest a fresh clone always has to the optional extra:
- tests/fixtures/agents/: our own minimal configs in upstream HoloDeck's shapes (FACTS.md), one per behaviour;
- upstream HoloDeck's published schema and its `holodeck init` templates, from the holodeck-ai wheel on PyPI
  (tests/upstream.py downloads and caches it);
- the real configs of other people in ../shared/compat, when that corpus sits beside the clone (the tests on it
  skip, naming it, when it does not; .ci/run says which it used).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

import upstream
from agentdeploy.config.loader import load_config, require_supported_target, resolve_for_deploy
from agentdeploy.config.models import AgentConfig
from agentdeploy.errors import ConfigError, ContextError, MissingVariablesError, UnsupportedProviderError
from agentdeploy.image.context import collect, required_files
from agentdeploy.image.dockerfile import render_dockerfile, spec_from_config
from testkit import FIXTURES

AGENTS = FIXTURES / "agents"


def test_fixture_upstream_deploy_section_validates_then_refuses_aws() -> None:
    config = load_config(AGENTS / "upstream-deploy/agent.yaml")
    registry = config.deploy.registry
    assert registry is not None
    assert (registry.url, registry.repository, registry.tag_strategy) == (
        "ghcr.io",
        "example-org/upstream-deploy",
        "git_sha",
    )
    entries, _ = collect(config)  # the build part is fine: its instructions file is there
    assert [e.target.as_posix() for e in entries] == ["agent.yaml", "instructions.md"]
    with pytest.raises(UnsupportedProviderError) as exc:
        require_supported_target(config)
    assert exc.value.message == "provider 'aws' is not supported; agentdeploy deploys to 'azure' and 'docker'"


@pytest.mark.parametrize(("folder", "node"), [("claude", False), ("claude-mcp", True)])
def test_fixture_claude_agents_render_node_only_for_npx(folder: str, node: bool) -> None:
    config = load_config(AGENTS / folder / "agent.yaml")
    assert config.deploy.registry is not None and config.deploy.registry.tag_strategy == "latest"
    dockerfile = render_dockerfile(spec_from_config(config))
    assert ("apt-get install -y --no-install-recommends nodejs" in dockerfile) is node
    with pytest.raises(UnsupportedProviderError):
        require_supported_target(config)


def test_fixture_agents_without_deployment_section() -> None:
    minimal = load_config(AGENTS / "no-deployment/minimal.yaml")
    assert minimal.agent.deployment is None
    assert require_supported_target(minimal) == "docker"
    entries, _ = collect(minimal)
    assert [e.target.as_posix() for e in entries] == ["minimal.yaml"]

    with pytest.raises(ContextError) as exc:
        collect(load_config(AGENTS / "no-deployment/missing-files.yaml"))
    assert sorted(p.message for p in exc.value.problems) == [
        "data/faqs.md does not exist",
        "tools/orders.py does not exist",
    ]


def test_fixture_sources_are_read_in_order_and_the_project_config_stays_out() -> None:
    config = load_config(AGENTS / "vectorstores/agent.yaml")
    assert config.agent.deployment is None
    assert [r.path for r in required_files(config)] == [
        "instructions/system-prompt.md",
        "data/knowledge.md",
        "data/faq.json",
        "data/catalog.json",
    ]
    entries, _ = collect(config)
    assert "config.yaml" not in [e.target.as_posix() for e in entries]  # not named by the agent
    assert [w.message for w in config.warnings] == [
        "config.yaml beside the agent config is not copied into the image: the agent in the container runs "
        "without its providers, vectorstores and execution settings"
    ]
    assert "apt-get install" in render_dockerfile(spec_from_config(config))  # its memory MCP runs npx


def test_fixture_azure_deployment_in_upstreams_form() -> None:
    config = load_config(AGENTS / "azure-ag-ui/agent.yaml", display_name="agent.yaml")
    deploy = config.deploy
    azure = deploy.target.azure
    assert azure is not None
    assert (deploy.protocol, azure.ingress_external, azure.min_replicas, azure.max_replicas) == ("ag-ui", True, 0, 3)
    assert require_supported_target(config) == "azure"
    # Its API key sits under environment:, and the user is told it is handled as a secret; its public ingress
    # has neither ip_allow nor auth in front of it, and the user is told that too.
    assert {w.key for w in config.warnings} == {
        "deployment.environment.OPENAI_API_KEY",
        "deployment.target.azure.ingress_external",
    }
    entries, _ = collect(config)
    assert [e.target.as_posix() for e in entries] == [
        "agent.yaml",
        "data/filings.md",
        "instructions/system-prompt.md",
        "tools/calc.py",
    ]
    # Deploy-time resolution needs the variables; building never does.
    with pytest.raises(MissingVariablesError):
        resolve_for_deploy(config, {})
    environ = {name: f"value-of-{name}" for name in ("OPENAI_API_KEY", "VECTOR_DB_URL", "AZURE_SUBSCRIPTION_ID")}
    resolved = resolve_for_deploy(config, environ)
    assert set(resolved.runtime.secrets) == {"OPENAI_API_KEY"}
    assert resolved.runtime.env["VECTOR_DB_URL"] == "value-of-VECTOR_DB_URL"


def test_every_section_of_upstreams_published_schema_is_accepted(write_agent: Callable[..., Path]) -> None:
    schema = json.loads(upstream.agent_schema())
    assert {"name", "model", "instructions", "tools", "deployment"} <= set(schema["properties"])
    assert set(schema["properties"]) <= set(AgentConfig.model_fields)
    extra = "\n".join(
        f"{key}: null" for key in schema["properties"] if key not in ("name", "model", "instructions", "deployment")
    )
    head = "name: demo-agent\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: Be helpful.}\n"
    config = load_config(write_agent(head + extra + "\n"))
    assert config.agent.name == "demo-agent"


TEMPLATE_SOURCES = {
    "conversational": "knowledge_base/",
    "customer-support": "data/knowledge_base",
    "research": "data/papers_index.json",
}


@pytest.mark.parametrize("template", upstream.TEMPLATES)
def test_the_agents_holodeck_init_writes_are_read_as_written(template: str, tmp_path: Path) -> None:
    project = tmp_path / template
    for name, text in upstream.template_files(template).items():
        path = project / name.removesuffix(".j2")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(upstream.render_init(text) if name.endswith(".j2") else text)

    config = load_config(project / "agent.yaml")
    assert config.agent.name == "init-demo"
    assert [r.path for r in required_files(config)] == ["instructions/system-prompt.md", TEMPLATE_SOURCES[template]]
    assert {v.name for v in config.runtime_variables} == {"OPENAI_API_KEY"}
    assert require_supported_target(config) == "docker"  # no deployment section: the local engine
    assert "apt-get install -y --no-install-recommends nodejs" in render_dockerfile(spec_from_config(config))


# The optional corpus: real configs of other people (../shared/compat), used when it sits beside the clone.


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

    # An older upstream fixture that holodeck-ai 0.7.1's models refuse (the real runtime too: tests/realruntime):
    # `validate` says so, instead of a build and a crash at start.
    with pytest.raises(ConfigError) as refused:
        load_config(compat / "holodeck/agents/valid_agent.yaml", display_name="valid_agent.yaml")
    assert [p.render() for p in refused.value.problems] == [
        "valid_agent.yaml:32:5: tools[2].server: unknown key 'server'\n    fix: allowed keys here: name, description, "
        "type, defer_loading, transport, command, args, env, env_file, encoding, url, headers, timeout, "
        "sse_read_timeout, terminate_on_close, config, load_tools, load_prompts, request_timeout, is_retrieval, "
        "registry_name",
        "valid_agent.yaml:39:7: evaluations.metrics[0]: this metric has no `type`\n"
        "    fix: add `type:` with one of standard, geval, rag, code",
        "valid_agent.yaml:42:7: evaluations.metrics[1]: this metric has no `type`\n"
        "    fix: add `type:` with one of standard, geval, rag, code",
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
