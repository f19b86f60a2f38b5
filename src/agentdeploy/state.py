"""The deployment record: one JSON file per agent and environment, next to the agent config.

`<agent dir>/.agentdeploy/<agent>.<environment>.json`. Versioned; written atomically (temporary
file + os.replace) under a file lock; lenient on read (unknown fields are kept out of the way),
strict on write. A newer schema version or a corrupted file is an error, never silently replaced.
Secret values are never part of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
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
    url: str = ""
    revision: str = ""  # container id (docker) or revision name (azure)
    previous_image: str = ""
    git_sha: str = ""
    git_ref: str = ""
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


class StateStore:
    def __init__(self, path: Path, *, agent: str, environment: str, target: str) -> None:
        self.path = path
        self.agent = agent
        self.environment = environment
        self.target = target

    def load(self) -> DeploymentState:
        empty = DeploymentState(self.agent, self.environment, self.target)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return empty
        except OSError as exc:
            raise StateError(f"cannot read state file {self.path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            raise StateError(
                f"state file {self.path} is corrupted ({exc})",
                hint="restore it from git or the last state artifact; it was left untouched",
            ) from None
        version = data.get("schema_version")
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise StateError(
                f"state file {self.path} has schema version {version}; this agentdeploy reads up to {SCHEMA_VERSION}",
                hint="upgrade agentdeploy",
            )
        current = data.get("current")
        return DeploymentState(
            agent=str(data.get("agent") or self.agent),
            environment=str(data.get("environment") or self.environment),
            target=str(data.get("target") or self.target),
            current=DeploymentRecord.from_json(current) if isinstance(current, dict) else None,
            history=[DeploymentRecord.from_json(r) for r in data.get("history") or [] if isinstance(r, dict)],
        )

    def save(self, state: DeploymentState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n"
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
        """Exclusive lock for read-modify-write; a second deploy of the same agent waits its turn."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StateError(
                    f"another agentdeploy run holds the lock on {self.path}",
                    hint="wait for it to finish, then run again",
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
