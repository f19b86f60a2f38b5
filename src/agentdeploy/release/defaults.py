"""The adapters a real run uses, made once for both front ends (the CLI and the Action): the Docker engine's
client (made when a stage first needs it), the Entra token source for the ACR exchange and the ARM client
factory. What `Services` leaves unset (health probes, chat turns, attestations, the image stage) the pipeline
fills with its own defaults. Tests pass their own `Services` instead."""

from __future__ import annotations

from collections.abc import Mapping

from agentdeploy.console import Console
from agentdeploy.release.pipeline import Services


def default_services(console: Console, environ: Mapping[str, str]) -> Services:
    from agentdeploy.image.engine import connect
    from agentdeploy.targets.azure.auth import arm_client_factory, arm_token_source

    return Services(
        environ=environ,
        console=console,
        docker=connect,
        azure_token=arm_token_source(environ),
        azure_client=arm_client_factory(environ),
    )
