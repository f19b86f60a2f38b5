"""The deployment record: one JSON file per agent and environment, next to the agent config.

`<agent dir>/.agentdeploy/<agent>.<environment>.json`. Versioned; written atomically (temporary
file + os.replace) under a file lock; lenient on read (unknown fields are kept out of the way),
strict on write. A newer schema version or a corrupted file is an error, never silently replaced.
Secret values are never part of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from agentdeploy.errors import StateError

SCHEMA_VERSION = 1
STATE_DIR = ".agentdeploy"
MAX_HISTORY = 50


def state_path(config_dir: Path, agent: str, environment: str) -> Path:
    return config_dir / STATE_DIR / f"{agent}.{environment}.json"


@dataclass
class DeploymentRecord:
    action: str  # deploy | rollback | destroy
    status: str  # succeeded | failed | rolled-back | destroyed
    started_at: str
    finished_at: str = ""
    image: str = ""  # what runs: registry/repo@sha256:... or a local image id
    image_id: str = ""
    repository: str = ""
    tag: str = ""
    digest: str = ""
    inputs_digest: str = ""
    config_hash: str = ""
    deployment: str = ""  # the deployment section as deployed (canonical JSON, placeholders unresolved)
    runtime: str = ""  # the HoloDeck runtime in the image, e.g. holodeck-ai[openai-agents]==0.7.1
    url: str = ""
    revision: str = ""  # container id (docker) or revision name (azure)
    previous_image: str = ""
    git_sha: str = ""
    git_ref: str = ""
    actor: str = ""  # GITHUB_ACTOR, or the local user
    run_url: str = ""  # the workflow run that made this record
    message: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeploymentRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{key: str(value) for key, value in data.items() if key in known and value is not None})


@dataclass
class DeploymentState:
    agent: str
    environment: str
    target: str
    current: DeploymentRecord | None = None
    history: list[DeploymentRecord] = field(default_factory=list)

    def add(self, record: DeploymentRecord) -> None:
        """Newest first; the record becomes current when it left something serving."""
        self.history.insert(0, record)
        del self.history[MAX_HISTORY:]
        if record.status in ("succeeded", "promoted"):
            self.current = record if record.action != "destroy" else None
        elif record.status == "destroyed":
            self.current = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "agent": self.agent,
            "environment": self.environment,
            "target": self.target,
            "current": asdict(self.current) if self.current else None,
            "history": [asdict(record) for record in self.history],
        }


class CorruptStateError(ValueError):
    """The text is not a state file (bad JSON, or not an object)."""


def parse_state(text: str, empty: DeploymentState, *, where: str) -> DeploymentState:
    """Lenient read of a state file's text; `empty` names the agent, environment and target it is for."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CorruptStateError(str(exc)) from None
    if not isinstance(data, dict):
        raise CorruptStateError("not a JSON object")
    version = data.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise StateError(
            f"state file {where} has schema version {version}; this agentdeploy reads up to {SCHEMA_VERSION}",
            hint="upgrade agentdeploy",
        )
    current = data.get("current")
    return DeploymentState(
        agent=str(data.get("agent") or empty.agent),
        environment=str(data.get("environment") or empty.environment),
        target=str(data.get("target") or empty.target),
        current=DeploymentRecord.from_json(current) if isinstance(current, dict) else None,
        history=[DeploymentRecord.from_json(r) for r in data.get("history") or [] if isinstance(r, dict)],
    )


def render_state(state: DeploymentState) -> str:
    return json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n"


def _identity(record: DeploymentRecord) -> str:
    return json.dumps(asdict(record), sort_keys=True)


def _finished(record: DeploymentRecord) -> tuple[str, str]:
    """When a record took effect: runs are recorded as they finish, so that is the order of a file."""
    return (record.finished_at or record.started_at, record.started_at)


def merge_states(ours: DeploymentState, theirs: DeploymentState) -> DeploymentState:
    """Two records of one agent and environment written apart (two runs, or the branch and this checkout):
    every run's entries kept once, in the order they finished (a slow run that started first but went
    live last is the one serving), as if the runs had written one file in turn."""
    entries: dict[str, DeploymentRecord] = {}
    for record in [*reversed(theirs.history), *reversed(ours.history)]:  # oldest first
        entries.setdefault(_identity(record), record)
    merged = DeploymentState(ours.agent, ours.environment, ours.target)
    for record in sorted(entries.values(), key=_finished):
        merged.add(record)
    # The record that serves may have fallen out of one side's bounded history: the newest current of
    # either side still counts, unless a destroy came after it.
    currents = [c for c in (merged.current, ours.current, theirs.current) if c is not None]
    newest = max(currents, key=_finished, default=None)
    if newest is not None and any(
        r.status == "destroyed" and _finished(r) > _finished(newest) for r in entries.values()
    ):
        newest = None
    merged.current = newest
    return merged


LEGACY_PATH = Path(".holodeck") / "deployments.json"  # upstream HoloDeck's state, version "1.0"


