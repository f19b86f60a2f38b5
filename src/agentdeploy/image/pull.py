"""Pulling the images a build starts from: the base (looked up, or pulled when absent or asked for), the layer
cache; and the error that says why a pull failed, with the fix that matches the cause."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentdeploy.errors import BuildError, TargetUnavailableError
from agentdeploy.image.engine import AUTH_MARKERS, LineSink

if TYPE_CHECKING:
    from docker import DockerClient


def pull_quietly(client: DockerClient, repository: str, tag: str, auth_config: dict[str, str] | None) -> bool:
    """Pull for the layer cache; any failure just means no cache."""
    try:
        for chunk in client.api.pull(repository, tag=tag, stream=True, decode=True, auth_config=auth_config):
            if "error" in chunk:
                return False
        return True
    except Exception:
        return False


def resolve_base_image(
    client: DockerClient, reference: str, *, pull: bool, where: str, on_line: LineSink = lambda line: None
) -> str:
    """The id of the base image as this build will use it: pulled first with `pull`, or when absent.

    The id is part of the build fingerprint, so a rebuilt or updated base is built on, never skipped.
    """
    from docker.errors import DockerException, ImageNotFound

    if not pull:
        try:
            return str(client.images.get(reference).id)
        except ImageNotFound:
            pass
        except DockerException as exc:
            raise TargetUnavailableError(f"the Docker engine could not look up {reference}: {exc}") from None
    return pull_base(
        client, reference, what=f"the base image {reference} (deployment.build.base_image, {where})", on_line=on_line
    )


# How the engine says it cannot reach a registry at all (DNS, routing, a closed port, a timeout), as against
# a registry that answered and refused (auth) or lacks the image.
_UNREACHABLE_MARKERS = (
    "no such host",
    "dial tcp: lookup",
    "server misbehaving",
    "temporary failure in name resolution",
    "connection refused",
    "i/o timeout",
    "network is unreachable",
    "no route to host",
    "tls handshake timeout",
)
_NOT_FOUND_MARKERS = ("manifest unknown", "not found", "name unknown")
BUILD_A_BASE = "agentdeploy base build"


def registry_host(reference: str) -> str:
    """The registry a reference pulls from: its first part when that names a host, else Docker Hub."""
    first, _, rest = reference.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


BUILD_HERE = (
    f"build a HoloDeck base on this machine with `{BUILD_A_BASE}` and set deployment.build.base_image to the name "
    "it prints"
)


def pull_failure(what: str, reference: str, reason: str, *, build_here: str = BUILD_HERE) -> BuildError:
    """The error for an image that cannot be pulled, with the fix that matches the cause (pure). `build_here`:
    the way round it that needs no registry."""
    host = registry_host(reference)
    lowered = reason.lower()
    if any(marker in lowered for marker in _UNREACHABLE_MARKERS):
        return BuildError(
            f"{what} cannot be pulled: this machine cannot reach {host} ({reason})",
            hint=f"{build_here}; or, where a proxy leads out, give the Docker engine its proxy settings",
        )
    if any(marker in lowered for marker in AUTH_MARKERS):
        return BuildError(
            f"{what} cannot be pulled: {host} refused access ({reason})",
            hint=f"log in to it (docker login {host}) with an account that may pull it; or {build_here}",
        )
    if any(marker in lowered for marker in _NOT_FOUND_MARKERS):
        return BuildError(
            f"{what} cannot be pulled: {host} has no such image ({reason})",
            hint=f"check the name and tag; or {build_here}",
        )
    return BuildError(
        f"{what} cannot be pulled: {reason}",
        hint=f"{build_here}; or log in to {host} (docker login {host}) if it needs an account",
    )


def pull_base(
    client: DockerClient,
    reference: str,
    *,
    what: str,
    on_line: LineSink = lambda line: None,
    build_here: str = BUILD_HERE,
) -> str:
    """Pull an image a build starts from; its id, or BuildError naming `what` with the fix for the cause."""
    from docker.errors import APIError, DockerException, ImageNotFound

    on_line(f"pulling {what}")
    repository, tag = _split_reference(reference)
    try:
        for chunk in client.api.pull(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise APIError(str(chunk.get("error")))
        return str(client.images.get(reference).id)
    except (APIError, ImageNotFound) as exc:
        reason = str(getattr(exc, "explanation", None) or exc)
        raise pull_failure(what, reference, reason, build_here=build_here) from None
    except DockerException as exc:
        raise TargetUnavailableError(f"the Docker engine failed while pulling {reference}: {exc}") from None


def _split_reference(reference: str) -> tuple[str, str]:
    """(repository, tag or digest) for a pull; `latest` when the reference names neither."""
    if "@" in reference:
        repository, digest = reference.split("@", 1)
        return repository, digest
    name, _, tag = reference.rpartition(":")
    if name and "/" not in tag:
        return name, tag
    return reference, "latest"
