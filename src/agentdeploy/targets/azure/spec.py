"""What the container app should be (pure): the config and the release request mapped to the AppSpec that
body.py turns into request bodies, apart from any I/O so the mapping can be tested on its own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from agentdeploy.config.rules import ip_ranges
from agentdeploy.image.registry import registry_host
from agentdeploy.targets.azure.body import AppSpec, AuthSpec, Registry
from agentdeploy.targets.base import ReleaseRequest
from agentdeploy.targets.health import READY_PATH

if TYPE_CHECKING:
    from agentdeploy.config.loader import LoadedConfig
    from agentdeploy.config.models import AzureAuthConfig, DeploymentConfig


def multiple_revisions(deploy: DeploymentConfig) -> bool:
    """Multiple revision mode: asked for, or implied by blue-green and canary (two revisions active at once)."""
    azure = deploy.target.azure
    return (azure is not None and azure.revision_mode == "multiple") or deploy.rollout.strategy in (
        "blue-green",
        "canary",
    )


def app_name(config: LoadedConfig) -> str:
    azure = config.deploy.target.azure
    return (azure.app_name if azure else None) or config.agent.name


def app_spec(config: LoadedConfig, request: ReleaseRequest, azure_ids: Mapping[str, str] | None = None) -> AppSpec:
    """What the container app should be, from the config, the release and the resolved ${VAR}s of the ids (pure)."""
    deploy = config.deploy
    azure = deploy.target.azure
    assert azure is not None and deploy.registry is not None
    host = registry_host(deploy.registry.url)
    registry: Registry | None = None
    password: str | None = None
    credentials = request.credentials
    if azure.registry_identity:
        registry = Registry(server=host, identity=azure.registry_identity)
    elif credentials is not None and credentials.source.endswith("_PASSWORD"):
        # Long-lived credentials the user gave: Azure pulls with them, the password as a secret.
        registry = Registry(server=host, username=credentials.username)
        password = credentials.password
    return AppSpec(
        name=app_name(config),
        location=azure.location,
        environment_id="",
        image=request.image,
        port=deploy.port,
        external=azure.ingress_external,
        cpu=azure.cpu,
        memory=azure.memory,
        min_replicas=azure.min_replicas,
        max_replicas=azure.max_replicas,
        health_path=request.health_path,
        multiple=multiple_revisions(deploy),
        env=dict(request.env),
        secret_env=dict(request.secrets),
        registry=registry,
        registry_password=password,
        # Our image runs HoloDeck's runtime, which offers /ready; an image of your own may not.
        ready_path="" if deploy.build.dockerfile else READY_PATH,
        workload_profile=azure.workload_profile,
        ip_allow=ip_ranges(azure.ip_allow) if azure.ip_allow is not None else None,
        auth=_auth_spec(azure.auth, azure_ids or {}),
    )


def _auth_spec(auth: AzureAuthConfig | None, azure_ids: Mapping[str, str]) -> AuthSpec | None:
    if auth is None:
        return None
    return AuthSpec(
        client_id=azure_ids.get("auth.client_id", auth.client_id),
        tenant_id=azure_ids.get("auth.tenant_id", auth.tenant_id),
        unauthenticated=auth.unauthenticated,
        client_secret_setting=auth.client_secret_setting,
    )


def manages_secrets(spec: AppSpec) -> bool:
    return bool(spec.secret_env) or bool(spec.registry and spec.registry.username)


def with_environment(spec: AppSpec, environment_id: str) -> AppSpec:
    from dataclasses import replace

    return replace(spec, environment_id=environment_id)
