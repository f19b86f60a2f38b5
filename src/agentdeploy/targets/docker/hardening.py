"""How the agent's container is confined (pure): what the image needs writable, its limits, and where this machine
reaches an agent listening on a bind address."""

from __future__ import annotations

import ipaddress
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentdeploy.config.models import ResourcesConfig
from agentdeploy.config.rules import memory_bytes

GENERATED_IMAGE_LABEL = "dev.agentdeploy.holodeck-runtime"  # image.spec.RUNTIME_LABEL: our Dockerfile made it
HOST_ENV = "HOLODECK_HOST"  # the generated image's entrypoint passes it to `holodeck serve --host`


@dataclass(frozen=True)
class Hardening:
    """How the agent's container is confined, like a production container: no capabilities, no privilege
    gain, a read-only root with memory-backed writable places only where the runtime writes, and limits."""

    writable: dict[str, str]  # path in the container -> tmpfs mount options
    memory: int  # bytes (swap: none beyond it)
    nano_cpus: int
    pids: int
    env: dict[str, str]  # what the container is told (HOLODECK_HOST under host networking)


def hardening(
    image_config: Mapping[str, Any], *, resources: ResourcesConfig, bind: str, host_network: bool
) -> Hardening:
    """Pure: the settings for one image (its `Config` as the engine reports it).

    The HoloDeck runtime writes nothing at start-up; at the first chat it writes its vector-store cache under
    `.holodeck/` in its working directory (without it every search silently finds nothing), `$HOME/.cache`
    and `/tmp` (FACTS.md). An image our Dockerfile made has an empty home of its own: all of it is writable.
    Another image's home may hold what it installed there, so only its `.cache` is.
    """
    env = dict(item.partition("=")[::2] for item in image_config.get("Env") or [])
    workdir = image_config.get("WorkingDir") or "/"
    uid, _, gid = str(image_config.get("User") or "").partition(":")
    home = env.get("HOME") or ("/root" if uid in ("", "root", "0") else "")
    generated = GENERATED_IMAGE_LABEL in (image_config.get("Labels") or {})
    # A tmpfs over a directory the image has takes that directory's mode but root as its owner (runc): owned by
    # the image's user when it is given by number (as our Dockerfile does); a new directory is world-writable.
    owner = ""
    if uid.isdigit() and uid != "0":
        owner = f",uid={uid},gid={gid if gid.isdigit() else uid}"
    data = "rw,noexec,nosuid,nodev" + owner
    writable = {"/tmp": data, posixpath.join(workdir, ".holodeck"): data}
    if home and home != "/":
        # npx runs the MCP servers it unpacks under $HOME/.npm: the home may hold programs (exec).
        writable[home if generated else posixpath.join(home, ".cache")] = "rw,exec,nosuid,nodev" + owner
    memory = memory_bytes(resources.memory)
    assert memory is not None  # config/rules.py refused any other size
    return Hardening(
        writable=writable,
        memory=memory,
        nano_cpus=round(resources.cpu * 1e9),
        pids=resources.pids,
        # Under host networking the container's port is the machine's: it listens on `bind` alone. On a bridge it
        # listens everywhere inside its own network, and the port is published on `bind`.
        env={HOST_ENV: bind} if host_network else {},
    )


def probe_address(bind: str) -> str:
    """Where this machine reaches an agent listening on `bind` (a wildcard is reached on loopback)."""
    address = ipaddress.ip_address(bind)
    if address.is_unspecified:
        return "127.0.0.1" if address.version == 4 else "[::1]"
    return bind if address.version == 4 else f"[{bind}]"
