"""`validate` reads the HoloDeck part of agent.yaml as holodeck-ai 0.7.1 does, without holodeck-ai installed.

config/holodeck_schema.py carries upstream's sections, keys, required keys and enums. Here they are compared with
upstream's own models (from the pinned wheel, tests/upstream.py), so moving the pin shows every difference; upstream's
models also judge a set of configs, and `load_config` must accept and refuse exactly the ones they do.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import upstream
from agentdeploy.config.holodeck_schema import ENUMS, LIMITS, LOADER_KEYS, SECTIONS, TAGGED
from agentdeploy.config.loader import load_config
from agentdeploy.errors import ConfigError
from testkit import FIXTURES

HEAD = "name: demo-agent\nmodel:\n  provider: openai\n  name: gpt-4o\ninstructions:\n  inline: Be helpful.\n"
# Fields upstream's models have that the schema file its wheel publishes does not list (it lags them).
UNPUBLISHED = {"Agent.openai", "EvaluationConfig.optimizer", "ObservabilityConfig.disable_provider_tracing"}


class Derived:
    """Sections, enums and tagged unions read from a JSON schema, in holodeck_schema.py's notation."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.defs: dict[str, Any] = schema["$defs"]
        self.sections: dict[str, tuple[dict[str, str], tuple[str, ...], bool]] = {}
        self.enums: dict[str, tuple[str, ...]] = {}
        self.tagged: dict[str, dict[str, str]] = {}
        self.limits: dict[str, str] = {}
        self._used: set[str] = set()
        self._section("Agent", schema)
        for name, definition in self.defs.items():
            if "enum" in definition and name in self._used:
                self.enums[name] = tuple(definition["enum"])

    def _section(self, name: str, definition: dict[str, Any]) -> None:
        self._used.add(name)
        types = {
            key: "any" if (name, key) == ("Agent", "deployment") else self._type(prop, name, key)
            for key, prop in definition["properties"].items()
        }
        for key, prop in definition["properties"].items():
            limit = self._limit({k: v for p in [prop, *prop.get("anyOf", [])] for k, v in p.items()})
            if limit and name != "Agent":
                self.limits[f"{name}.{key}"] = limit
        closed = definition.get("additionalProperties", True) is False
        self.sections[name] = (types, tuple(definition.get("required", [])), closed)

    @staticmethod
    def _limit(prop: dict[str, Any]) -> str | None:
        if "pattern" in prop:
            return f"/{prop['pattern']}/"
        if "exclusiveMinimum" in prop:
            return f">{prop['exclusiveMinimum']:g}"
        if "minimum" in prop or "maximum" in prop:
            low, high = prop.get("minimum"), prop.get("maximum")
            return ("" if low is None else f"{low:g}") + ".." + ("" if high is None else f"{high:g}")
        return None

    def _ref(self, ref: str) -> str:
        name = ref.rsplit("/", 1)[-1]
        if name not in self._used and "properties" in self.defs[name]:
            self._section(name, self.defs[name])
        self._used.add(name)
        return name

    def _type(self, prop: dict[str, Any], owner: str, key: str) -> str:
        if "$ref" in prop:
            return self._ref(prop["$ref"])
        if "anyOf" in prop:
            kinds = [self._type(p, owner, key) for p in prop["anyOf"] if p.get("type") != "null"]
            return "|".join(kinds) + ("?" if any(p.get("type") == "null" for p in prop["anyOf"]) else "")
        if "oneOf" in prop:
            members = [self._ref(p["$ref"]) for p in prop["oneOf"]]
            union = {"VectorstoreTool": "Tool", "EvaluationMetric": "Metric"}[members[0]]
            self.tagged[union] = {self.defs[m]["properties"]["type"]["const"]: m for m in members}
            return union
        if "const" in prop:
            return "=" + prop["const"]
        if "enum" in prop:
            self.enums[f"{owner}_{key}"] = tuple(prop["enum"])
            return f"{owner}_{key}"
        kind = prop.get("type")
        if kind == "array":
            return "[" + self._type(prop.get("items", {}), owner, key) + "]"
        if kind == "object":
            values = prop.get("additionalProperties")
            return "{" + self._type(values, owner, key) + "}" if isinstance(values, dict) and values else "obj"
        return {"string": "str", "integer": "int", "number": "num", "boolean": "bool", None: "any"}[kind]


def ours() -> dict[str, tuple[dict[str, str], tuple[str, ...], bool]]:
    return {name: (s.types(), s.required_keys(), s.closed) for name, s in SECTIONS.items()}


def test_sections_keys_types_required_and_enums_equal_upstreams_models() -> None:
    derived = Derived(upstream.models_schema())
    assert ours() == derived.sections
    assert derived.enums == ENUMS
    assert derived.tagged == TAGGED
    assert {field: limit for field, limit in derived.limits.items() if field.split(".")[0] in SECTIONS} == LIMITS
    assert derived.enums["ProviderEnum"] == ("openai", "azure_openai", "anthropic", "ollama")


