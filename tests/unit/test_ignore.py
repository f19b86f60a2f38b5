"""The build context of a user's own Dockerfile, and the secrets a generated context leaves out of data
directories: which files, which warning, and which changes make a tag dirty."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest

from agentdeploy.cli import main
from agentdeploy.config.loader import load_config
from agentdeploy.image.context import collect
from agentdeploy.image.ignore import is_secret_file, own_context, sent_filter


def tree(root: Path, files: dict[str, str]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


PROJECT = {
    "Dockerfile": "FROM x\nCOPY . /app/\n",
    "agent.yaml": "name: a\n",
    "src/tool.py": "print(1)\n",
    ".env": "KEY=1\n",
    ".env.example": "KEY=\n",
    ".envrc": "export KEY=1\n",
    "src/.env.local": "KEY=1\n",
    "id_rsa": "key\n",
    "keys/id_ed25519.pub": "key\n",
    "tls/server.key": "key\n",
    "tls/chain.pem": "cert\n",
    ".git/HEAD": "ref: refs/heads/main\n",
    ".git/objects/ab/cdef": "blob\n",
    ".agentdeploy/a.local.json": "{}\n",
    ".ssh/config": "Host x\n",
    "home/.docker/config.json": "{}\n",
    "home/.docker/other.json": "{}\n",
}


def test_secrets_git_and_state_stay_out_and_are_named_once(tmp_path: Path) -> None:
    context = own_context(tree(tmp_path, PROJECT), "Dockerfile")
    sent_files = [path for path in context.files if (tmp_path / path).is_file()]
    assert sent_files == [".env.example", "Dockerfile", "agent.yaml", "home/.docker/other.json", "src/tool.py"]
    # A directory is named once (.git/, .ssh/), the state directory not at all (agentdeploy's own).
    assert context.left_out == [
        ".env",
        ".envrc",
        ".git/",
        ".ssh/",
        "home/.docker/config.json",
        "id_rsa",
        "keys/id_ed25519.pub",
        "src/.env.local",
        "tls/chain.pem",
        "tls/server.key",
    ]


def test_the_users_dockerignore_has_the_last_word(tmp_path: Path) -> None:
    tree(tmp_path, PROJECT)
    (tmp_path / ".dockerignore").write_text("# comments are not patterns\n!tls/chain.pem\nsrc\n\n!.git\n")
    context = own_context(tmp_path, "Dockerfile")
    sent_files = {path for path in context.files if (tmp_path / path).is_file()}
    assert {"tls/chain.pem", ".git/HEAD", ".git/objects/ab/cdef", ".dockerignore"} <= sent_files
    assert "src/tool.py" not in sent_files and "tls/server.key" not in sent_files
    # What the user excluded themselves (src) is not named; what they re-included is not either.
    assert context.left_out == [
        ".env",
        ".envrc",
        ".ssh/",
        "home/.docker/config.json",
        "id_rsa",
        "keys/id_ed25519.pub",
        "tls/server.key",
    ]


def test_a_dockerignore_that_excludes_the_dockerfile_still_sends_it(tmp_path: Path) -> None:
    tree(tmp_path, {"build/Dockerfile": "FROM x\n", "agent.yaml": "name: a\n"})
    (tmp_path / ".dockerignore").write_text("build\n")
    assert [p for p in own_context(tmp_path, "build/Dockerfile").files if (tmp_path / p).is_file()] == [
        ".dockerignore",
        "agent.yaml",
        "build/Dockerfile",
    ]


def test_sent_filter_agrees_with_the_walk_and_judges_deleted_paths(tmp_path: Path) -> None:
    tree(tmp_path, PROJECT)
    (tmp_path / ".dockerignore").write_text("!tls/chain.pem\n")
    sent = sent_filter(tmp_path, "Dockerfile")
    walked = {path for path in own_context(tmp_path, "Dockerfile").files if (tmp_path / path).is_file()}
    every_file = {path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*") if path.is_file()}
    assert {path for path in every_file if sent(path)} == walked
    assert sent("src/deleted.py") and not sent(".git/objects/zz/deleted") and not sent("gone/.env")


@pytest.mark.parametrize(
    ("path", "secret"),
    [
        ("data/.env", True),
        ("data/.env.prod", True),
        ("data/.env.example", False),
        ("data/cert.pem", True),
        ("data/.ssh/known_hosts", True),
        (".ssh/id", True),
        ("data/id_rsa", True),
        ("data/faq.md", False),
        ("data/keys.md", False),
    ],
)
def test_what_counts_as_a_secret_file(path: str, secret: bool) -> None:
    assert is_secret_file(path) is secret


def test_a_generated_context_leaves_keys_in_a_data_directory_out_but_keeps_a_file_named_on_its_own(
    tmp_path: Path,
) -> None:
    tree(
        tmp_path,
        {
            "agent.yaml": "name: a\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {file: prompt.md}\n"
            "tools:\n  - {name: kb, type: vectorstore, description: kb, source: data}\n"
            "  - {name: ca, type: vectorstore, description: ca, source: certs/ca.pem}\n",
            "prompt.md": "hi",
            "data/faq.md": "facts",
            "data/server.key": "key",
            "data/.env": "K=1",
            "certs/ca.pem": "public",
        },
    )
    entries, skipped = collect(load_config(tmp_path / "agent.yaml"))
    assert [entry.target.as_posix() for entry in entries] == ["agent.yaml", "certs/ca.pem", "data/faq.md", "prompt.md"]
    assert skipped == ["data/.env", "data/server.key"]


def _git(directory: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=directory,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _tag(config: Path) -> str:
    out, err = io.StringIO(), io.StringIO()
    assert main(["image", str(config), "--json"], environ={"PATH": "/usr/bin:/bin"}, out=out, err=err) == 0, err
    return str(json.loads(out.getvalue())["tag"])


def test_an_own_dockerfile_tag_is_dirty_only_by_what_the_image_gets(tmp_path: Path) -> None:
    project = tree(
        tmp_path / "repo",
        {
            "agent.yaml": "name: own\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: hi}\n"
            "deployment:\n  build: {dockerfile: Dockerfile}\n",
            "Dockerfile": "FROM x\nCOPY . /app/\n",
            ".gitignore": ".env\n*.pem\nnotes/\n",
            "tool.py": "print(1)\n",
        },
    )
    _git(project, "init", "-q", "-b", "main")
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "-m", "first")
    clean = _git(project, "rev-parse", "HEAD")[:7]
    config = project / "agent.yaml"
    (project / ".env").write_text("OPENAI_API_KEY=sk-one\n")
    (project / "server.pem").write_text("key\n")
    assert _tag(config) == clean
    (project / ".env").write_text("OPENAI_API_KEY=sk-two\n")  # a rotated secret: the image is the same
    assert _tag(config) == clean

    (project / "notes").mkdir()
    (project / "notes" / "todo.md").write_text("git-ignored, but COPY . sends it\n")
    dirty = _tag(config)
    assert dirty.startswith(f"{clean}-dirty-")
    (project / "notes" / "todo.md").unlink()
    (project / "tool.py").unlink()  # a deleted input is a change too
    assert _tag(config).startswith(f"{clean}-dirty-") and _tag(config) != dirty
