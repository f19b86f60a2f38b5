"""The commands on a deployment that exists, found without its runtime values: `status` (a read: a pending
entry is reported, never acted on), `logs`, `destroy`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from agentdeploy.errors import (
    UsageError,
)
from agentdeploy.jsonvalue import JsonObject, to_object
from agentdeploy.release.prepare import (
    DeployOptions,
    Services,
    named,
    now,
    store_of,
)
from agentdeploy.release.records import (
    report_pending,
)
from agentdeploy.state.store import (
    DeploymentRecord,
    provenance,
)
from agentdeploy.targets.base import (
    Action,
    Status,
    Streams,
    StreamsSystem,
)


def status(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> JsonObject:
    prepared = named(config_path, display_name, options, services)
    store = store_of(prepared.config, prepared.provider, prepared.target, services)
    state = store.load()  # a read: a pending entry is reported, never acted on
    pending = report_pending(store, state, prepared.target, services)
    return to_object(
        {
            "agent": prepared.config.agent.name,
            "target": prepared.provider,
            "state_file": str(store.path),
            "pending": pending,
            "current": asdict(state.current) if state.current else None,
            "history": [
                {k: asdict(r)[k] for k in ("action", "status", "tag", "image", "revision", "finished_at", "message")}
                for r in state.history[:10]
            ],
            "live": prepared.target.status(),
        }
    )


def logs(
    config_path: Path,
    display_name: str,
    options: DeployOptions,
    services: Services,
    *,
    tail: int,
    follow: bool,
    system: bool = False,
) -> Iterator[str]:
    prepared = named(config_path, display_name, options, services)
    if system:
        if not isinstance(prepared.target, StreamsSystem):
            raise UsageError(f"the {prepared.provider} target has no system log", hint="leave out --system")
        return prepared.target.system_logs(tail=tail, follow=follow)
    if not isinstance(prepared.target, Streams):
        raise UsageError(
            f"the {prepared.provider} target does not stream the agent's log here",
            hint="for Azure use `az containerapp logs show` or Log Analytics",
        )
    return prepared.target.logs(tail=tail, follow=follow)


def destroy(config_path: Path, display_name: str, options: DeployOptions, services: Services) -> list[str]:
    prepared = named(config_path, display_name, options, services)
    store = store_of(prepared.config, prepared.provider, prepared.target, services)
    with store.locked():
        state = store.load()
        state.pending = None  # whatever a dead run left goes with the rest
        removed = prepared.target.destroy()
        state.add(
            DeploymentRecord(
                action=Action.DESTROY,
                status=Status.DESTROYED,
                started_at=now(),
                finished_at=now(),
                **provenance(services.environ),
            )
        )
        store.save(state)
    return removed
