"""`agentdeploy base build`: a HoloDeck base image built on this machine, for when upstream's
(ghcr.io/justinbarias/holodeck-base) cannot be pulled: offline, behind a proxy, or in an organisation that
builds its own bases.

The recipe (templates/base/) installs holodeck-ai from PyPI, with the extras an agent needs, into a venv on a
starting image: one the user names (`--from`, a python:3.x-slim image they have or can pull), else a
python:3.x-slim or Debian image the engine already has, else a Debian bookworm rootfs made here with
mmdebstrap. The image is named by a content key over the starting image and the recipe, so it is built once
per machine and found again by that key (the tests' real-runtime base is this same image).

Pure here: the recipe, the key, the name, the printed line. The engine, mmdebstrap and the build are the
adapters at the bottom.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from agentdeploy.config.models import DEFAULT_HOLODECK_VERSION
from agentdeploy.errors import BuildError, TargetUnavailableError, UsageError

if TYPE_CHECKING:
    from docker import DockerClient

REPOSITORY = "agentdeploy/holodeck-base"
KEY_LABEL = "io.agentdeploy.base.key"
DEFAULT_EXTRAS: tuple[str, ...] = ("openai-agents",)
# The rootfs made with mmdebstrap when the engine has no starting image: Debian's Node.js too, for MCP tools
# started with npx.
ROOTFS_REPOSITORY = "agentdeploy/bookworm-rootfs"
SUITE = "bookworm"
PACKAGES = "python3,python3-venv,python3-pip,ca-certificates,curl,nodejs,npm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Requirements resolved once and pinned, by (version, extras); other combinations install the top-level ones.
_PINNED: dict[tuple[str, tuple[str, ...]], str] = {
    (DEFAULT_HOLODECK_VERSION, DEFAULT_EXTRAS): "requirements-0.7.1-openai-agents.txt"
}
_VERSION_RE = re.compile(r"^\d+(\.\d+){1,3}((a|b|rc)\d+)?(\.post\d+)?$")
_EXTRA_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_STARTING_REPOSITORIES = ("python", "debian")
_PYTHON_SLIM_RE = re.compile(r"^3\.(1[1-9])(\.\d+)?-slim(-bookworm)?$")
_DEBIAN_RE = re.compile(r"^(bookworm|12)(-slim)?$")

LineSink = Callable[[str], None]
WITHOUT_PULLING = (
    "name an image this engine has (docker images), or leave out --from to start from a Debian rootfs made here "
    "with mmdebstrap"
)


@dataclass(frozen=True)
class BaseRecipe:
    """What goes into the base: holodeck-ai at a version, with extras."""

    holodeck_version: str = DEFAULT_HOLODECK_VERSION
    extras: tuple[str, ...] = DEFAULT_EXTRAS

    @property
    def requirement(self) -> str:
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        return f"holodeck-ai{extras}=={self.holodeck_version}"


def parse_recipe(version: str | None, extras: str | None) -> BaseRecipe:
    """The recipe from `--holodeck-version` and `--extras` (comma-separated; "" for none), or UsageError."""
    version = DEFAULT_HOLODECK_VERSION if version is None else version.strip()
    if not _VERSION_RE.match(version):
        raise UsageError(
            f"--holodeck-version {version!r} is not a holodeck-ai release version",
            hint=f"e.g. --holodeck-version {DEFAULT_HOLODECK_VERSION}",
        )
    if extras is None:
        return BaseRecipe(version, DEFAULT_EXTRAS)
    names = sorted({name.strip() for name in extras.split(",") if name.strip()})
    bad = [name for name in names if not _EXTRA_RE.match(name)]
    if bad:
        raise UsageError(
            f"--extras {bad[0]!r} is not an extra's name",
            hint="comma-separated names of holodeck-ai extras, e.g. --extras openai-agents,chromadb",
        )
    return BaseRecipe(version, tuple(names))


def requirements_text(recipe: BaseRecipe) -> str:
    """requirements.txt for the recipe: the pinned resolution when there is one, else the top-level lines."""
    pinned = _PINNED.get((recipe.holodeck_version, recipe.extras))
    if pinned is not None:
        return _template(pinned).decode()
    lines = [
        "# Top-level requirements only (agentdeploy pins a full resolution for the default recipe alone).",
        recipe.requirement,
        "exceptiongroup",  # holodeck-ai 0.7.1 on Python 3.11 needs it (FACTS.md)
    ]
    if "openai-agents" in recipe.extras:
        lines.append("openai<2.45")  # 2.45 breaks openai-agents 0.17.4: every turn fails (FACTS.md)
    return "\n".join(lines) + "\n"


def recipe_files(recipe: BaseRecipe) -> dict[str, bytes]:
    """The build context's files that make the image what it is (the CA bundle is added at build time)."""
    return {
        "Dockerfile": _template("Dockerfile"),
        "prepare.sh": _template("prepare.sh"),
        "requirements.txt": requirements_text(recipe).encode(),
    }


