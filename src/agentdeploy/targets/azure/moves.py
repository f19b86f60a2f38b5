"""Traffic moves to a revision that exists: the rollback of a failed release (`restore`; in Single mode a copy
of the good revision's template, `single_restore`), a manual rollback or roll forward (`shift_to`), the
blue/green `promote`, and stopping the revisions no traffic names. Each under this run's lease."""

from __future__ import annotations

import copy

from agentdeploy.errors import ConcurrentReleaseError, DeployError
from agentdeploy.jsonvalue import JsonObject, int_at, object_at, objects_at, text_at, value_at
from agentdeploy.targets.azure.api import AppSession
from agentdeploy.targets.azure.gate import Gate
from agentdeploy.targets.azure.lease import ReleaseLease
from agentdeploy.targets.azure.views import (
    check_known_mode,
    kept_previews,
    named_traffic,
    release_outcome,
    revision_host,
    revision_image,
    serving_in,
    traffic_patch,
)
from agentdeploy.targets.base import Status, TargetOutcome


class TrafficMoves:
    def __init__(self, session: AppSession, lease: ReleaseLease, gate: Gate) -> None:
        self.session, self.lease, self.gate = session, lease, gate
        self.name, self.say = session.name, session.adapters.say

    def traffic(self) -> list[JsonObject]:
        return objects_at(self.session.get_app(), "properties", "configuration", "ingress", "traffic")

    def traffic_view(self) -> list[JsonObject]:
        return named_traffic(self.session.get_app() or {})

    def _stop_if_active(self, revision: str) -> None:
        if revision and value_at(self.session.revision(revision), "properties", "active"):
            self.session.set_active(revision, False)

    def restore(self, good: str, bad: str, *, multiple: bool, timeout: float) -> str:
        """Traffic back on `good`; returns the revision that serves now. Single mode takes no traffic by revision
        name ("Revision weights can not be used in this mode", the REST spec; `az containerapp` refuses it): there
        the traffic follows the latest READY revision, so when `bad` never got ready `good` still serves and `bad`
        is only stopped, and otherwise a new revision made from `good`'s template takes over (see single_restore)."""
        app = self.lease.confirm_lease(f"rolling back to {good}")
        if not multiple:
            return self.single_restore(app, good, bad, timeout)
        self.say(f"rolling back: traffic to {good}, deactivating {bad}")
        if not value_at(self.session.revision(good), "properties", "active"):
            self.session.set_active(good, True)
        back: list[JsonObject] = [{"revisionName": good, "weight": 100, "label": "blue"}, *kept_previews(app)]
        self.session.patch(traffic_patch(back), f"moving traffic to {good}")
        if bad and self.session.revision(bad) is not None:
            self.session.set_active(bad, False)
        return good

    def single_restore(self, app: JsonObject, good: str, bad: str, timeout: float) -> str:
        """Single mode: `good` serves again. When it is still the latest ready revision (what `bad` never became)
        it serves already; otherwise its template is deployed again as a new revision (a copy, `<suffix>-r<n>`),
        which the platform switches to once it is ready. The copy is what serves and what is recorded; `good`
        itself stays inactive, listed."""
        if text_at(app, "properties", "latestReadyRevisionName") == good:
            self.say(f"rolling back: {good} still serves (Single mode: {bad} never became ready); stopping {bad}")
            self._stop_if_active(bad)
            return good
        template = object_at(self.session.revision(good), "properties", "template")
        if not template:
            raise DeployError(
                f"cannot roll back container app {self.name} to {good}: the revision is gone",
                hint="deploy the version you want again (agentdeploy rollback --to <tag> redeploys its digest)",
            )
        taken = {text_at(r, "name") for r in self.session.revisions()}
        copy_name = f"{self.name}--{copy_suffix(self.name, good, taken)}"
        self.say(f"rolling back: {good}'s template as a new revision {copy_name} (Single mode)")
        patch: JsonObject = {"properties": {"template": restored_template(app, template, copy_name)}}
        self.session.patch(patch, f"rolling back container app {self.name} to {good}'s template")
        ok, reason = self.gate.wait_ready(copy_name, timeout, interruptible=False)
        if not ok:
            raise DeployError(
                f"the rollback of container app {self.name} to {good}'s template did not come up: {reason}",
                hint="`agentdeploy status` shows what serves; roll back again, or deploy a version you trust",
            )
        self._stop_if_active(bad)
        return copy_name

    def deactivate_image(self, image: str, *, keep: str) -> list[str]:
        """Stop the active revisions that run `image` and take no traffic (what a dead run left), except `keep`."""
        serving = {text_at(entry, "revisionName") for entry in self.traffic() if int_at(entry, "weight") > 0}
        stopped = []
        for revision in self.session.revisions():
            name = text_at(revision, "name")
            active = value_at(revision, "properties", "active")
            if name and name != keep and name not in serving and active and revision_image(revision) == image:
                self.session.set_active(name, False)
                stopped.append(name)
        return stopped

    def deactivate_unrouted(self) -> list[str]:
        """Stop the active revisions the traffic no longer names (a weight-0 entry still names one): old
        blue/green revisions, a rolled-back one. They stay listed, and `rollback` can activate them again."""
        traffic = self.traffic()
        routed = {text_at(entry, "revisionName") for entry in traffic}
        if any(entry.get("latestRevision") for entry in traffic):
            routed.add(text_at(self.session.get_app(), "properties", "latestReadyRevisionName"))
        stopped = []
        for revision in self.session.revisions():
            name = text_at(revision, "name")
            if name and name not in routed and value_at(revision, "properties", "active"):
                self.session.set_active(name, False)
                stopped.append(name)
        if stopped:
            self.say("deactivated " + ", ".join(stopped) + " (no traffic names them)")
        return stopped

    def shift_to(
        self,
        target: str,
        health_path: str,
        timeout: float,
        *,
        multiple: bool,
        external: bool,
        keep_current: bool = False,
    ) -> TargetOutcome:
        """Manual rollback (or roll forward) to an existing revision: no rebuild, no new revision; under this
        run's lease, like a release. `keep_current` (a promote): what served stays active at 0% for an instant
        rollback, with no label, so `promote` never takes it for a candidate. Otherwise it is deactivated."""
        app = self.session.get_app()
        if app is None:
            raise DeployError(f"container app {self.name} does not exist", hint="deploy it first")
        check_known_mode(app, self.name)
        self.lease.lease_free(app)  # checked again right before the traffic moves
        self.lease.seen(self.session.get_app())
        current = serving_in(self.traffic()) or text_at(app, "properties", "latestReadyRevisionName")
        if not multiple:
            return self._single_shift(app, target, current, health_path, timeout, external=external)
        if not value_at(self.session.revision(target), "properties", "active"):
            self.say(f"activating revision {target}")
            self.session.set_active(target, True)
        ok, reason = self.gate.wait_ready(target, timeout, latest=False)
        host = revision_host(self.session.revision(target)) if ok and external else None
        if host:
            ok, reason = self.gate.wait_url(host, health_path, timeout)
        before = named_traffic(app)
        if not ok:
            failed = f"{target} is not healthy: {reason}"
            return release_outcome(Status.FAILED, app, current, current, failed, before=before, after=before)
        traffic: list[JsonObject] = [{"revisionName": target, "weight": 100, "label": "blue"}]
        if current and current != target and keep_current:
            traffic.append({"revisionName": current, "weight": 0})
        now = self.lease.confirm_lease(f"moving traffic to {target}")
        self.session.patch(traffic_patch([*traffic, *kept_previews(now)]), f"moving traffic to {target}")
        self.deactivate_unrouted()
        after = self.traffic_view()
        return release_outcome(Status.SUCCEEDED, app, target, current, reason, before=before, after=after)

    def _single_shift(
        self, app: JsonObject, target: str, current: str, health_path: str, timeout: float, *, external: bool
    ) -> TargetOutcome:
        """Single mode: `target`'s template serves again through single_restore (no traffic by revision name),
        then, with external ingress, its URL must be healthy."""

        def ended(status: Status, serving: str, reason: str) -> TargetOutcome:
            before, after = named_traffic(app), self.traffic_view()
            return release_outcome(status, app, serving, current, reason, before=before, after=after)

        try:
            served = self.single_restore(
                self.lease.confirm_lease(f"rolling back to {target}"), target, current, timeout
            )
        except DeployError as error:
            if isinstance(error, ConcurrentReleaseError):
                raise
            return ended(Status.FAILED, current, f"{target} is not healthy: {error}")
        reason = f"{served} serves {target}'s template" if served != target else f"{target} serves"
        host = revision_host(self.session.revision(served)) if external else None
        if host:
            ok, reason = self.gate.wait_url(host, health_path, timeout)
            if not ok:
                return ended(Status.FAILED, served, f"{target} is not healthy: {reason}")
        return ended(Status.SUCCEEDED, served, reason)

    def promote(self, health_path: str, timeout: float, *, external: bool) -> TargetOutcome:
        traffic = self.traffic()
        # The blue/green candidate, or a canary paused mid-way (labelled canary, beside the stable revision).
        green = next((t.get("revisionName") for t in traffic if t.get("label") in ("green", "canary")), None)
        blue = next((t.get("revisionName") for t in traffic if t.get("label") in ("blue", "stable")), None)
        if not green:
            raise DeployError(
                f"{self.name} has no candidate (no revision labelled green, nor a paused canary)", hint="deploy first"
            )
        outcome = self.shift_to(str(green), health_path, timeout, multiple=True, external=external, keep_current=True)
        if outcome.status == Status.SUCCEEDED:
            outcome.status = Status.PROMOTED
            outcome.previous = str(blue or "")
        return outcome


