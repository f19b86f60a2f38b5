"""One deployment record and the history of an agent and environment: what the state file holds, in the format
agentdeploy writes it (checked on read: the file is an input), with the words it uses as enums.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum

from agentdeploy.config.models import DEFAULT_HEALTH_TIMEOUT_SECONDS
from agentdeploy.errors import Location, StateError

SCHEMA_VERSION = 1
MAX_HISTORY = 50


class Status(StrEnum):
    """How a release, rollback, promote or destroy ended: the `status` output and a record's `status` field."""

    SUCCEEDED = "succeeded"
    UNCHANGED = "unchanged"
    CANDIDATE = "candidate"  # blue/green: verified at 0% of traffic, waiting for promote
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"
    DESTROYED = "destroyed"
    PENDING = "pending"  # a release under way (DeploymentState.pending)
    UNKNOWN = "unknown"  # migrated from upstream HoloDeck's record with a status it did not name
    # The `status` output of the commands that record nothing.
    PLANNED = "planned"
    PUSHED = "pushed"
    ABSENT = "absent"  # `status`: nothing recorded
    INTERRUPTED = "interrupted"  # several agents at once: a run stopped by a signal
    SKIPPED = "skipped"  # several agents at once: not run, because the run was stopped before its turn


class Action(StrEnum):
    """What a record's run did."""

    DEPLOY = "deploy"
    ROLLBACK = "rollback"
    PROMOTE = "promote"
    DESTROY = "destroy"


SERVED = frozenset({Status.SUCCEEDED, Status.PROMOTED})  # a record with one of these left its version serving
# The words a state file may hold (the others are outputs only).
RECORD_STATUSES = (
    Status.SUCCEEDED,
    Status.UNCHANGED,
    Status.CANDIDATE,
    Status.PROMOTED,
    Status.ROLLED_BACK,
    Status.FAILED,
    Status.DESTROYED,
    Status.PENDING,
    Status.UNKNOWN,
)


@dataclass
class DeploymentRecord:
    action: Action
    status: Status
    started_at: str
    finished_at: str = ""
    image: str = ""  # what runs: registry/repo@sha256:... or a local image id
    image_id: str = ""
    repository: str = ""
    tag: str = ""
    digest: str = ""
    inputs_digest: str = ""
    # The build inputs per file, canonical JSON {path in the build context: sha256}, so `plan` can name the
    # files that changed; kept on the newest and the current record only (DeploymentState.add).
    inputs_files: str = ""
    config_hash: str = ""
    deployment: str = ""  # the deployment section as deployed (canonical JSON, placeholders unresolved)
    runtime: str = ""  # the HoloDeck runtime in the image, e.g. holodeck-ai[openai-agents]==0.7.1
    attestation: str = ""  # the build provenance attestation checked before it was deployed (its bundle URL)
    url: str = ""
    revision: str = ""  # container id (docker) or revision name (azure)
    previous_image: str = ""
    git_sha: str = ""
    git_ref: str = ""
    actor: str = ""  # GITHUB_ACTOR, or the local user
    run_url: str = ""  # the workflow run that made this record
    run_id: str = ""  # which run wrote it: user@host pid N (and the workflow run), to name a dead one
    message: str = ""
    # The gate's results as canonical JSON: the evaluation's cases (passed, latency, tokens; the stable revision's
    # rate beside a canary's) and a canary's steps (targets/evaluation/, targets/azure/canary.py).
    gate: str = ""

    def __post_init__(self) -> None:
        # Written as words (tests, older callers) or read from a checked file: held as the enums either way.
        self.action, self.status = Action(self.action), Status(self.status)

    def health(self) -> tuple[str, float] | None:
        """(health path, timeout) this version was deployed with, from its recorded deployment section."""
        try:
            deployed = json.loads(self.deployment) if self.deployment else None
        except ValueError:
            return None
        if not isinstance(deployed, dict) or not isinstance(deployed.get("health"), dict):
            return None
        health = deployed["health"]
        path = health.get("path") or deployed.get("health_check_path")
        timeout = health.get("timeout_seconds")
        if not isinstance(path, str) or not path:
            return None
        valid = isinstance(timeout, int | float) and timeout > 0
        return path, float(timeout) if valid else float(DEFAULT_HEALTH_TIMEOUT_SECONDS)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> DeploymentRecord:
        known = {f.name for f in fields(cls)}
        values = {key: str(value) for key, value in data.items() if key in known and value is not None}
        return cls(**values)  # type: ignore[arg-type]  # action and status: words, made enums by __post_init__

    @staticmethod
    def files_text(files: Mapping[str, str]) -> str:
        """A manifest of build inputs as `inputs_files` holds it."""
        return json.dumps(dict(files), sort_keys=True, separators=(",", ":")) if files else ""

    def files(self) -> dict[str, str]:
        """`inputs_files` read back: {} when the record has none (older records) or it is unreadable."""
        try:
            data = json.loads(self.inputs_files) if self.inputs_files else {}
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