def rootfs_key() -> str:
    return hashlib.sha256(f"{SUITE}\0{PACKAGES}\0".encode()).hexdigest()[:16]


def rootfs_reference() -> str:
    return f"{ROOTFS_REPOSITORY}:{rootfs_key()}"


@dataclass(frozen=True)
class Start:
    """The image the base starts FROM, and what identifies its content in the key."""

    reference: str
    identity: str  # the rootfs recipe's key, or the image id the engine has
    made_here: bool = False  # the mmdebstrap rootfs (built when the engine lacks it)


def rootfs_start() -> Start:
    return Start(rootfs_reference(), rootfs_key(), made_here=True)


def content_key(start: Start, files: Mapping[str, bytes]) -> str:
    """16 hex digits over the starting image and the recipe: equal keys, equal images."""
    digest = hashlib.sha256(start.identity.encode())
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    return digest.hexdigest()[:16]


def default_name(recipe: BaseRecipe, key: str) -> str:
    return f"{REPOSITORY}:{recipe.holodeck_version}-{key}"


def config_line(name: str) -> str:
    """What to put in agent.yaml (under deployment: build:) to build on this base."""
    return f"deployment.build.base_image: {name}"


def pick_local_start(tags: Sequence[str]) -> str | None:
    """Among the engine's image tags, a starting image that needs nothing pulled: the newest python:3.x-slim
    (3.11 or later), else Debian bookworm; None when there is neither (pure)."""
    pythons: list[tuple[int, str]] = []
    debians: list[str] = []
    for reference in tags:
        repository, _, tag = reference.rpartition(":")
        if repository in ("python", "docker.io/library/python"):
            match = _PYTHON_SLIM_RE.match(tag)
            if match:
                pythons.append((int(match.group(1)), reference))
        elif repository in ("debian", "docker.io/library/debian") and _DEBIAN_RE.match(tag):
            debians.append(reference)
    if pythons:
        return max(pythons)[1]
    return sorted(debians)[0] if debians else None


def _template(name: str) -> bytes:
    return resources.files("agentdeploy.image").joinpath("templates", "base", name).read_bytes()


# -- the adapters: the engine, mmdebstrap, the build ---------------------------------------------------------


@dataclass
class BaseBuilt:
    name: str
    key: str
    start: str
    built: bool  # False: this machine had it already (found by its key)
    seconds: float


def find_by_key(client: DockerClient, recipe: BaseRecipe, key: str) -> str | None:
    """The id of the base this engine built from the recipe with this key: by the name every build gives it,
    and only when the image is still that build (its key label). The label alone would not do: images built
    FROM the base (every agent's) inherit it."""
    from docker.errors import ImageNotFound

    try:
        image = client.images.get(default_name(recipe, key))
    except ImageNotFound:
        return None
    labels = image.labels or {}
    return str(image.id) if labels.get(KEY_LABEL) == key else None


def choose_start(client: DockerClient, from_image: str | None, on_line: LineSink) -> Start:
    """The starting image: --from (pulled when absent), else one the engine has, else the mmdebstrap rootfs."""
    from docker.errors import ImageNotFound

    from agentdeploy.image.pull import pull_base

    if from_image:
        try:
            return Start(from_image, str(client.images.get(from_image).id))
        except ImageNotFound:
            image_id = pull_base(
                client,
                from_image,
                what=f"the starting image {from_image} (--from)",
                on_line=on_line,
                build_here=WITHOUT_PULLING,
            )
            return Start(from_image, image_id)
    local = pick_local_start([tag for image in client.images.list() for tag in image.tags])
    if local is not None:
        return Start(local, str(client.images.get(local).id))
    return rootfs_start()


def ensure_base(
    client: DockerClient,
    recipe: BaseRecipe,
    *,
    from_image: str | None = None,
    tag: str | None = None,
    rebuild: bool = False,
    on_line: LineSink = lambda line: None,
    lock_dir: Path | None = None,
) -> BaseBuilt:
    """The base for `recipe`, built only when this engine has none with the same key (or with `rebuild`,
    from nothing: the rootfs and the layer cache included). One builder at a time per machine."""
    from filelock import FileLock

    started = time.monotonic()
    files = recipe_files(recipe)
    start = choose_start(client, from_image, on_line)
    key = content_key(start, files)
    canonical = default_name(recipe, key)
    # In this user's cache, not /tmp: a lock file another user left there could not be opened.
    lock_dir = lock_dir or Path.home() / ".cache" / "agentdeploy"
    lock_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_dir / "base-build.lock"))
    with lock:  # another process may be building it right now: wait, then find it
        found = None if rebuild else find_by_key(client, recipe, key)
        if found is None:
            if rebuild and start.made_here:
                _remove_quietly(client, start.reference)
            _build(client, start, files, canonical, key, on_line, nocache=rebuild)
            found = str(client.images.get(canonical).id)
            built = True
        else:
            built = False
        if tag and tag != canonical:
            _tag(client, found, tag)
    return BaseBuilt(tag or canonical, key, start.reference, built=built, seconds=time.monotonic() - started)