def copy_suffix(app: str, source: str, taken: set[str]) -> str:
    """`<source's suffix>-r<n>`, the first one the app has not used, within the 54 characters of app + suffix."""
    stem = source.split("--", 1)[1] if "--" in source else "rev"
    for number in range(1, 1000):
        extra = f"-r{number}"
        suffix = stem[: max(54 - len(app) - 2 - len(extra), 1)].rstrip("-") + extra
        if f"{app}--{suffix}" not in taken:
            return suffix
    raise DeployError(f"container app {app} has no free revision suffix for a copy of {source}")


def restored_template(app: JsonObject, template: JsonObject, copy_name: str) -> JsonObject:
    """A revision's template to deploy again as `copy_name`. A secretRef the service rewrote in the revision (to
    `capp-<app>` for a Key Vault-backed secret, microsoft/azure-container-apps#1705) names no secret of the app:
    it gets the one the app's own template gives that variable."""
    secrets = {text_at(secret, "name") for secret in objects_at(app, "properties", "configuration", "secrets")}
    requested = {
        (text_at(c, "name"), text_at(v, "name")): text_at(v, "secretRef")
        for c in objects_at(app, "properties", "template", "containers")
        for v in objects_at(c, "env")
        if v.get("secretRef")
    }
    restored = copy.deepcopy(template)
    for container in objects_at(restored, "containers"):
        for variable in objects_at(container, "env"):
            ref = text_at(variable, "secretRef")
            if ref and ref not in secrets:
                variable["secretRef"] = requested.get((text_at(container, "name"), text_at(variable, "name")), ref)
    restored["revisionSuffix"] = copy_name.split("--", 1)[1]
    return restored
