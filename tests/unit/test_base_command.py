"""`agentdeploy base build`, the pure parts: the recipe it renders, its content key, the starting image it
picks, the line it prints, its arguments, and the fix a failed pull offers for each cause (the engine's real
words). The build itself: tests/integration/test_base_command.py."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest

from agentdeploy.cli import build_parser, main
from agentdeploy.errors import ExitCode
from agentdeploy.image import base
from agentdeploy.image.base import BaseRecipe, Start
from agentdeploy.image.pull import pull_failure, registry_host


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(keyword, arguments) per instruction, `\\` continuations joined as Docker's parser does."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in dockerfile.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = re.sub(r"\s+", " ", pending + line).strip().partition(" ")
        pending = ""
        result.append((keyword.upper(), rest.strip()))
    return result


def stages(dockerfile: str) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions(dockerfile):
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, rest))
    return found


def test_the_base_is_built_like_upstreams_on_the_starting_image() -> None:
    dockerfile = base.recipe_files(BaseRecipe())["Dockerfile"].decode()
    assert instructions(dockerfile)[0] == ("ARG", "BASE")
    builder, final = stages(dockerfile)
    assert builder[0] == ("FROM", "${BASE} AS builder") and final[0] == ("FROM", "${BASE}")
    # The machine's CA bundle (a TLS-intercepting proxy) and pip's settings stay in the builder stage.
    assert any(k == "COPY" and "ca-bundle.pem" in rest for k, rest in builder)
    assert not any("ca-bundle" in rest for k, rest in final if k != "RUN")
    assert not any(k == "ENV" and "PIP_" in rest for k, rest in final)
    pip = next(rest for k, rest in builder if k == "RUN" and "pip install" in rest)
    assert "python3 -m venv /opt/holodeck" in pip and "-r /tmp/agentdeploy-base/requirements.txt" in pip
    # Only the venv and npm's cache come over; then upstream's shape: user holodeck (1000), WORKDIR /app.
    assert [rest for k, rest in final if k == "COPY" and "--from" in rest] == [
        "--from=builder /opt/holodeck /opt/holodeck",
        "--from=builder /opt/npm-cache /opt/npm-cache",
    ]
    assert any(k == "RUN" and "useradd --uid 1000 --create-home --shell /bin/sh holodeck" in rest for k, rest in final)
    assert final[-4:] == [
        (
            "ENV",
            "PATH=/opt/holodeck/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PYTHONUNBUFFERED=1",
        ),
        ("USER", "holodeck"),
        ("WORKDIR", "/app"),
        ("ENTRYPOINT", '["/app/entrypoint.sh"]'),
    ]


def test_the_default_recipe_installs_the_pinned_resolution() -> None:
    text = base.requirements_text(BaseRecipe())
    pins = dict(line.split("==") for line in text.splitlines() if line and not line.startswith("#"))
    assert pins["holodeck-ai"] == "0.7.1" and pins["openai-agents"] == "0.17.4"
    assert pins["openai"] == "2.44.0" and "exceptiongroup" in pins  # FACTS.md: openai<2.45; 3.11 needs it
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", name) for name in pins)  # every line pinned, nothing loose


def test_other_versions_and_extras_install_their_top_level_requirements() -> None:
    assert base.requirements_text(BaseRecipe("0.7.2", ("chromadb", "openai-agents"))).splitlines()[1:] == [
        "holodeck-ai[chromadb,openai-agents]==0.7.2",
        "exceptiongroup",
        "openai<2.45",
    ]
    assert base.requirements_text(BaseRecipe("0.7.1", ())).splitlines()[1:] == ["holodeck-ai==0.7.1", "exceptiongroup"]


def test_the_content_key_is_the_starting_image_and_every_byte_of_the_recipe() -> None:
    files = base.recipe_files(BaseRecipe())
    rootfs = base.rootfs_start()
    key = base.content_key(rootfs, files)
    assert re.fullmatch(r"[0-9a-f]{16}", key)
    assert base.content_key(rootfs, dict(files)) == key  # the same inputs, the same image
    assert base.content_key(Start("python:3.11-slim", "sha256:" + "1" * 64), files) != key
    assert base.content_key(rootfs, {**files, "prepare.sh": files["prepare.sh"] + b"\n"}) != key
    assert base.content_key(rootfs, base.recipe_files(BaseRecipe("0.7.1", ("chromadb",)))) != key
    # The rootfs is known by its own recipe (suite and packages), so a fresh machine makes the same one.
    assert rootfs == Start(f"agentdeploy/bookworm-rootfs:{base.rootfs_key()}", base.rootfs_key(), made_here=True)


def test_the_printed_line_names_the_image_by_version_and_key() -> None:
    name = base.default_name(BaseRecipe(), "0123456789abcdef")
    assert name == "agentdeploy/holodeck-base:0.7.1-0123456789abcdef"
    assert base.config_line(name) == "deployment.build.base_image: agentdeploy/holodeck-base:0.7.1-0123456789abcdef"


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["python:3.11-slim", "python:3.12-slim-bookworm", "busybox:1"], "python:3.12-slim-bookworm"),
        (["python:3.10-slim", "python:3.12", "debian:bookworm-slim"], "debian:bookworm-slim"),
        (["python:3.10-slim", "debian:11", "alpine:3"], None),
        ([], None),
    ],
)
def test_the_starting_image_is_one_the_engine_has_when_it_fits(tags: list[str], expected: str | None) -> None:
    assert base.pick_local_start(tags) == expected


def test_arguments() -> None:
    args = build_parser().parse_args(
        ["base", "build", "--holodeck-version", "0.7.2", "--extras", "openai-agents,chromadb", "--from",
         "python:3.11-slim", "--tag", "registry.example/holodeck-base:ours", "--json"]
    )  # fmt: skip
    assert (args.holodeck_version, args.extras, args.from_image, args.tag, args.json, args.rebuild) == (
        "0.7.2", "openai-agents,chromadb", "python:3.11-slim", "registry.example/holodeck-base:ours", True, False
    )  # fmt: skip
    assert base.parse_recipe(args.holodeck_version, args.extras) == BaseRecipe("0.7.2", ("chromadb", "openai-agents"))
    assert base.parse_recipe(None, None) == BaseRecipe("0.7.1", ("openai-agents",))
    assert base.parse_recipe(None, "") == BaseRecipe("0.7.1", ())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--holodeck-version", "latest"], "error: --holodeck-version 'latest' is not a holodeck-ai release version"),
        (["--extras", "openai-agents,Bad Extra"], "error: --extras 'Bad Extra' is not an extra's name"),
    ],
)
def test_bad_arguments_stop_before_the_engine_is_asked(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agentdeploy.image.engine.connect", _refuse)
    err = io.StringIO()
    code = main(["base", "build", *argv], environ={}, out=io.StringIO(), err=err)
    assert code == ExitCode.USAGE and err.getvalue().splitlines()[0] == message


def _refuse(*args: Any) -> None:
    raise AssertionError("the engine was asked")


class _Image:
    def __init__(self, image_id: str, tags: list[str], labels: dict[str, str]) -> None:
        self.id, self.tags, self.labels = image_id, tags, labels

    def tag(self, repository: str, tag: str) -> bool:
        self.tags.append(f"{repository}:{tag}")
        return True


class _Images:
    """An engine with the rootfs, the base built from the default recipe (under its name, with its key label),
    and an agent image built FROM it (which inherits the label, and is listed first)."""

    def __init__(self, key: str) -> None:
        self.rootfs = _Image("sha256:" + "a" * 64, [base.rootfs_reference()], {})
        self.base = _Image("sha256:" + "b" * 64, [f"agentdeploy/holodeck-base:0.7.1-{key}"], {base.KEY_LABEL: key})
        self.agent = _Image("sha256:" + "c" * 64, ["agentdeploy/hello-agent:1"], {base.KEY_LABEL: key})

    def list(self, filters: dict[str, str] | None = None) -> list[_Image]:
        every = [self.agent, self.base, self.rootfs]
        if filters and "label" in filters:
            name, _, value = filters["label"].partition("=")
            return [image for image in every if image.labels.get(name) == value]
        return every

    def get(self, name: str) -> _Image:
        from docker.errors import ImageNotFound

        for image in (self.agent, self.base, self.rootfs):
            if name == image.id or name in image.tags:
                return image
        raise ImageNotFound(name)


@pytest.mark.parametrize("tag", [None, "registry.example/holodeck-base:ours"])
def test_a_base_built_from_the_same_recipe_is_found_and_its_line_printed(
    tag: str | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key = base.content_key(base.rootfs_start(), base.recipe_files(BaseRecipe()))
    engine = type("Engine", (), {"images": _Images(key)})()
    monkeypatch.setattr("agentdeploy.image.engine.connect", lambda *args: engine)
    monkeypatch.setattr(base, "_build", _refuse)
    monkeypatch.setenv("HOME", str(tmp_path))  # its own lock: a real build may hold this user's
    out, err = io.StringIO(), io.StringIO()
    argv = ["base", "build", *(["--tag", tag] if tag else [])]
    assert main(argv, environ={}, out=out, err=err) == ExitCode.OK, err.getvalue()
    canonical = f"agentdeploy/holodeck-base:0.7.1-{key}"
    assert out.getvalue() == f"deployment.build.base_image: {tag or canonical}\n"
    assert engine.images.base.tags == [canonical, *([tag] if tag else [])]
    assert engine.images.agent.tags == ["agentdeploy/hello-agent:1"]  # an image built FROM the base is no base
    assert f"{tag or canonical}: found (built earlier from the same recipe), key {key}" in err.getvalue()
    assert (tmp_path / ".cache" / "agentdeploy" / "base-build.lock").exists()


def test_mmdebstrap_runs_as_root_or_through_sudo_or_in_a_user_namespace() -> None:
    tail = ["--variant=minbase", f"--include={base.PACKAGES}", "bookworm", "/t/rootfs.tar", "http://mirror/debian"]
    tarball, mirror = Path("/t/rootfs.tar"), "http://mirror/debian"
    assert base.mmdebstrap_command(tarball, mirror, root=True, sudo=False) == ["mmdebstrap", "--quiet", *tail]
    assert base.mmdebstrap_command(tarball, mirror, root=False, sudo=True) == ["sudo", "mmdebstrap", "--quiet", *tail]
    assert base.mmdebstrap_command(tarball, mirror, root=False, sudo=False) == [
        "mmdebstrap", "--quiet", "--mode=unshare", *tail
    ]  # fmt: skip


def test_the_debian_mirror_is_the_one_apt_uses(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.debian.org/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
    )
    assert base.debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://old.example/debian bookworm main\n")
    assert base.debian_mirror(tmp_path) == "http://old.example/debian"


# The engine's own messages (docker 26, pulled here: an unresolvable host, a closed port, a registry that
# lacks the image) and a registry's refusal as the engine relays it.
DNS = 'Get "https://ghcr.io/v2/": dial tcp: lookup ghcr.io on 10.255.255.53:53: no such host'
CLOSED = 'Get "http://127.0.0.1:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused'
MISSING = "manifest for 127.0.0.1:5000/nobody/holodeck-base:1 not found: manifest unknown: manifest unknown"
REFUSED = 'Head "https://ghcr.io/v2/justinbarias/holodeck-base/manifests/latest": unauthorized'
BUILD_HERE = (
    "build a HoloDeck base on this machine with `agentdeploy base build` and set deployment.build.base_image to "
    "the name it prints"
)


def test_a_machine_that_cannot_reach_the_registry_is_offered_a_base_built_here() -> None:
    for reason, host in ((DNS, "ghcr.io"), (CLOSED, "127.0.0.1:5999")):
        error = pull_failure("the base image X", f"{host}/justinbarias/holodeck-base:latest", reason)
        assert error.render() == (
            f"error: the base image X cannot be pulled: this machine cannot reach {host} ({reason})\n"
            f"  fix: {BUILD_HERE}; or, where a proxy leads out, give the Docker engine its proxy settings"
        )
        assert error.exit_code == ExitCode.BUILD


def test_a_registry_that_refused_is_offered_a_login_and_one_without_the_image_a_name_check() -> None:
    refused = pull_failure("the base image X", "ghcr.io/justinbarias/holodeck-base:latest", REFUSED)
    assert refused.render() == (
        f"error: the base image X cannot be pulled: ghcr.io refused access ({REFUSED})\n"
        f"  fix: log in to it (docker login ghcr.io) with an account that may pull it; or {BUILD_HERE}"
    )
    missing = pull_failure("the base image X", "127.0.0.1:5000/nobody/holodeck-base:1", MISSING)
    assert missing.render() == (
        f"error: the base image X cannot be pulled: 127.0.0.1:5000 has no such image ({MISSING})\n"
        f"  fix: check the name and tag; or {BUILD_HERE}"
    )


def test_the_registry_of_a_reference() -> None:
    assert [registry_host(r) for r in ("ghcr.io/a/b:1", "localhost:5000/a", "library/python:3", "python:3")] == [
        "ghcr.io", "localhost:5000", "docker.io", "docker.io"
    ]  # fmt: skip