def test_every_key_of_upstreams_published_schema_file_is_accepted_and_only_its_known_lag_differs() -> None:
    published = Derived(json.loads(upstream.agent_schema()))
    missing, unpublished = set(), set()
    for name, (types, required, closed) in ours().items():
        if name not in published.sections:
            continue  # a section only the models have (OptimizerConfig, OpenAIConfig, ...)
        theirs, their_required, their_closed = published.sections[name]
        missing |= {f"{name}.{key}" for key in theirs if key not in types}
        unpublished |= {f"{name}.{key}" for key in types if key not in theirs}
        assert (required, closed) == (their_required, their_closed), name
    assert missing == set()
    assert unpublished == UNPUBLISHED
    assert {name: values for name, values in published.enums.items() if name in ENUMS} == {
        name: ENUMS[name] for name in published.enums
    }


def problems_of(write_agent: Callable[..., Path], text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(write_agent(text), display_name="agent.yaml")
    return [problem.render() for problem in exc.value.problems]


def test_a_misspelt_provider_is_refused_with_the_closest_one(write_agent: Callable[..., Path]) -> None:
    text = HEAD.replace("provider: openai", "provider: opennai")
    assert problems_of(write_agent, text) == [
        "agent.yaml:3:13: model.provider: 'opennai' is not allowed\n"
        "    fix: did you mean 'openai'? (one of: openai, azure_openai, anthropic, ollama)"
    ]


def test_an_unknown_key_under_model_is_refused_with_the_closest_one(write_agent: Callable[..., Path]) -> None:
    text = HEAD.replace("  name: gpt-4o\n", "  name: gpt-4o\n  temprature: 0.2\n")
    assert problems_of(write_agent, text) == [
        "agent.yaml:5:3: model.temprature: unknown key 'temprature'\n    fix: did you mean 'temperature'?"
    ]


def test_an_unknown_top_level_key_is_refused(write_agent: Callable[..., Path]) -> None:
    assert problems_of(write_agent, HEAD + "toolz: []\n") == [
        "agent.yaml:7:1: toolz: unknown key 'toolz'\n    fix: did you mean 'tools'?"
    ]


def test_a_value_of_the_wrong_type_is_refused(write_agent: Callable[..., Path]) -> None:
    text = HEAD.replace("  name: gpt-4o\n", "  name: gpt-4o\n  max_tokens: lots\n") + "claude:\n  web_search: 3\n"
    assert problems_of(write_agent, text) == [
        "agent.yaml:5:15: model.max_tokens: expected a whole number, got str 'lots'",
        "agent.yaml:9:15: claude.web_search: expected true or false, got the number 3",
    ]


def test_every_problem_of_a_tool_is_found_at_once(write_agent: Callable[..., Path]) -> None:
    text = HEAD + (
        "tools:\n"
        "  - {name: faq, type: vectorstor, description: d, source: faq.md}\n"
        "  - {name: web, type: mcp, description: d, server: web, transport: stdioo}\n"
        "  - {name: calc, description: d}\n"
    )
    assert problems_of(write_agent, text) == [
        "agent.yaml:8:23: tools[0].type: 'vectorstor' is not a tool type\n"
        "    fix: did you mean 'vectorstore'? (one of: vectorstore, function, mcp, prompt, hierarchical_document)",
        "agent.yaml:9:44: tools[1].server: unknown key 'server'\n"
        "    fix: allowed keys here: name, description, type, defer_loading, transport, command, args, env, env_file, "
        "encoding, url, headers, timeout, sse_read_timeout, terminate_on_close, config, load_tools, load_prompts, "
        "request_timeout, is_retrieval, registry_name",
        "agent.yaml:9:68: tools[1].transport: 'stdioo' is not allowed\n"
        "    fix: did you mean 'stdio'? (one of: stdio, sse, websocket, http)",
        "agent.yaml:10:5: tools[2]: this tool has no `type`\n"
        "    fix: add `type:` with one of vectorstore, function, mcp, prompt, hierarchical_document",
    ]


def test_bounds_patterns_and_upstreams_validators_are_held(write_agent: Callable[..., Path]) -> None:
    text = (
        HEAD.replace("provider: openai", "provider: azure_openai").replace(
            "  name: gpt-4o\n", "  name: gpt-4o\n  temperature: 2.5\n"
        )
        + "tools:\n  - {name: web-search, type: mcp, description: d}\n"
    )
    assert problems_of(write_agent, text) == [
        "agent.yaml:5:16: model.temperature: 2.5 is out of range: it must be 0 to 2",
        "agent.yaml:3:3: model.endpoint: endpoint is required for the azure_openai provider\n"
        "    fix: add `endpoint:` with your Azure OpenAI resource's URL, e.g. https://NAME.openai.azure.com/",
        "agent.yaml:9:12: tools[0].name: 'web-search' does not match ^[0-9A-Za-z_]+$\n"
        "    fix: use letters, digits and '_' only, e.g. web_search",
    ]
    twice = HEAD + "tools:\n  - {name: kb, type: mcp, description: d}\n  - {name: kb, type: mcp, description: e}\n"
    assert problems_of(write_agent, twice) == [
        "agent.yaml:9:12: tools[1].name: the tool name 'kb' is used twice (also by tools[0])\n"
        "    fix: give each tool its own name"
    ]


def test_a_placeholder_stands_for_any_value_as_upstream_fills_it_in_first(write_agent: Callable[..., Path]) -> None:
    text = HEAD.replace("provider: openai", "provider: ${MODEL_PROVIDER}") + "claude:\n  max_turns: ${TURNS}\n"
    assert load_config(write_agent(text)).agent.model["provider"] == "${MODEL_PROVIDER}"


def documents() -> dict[str, dict[str, Any]]:
    """Configs upstream's models judge: our fixtures, and the mistakes a user makes."""
    found = {
        str(path.relative_to(FIXTURES)): yaml.safe_load(path.read_text())
        for path in sorted((FIXTURES / "agents").rglob("*.yaml"))
        if path.name != "config.yaml"  # a project config, not an agent
    }
    for template in upstream.TEMPLATES:  # what `holodeck init` writes
        found[f"holodeck init {template}"] = yaml.safe_load(
            upstream.render_init(upstream.template_files(template)["agent.yaml.j2"])
        )
    base = yaml.safe_load(HEAD)
    mistakes: dict[str, dict[str, Any]] = {
        "misspelt provider": {"model": {"provider": "opennai", "name": "gpt-4o"}},
        "unknown model key": {"model": {"provider": "openai", "name": "gpt-4o", "temprature": 0.2}},
        "string temperature": {"model": {"provider": "openai", "name": "gpt-4o", "temperature": "0.5"}},
        "yes is true": {"claude": {"web_search": "yes"}},
        "metric without type": {"evaluations": {"metrics": [{"metric": "groundedness"}]}},
        "rag metric": {"evaluations": {"metrics": [{"type": "rag", "metric_type": "faithfulness"}]}},
        "misspelt rag metric": {"evaluations": {"metrics": [{"type": "rag", "metric_type": "faithfulnes"}]}},
        "observability": {"observability": {"enabled": True, "exporters": {"console": {"enabled": True}}}},
        "observability typo": {"observability": {"exporters": {"consol": {}}}},
        "openai section": {"openai": {"max_concurrent_sessions": 4}},
        "no model": {"model": None},
        "hot model": {"model": {"provider": "openai", "name": "gpt-4o", "temperature": 2.5}},
        "zero max_tokens": {"model": {"provider": "openai", "name": "gpt-4o", "max_tokens": 0}},
        "azure without endpoint": {"model": {"provider": "azure_openai", "name": "gpt-4o"}},
        "azure with endpoint": {"model": {"provider": "azure_openai", "name": "gpt-4o", "endpoint": "https://x"}},
        "hyphen in a tool name": {"tools": [{"name": "web-search", "type": "mcp", "description": "d"}]},
        "two tools, one name": {
            "tools": [
                {"name": "kb", "type": "mcp", "description": "d"},
                {"name": "kb", "type": "mcp", "description": "e"},
            ]
        },
        "threshold over 1": {
            "evaluations": {"metrics": [{"type": "rag", "metric_type": "faithfulness", "threshold": 2}]}
        },
        "sample rate": {"observability": {"traces": {"sample_rate": 0.5}}},
    }
    found.update({name: {**base, **change} for name, change in mistakes.items()})
    return found


def test_accepts_and_refuses_exactly_what_upstreams_models_do(tmp_path: Path) -> None:
    docs = documents()
    for document in docs.values():  # deployment: is ours (it carries our keys); test_cases_file upstream reads first
        document.pop("deployment", None)
        document.pop("test_cases_file", None)
    verdicts = upstream.models_verdicts(docs)
    ours_refused = {}
    for name, document in docs.items():
        path = tmp_path / "agent.yaml"
        path.write_text(yaml.safe_dump(document))
        try:
            load_config(path)
        except ConfigError as exc:
            ours_refused[name] = [p.key for p in exc.problems]
    assert set(ours_refused) == {name for name, places in verdicts.items() if places}
    assert "holodeck" not in sys.modules  # agentdeploy judged them all without upstream's package
    assert ours_refused["misspelt provider"] == ["model.provider"] == verdicts["misspelt provider"]
    assert "string temperature" not in ours_refused and "yes is true" not in ours_refused
    assert not any(name.startswith("holodeck init") for name in ours_refused)


def test_loader_keys_are_the_ones_upstreams_loader_reads_before_its_model() -> None:
    assert LOADER_KEYS == {"test_cases_file": "str?"}
    assert "test_cases_file" in upstream.read("holodeck/config/loader.py")
