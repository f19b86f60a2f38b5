"""The runtime's copy of agent.yaml: what `holodeck serve` accepts, meaning what the user wrote."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from agentdeploy.config.loader import load_config, resolve_for_deploy
from agentdeploy.config.runtime import runtime_settings
from agentdeploy.errors import MissingVariablesError


def copy_of(write_agent: Callable[..., Path], text: str) -> tuple[str, Path]:
    path = write_agent(text, files={"p.md": "x"})
    return load_config(path).runtime_files[0].text, path


AGENT = """\
# An agent; the comment on top stays.
name: a   # its name
model:
  provider: openai
  name: gpt-4o
deployment:
  port: 9000
  # our keys, which the runtime refuses
  health: {path: /health}
  secrets:
    API_KEY: ${API_KEY}

# Column-0 comments after the section belong to what follows.
instructions:
  file: p.md
"""


def test_the_deployment_section_is_cut_and_every_other_line_stays(write_agent: Callable[..., Path]) -> None:
    text, _ = copy_of(write_agent, AGENT)
    assert text == (
        "# An agent; the comment on top stays.\n"
        "name: a   # its name\n"
        "model:\n"
        "  provider: openai\n"
        "  name: gpt-4o\n"
        "\n"
        "# Column-0 comments after the section belong to what follows.\n"
        "instructions:\n"
        "  file: p.md\n"
    )


def test_a_config_without_deployment_is_copied_byte_for_byte(write_agent: Callable[..., Path]) -> None:
    original = "name: a\nmodel: {provider: openai, name: gpt-4o}  # not a section: {x}\ninstructions: {file: p.md}\n"
    text, path = copy_of(write_agent, original)
    assert text == original == path.read_text()


@pytest.mark.parametrize(
    "source",
    [
        # flow style: no lines to cut
        "{name: a, model: {provider: openai, name: gpt-4o}, instructions: {file: p.md}, deployment: {port: 9000}}\n",
        # an anchor defined inside the section and used after it
        "name: a\ndeployment:\n  environment: &env {LOG: info}\nmodel: {provider: openai, name: gpt-4o}\n"
        "observability: {resource_attributes: *env}\ninstructions: {file: p.md}\n",
    ],
    ids=["flow-style", "anchor-used-elsewhere"],
)
def test_when_lines_cannot_be_cut_the_data_is_written_again(write_agent: Callable[..., Path], source: str) -> None:
    text, _ = copy_of(write_agent, source)
    expected = {k: v for k, v in yaml.safe_load(source).items() if k != "deployment"}
    assert yaml.safe_load(text) == expected
    assert text.startswith("# Written by agentdeploy")


def test_placeholders_the_runtime_reads_are_listed_with_where_they_are(write_agent: Callable[..., Path]) -> None:
    path = write_agent(
        textwrap.dedent(
            """\
            name: a
            # The runtime substitutes comments too, so the copy drops this one: ${FROM_A_COMMENT}
            model:
              provider: openai
              name: ${MODEL_NAME:-gpt-4o}
              api_key: ${OPENAI_API_KEY}
            instructions: {file: p.md}
            deployment:
              environment: {OTHER: "${ONLY_FOR_DEPLOYMENT}"}
            """
        ),
        files={"p.md": "x"},
    )
    config = load_config(path)
    [copy] = config.runtime_files
    assert "name: ${MODEL_NAME}\n" in copy.text  # the runtime has no `:-default`
    assert copy.text.splitlines()[1] == ""  # the comment with a placeholder is gone, its line stays
    found = [(v.name, v.default, v.location.line, v.location.column) for v in config.runtime_variables]
    assert found == [("MODEL_NAME", "gpt-4o", 5, 9), ("OPENAI_API_KEY", None, 6, 12)]


def test_runtime_variables_become_container_settings(write_agent: Callable[..., Path]) -> None:
    path = write_agent(
        "name: a\nmodel: {provider: openai, name: '${MODEL_NAME:-gpt-4o}', api_key: '${OPENAI_API_KEY}'}\n"
        "instructions: {inline: 'home is ${HOME}'}\n"
        "deployment:\n  secrets: {GIVEN: '${GIVEN}'}\n",
    )
    config = load_config(path)
    settings = {s.name: (s.template, s.secret) for s in runtime_settings(config.deploy, config.runtime_variables)}
    # HOME is set in every image; a value from a placeholder outside environment: is a secret, whatever its name.
    assert settings == {
        "GIVEN": ("${GIVEN}", True),
        "MODEL_NAME": ("${MODEL_NAME:-gpt-4o}", True),
        "OPENAI_API_KEY": ("${OPENAI_API_KEY}", True),
    }
    resolved = resolve_for_deploy(config, {"GIVEN": "g", "OPENAI_API_KEY": "sk-1"}).runtime
    assert resolved.env == {}
    assert resolved.secrets == {"GIVEN": "g", "MODEL_NAME": "gpt-4o", "OPENAI_API_KEY": "sk-1"}


def test_a_missing_runtime_variable_is_reported_where_the_file_uses_it(write_agent: Callable[..., Path]) -> None:
    path = write_agent(
        "name: a\nmodel:\n  api_key: ${OPENAI_API_KEY}\n  provider: openai\n  name: gpt-4o\n"
        "instructions: {inline: hi}\n"
    )
    config = load_config(path)
    with pytest.raises(MissingVariablesError) as raised:
        resolve_for_deploy(config, {})
    [problem] = raised.value.problems
    assert str(problem.location) == f"{path}:3:12"
    assert problem.message == (
        "${OPENAI_API_KEY} is not set (the HoloDeck runtime reads it from the container's environment)"
    )


def test_the_project_config_beside_the_agent_is_left_out_with_a_warning(write_agent: Callable[..., Path]) -> None:
    path = write_agent(
        "name: a\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: hi}\n",
        files={"config.yaml": "providers: {}\n"},
    )
    config = load_config(path)
    assert [copy.name for copy in config.runtime_files] == ["agent.yaml"]
    [warning] = config.warnings
    assert warning.message.startswith("config.yaml beside the agent config is not copied into the image")
