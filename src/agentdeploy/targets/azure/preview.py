"""Previews on Azure: a pull request's own revision beside production, reached at its label's URL
(`<app>---<label>.<env-domain>`, FACTS.md), at 0% of the traffic. Labels need the Multiple revision mode.

A preview is made in three writes, under the release lease: (1) the new revision, the traffic entries as they are
(a `latestRevision` entry pinned by name, or the new revision would take its share the moment it exists), the
expired previews left out; (2) once the revision is ready, its label; (3) the lease given up. No write changes the
weight of any entry. Which labels are previews is said by an ARM tag per preview on the app,
`agentdeploy-preview-<name>: revision=<revision>;created=<unix seconds>`; other labels (blue, green, yours) are
never touched."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentdeploy.errors import DeployError, UsageError
from agentdeploy.jsonvalue import JsonObject, array, object_at, text_at
from agentdeploy.targets.azure.body import AppSpec, revision_suffix, update_patch
from agentdeploy.targets.azure.lease import LEASE_MARGIN
from agentdeploy.targets.azure.settings import Verify
from agentdeploy.targets.azure.views import (
    PREVIEW_TAG,
    check_known_mode,
    label_host_of,
    named_traffic,
    raw_traffic,
    revision_host_in,
    serving_revision,
    traffic_patch,
)
from agentdeploy.targets.base import Status, TargetOutcome

if TYPE_CHECKING:
    from agentdeploy.targets.azure.release import AzureRelease

LABEL = re.compile(r"^[a-z]([a-z0-9-]*[a-z0-9])?$")  # a label is named like a revision suffix (FACTS.md)
RESERVED = ("blue", "green")  # blue/green's own labels


def check_preview_name(name: str) -> None:
    """A preview's name is its label: refused here, before anything is built or asked."""
    problem = ""
    if not LABEL.match(name) or "--" in name:
        problem = "lower-case letters, digits and single hyphens, starting with a letter and not ending with a hyphen"
    elif len(name) > 64:
        problem = f"at most 64 characters (it has {len(name)})"
    elif name in RESERVED:
        problem = "not blue or green (blue/green's own labels)"
    if problem:
        raise UsageError(
            f"preview name {name!r} cannot be a revision label: a label is {problem}; nothing was deployed",
            hint="name a pull request's preview pr-<number>, e.g. --name pr-42",
        )


@dataclass(frozen=True)
class Preview:
    name: str
    revision: str
    created: float  # unix seconds

    def as_json(self, app: JsonObject) -> JsonObject:
        host = label_host_of(app, self.name)
        url = f"https://{host}" if host else ""
        return {"name": self.name, "revision": self.revision, "url": url, "created": self.created}


def previews_in(app: JsonObject) -> list[Preview]:
    """The previews an app holds: a preview tag whose label is still in the traffic."""
    labelled = {text_at(entry, "label"): text_at(entry, "revisionName") for entry in raw_traffic(app)}
    found = []
    for key, value in sorted(object_at(app, "tags").items()):
        name = key[len(PREVIEW_TAG) :]
        if not key.startswith(PREVIEW_TAG) or not isinstance(value, str) or name not in labelled:
            continue
        fields = dict(part.partition("=")[::2] for part in value.split(";"))
        try:
            created = float(fields.get("created", ""))
        except ValueError:
            created = 0.0
        found.append(Preview(name, labelled[name], created))
    return found


def pinned(app: JsonObject, leave_out: set[str]) -> list[JsonObject]:
    """The traffic entries as they are, minus the labels in `leave_out`; a `latestRevision` entry names the revision
    it means now (the latest ready one) with the same weight, so a new revision takes nothing."""
    ready = text_at(app, "properties", "latestReadyRevisionName")
    kept: list[JsonObject] = []
    for entry in raw_traffic(app):
        if text_at(entry, "label") in leave_out:
            continue
        entry = dict(entry)
        if entry.pop("latestRevision", None) and not entry.get("revisionName"):
            entry["revisionName"] = ready
        kept.append(entry)
    return kept


def _tags(app: JsonObject, **changes: str | None) -> JsonObject:
    """The app's tags with `changes` (None: removed; ARM merges tags like the rest of a PATCH)."""
    tags: JsonObject = {key: value for key, value in object_at(app, "tags").items() if isinstance(value, str)}
    tags.update({PREVIEW_TAG + name: value for name, value in changes.items()})
    return tags


