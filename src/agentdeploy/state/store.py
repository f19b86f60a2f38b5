"""The deployment record: one JSON file per agent and environment, next to the agent config.

`<agent dir>/.agentdeploy/<agent>.<environment>.json`. Versioned; written atomically (temporary
file + os.replace) under a file lock; lenient on read (unknown fields are kept out of the way),
strict on write. A newer schema version or a corrupted file is an error, never silently replaced.
Secret values are never part of it: every text a record holds passes the run's masker (`redact`) when it is
saved, since some of it comes from outside (a failed release's message quotes what the agent said).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import getpass
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, fields
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from agentdeploy.errors import StateError
from agentdeploy.state.record import (
    DIGEST_FORMAT,
    MAX_HISTORY,
    SCHEMA_VERSION,
    Action,
    CorruptStateError,
    DeploymentRecord,
    DeploymentState,
    Status,
    parse_state,
    render_state,
)

# What other modules import from here (the records themselves live in state/record.py).
__all__ = [
    "DIGEST_FORMAT",
    "LEGACY_PATH",
    "MAX_HISTORY",
    "SCHEMA_VERSION",
    "STATE_DIR",
    "CorruptStateError",
    "DeploymentRecord",
    "DeploymentState",
    "StateStore",
    "merge_states",
    "migrate_legacy",
    "parse_state",
    "provenance",
    "redacted",
    "render_state",
    "run_identity",
    "state_path",
]

if TYPE_CHECKING:
    from filelock import BaseFileLock

STATE_DIR = ".agentdeploy"


def state_path(config_dir: Path, agent: str, environment: str) -> Path:
    # The config rules allow only one path segment for each; this keeps a name that slipped past them (an
    # environment name resolved from a variable) from writing anywhere but the state directory.
    for part in (agent, environment):
        if not part or "/" in part or "\\" in part or part.startswith(".") or "\0" in part:
            raise StateError(
                f"{part!r} cannot name a state file: it must be one path segment",
                hint="use letters, digits, '.', '_' and '-' in the agent and environment names",
            )
    return config_dir / STATE_DIR / f"{agent}.{environment}.json"


def _identity(record: DeploymentRecord) -> str:
    return json.dumps({**asdict(record), "inputs_files": ""}, sort_keys=True)  # kept on the newest only


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
        r.status == Status.DESTROYED and _finished(r) > _finished(newest) for r in entries.values()
    ):
        newest = None
    merged.current = newest
    merged.pending = ours.pending  # a release under way is this run's own; another's is never committed
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


def run_identity(environ: Mapping[str, str]) -> str:
    """Names this run to other runs (the lock's holder, a pending entry): user@host pid N."""
    user = environ.get("GITHUB_ACTOR") or environ.get("USER") or _login()
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "someone"


def migrate_legacy(data: Mapping[str, object], agent: str, target: str) -> DeploymentRecord | None:
    """The upstream record of `agent`, as one of ours (status words fixed: upstream stored enum reprs)."""
    deployments = data.get("deployments")
    record = deployments.get(agent) if isinstance(deployments, dict) else None
    if not isinstance(record, dict) or str(record.get("provider", "")).lower() != target:
        return None
    raw_status = str(record.get("status") or "")
    word = raw_status.rsplit(".", 1)[-1].lower()  # "ContainerAppProvisioningState.SUCCEEDED" -> "succeeded"
    image = str(record.get("image_uri") or "")
    name_part = image.rsplit("/", 1)[-1]
    return DeploymentRecord(
        action=Action.DEPLOY,
        status=Status(word) if word in (Status.SUCCEEDED, Status.FAILED) else Status.UNKNOWN,
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


def redacted(state: DeploymentState, redact: Callable[[str], str]) -> DeploymentState:
    """A copy of `state` with `redact` applied to every text its records hold."""

    def one(record: DeploymentRecord | None) -> DeploymentRecord | None:
        if record is None:
            return None
        masked = copy.copy(record)
        for name in (f.name for f in fields(record)):
            value = getattr(record, name)
            if isinstance(value, str) and not isinstance(value, Enum):  # the enums are our own words, no secret
                setattr(masked, name, redact(value))
        return masked

    history = [masked for masked in map(one, state.history) if masked is not None]
    return dataclasses.replace(state, current=one(state.current), history=history, pending=one(state.pending))


class StateStore:
    def __init__(
        self,
        path: Path,
        *,
        agent: str,
        environment: str,
        target: str,
        legacy_path: Path | None = None,
        redact: Callable[[str], str] = lambda text: text,
        owner: str = "",
    ) -> None:
        self.path = path
        self.agent = agent
        self.environment = environment
        self.target = target
        self.legacy_path = legacy_path
        self.redact = redact  # the run's masker: secret values out of everything saved
        self.owner = owner  # names this run to another that finds the lock taken (default: run_identity)

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
        self.write_text(render_state(redacted(state, self.redact)))

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

    def busy(self) -> bool:
        """Whether a run holds the lock now (a release under way), asked without writing anything: no lock file
        means no run ever held it here."""
        from filelock import Timeout

        if not self.path.with_suffix(".lock").exists():
            return False
        lock = self._lock()
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return True
        lock.release()
        return False

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock for read-modify-write; a second run on the same record stops (exit 10) rather than
        interleave with the first, and is told which run holds it (its user@host and pid)."""
        from filelock import Timeout

        lock = self._lock()
        try:
            lock.acquire(timeout=0)  # portable (flock on POSIX, msvcrt on Windows); released if the process dies
        except Timeout:
            holder = self._holder()
            raise StateError(
                f"another agentdeploy run holds the lock on {self.path}" + (f": {holder}" if holder else ""),
                hint="wait for it to finish, then run again",
            ) from None
        try:
            self._remove_abandoned_writes()
            self._write_holder()
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                self._holder_path().unlink()
            lock.release()

    def _holder_path(self) -> Path:
        # Beside the lock file, not in it: a process that tries the lock opens the lock file truncated.
        return self.path.with_suffix(".lock.owner")

    def _write_holder(self) -> None:
        """Names this run to one that finds the lock taken. Written under the lock, so the file names the holder."""
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        descriptor, temporary = tempfile.mkstemp(prefix=f".{self._holder_path().name}.", dir=self.path.parent)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(f"{self.owner or run_identity(os.environ)}, since {since}\n")
        os.replace(temporary, self._holder_path())

    def _holder(self) -> str:
        """Who holds the lock, as it wrote itself down; "" when it has not (yet). The text is shown to the user:
        printable characters only, one short line."""
        try:
            text = self._holder_path().read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        line = text.strip().splitlines()[0] if text.strip() else ""
        return "".join(char for char in line if char.isprintable())[:200]

    def _lock(self) -> BaseFileLock:
        from filelock import FileLock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.path.with_suffix(".lock")))