@dataclass
class DeploymentState:
    agent: str
    environment: str
    target: str
    current: DeploymentRecord | None = None
    history: list[DeploymentRecord] = field(default_factory=list)
    # A release under way, written before its first change to the target and cleared with its outcome:
    # found by a later run, it names a run that died mid-release and what it was doing.
    pending: DeploymentRecord | None = None

    def add(self, record: DeploymentRecord) -> None:
        """Newest first; the record becomes current when it left something serving."""
        self.history.insert(0, record)
        del self.history[MAX_HISTORY:]
        if record.status in SERVED:
            self.current = record if record.action != Action.DESTROY else None
        elif record.status == Status.DESTROYED:
            self.current = None
        for older in self.history[1:]:  # per-file digests only where the planner reads them: a bounded file
            if older.inputs_files and older != self.current:
                older.inputs_files = ""

    def to_json(self) -> dict[str, object]:
        return {
            "schema_version": SCHEMA_VERSION,
            "agent": self.agent,
            "environment": self.environment,
            "target": self.target,
            "current": asdict(self.current) if self.current else None,
            "history": [asdict(record) for record in self.history],
            "pending": asdict(self.pending) if self.pending else None,
        }


# The formats of what a record field becomes: an image reference (docker, an ARM body), a digest, a tag (a label,
# a revision suffix), a revision or container name (an ARM path, a docker call). distribution/reference's grammar.
_SHA256 = r"sha256:[0-9a-f]{64}"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"{_LABEL}(?:\.{_LABEL})*(?::[0-9]{{1,5}})?"
_NAME = rf"(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
DIGEST_FORMAT = re.compile(rf"{_SHA256}")
FORMATS: dict[str, tuple[re.Pattern[str], str]] = {
    "image": (
        re.compile(rf"{_SHA256}|{_NAME}(?::{_TAG})?(?:@{_SHA256})?"),
        "an image reference (registry/repository@sha256:<64 hex>) or a local image id (sha256:<64 hex>)",
    ),
    "digest": (DIGEST_FORMAT, "sha256:<64 hex>"),
    "image_id": (DIGEST_FORMAT, "sha256:<64 hex>"),
    "repository": (re.compile(_NAME), "registry/repository"),
    "tag": (re.compile(_TAG), "an image tag (letters, digits, _ . -; at most 128)"),
    # A Container Apps revision (<app>--<suffix>), a docker container id, a plugin target's name: one path segment.
    "revision": (re.compile(r"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,127}"), "a revision name or container id"),
    "inputs_digest": (DIGEST_FORMAT, "sha256:<64 hex>"),
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
ACTIONS = tuple(Action)
STATUSES = RECORD_STATUSES


def record_problems(record: Mapping[str, object]) -> list[tuple[str, str]]:
    """(field, why) for each field of a record read from a file that is not what agentdeploy writes there. A record
    is an input (anyone who can push the state branch, or a run that uploads an artifact, writes it): its values
    reach docker calls, ARM paths and bodies, labels and log lines only in their own format."""
    problems: list[tuple[str, str]] = []
    known = {f.name for f in fields(DeploymentRecord)}
    for key, value in record.items():
        if value is None or key not in known:
            continue  # unknown fields are kept out of the way (from_json drops them)
        if not isinstance(value, str):
            problems.append((key, f"is a {type(value).__name__}, not a string"))
            continue
        if key in ("message", "deployment", "inputs_files", "gate"):
            continue  # free text (never a command) and JSON text, checked below
        if _CONTROL.search(value):
            problems.append((key, "holds a control character (a line break could forge a workflow command)"))
        elif key in FORMATS and value:
            pattern, expected = FORMATS[key]
            if not pattern.fullmatch(value):
                problems.append((key, f"{value!r} is not {expected}"))
    if str(record.get("action", "")) not in ACTIONS:
        problems.append(("action", f"{record.get('action')!r} is not one of {', '.join(ACTIONS)}"))
    if str(record.get("status", "")) not in STATUSES:
        problems.append(("status", f"{record.get('status')!r} is not one of {', '.join(STATUSES)}"))
    for key in ("deployment", "inputs_files", "gate"):
        text = record.get(key)
        if isinstance(text, str) and text:
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                problems.append((key, "is not a JSON object"))
            elif key == "deployment":
                health = parsed.get("health")
                path = health.get("path") if isinstance(health, dict) else None
                if path is not None and not (isinstance(path, str) and re.fullmatch(r"/[!-~]*", path)):
                    problems.append(("deployment", f"its health path {path!r} is not a URL path"))
    return problems


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
