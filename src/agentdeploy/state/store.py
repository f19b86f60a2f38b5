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
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, fields
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from agentdeploy.errors import Location, StateError
from agentdeploy.state.record import (
    DIGEST_FORMAT,
    MAX_HISTORY,
    SCHEMA_VERSION,
    Action,
    DeploymentRecord,
    DeploymentState,
    Status,
    record_problems,
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


class CorruptStateError(ValueError):
    """The text is not a state file (bad JSON, or not an object)."""


def _line_of(text: str, key: str, value: object, start: int = 0) -> int | None:
    """The line of `"key": value` in a state file (written one field a line) at or after `start`, for file:line."""
    at = text.find(f"{json.dumps(key)}: {json.dumps(value)}", start)
    return text.count("\n", 0, at) + 1 if at >= 0 else None


def _entry_starts(text: str) -> dict[str, int]:
    """Where each record of a state file's text begins ("current", "pending", "history[3]"), so an error can name
    the line of the field in that very record. Records are flat, so their braces are the only ones outside strings."""
    starts: dict[str, int] = {}
    for name in ("current", "pending"):
        found = re.search(rf'"{name}"\s*:\s*\{{', text)
        if found:
            starts[name] = found.start()
    listing = re.search(r'"history"\s*:\s*\[', text)
    if listing is None:
        return starts
    depth, in_string, escaped, index = 0, False, False, 0
    for position in range(listing.end(), len(text)):
        char = text[position]
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char == "{":
            if depth == 0:
                starts[f"history[{index}]"] = position
                index += 1
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "]" and depth == 0:
            break
    return starts


def _check_records(data: Mapping[str, object], text: str, where: str) -> None:
    """Every record of the file in its format, else one StateError naming each bad field; nothing is changed."""
    entries: list[tuple[str, object]] = [("current", data.get("current")), ("pending", data.get("pending"))]
    history = data.get("history")
    if history is not None and not isinstance(history, list):
        entries.append(("history", history))
    else:
        entries += [(f"history[{index}]", entry) for index, entry in enumerate(history or [])]
    found: list[tuple[str, str, int | None]] = []
    starts = _entry_starts(text)
    for name, entry in entries:
        if entry is None:
            continue
        if not isinstance(entry, dict):
            found.append((name, "is not a record (a JSON object)", None))
            continue
        for key, why in record_problems(entry):
            found.append((f"{name}.{key}", why, _line_of(text, key, entry.get(key), starts.get(name, 0))))
    for key in ("agent", "environment", "target"):
        value = data.get(key)
        if value is not None and not (isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value)):
            found.append((key, f"{value!r} is not a name", _line_of(text, key, value)))
    if found:
        from agentdeploy.errors import Problem

        raise StateError(
            f"state file {where} holds a record agentdeploy did not write: nothing was changed",
            problems=[Problem(why, Location(where, line), key=field) for field, why, line in found],
            hint="restore the file from a record agentdeploy wrote (the state branch's history, an earlier "
            "artifact), or remove it to start a new record",
        )


def parse_state(text: str, empty: DeploymentState, *, where: str) -> DeploymentState:
    """Read of a state file's text; `empty` names the agent, environment and target it is for. Unknown fields are
    kept out of the way; every known one must be in the format agentdeploy writes it (the file is an input)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CorruptStateError(str(exc)) from None
    if not isinstance(data, dict):
        raise CorruptStateError("not a JSON object")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise StateError(
            f"state file {where}: schema_version is {json.dumps(version)}, not an integer",
            location=Location(where, _line_of(text, "schema_version", version)),
            hint=f'agentdeploy writes "schema_version": {SCHEMA_VERSION}; restore the file from a record it wrote',
        )
    if version > SCHEMA_VERSION:
        raise StateError(
            f"state file {where} has schema version {version}; this agentdeploy reads up to {SCHEMA_VERSION}",
            hint="upgrade agentdeploy",
        )
    _check_records(data, text, where)
    current = data.get("current")
    pending = data.get("pending")
    return DeploymentState(
        agent=str(data.get("agent") or empty.agent),
        environment=str(data.get("environment") or empty.environment),
        target=str(data.get("target") or empty.target),
        current=DeploymentRecord.from_json(current) if isinstance(current, dict) else None,
        history=[DeploymentRecord.from_json(r) for r in data.get("history") or [] if isinstance(r, dict)],
        pending=DeploymentRecord.from_json(pending) if isinstance(pending, dict) else None,
    )


def render_state(state: DeploymentState) -> str:
    return json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n"


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
    ) -> None:
        self.path = path
        self.agent = agent
        self.environment = environment
        self.target = target
        self.legacy_path = legacy_path
        self.redact = redact  # the run's masker: secret values out of everything saved

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
        interleave with the first."""
        from filelock import Timeout

        lock = self._lock()
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

    def _lock(self) -> BaseFileLock:
        from filelock import FileLock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.path.with_suffix(".lock")))
