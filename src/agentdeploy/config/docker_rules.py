"""Rules of the local Docker target: the container's name, address, writable paths and resource limits."""

from __future__ import annotations

import ipaddress
import posixpath
from collections.abc import Iterator

from agentdeploy.config.models import DeploymentConfig
from agentdeploy.config.patterns import DOCKER_NAME_RE, MIN_LIMIT_MEMORY, memory_bytes
from agentdeploy.config.violation import Violation
from agentdeploy.config.yamlsource import KeyPath


def docker_rules(deploy: DeploymentConfig, placeholder_keys: set[KeyPath]) -> Iterator[Violation]:
    target = deploy.target
    container_name = target.docker.container_name if target.docker else None
    if container_name is not None and not DOCKER_NAME_RE.match(container_name):
        yield Violation(
            ("deployment", "target", "docker", "container_name"),
            f"{container_name!r} is not a valid container name",
            "use letters, digits, '_', '.', '-' (starting with a letter or digit)",
        )
    bind = target.docker.bind if target.docker else None
    if bind is not None and ("deployment", "target", "docker", "bind") not in placeholder_keys:
        try:
            ipaddress.ip_address(bind)
        except ValueError:
            yield Violation(
                ("deployment", "target", "docker", "bind"),
                f"{bind!r} is not an IP address",
                "write 127.0.0.1 (this machine only, the default), 0.0.0.0 (every interface) or one address "
                "of this machine",
            )
    for index, path in enumerate((target.docker.writable if target.docker else None) or []):
        if not path.startswith("/") or posixpath.normpath(path) != path or path == "/":
            yield Violation(
                ("deployment", "target", "docker", "writable", index),
                f"{path!r} is not an absolute path below /",
                "write the path inside the container, e.g. /opt/npm-cache (no '..', no trailing '/')",
            )
    yield from _resource_rules(deploy)


def _resource_rules(deploy: DeploymentConfig) -> Iterator[Violation]:
    resources = deploy.resources
    if resources is None:
        return
    keys: KeyPath = ("deployment", "resources")
    if not resources.cpu > 0:
        yield Violation((*keys, "cpu"), f"cpu {resources.cpu:g} is not positive", "give the vCPU it needs, e.g. 1")
    size = memory_bytes(resources.memory)
    if size is None:
        yield Violation((*keys, "memory"), f"{resources.memory!r} is not a memory size", "write it as 2Gi or 512Mi")
    elif size < MIN_LIMIT_MEMORY:
        yield Violation(
            (*keys, "memory"), f"memory {resources.memory} is less than 64Mi", "give the agent at least 512Mi"
        )
    if resources.pids < 16:
        yield Violation(
            (*keys, "pids"),
            f"pids {resources.pids} is too few to run the runtime and its tools",
            "leave it out (512) or give at least 16",
        )
