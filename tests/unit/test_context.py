"""Build context: the files the config names, nothing outside the project, secrets left out."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from agentdeploy.config.loader import load_config
from agentdeploy.errors import ContextError, ExitCode, UsageError
from agentdeploy.image.context import collect, write_context

TOOLS = """
name: demo
model: {provider: openai, name: gpt-4o}
instructions: {file: prompts/system.md}
tools:
  - {name: kb, type: vectorstore, description: d, source: data}
  - {name: fn, type: function, description: d, file: tools/fn.py, function: f}
  - {name: fn2, type: function, description: d, file: tools/fn.py, function: g}
  - {name: docs, type: hierarchical_document, description: d, source: "docs/*.md"}
  - {name: mem, type: mcp, description: d, command: node, args: [servers/mem.js, --flag]}
  - {name: env, type: mcp, description: d, command: npx, args: [x], env_file: .env}
test_cases_file: tests/cases.yaml
"""

FILES = {
    "prompts/system.md": "You help.",
    "data/a.txt": "a",
    "data/nested/b.json": "{}",
    "data/.env": "SECRET=1",
    "data/__pycache__/x.pyc": "junk",
    "tools/fn.py": "def f(): ...",
    "docs/one.md": "# one",
    "docs/two.md": "# two",
    "servers/mem.js": "console.log(1)",
    "tests/cases.yaml": "[]",
    ".env": "TOKEN=2",
    "unrelated.txt": "not named by the config",
}


def test_collects_exactly_what_the_config_names(write_agent: Callable[..., Path], tmp_path: Path) -> None:
    config = load_config(write_agent(TOOLS, FILES))
    entries, skipped = collect(config)
    assert [e.target.as_posix() for e in entries] == [
        "agent.yaml",
        "data/a.txt",
        "data/nested/b.json",
        "docs/one.md",
        "docs/two.md",
        "prompts/system.md",
        "servers/mem.js",
        "tests/cases.yaml",
        "tools/fn.py",
    ]
    assert skipped == ["data/.env"]
    os.umask(0o077)  # a strict umask must not leak into the image or its cache key
    context = write_context(entries, tmp_path / "ctx", "FROM scratch\n")
    app = tmp_path / "ctx" / "app"
    assert (app / "data/nested/b.json").read_text() == "{}"
    assert stat.S_IMODE((app / "tools/fn.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((app / "data/nested").stat().st_mode) == 0o755
    assert not (app / ".env").exists() and not (app / "data/.env").exists()
    assert (tmp_path / "ctx/Dockerfile").read_text() == "FROM scratch\n"
    assert context.digest.startswith("sha256:")


def test_digest_follows_content_only(write_agent: Callable[..., Path], tmp_path: Path) -> None:
    path = write_agent(TOOLS, FILES)
    first = write_context(collect(load_config(path))[0], tmp_path / "a", "FROM x\n").digest
    os.utime(path.parent / "tools/fn.py", (1, 1))  # touching a file changes nothing
    assert write_context(collect(load_config(path))[0], tmp_path / "b", "FROM x\n").digest == first
    (path.parent / "tools/fn.py").write_text("def f(): return 1")
    assert write_context(collect(load_config(path))[0], tmp_path / "c", "FROM x\n").digest != first
    assert write_context(collect(load_config(path))[0], tmp_path / "d", "FROM y\n").digest != first


def test_all_missing_files_in_one_error(write_agent: Callable[..., Path]) -> None:
    files = {k: v for k, v in FILES.items() if k not in ("tools/fn.py", "tests/cases.yaml")}
    files.pop("docs/one.md")
    files.pop("docs/two.md")
    config = load_config(write_agent(TOOLS, files), display_name="agent.yaml")
    with pytest.raises(ContextError) as exc:
        collect(config)
    assert exc.value.exit_code == ExitCode.CONTEXT
    assert [(p.message, str(p.location)) for p in exc.value.problems] == [
        ("tools/fn.py does not exist", "agent.yaml:6:54"),
        ("docs/*.md does not exist (the pattern matches nothing)", "agent.yaml:8:71"),
        ("tests/cases.yaml does not exist", "agent.yaml:11:18"),
    ]


@pytest.mark.parametrize("path", ["../outside.md", "prompts/../../outside.md", "/etc/passwd", "~/x.md"])
def test_paths_that_leave_the_project_are_refused(write_agent: Callable[..., Path], path: str) -> None:
    config_path = write_agent(f"name: d\nmodel: {{provider: openai, name: gpt-4o}}\ninstructions: {{file: '{path}'}}\n")
    (config_path.parent.parent / "outside.md").write_text("secret")
    with pytest.raises(ContextError) as exc:
        collect(load_config(config_path))
    [problem] = exc.value.problems
    assert "absolute path" in problem.message or "leaves the project directory" in problem.message


def test_symlinks_out_of_the_project_are_refused(write_agent: Callable[..., Path], tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "key.pem").write_text("PRIVATE")
    config_path = write_agent(
        "name: d\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {file: link.md}\n"
        "tools: [{name: kb, type: vectorstore, description: d, source: data}]\n",
        {"data/ok.txt": "ok"},
    )
    project = config_path.parent
    (project / "link.md").symlink_to(outside / "key.pem")
    (project / "data" / "evil").symlink_to(outside)
    (project / "data" / "inner.txt").symlink_to(project / "data" / "ok.txt")  # inside: fine
    with pytest.raises(ContextError) as exc:
        collect(load_config(config_path))
    messages = sorted(p.message for p in exc.value.problems)
    assert messages == [
        "data/evil is a symlink out of the project",
        "link.md leaves the project directory through a symlink",
    ]


def test_context_directory_must_be_empty(write_agent: Callable[..., Path], tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    entries, _ = collect(
        load_config(write_agent("name: d\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: hi}\n"))
    )
    with pytest.raises(UsageError, match="is not empty"):  # a bad --out (exit 2), not a missing file (exit 4)
        write_context(entries, tmp_path / "full", "FROM x\n")