def provenance(environ: Mapping[str, str]) -> dict[str, str]:
    """Who deployed, and from which workflow run (empty outside GitHub Actions)."""
    actor = environ.get("GITHUB_ACTOR") or environ.get("USER") or ""
    run_url = ""
    if environ.get("GITHUB_RUN_ID") and environ.get("GITHUB_REPOSITORY"):
        server = environ.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        run_url = f"{server}/{environ['GITHUB_REPOSITORY']}/actions/runs/{environ['GITHUB_RUN_ID']}"
        if environ.get("GITHUB_RUN_ATTEMPT", "1") != "1":
            run_url += f"/attempts/{environ['GITHUB_RUN_ATTEMPT']}"
    return {"actor": actor, "run_url": run_url}


def migrate_legacy(data: Mapping[str, Any], agent: str, target: str) -> DeploymentRecord | None:
    """The upstream record of `agent`, as one of ours (status words fixed: upstream stored enum reprs)."""
    record = (data.get("deployments") or {}).get(agent)
    if not isinstance(record, dict) or str(record.get("provider", "")).lower() != target:
        return None
    raw_status = str(record.get("status") or "")
    word = raw_status.rsplit(".", 1)[-1].lower()  # "ContainerAppProvisioningState.SUCCEEDED" -> "succeeded"
    image = str(record.get("image_uri") or "")
    name_part = image.rsplit("/", 1)[-1]
    return DeploymentRecord(
        action="deploy",
        status=word if word in ("succeeded", "failed") else "unknown",
        started_at=str(record.get("created_at") or ""),
        finished_at=str(record.get("updated_at") or ""),
        image=image,
        digest=image.split("@", 1)[1] if "@" in image else "",
        tag=name_part.split(":", 1)[1] if ":" in name_part and "@" not in name_part else "",
        url=str(record.get("url") or ""),
        revision="",
        # Upstream hashed its config another way: keep it apart so it never looks like ours.
        config_hash=f"holodeck-1.0:{record.get('config_hash', '')}",
        message=f"migrated from {LEGACY_PATH} (upstream status {raw_status!r}, service {record.get('service_name')})",
    )


class StateStore:
    def __init__(
        self, path: Path, *, agent: str, environment: str, target: str, legacy_path: Path | None = None
    ) -> None:
        self.path = path
        self.agent = agent
        self.environment = environment
        self.target = target
        self.legacy_path = legacy_path

    def _from_legacy(self) -> DeploymentState | None:
        if self.legacy_path is None or not self.legacy_path.is_file():
            return None
        try:
            data = json.loads(self.legacy_path.read_text(encoding="utf-8"))
        except ValueError:
            raise StateError(
                f"upstream state file {self.legacy_path} is corrupted",
                hint="fix or remove it; agentdeploy only reads it",
            ) from None
        if str(data.get("version", "1.0")) != "1.0":
            raise StateError(f"upstream state file {self.legacy_path} has unknown version {data.get('version')!r}")
        record = migrate_legacy(data, self.agent, self.target)
        if record is None:
            return None
        state = DeploymentState(self.agent, self.environment, self.target)
        state.add(record)
        return state

    def load(self) -> DeploymentState:
        empty = DeploymentState(self.agent, self.environment, self.target)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return self._from_legacy() or empty
        except OSError as exc:
            raise StateError(f"cannot read state file {self.path}: {exc.strerror}") from None
        try:
            return parse_state(text, empty, where=str(self.path))
        except CorruptStateError as exc:
            aside = self._keep_aside()
            raise StateError(
                f"state file {self.path} is corrupted ({exc}); it was moved aside to {aside.name}",
                hint="restore it from git or the last state artifact, or run again to start a new record",
            ) from None

    def _keep_aside(self) -> Path:
        """Never overwrite a damaged record: it moves next to where it was, with a timestamp."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        os.replace(self.path, aside)
        return aside

    def _remove_abandoned_writes(self) -> None:
        """Every write happens under this lock, so a temporary file seen while holding it was left by a writer
        that died before os.replace."""
        for leftover in self.path.parent.glob(f".{self.path.name}.*"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()

    def save(self, state: DeploymentState) -> None:
        self.write_text(render_state(state))

    def write_text(self, payload: str) -> None:
        """Atomic: a reader (or a crash) sees the old file or the new one, never a part."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock for read-modify-write; a second run on the same record stops (exit 10) rather than
        interleave with the first."""
        from filelock import FileLock, Timeout

        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path.with_suffix(".lock")))
        try:
            lock.acquire(timeout=0)  # portable (flock on POSIX, msvcrt on Windows); released if the process dies
        except Timeout:
            raise StateError(
                f"another agentdeploy run holds the lock on {self.path}",
                hint="wait for it to finish, then run again",
            ) from None
        try:
            self._remove_abandoned_writes()
            yield
        finally:
            lock.release()