class AzurePreviews:
    """Previews of one container app, through a release's session, lease and gate."""

    def __init__(self, release: AzureRelease, max_age: float) -> None:
        self.release, self.max_age = release, max_age
        self.session, self.lease, self.gate = release.session, release.lease, release.gate
        self.name, self.say, self.wall = release.name, release.say, release.adapters.wall

    def check_app(self, doing: str, app: JsonObject | None = None) -> JsonObject:
        """The app as a preview needs it (it exists, in the Multiple mode, no other run's lease on it)."""
        app = app or self.session.get_app()
        if app is None:
            raise DeployError(
                f"container app {self.name} does not exist: a preview is a revision of the deployed app; nothing was "
                f"{doing}",
                hint="deploy the agent once (agentdeploy deploy), then preview pull requests beside it",
            )
        check_known_mode(app, self.name)
        mode = text_at(app, "properties", "configuration", "activeRevisionsMode")
        if mode.lower() != "multiple":
            raise DeployError(
                f"container app {self.name} is in the {mode or 'Single'} revision mode: a preview's label needs the "
                f"Multiple mode; nothing was {doing}",
                hint="set deployment.target.azure.revision_mode: multiple (or rollout.strategy: blue-green) and "
                "deploy once",
            )
        self.lease.lease_free(app)
        return app

    def previews(self) -> list[JsonObject]:
        app = self.session.get_app() or {}
        return [preview.as_json(app) for preview in previews_in(app)]

    def create(self, spec: AppSpec, name: str, *, tag: str, timeout: float, verify: Verify) -> TargetOutcome:
        check_preview_name(name)
        app = self.check_app("deployed")
        before = named_traffic(app)
        found = {preview.name: preview for preview in previews_in(app)}
        expired = [p for p in found.values() if p.name != name and self.wall() - p.created > self.max_age]
        new = self._new_revision(app, spec, name, tag, timeout, expired)
        outcome = TargetOutcome(
            status=Status.FAILED, url="", revision=new, previous=found[name].revision if name in found else ""
        )
        outcome.details = {"traffic_before": array(before), "removed": array([p.name for p in expired])}
        ended = False
        try:
            self._label_and_verify(outcome, spec, name, timeout, verify)
            ended = True
        finally:
            self.lease.give_up_lease(app=self.session.last_app if ended else None)
        outcome.details["traffic_after"] = array(named_traffic(self.session.get_app() or {}))
        return outcome

    def _new_revision(
        self, app: JsonObject, spec: AppSpec, name: str, tag: str, timeout: float, expired: list[Preview]
    ) -> str:
        """Write (1): the preview's revision from what serves with this spec's container and scale; the expired
        previews' labels and tags go in the same write, and their revisions stop."""
        serving = self.session.serving_view(app)
        secrets, references = self.session.secrets_of(app)
        taken = {text_at(r, "name") for r in self.session.revisions_of(app)}
        suffix = revision_suffix(self.name, f"{name}-{tag}", spec, taken)
        plan = update_patch(spec, serving, secrets, suffix, secret_references=references)
        elsewhere = object_at(plan.patch or {}, "properties", "configuration")
        if elsewhere:
            raise DeployError(
                f"this preview changes what container app {self.name} shares with production ("
                + ", ".join(c for c in plan.changes if not c.startswith(("container", "scale")))
                + "): a preview changes only its own revision; nothing was deployed",
                hint="deploy that change to production first (agentdeploy deploy), then preview again",
            )
        template = dict(object_at(serving, "properties", "template"))
        template.update(object_at(plan.patch or {}, "properties", "template"))
        template["revisionSuffix"] = suffix
        traffic = pinned(app, {p.name for p in expired})
        patch: JsonObject = {
            "properties": {"template": template, "configuration": {"ingress": {"traffic": array(traffic)}}}
        }
        patch = self.lease.with_lease(app, patch, timeout + LEASE_MARGIN)
        tags = object_at(patch, "tags")
        tags.update({PREVIEW_TAG + p.name: None for p in expired})
        new = f"{self.name}--{suffix}"
        self.say(f"preview {name}: revision {new} at 0% of the traffic")
        updated = self.session.patch(patch, f"making revision {new} for preview {name}")
        self.lease.own_lease(updated)
        self.lease.seen(updated)
        for gone in expired:
            self.say(f"preview {gone.name} is older than {self.max_age / 3600:g}h: removed")
            self._stop(gone.revision, updated)
        return new

    def _label_and_verify(
        self, outcome: TargetOutcome, spec: AppSpec, name: str, timeout: float, verify: Verify
    ) -> None:
        """Write (2): the label, once the revision is ready; then its label URL is verified. A preview that fails
        loses its label (the previous revision of this preview, if any, gets it back) and stops."""
        new, app = outcome.revision, self.session.last_app or {}
        host = revision_host_in(app, new)
        wake = (
            (lambda: self.release.adapters.probe(f"https://{host}{spec.health_path}"))
            if host and spec.external
            else None
        )
        ok, outcome.reason = self.gate.wait_ready(new, timeout, latest=False, wake=wake)
        if ok:
            app = self.lease.confirm_lease(f"labelling {new} {name}")
            entries: list[JsonObject] = [*pinned(app, {name}), {"revisionName": new, "weight": 0, "label": name}]
            created = f"revision={new};created={self.wall():.0f}"
            patch = {**traffic_patch(entries), "tags": _tags(app, **{name: created})}
            self.lease.seen(self.session.patch(patch, f"labelling {new} {name}"))
            label = label_host_of(self.session.last_app or app, name)
            outcome.url = f"https://{label}" if label else ""
            if spec.external and label:
                ok, outcome.reason = self.gate.wait_url(label, spec.health_path, timeout, verify=verify)
        if ok:
            outcome.status = Status.SUCCEEDED
            self.say(f"preview {name} is healthy at {outcome.url or new}: {outcome.reason}")
            if outcome.previous and outcome.previous != new:
                self._stop(outcome.previous, self.session.get_app() or {})
            return
        self.say(f"preview {name} failed its gate: {outcome.reason}")
        now = self.lease.confirm_lease(f"removing the failed preview {new}", self.session.get_app())
        back = pinned(now, {name})
        if outcome.previous:
            back.append({"revisionName": outcome.previous, "weight": 0, "label": name})
        tags = _tags(now) if outcome.previous else _tags(now, **{name: None})
        self.session.patch({**traffic_patch(back), "tags": tags}, f"removing the failed preview {new}")
        self.session.set_active(new, False)

    def _stop(self, revision: str, app: JsonObject) -> None:
        """Deactivate a preview's revision, unless a traffic entry still names it (production may run it too)."""
        routed = {text_at(entry, "revisionName") for entry in pinned(app, set())}
        if (
            revision
            and revision not in routed
            and object_at(self.session.revision(revision), "properties").get("active")
        ):
            self.session.set_active(revision, False)

    def remove(self, name: str) -> list[str]:
        """The label and its tag go in one write; the revision stops. [] when there is no such preview."""
        check_preview_name(name)
        app = self.session.get_app()
        if app is None:
            return []
        found = next((p for p in previews_in(app) if p.name == name), None)
        if found is None:
            self.say(f"container app {self.name} has no preview {name}: nothing to remove")
            return []
        self.check_app("removed", app)
        entries = pinned(app, {name})
        self.session.patch({**traffic_patch(entries), "tags": _tags(app, **{name: None})}, f"removing preview {name}")
        self._stop(found.revision, self.session.last_app or {})
        self.say(f"preview {name} removed: its label, and revision {found.revision} deactivated")
        return [f"label {name}", f"revision {found.revision}"]


def whole_template(app: JsonObject, serving: JsonObject, patch: JsonObject) -> JsonObject:
    """A production release's patch when the app's own template is not what serves (a preview's, the last one
    requested): a merge patch would carry its containers into production's next revision. The template the patch
    sends is then whole: what serves, with the patch's changes."""
    template = object_at(patch, "properties", "template")
    suffix = text_at(app, "properties", "template", "revisionSuffix")
    if not template or not suffix or f"{text_at(app, 'name')}--{suffix}" == serving_revision(app):
        return patch
    served = object_at(serving, "properties", "template")
    properties = {**object_at(patch, "properties"), "template": {**served, **template}}
    return {**patch, "properties": properties}
