"""A hostile repository cannot exhaust the runner or write outside itself: every config reader is bounded (size,
aliases, characters), the agent's name is one path segment before any path is made of it, and the walk of the
files that go into the image stops at symlink loops. Each attack is refused with one error at its place."""

from __future__ import annotations

import io
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from agentdeploy.cli import main
from agentdeploy.config.loader import load_config
from agentdeploy.config.yamlsource import MAX_CONFIG_BYTES, MAX_EXPANDED_NODES
from agentdeploy.errors import ConfigError, ContextError, ExitCode, Location
from agentdeploy.git import NO_COMMIT
from agentdeploy.image.context import collect
from agentdeploy.release.changed import changed_agents

HEAD = "name: demo\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: hi}\n"

# Nine levels of nine aliases: 9**9 (387 million) strings once expanded.
ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{level}: &{level} [{','.join(['*' + previous] * 9)}]\n"
        for previous, level in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + HEAD
)


def run(*argv: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), environ=environ or {}, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def project_of(tmp_path: Path, raw: bytes | str) -> Path:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    config = project / "agent.yaml"
    config.write_bytes(raw.encode() if isinstance(raw, str) else raw)
    return config


# -- YAML aliases -------------------------------------------------------------------------------------------


def test_an_alias_bomb_is_refused_at_the_alias_that_crosses_the_bound(tmp_path: Path) -> None:
    config = project_of(tmp_path, ALIAS_BOMB)
    assert len(ALIAS_BOMB.splitlines()) == 12  # nine alias lines and the agent's three
    tracemalloc.start()
    try:
        code, out, err = run("validate", str(config))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (code, out) == (ExitCode.CONFIG, "")
    assert err.splitlines() == [
        f"error: {config}:6:8: the alias *e expands the document beyond {MAX_EXPANDED_NODES:,} nodes "
        "(each alias counts every node it refers to, at each use)",
        "  fix: write the values out, or use fewer nested aliases",
    ]
    assert peak < 64 * 1024 * 1024  # bounded: the document is never expanded


def test_changed_refuses_the_alias_bomb_too(tmp_path: Path) -> None:
    config = project_of(tmp_path, ALIAS_BOMB)
    [entry] = changed_agents([str(config)], NO_COMMIT)
    assert entry.agent == "" and entry.listed  # its deploy will say why; no agent name read from it
    assert entry.reason == (
        f"its config cannot be read (the alias *e expands the document beyond {MAX_EXPANDED_NODES:,} nodes "
        "(each alias counts every node it refers to, at each use))"
    )


