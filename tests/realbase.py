"""The real-runtime base image for tests: Debian bookworm (mmdebstrap) + holodeck-ai from PyPI.

Built once per machine and kept by a content key (the recipe in tests/realruntime/base/), so a second
test run, or a second test, reuses it; a changed recipe builds a new one. Run this file to build it
ahead of the tests and print its name and the time it took:

    python tests/realbase.py
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RECIPE = Path(__file__).resolve().parent / "realruntime" / "base"
REPOSITORY = "agentdeploy-test/holodeck-base"
ROOTFS_REPOSITORY = "agentdeploy-test/bookworm-rootfs"
SUITE = "bookworm"
# Debian's Node.js too: MCP tools started with npx (the compat sample's memory server) need it.
PACKAGES = "python3,python3-venv,python3-pip,ca-certificates,curl,nodejs,npm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
LOCK = Path(tempfile.gettempdir()) / "agentdeploy-realbase.lock"
HOLODECK_VERSION = "0.7.1"


def rootfs_key() -> str:
    return hashlib.sha256(f"{SUITE}\0{PACKAGES}\0".encode()).hexdigest()[:16]


def recipe_key() -> str:
    digest = hashlib.sha256(rootfs_key().encode())
    for name in sorted(p.name for p in RECIPE.iterdir()):
        digest.update(name.encode() + b"\0" + (RECIPE / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def image_name() -> str:
    return f"{REPOSITORY}:{recipe_key()}"


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt is configured with (deb822 or one-line sources)."""
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


def _exists(client: Any, name: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(name)
        return True
    except ImageNotFound:
        return False


def ensure_real_base(client: Any, log: Callable[[str], None] = print, *, cold: bool = False) -> str:
    """The base image's name, building it first when this machine does not have it yet (with `cold`:
    from nothing, the rootfs included and no layer cache, as a fresh machine does)."""
    name = image_name()
    if cold:
        for stale in (name, f"{ROOTFS_REPOSITORY}:{rootfs_key()}"):
            if _exists(client, stale):
                client.images.remove(stale, force=True)
    if _exists(client, name):
        return name
    LOCK.touch(exist_ok=True)
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it right now
        if _exists(client, name):
            return name
        _build(client, name, log, nocache=cold)
    return name


def _build(client: Any, name: str, log: Callable[[str], None], *, nocache: bool = False) -> None:
    key = rootfs_key()
    rootfs = f"{ROOTFS_REPOSITORY}:{key}"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="agentdeploy-realbase-") as temporary:
        work = Path(temporary)
        if not _exists(client, rootfs):
            tarball = work / "rootfs.tar"
            mirror = debian_mirror()
            log(f"mmdebstrap {SUITE} from {mirror}")
            # mmdebstrap needs root (or user namespaces); .ci/run may run the tests as another user.
            sudo = ["sudo"] if os.geteuid() != 0 and shutil.which("sudo") else []
            subprocess.run(
                [
                    *sudo,
                    "mmdebstrap",
                    "--quiet",
                    "--variant=minbase",
                    f"--include={PACKAGES}",
                    SUITE,
                    str(tarball),
                    mirror,
                ],
                check=True,
            )
            with tarball.open("rb") as data:
                client.api.import_image_from_data(data.read(), repository=ROOTFS_REPOSITORY, tag=key)
        context = work / "context"
        shutil.copytree(RECIPE, context)
        shutil.copyfile(CA_BUNDLE, context / "ca-bundle.pem")
        log(f"building {name} (holodeck-ai from PyPI, host network)")
        tail: list[str] = []
        for chunk in client.api.build(
            path=str(context),
            tag=name,
            buildargs={"ROOTFS": rootfs},
            network_mode="host",
            nocache=nocache,
            rm=True,
            forcerm=True,
            decode=True,
        ):
            if "stream" in chunk:
                tail = [*tail[-30:], chunk["stream"].rstrip()]
            if "error" in chunk:
                raise RuntimeError("building the real-runtime base failed: " + chunk["error"] + "\n" + "\n".join(tail))
    log(f"built {name} in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    import docker

    started = time.monotonic()
    print(ensure_real_base(docker.from_env()), f"({time.monotonic() - started:.1f}s)")
    sys.exit(0)
