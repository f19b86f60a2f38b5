"""What the command line shows a person: the summary of a release, the report of `status`, the tables of several
agents. Pure: results in, lines out (the tests compare them whole)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agentdeploy.jsonvalue import JsonObject, JsonValue, object_at, objects_at, text_at, to_json, value_at

Outputs = Mapping[str, "str | bool"]  # release.commands.Output by name
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")


def short_id(revision: str) -> str:
    """A 64-hex container id (the docker target's revision) as `docker ps` shows it: its first 12; anything else
    (an Azure revision, a pid, a digest one may copy into `rollback --to`) as it is."""
    return revision[:12] if _CONTAINER_ID.fullmatch(revision) else revision


def _text(outputs: Outputs, name: str) -> str:
    value = outputs.get(name, "")
    return value if isinstance(value, str) else ""


def _version(outputs: Outputs) -> str:
    """`v1 (sha256:...)`: the tag and what pins it (the manifest digest, or the engine's image id)."""
    tag, pinned = _text(outputs, "image_tag"), _text(outputs, "digest") or _text(outputs, "image_id")
    if tag and pinned:
        return f"{tag} ({pinned})"
    return tag or pinned or _text(outputs, "image")


def release_summary(command: str, outputs: Outputs) -> list[tuple[str, str]]:
    """The `image` and `revision` lines after deploy, rollback or promote. A rollback or promote builds nothing:
    it says what it went to; a deploy that found its image says why nothing was built."""
    image = _text(outputs, "image")
    if image and command == "rollback":
        image = f"rolled back to {_version(outputs)}, no build"
    elif image and command == "promote":
        image = f"promoted {_version(outputs)}, no build"
    elif image and outputs.get("skipped_build") and outputs.get("status") != "unchanged":
        image += " (nothing built: identical inputs)"
    revision, previous = short_id(_text(outputs, "revision")), short_id(_text(outputs, "previous_revision"))
    if revision and previous and previous != revision:
        revision += f" (before: {previous})"
    return [("image", image), ("revision", revision)]


def release_verdict(outputs: Outputs) -> tuple[str, str]:
    """The last line, on stdout: the status and the URL (and a blue/green candidate's)."""
    label = _text(outputs, "label_url")
    candidate = f" (candidate at {label}, 0% of traffic until promote)" if label else ""
    return _text(outputs, "status"), f"{_text(outputs, 'url')}{candidate}"


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns, two spaces apart, the last one unpadded."""
    lines = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)) + "  " + line[-1]
        for line in lines
    )


@dataclass(frozen=True)
class Entry:
    """One line of the history: when, what, how it ended, which version."""

    finished_at: str
    action: str
    status: str
    version: str

    @classmethod
    def read(cls, data: JsonValue) -> Entry:
        return cls(
            text_at(data, "finished_at"),
            text_at(data, "action"),
            text_at(data, "status"),
            text_at(data, "tag") or text_at(data, "image"),
        )


@dataclass(frozen=True)
class StatusReport:
    """`status`'s report (release.pipeline.status, JSON for --json) as the text view reads it."""

    agent: str
    target: str
    serving: str  # "url  image X  tag Y"; "" when nothing is deployed
    live: tuple[str, ...]  # the target's own lines
    pending: str  # a dead run's unfinished release, as one line; "" when there is none
    history: tuple[Entry, ...]

    @classmethod
    def read(cls, report: Mapping[str, object]) -> StatusReport:
        data = to_json(dict(report))
        current = object_at(data, "current")
        serving = (
            f"{text_at(current, 'url')}  image {text_at(current, 'image')}  tag {text_at(current, 'tag')}"
            if current
            else ""
        )
        summary = value_at(data, "live", "summary")
        return cls(
            agent=text_at(data, "agent"),
            target=text_at(data, "target"),
            serving=serving,
            live=tuple(str(line) for line in summary) if isinstance(summary, list) else (),
            pending=_pending(object_at(data, "pending")),
            history=tuple(Entry.read(entry) for entry in objects_at(data, "history")),
        )


def _pending(pending: JsonObject) -> str:
    """Reported, never acted on: `repair` (or the next deploy or rollback) finishes it."""
    if not pending:
        return ""
    version = text_at(pending, "tag") or text_at(pending, "image")
    return (
        f"{text_at(pending, 'state')}: {text_at(pending, 'action')} of {version} by "
        f"{text_at(pending, 'run_id') or 'an earlier run'} since {text_at(pending, 'started_at')}; "
        f"serving now: {text_at(pending, 'serving') or 'nothing'}"
    )


def status_lines(report: Mapping[str, object]) -> list[str]:
    """The text of `status`: what serves, the target's view, a pending release, recent history."""
    view = StatusReport.read(report)
    first = f"{view.agent}: {view.serving}" if view.serving else f"{view.agent}: not deployed ({view.target})"
    lines = [first, *(f"  {line}" for line in view.live)]
    if view.pending:
        lines.append(f"  {view.pending}")
    lines += [f"  {e.finished_at}  {e.action:<8} {e.status:<11} {e.version}" for e in view.history]
    return lines