def _remove_quietly(client: DockerClient, reference: str) -> None:
    from docker.errors import ImageNotFound

    with contextlib.suppress(ImageNotFound):
        client.images.remove(reference, force=True)


def _tag(client: DockerClient, image_id: str, name: str) -> None:
    repository, _, tag = name.rpartition(":")
    client.images.get(image_id).tag(repository, tag)


def _build(
    client: DockerClient,
    start: Start,
    files: Mapping[str, bytes],
    name: str,
    key: str,
    on_line: LineSink,
    *,
    nocache: bool,
) -> None:
    from docker.errors import APIError, DockerException, ImageNotFound

    with tempfile.TemporaryDirectory(prefix="agentdeploy-base-") as temporary:
        work = Path(temporary)
        if start.made_here:
            try:
                client.images.get(start.reference)
            except ImageNotFound:
                _make_rootfs(client, work / "rootfs.tar", on_line)
        context = work / "context"
        context.mkdir()
        for file_name, content in files.items():
            (context / file_name).write_bytes(content)
        # Where egress passes a TLS-intercepting proxy, pip in the builder stage needs this machine's CAs.
        (context / "ca-bundle.pem").write_bytes(CA_BUNDLE.read_bytes() if CA_BUNDLE.is_file() else b"")
        on_line(f"building {name} on {start.reference}: {_requirement_of(files)} from PyPI (host network)")
        tail: list[str] = []
        try:
            for chunk in client.api.build(
                path=str(context),
                tag=name,
                buildargs={"BASE": start.reference},
                labels={KEY_LABEL: key},
                network_mode="host",
                nocache=nocache,
                rm=True,
                forcerm=True,
                decode=True,
            ):
                line = str(chunk.get("stream", "")).rstrip()
                if line:
                    tail = [*tail[-30:], line]
                    on_line(line)
                if "error" in chunk:
                    raise BuildError(
                        f"building the HoloDeck base failed: {str(chunk['error']).strip()}",
                        hint="last build output:\n    " + "\n    ".join(tail[-8:]),
                    )
        except APIError as exc:
            raise BuildError(f"the Docker engine refused the base build: {exc.explanation or exc}") from None
        except DockerException as exc:
            raise TargetUnavailableError(f"lost the Docker engine during the base build: {exc}") from None


def _requirement_of(files: Mapping[str, bytes]) -> str:
    text = files["requirements.txt"].decode()
    found = re.search(r"^holodeck-ai\S*", text, re.M)
    return found.group(0) if found else "holodeck-ai"


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt is configured with (deb822 or one-line sources), for mmdebstrap."""
    files = [*sorted(sources.glob("sources.list.d/*.sources")), sources / "sources.list"]
    files += sorted(sources.glob("sources.list.d/*.list"))
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split() and "security" not in uris.group(1):
                return uris.group(1)
        for line in text.splitlines():
            match = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line.strip())
            if match and match.group(2) == SUITE:
                return match.group(1)
    return "http://deb.debian.org/debian"


def mmdebstrap_command(tarball: Path, mirror: str, *, root: bool, sudo: bool) -> list[str]:
    """mmdebstrap needs root, or user namespaces (its unshare mode) without it."""
    prefix = ["sudo"] if not root and sudo else []
    mode = [] if root or sudo else ["--mode=unshare"]
    return [
        *prefix,
        "mmdebstrap",
        "--quiet",
        *mode,
        "--variant=minbase",
        f"--include={PACKAGES}",
        SUITE,
        str(tarball),
        mirror,
    ]


def _make_rootfs(client: DockerClient, tarball: Path, on_line: LineSink) -> None:
    import os

    if shutil.which("mmdebstrap") is None:
        raise BuildError(
            "there is no starting image for the HoloDeck base: the engine has no python:3.x-slim or Debian image, "
            "and mmdebstrap (which makes a Debian rootfs here) is not installed",
            hint="name a Python 3.11+ image you have or can pull: agentdeploy base build --from python:3.11-slim; "
            "or install mmdebstrap (Debian/Ubuntu: sudo apt-get install mmdebstrap)",
        )
    root = os.geteuid() == 0
    mirror = debian_mirror()
    command = mmdebstrap_command(tarball, mirror, root=root, sudo=not root and shutil.which("sudo") is not None)
    on_line(f"making a Debian {SUITE} rootfs: {' '.join(command)}")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = "\n    ".join(result.stderr.strip().splitlines()[-8:])
        raise BuildError(
            f"mmdebstrap could not make the Debian {SUITE} rootfs (exit {result.returncode})",
            hint=f"it needs {mirror} and root or user namespaces; or start from an image: "
            f"agentdeploy base build --from python:3.11-slim\n    {last}",
        )
    with tarball.open("rb") as data:
        repository, _, tag = rootfs_reference().rpartition(":")
        client.api.import_image_from_data(data.read(), repository=repository, tag=tag)