def test_a_recursive_alias_is_refused_where_it_is_used(tmp_path: Path) -> None:
    config = project_of(tmp_path, HEAD + "response_format: &r {items: [1, *r]}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(config, display_name="agent.yaml")
    assert raised.value.message == "the alias *r refers to a node that contains it (a recursive alias)"
    assert raised.value.location == Location("agent.yaml", 4, 33)


def test_aliases_within_the_bound_still_work(tmp_path: Path) -> None:
    config = project_of(
        tmp_path, HEAD + "response_format: &r {type: object}\nobservability: {resource_attributes: *r}\n"
    )
    assert load_config(config).agent.observability == {"resource_attributes": {"type": "object"}}


# -- characters and size --------------------------------------------------------------------------------------


def test_a_nul_byte_is_a_config_error_at_its_position(tmp_path: Path) -> None:
    config = project_of(
        tmp_path, b'name: demo\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: "hi\x00"}\n'
    )
    code, _, err = run("validate", str(config))
    assert code == ExitCode.CONFIG  # not 70, "internal error"
    assert err.splitlines() == [
        f"error: {config}:3:27: {config} contains a NUL byte, which YAML does not allow",
        "  fix: remove it; an agent config is plain text",
    ]


def test_invalid_utf8_is_a_config_error_at_its_position(tmp_path: Path) -> None:
    config = project_of(tmp_path, 'name: démo\ninstructions: {inline: "h'.encode() + b'\xffi"}\n')
    code, _, err = run("validate", str(config))
    assert code == ExitCode.CONFIG
    assert err.splitlines() == [
        f"error: {config}:2:26: {config} is not UTF-8 text: byte 0xff cannot start or continue a character",
        "  fix: save the file as UTF-8",
    ]


def test_a_config_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    padding = "# " + "x" * 100 + "\n"
    config = project_of(tmp_path, HEAD + padding * (MAX_CONFIG_BYTES // len(padding) + 1))
    code, _, err = run("validate", str(config))
    assert code == ExitCode.CONFIG
    assert err.splitlines()[0] == f"error: {config} is larger than 1024 KiB, the most an agent config may be"
    # Just under the limit is read as usual.
    config.write_text(HEAD + padding * ((MAX_CONFIG_BYTES - len(HEAD)) // len(padding)))
    assert run("validate", str(config))[0] == ExitCode.OK


# -- the agent's name -------------------------------------------------------------------------------------------


def test_a_name_with_a_path_in_it_is_refused_before_any_path_is_made_of_it(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    config = deep / "agent.yaml"
    config.write_text(HEAD.replace("name: demo", "name: ../../x"))
    before = sorted(tmp_path.rglob("*"))
    for command in ("status", "validate", "plan", "deploy"):
        code, out, err = run(command, str(config), environ={"PATH": os.environ["PATH"]})
        assert (code, out) == (ExitCode.CONFIG, ""), (command, err)
        assert err.splitlines()[:2] == [
            f"error: {config} is not a valid agent config (1 problem)",
            f"  {config}:1:7: name: '../../x' is not a valid agent name: it names the agent's files and image",
        ]
    assert sorted(tmp_path.rglob("*")) == before  # no state file, no lock, anywhere


@pytest.mark.parametrize("name", ["support-agent", "Agent_2", "a", "v1.2-agent"])
def test_ordinary_names_are_accepted(tmp_path: Path, name: str) -> None:
    assert load_config(project_of(tmp_path, HEAD.replace("demo", name))).agent.name == name


def test_an_environment_name_that_would_leave_the_state_directory_is_refused(
    write_agent: Callable[..., Path],
) -> None:
    config = write_agent(
        HEAD.replace("demo", "demo-agent")
        + "deployment:\n  registry: {url: ghcr.io, repository: team/demo}\n  target:\n    provider: azure\n"
        "    azure:\n      subscription_id: 00000000-0000-0000-0000-000000000000\n      resource_group: rg\n"
        "      environment_name: ../../env\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(config, display_name="agent.yaml")
    [problem] = raised.value.problems
    assert (problem.key, problem.location) == (
        "deployment.target.azure.environment_name",
        Location("agent.yaml", 11, 25),
    )
    assert (
        problem.message == "the environment name '../../env' is not one path segment: it names the agent's state file"
    )


# -- symlink loops in the build context --------------------------------------------------------------------------


def _looping_project(tmp_path: Path, source: str) -> Path:
    config = project_of(
        tmp_path, HEAD + f"tools:\n  - {{name: kb, type: hierarchical_document, source: '{source}', description: kb}}\n"
    )
    sub = config.parent / "data" / "sub"
    sub.mkdir(parents=True)
    (sub / "a.md").write_text("a")
    # Two links back up: without a bound the walk doubles at every level (2**40 before the kernel says ELOOP).
    (sub / "l1").symlink_to("..")
    (sub / "l2").symlink_to("..")
    return config


@pytest.mark.parametrize("source", ["data", "data/**/*.md"], ids=["directory", "pattern"])
def test_a_symlink_loop_in_the_project_is_an_error_naming_the_link(tmp_path: Path, source: str) -> None:
    config = _looping_project(tmp_path, source)
    loaded = load_config(config, display_name="agent.yaml")
    with pytest.raises(ContextError) as raised:
        collect(loaded)
    messages = [problem.message for problem in raised.value.problems]
    tail = ", which contains it" if source == "data" else ""
    assert messages == [
        f"data/sub/l1 is a symlink loop: it leads back to data{tail}",
        f"data/sub/l2 is a symlink loop: it leads back to data{tail}",
    ]
    assert {str(problem.location) for problem in raised.value.problems} == {"agent.yaml:5:53"}  # the source
    code, _, _ = run("validate", str(config))
    assert code == ExitCode.CONTEXT


def test_a_symlink_inside_the_project_that_is_no_loop_is_still_copied(tmp_path: Path) -> None:
    config = project_of(tmp_path, HEAD + "tools:\n  - {name: kb, type: vectorstore, source: data, description: kb}\n")
    (config.parent / "data" / "docs").mkdir(parents=True)
    (config.parent / "data" / "docs" / "a.md").write_text("a")
    (config.parent / "shared").mkdir()
    (config.parent / "shared" / "b.md").write_text("b")
    (config.parent / "data" / "shared").symlink_to("../shared")
    entries, _ = collect(load_config(config))
    assert [entry.target.as_posix() for entry in entries] == ["agent.yaml", "data/docs/a.md", "data/shared/b.md"]
