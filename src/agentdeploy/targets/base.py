"""The Target protocol: what the release pipeline needs from any place an agent can run.

The pipeline (release/) never asks which provider it deals with: it asks the target what its resource
is called, what serves now, to run a release behind its gate (rolling back by itself inside), to go
back to a recorded version, for its status, and to remove everything. What only some targets can do
is a separate protocol the pipeline asks for by capability (`Promotable`: blue/green promote;
`Streams`: the agent's log). Targets are made by factories registered in targets/registry.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from agentdeploy.jsonvalue import JsonObject
from agentdeploy.state.record import Action, Status
from agentdeploy.state.store import DeploymentRecord
from agentdeploy.targets.health import ChatCheck, ChatPost, HealthProbe

if TYPE_CHECKING:
    from azure.mgmt.appcontainers import ContainerAppsAPIClient
    from docker import DockerClient

    from agentdeploy.config.loader import LoadedConfig, ResolvedDeployment
    from agentdeploy.config.models import ResourcesConfig
    from agentdeploy.image.registry import RegistryCredentials

# The public plugin surface: what a target written outside agentdeploy imports (from this module only).
__all__ = [
    "Action",
    "ChecksRecords",
    "DeploymentRecord",
    "Live",
    "Preflight",
    "Promotable",
    "ReadsUpstreamState",
    "ReleaseRequest",
    "Repairs",
    "Status",
    "Streams",
    "Target",
    "TargetContext",
    "TargetFactory",
    "TargetOutcome",
]


RolloutStrategy = Literal["replace", "blue-green", "canary"]


@dataclass(frozen=True)
class Live:
    """What a target runs now, as `observe` reports it to the planner."""

    exists: bool
    image: str = ""  # what runs now
    config_hash: str = ""  # as labelled on the container (docker); "" when the target does not keep it
    serving: bool = True  # the recorded revision/container is the one serving
    # Secrets (by the config's variable name) whose value the target holds differs from this run's: a rotation,
    # which only a new revision or container brings to the agent. Never the values themselves.
    rotated_secrets: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ReleaseRequest:
    """One version to run: the image and everything its gate needs. Built by the pipeline (pure)."""

    agent: str
    image: str  # registry/repo@sha256:... after a push, else a local image id
    manifest_digest: str | None  # the registry's manifest digest of `image` (pull it); None: a local image id
    tag: str
    config_hash: str
    health_path: str
    health_timeout: float
    port: int  # deployment.port: where the agent listens in its container
    strategy: RolloutStrategy  # deployment.rollout.strategy: replace, blue-green (a candidate), canary (steps)
    canary_steps: tuple[int, ...] = ()  # deployment.rollout.steps: the canary's share of the traffic at each step
    bake_seconds: float = 0.0  # deployment.rollout.bake_seconds: how long each canary step runs before it is judged
    auto_rollback: bool
    checks: tuple[ChatCheck, ...]  # deployment.verify.chat, as turns to send
    verify_timeout: float  # deployment.verify.timeout_seconds: one turn's limit
    resources: ResourcesConfig  # deployment.resources or its defaults: the local engine's limits
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    credentials: RegistryCredentials | None = field(default=None, repr=False)  # what the push used


@dataclass(kw_only=True)
class TargetOutcome:
    """What a target reports, whichever it is."""

    status: Status
    url: str
    revision: str  # what serves now: a container id, a revision name
    previous: str  # what served before
    reason: str = ""
    label_url: str = ""  # a candidate's own URL (blue/green)
    attempted: str = ""  # the revision or container the release made, when it does not serve (rolled back)
    interrupted: str = ""  # the signal that stopped the release at a safe point (SIGINT, SIGTERM), if any
    details: JsonObject = field(default_factory=dict)  # target-specific facts for the job summary


@runtime_checkable
class Target(Protocol):
    """A place an agent runs. Constructing one does no I/O."""

    @property
    def resource(self) -> str:
        """What `plan` calls the thing it manages, e.g. `container agentdeploy-hello`."""
        ...

    @property
    def environment(self) -> str:
        """The environment name its state file is kept under (one record per agent and environment)."""
        ...

    @property
    def requires_registry(self) -> bool:
        """True when the target pulls the image from a registry (so it must be pushed)."""
        ...

    def observe(self, recorded: DeploymentRecord | None) -> Live:
        """What runs now, compared by the planner with the config and the record."""
        ...

    def release(self, request: ReleaseRequest) -> TargetOutcome:
        """Run `request` behind the health gate and its verify turns; roll back by itself when it fails."""
        ...

    def rollback(self, record: DeploymentRecord, request: ReleaseRequest) -> TargetOutcome:
        """Serve a recorded version again, without a rebuild (`request` runs `record`'s image)."""
        ...

    def recorded_elsewhere(self, to: str) -> DeploymentRecord | None:
        """A version `to` names that the state does not record but the target still has, or None."""
        ...

    def status(self) -> JsonObject:
        """The live view for `agentdeploy status`, with a `summary` list of human-readable lines."""
        ...

    def destroy(self) -> list[str]:
        """Remove what the target runs for this agent; the names of what was removed."""
        ...


@runtime_checkable
class Promotable(Protocol):
    """Blue/green: move the traffic to the verified candidate."""

    def promote(self, request: ReleaseRequest) -> TargetOutcome: ...


@runtime_checkable
class Repairs(Protocol):
    """Finishes what a run that died mid-release (SIGKILL, a crash, a lost runner) left half done."""

    def repair(self, pending: DeploymentRecord, last_good: DeploymentRecord | None) -> TargetOutcome:
        """Leave serving either the version that last passed the gate (`last_good`) or `pending`'s version,
        verified now; the outcome says which."""
        ...


@runtime_checkable
class ChecksRecords(Protocol):
    """Reads what a recorded version names on the target (a revision) and refuses, before anything changes, a record
    that says something else than the target holds (UntrustedRecordError)."""

    def check_record(self, record: DeploymentRecord) -> None: ...


@runtime_checkable
class Preflight(Protocol):
    """Finds, before anything is built, what would make the release fail on this target (a port another program
    holds), and raises DeployError naming it."""

    def preflight(self) -> None: ...


@runtime_checkable
class Previews(Protocol):
    """A pull request's own revision beside production, at 0% of its traffic, under a name (`pr-<n>`): never a change
    to production's traffic or its record. Old previews go when the next one is made."""

    def check_preview(self, name: str) -> None:
        """Before anything is built: a name that cannot be a preview's (UsageError, before any request), or a place
        that cannot hold one now (DeployError)."""
        ...

    def preview(self, request: ReleaseRequest, name: str) -> TargetOutcome: ...  # url: the preview's own URL
    def remove_preview(self, name: str) -> list[str]: ...  # what was removed ([]: no such preview)
    def previews(self) -> list[JsonObject]: ...  # name, revision, url, created (unix seconds)


@runtime_checkable
class Streams(Protocol):
    """The agent's own output."""

    def logs(self, *, tail: int, follow: bool) -> Iterator[str]: ...


@runtime_checkable
class StreamsSystem(Protocol):
    """The platform's own events about the agent (Azure: image pulls, probes, restarts), `logs --system`."""

    def system_logs(self, *, tail: int, follow: bool) -> Iterator[str]: ...


@dataclass(frozen=True, kw_only=True)
class TargetContext:
    """What a factory may use to make a target: the config, deploy-time values, and the adapters."""

    config: LoadedConfig
    resolved: ResolvedDeployment | None  # None when only naming the target (its state file, say)
    environ: Mapping[str, str]
    on_line: Callable[[str], None]
    docker: Callable[[], DockerClient]  # a docker client, made when first needed
    azure_client: Callable[[str], ContainerAppsAPIClient] | None = None  # subscription id -> ContainerAppsAPIClient
    probe: HealthProbe | None = None
    post: ChatPost | None = None
    interrupted: Callable[[], str] = lambda: ""  # the signal that asked the release to stop, or ""
    run_id: str = ""  # names this run to other runs (a target's lease, a pending entry): user@host pid N
    # The console's live line (a health wait: console.waiting_text) and its stage clock (key "gate").
    on_progress: Callable[[str], None] = lambda text: None
    timed: Callable[[str], AbstractContextManager[None]] = lambda key: contextlib.nullcontext()


TargetFactory = Callable[[TargetContext], Target]


@runtime_checkable
class ReadsUpstreamState(Protocol):
    """A target upstream HoloDeck's own deployer also deployed to: its .holodeck/deployments.json is read."""

    reads_upstream_state: bool
