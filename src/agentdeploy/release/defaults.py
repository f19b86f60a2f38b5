"""The adapters a real run uses, made once for both front ends (the CLI and the Action): the Docker engine's
client (made when a stage first needs it), the Entra token source for the ACR exchange and the ARM client
factory. What `Services` leaves unset (health probes, chat turns, attestations, the image stage) the pipeline
fills with its own defaults. Tests pass their own `Services` instead."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from agentdeploy.console import Console
from agentdeploy.release.prepare import AttestationFacts, Services


def default_services(
    console: Console,
    environ: Mapping[str, str],
    attestations: Callable[[str], Sequence[AttestationFacts]] | None = None,
) -> Services:
    """`attestations`: how a digest's provenance is looked up (github/attestations.py's, passed in by the front
    ends: the release layer does not import github/)."""
    from agentdeploy.image.engine import connect
    from agentdeploy.targets.azure.auth import arm_client_factory, arm_token_source

    return Services(
        environ=environ,
        console=console,
        docker=connect,
        azure_token=arm_token_source(environ),
        azure_client=arm_client_factory(environ),
        attestations=attestations,
    )
