"""A release to one container app: the first deploy, an update behind the health gate (traffic back on the
previous revision when it fails), a blue/green candidate at 0% of traffic, and what serves now (`live`,
`status`). Built over an AppApi (the SDK, or a test's in-memory double) from frozen settings; each release
ends in a TargetOutcome whose details carry the changes and the traffic before and after."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from agentdeploy.errors import DeployError
from agentdeploy.jsonvalue import JsonObject, array, object_at, objects_at, text_at, value_at
from agentdeploy.targets.azure.access import auth_config_body
from agentdeploy.targets.azure.api import AppApi, AppSession, SdkAppApi
from agentdeploy.targets.azure.body import (
    AppSpec,
    UpdatePlan,
    create_body,
    revision_suffix,
    update_patch,
)
from agentdeploy.targets.azure.canary import CanaryPlan, CanaryRollout
from agentdeploy.targets.azure.gate import Gate
from agentdeploy.targets.azure.lease import LEASE_MARGIN, ReleaseLease
from agentdeploy.targets.azure.moves import TrafficMoves
from agentdeploy.targets.azure.preview import whole_template
from agentdeploy.targets.azure.settings import NO_VERIFY, Adapters, AzureSettings, Verify
from agentdeploy.targets.azure.spec import manages_secrets, with_environment
from agentdeploy.targets.azure.views import (
    app_host,
    app_url,
    check_known_mode,
    has_secrets,
    kept_previews,
    label_host_of,
    named_traffic,
    release_outcome,
    revision_host,
    revision_host_in,
    serving_names,
    serving_revision,
    traffic_patch,
)
from agentdeploy.targets.base import Live, Status, TargetOutcome

if TYPE_CHECKING:
    from azure.mgmt.appcontainers import ContainerAppsAPIClient


@dataclass(frozen=True)
class _ReleasePlan:
    plan: UpdatePlan
    previous: str
    traffic_before: list[JsonObject]
    secrets: dict[str, str]
    references: dict[str, JsonObject]
    serving: JsonObject
    traffic: list[JsonObject]


@dataclass(frozen=True, kw_only=True)
class _Rollout:
    """How one release runs: its health timeout, whether a failed gate rolls back, blue/green, the chat turns."""

    timeout: float
    auto_rollback: bool
    blue_green: bool
    verify: Verify
    canary: CanaryPlan | None = None  # rollout.strategy canary: the traffic moves to the new revision in steps


class AzureRelease:
    """Releases to one container app, through one AppSession (its reads reused within the run)."""

    def __init__(self, api: AppApi, settings: AzureSettings, adapters: Adapters) -> None:
        self.settings, self.adapters, self.name = settings, adapters, settings.app_name
        self.session = AppSession(api, settings.app_name, adapters)
        self.lease = ReleaseLease(self.session, settings.run_id, adapters.wall)
        self.gate = Gate(self.session, settings, adapters)
        self.moves = TrafficMoves(self.session, self.lease, self.gate)
        self.canary = CanaryRollout(self.session, self.lease, self.gate, self.moves)
        self.say = adapters.say

    @classmethod
    def over_sdk(cls, client: ContainerAppsAPIClient, settings: AzureSettings, adapters: Adapters) -> AzureRelease:
        api = SdkAppApi(client, settings.resource_group, settings.app_name, settings.poll_interval)
        return cls(api, settings, adapters)

    # -- reads ---------------------------------------------------------------------------------
    def environment_id(self, environment: str | None) -> str:
        """The managed environment's resource id: a full id (target.azure.environment_id) as it is, in whatever
        resource group or subscription; a name is looked up in environment_group, else the app's group."""
        if not environment:
            raise DeployError(
                f"container app {self.name} does not exist yet, and creating it needs its Container Apps environment",
                hint="set deployment.target.azure.environment_name, or environment_id (the environment's resource id)",
            )
        if environment.lower().startswith("/subscriptions/"):
            return environment
        return self.session.api.environment_id(
            self.settings.environment_group or self.settings.resource_group, environment
        )

    def live(self, recorded_revision: str) -> Live:
        """What runs now, for planning: the serving revision's image, and whether the recorded revision serves."""
        app = self.session.observed = self.session.get_app()
        if app is None:
            return Live(exists=False)
        containers = objects_at(self.session.serving_view(app), "properties", "template", "containers")
        ours = next((c for c in containers if c.get("name") == self.name), {})
        serving = not recorded_revision or serving_names(app) == {recorded_revision}  # all of the traffic
        return Live(exists=True, image=text_at(ours, "image"), serving=serving)

    def status(self) -> JsonObject:
        app = self.session.get_app()
        if app is None:
            return {"app": self.name, "exists": False}
        props = object_at(app, "properties")
        configuration = object_at(props, "configuration")
        weights = {text_at(t, "revisionName"): t for t in objects_at(configuration, "ingress", "traffic")}
        revisions: list[JsonObject] = []
        for revision in self.session.revisions():
            rp = object_at(revision, "properties")
            containers = objects_at(rp, "template", "containers") or [{}]
            entry = weights.get(text_at(revision, "name"), {})
            revisions.append(
                {
                    "name": revision.get("name"),
                    "active": rp.get("active"),
                    "traffic": rp.get("trafficWeight", entry.get("weight", 0)),
                    "label": entry.get("label", ""),
                    "provisioning": rp.get("provisioningState"),
                    "running": rp.get("runningState"),
                    "health": rp.get("healthState"),
                    "image": containers[0].get("image"),
                    "created": rp.get("createdTime"),
                }
            )
        return {
            "app": self.name,
            "exists": True,
            "url": app_url(app),
            "provisioning": props.get("provisioningState"),
            "running": props.get("runningStatus"),
            "revision_mode": configuration.get("activeRevisionsMode"),
            "latest_revision": props.get("latestRevisionName"),
            "latest_ready_revision": props.get("latestReadyRevisionName"),
            "traffic": value_at(configuration, "ingress", "traffic") or [],
            "revisions": array(revisions),
        }

    # -- writes outside a release ----------------------------------------------------------------
    def apply_auth(self, spec: AppSpec) -> bool:
        """Built-in authentication as the spec says (the app's authConfigs/current, set after the app exists and
        before the gate); False when the app already has it, and nothing is written."""
        if spec.auth is None:
            return False
        found = self.session.api.auth_configs()
        live = next((config for config in found if text_at(config, "name").lower() == "current"), {})
        body = auth_config_body(spec, live)
        if body is None:
            return False
        self.say(f"setting built-in authentication on {self.name}: Microsoft Entra app {spec.auth.client_id}")
        self.session.api.put_auth_config(body)
        return True

    def delete(self) -> None:
        self.session.api.delete()

    # -- releases ------------------------------------------------------------------------------
    def deploy(
        self,
        spec: AppSpec,
        *,
        tag: str,
        environment: str | None,
        timeout: float,
        auto_rollback: bool,
        blue_green: bool,
        verify: Verify = NO_VERIFY,
        canary: CanaryPlan | None = None,
    ) -> TargetOutcome:
        rollout = _Rollout(
            timeout=timeout, auto_rollback=auto_rollback, blue_green=blue_green, verify=verify, canary=canary
        )
        # The app this run observed for its plan, if any, decides a no-op (nothing is written, so nothing can be
        # reversed); a change reads the app again first, for the lease and for what may have moved since.
        observed, self.session.observed = self.session.observed, None
        app = observed or self.session.get_app()
        if app is None:
            return self._first_deploy(spec, tag, environment, rollout)
        release = self._release_plan(app, spec, blue_green)
        if release.plan.patch is not None and observed is not None:
            fresh = self.session.get_app()
            if fresh is None:
                raise DeployError(
                    f"container app {self.name} was deleted while this run prepared its release; nothing was changed",
                    hint="deploy again to create it",
                )
            app, release = fresh, self._release_plan(fresh, spec, blue_green)
        if release.plan.patch is None:
            self.say(f"{self.name} already runs this configuration: nothing to change")
            before = release.traffic_before
            return release_outcome(
                Status.UNCHANGED, app, release.previous, release.previous, before=before, after=before
            )
        plan, suffix = release.plan, ""
        if plan.new_revision:
            taken = {text_at(r, "name") for r in self.session.revisions_of(app)}
            suffix = revision_suffix(self.name, tag, spec, taken)
            plan = update_patch(
                spec,
                release.serving,
                release.secrets,
                suffix,
                traffic=release.traffic,
                secret_references=release.references,
            )
        assert plan.patch is not None
        patch = whole_template(app, release.serving, plan.patch)  # after a preview (preview.py)
        plan = replace(plan, patch=self.lease.with_lease(app, patch, timeout + LEASE_MARGIN))
        ended = False
        try:
            outcome = self._update(spec, plan, release, suffix, rollout)
            ended = True
            return outcome
        finally:
            # Ended as planned, the app this run last saw (a moment ago) is the one to release; after an error, the
            # app is read again (another run may hold it now).
            self.lease.give_up_lease(app=self.session.last_app if ended else None)

    def _release_plan(self, app: JsonObject, spec: AppSpec, blue_green: bool) -> _ReleasePlan:
        """What a release to the existing `app` changes (no suffix yet), from the app, its revisions and secrets."""
        check_known_mode(app, self.name)
        previous = text_at(app, "properties", "latestReadyRevisionName")
        traffic_before = named_traffic(app)
        managed = manages_secrets(spec) or has_secrets(app)
        live_secrets, references = self.session.secrets_of(app) if managed else ({}, {})
        previous = serving_revision(app) or previous
        if blue_green and previous:
            traffic: list[JsonObject] = [
                {"revisionName": previous, "weight": 100, "label": "blue"},
                *kept_previews(app),
            ]
        elif spec.multiple and previous:
            # Multiple mode: `latestRevision: true` would hand the new revision the traffic the moment it
            # exists (FACTS.md). Pin it to what serves; it moves only after the gate.
            traffic = [{"revisionName": previous, "weight": 100}, *kept_previews(app)]
        else:
            traffic = [{"weight": 100, "latestRevision": True}]
        # Compared with what SERVES: the app's own template is the last one requested, also when that
        # operation failed or its client was killed (FACTS.md), so it can name a version that never served.
        serving = self.session.serving_view(app)
        plan = update_patch(spec, serving, live_secrets, "pending", traffic=traffic, secret_references=references)
        return _ReleasePlan(plan, previous, traffic_before, live_secrets, references, serving, traffic)

    def _update(
        self, spec: AppSpec, plan: UpdatePlan, release: _ReleasePlan, suffix: str, rollout: _Rollout
    ) -> TargetOutcome:
        """The write and the gate of a release to an existing app, under this run's lease."""
        previous = release.previous
        self.say(f"updating {self.name}: " + ", ".join(plan.changes))
        updated = self.session.patch(
            plan.patch or {},
            f"updating container app {self.name}",
            recheck=lambda: self.lease.lease_free(self.session.get_app() or {}),  # the write in flight may be another
        )
        self.lease.own_lease(updated)
        self.lease.seen(updated)
        new = f"{self.name}--{suffix}" if plan.new_revision else text_at(updated, "properties", "latestRevisionName")
        new = new or previous
        outcome = release_outcome(
            Status.SUCCEEDED, updated, new, previous, changes=plan.changes, before=release.traffic_before
        )
        if rollout.blue_green and previous and plan.new_revision:
            return self._candidate(spec, outcome, rollout)
        host = revision_host_in(updated, new) if plan.new_revision else app_host(updated)
        ok, outcome.reason = self.gate.gate(
            new, spec.health_path, rollout.timeout, external=spec.external, url_host=host, verify=rollout.verify
        )
        if ok:
            self.say(f"revision {new} is healthy: {outcome.reason}")
            if rollout.canary is not None and spec.multiple and previous and plan.new_revision:
                return self.canary.walk(
                    outcome,
                    spec,
                    rollout.canary,
                    verify=rollout.verify,
                    timeout=rollout.timeout,
                    back=rollout.auto_rollback,
                )
            if spec.multiple and previous and plan.new_revision:
                # The app the gate read a moment ago; the move also ends this run's lease (one write, not two).
                now = self.lease.confirm_lease(f"moving traffic to {new}", self.session.last_app)
                moved: list[JsonObject] = [{"revisionName": new, "weight": 100}, *kept_previews(now)]
                move = {**traffic_patch(moved), "tags": self.lease.released_tags(now)}
                self.session.patch(move, f"moving traffic to {new}")
            outcome.details["traffic_after"] = array(named_traffic(self.session.last_app or {}))
            return outcome
        self.say(f"health gate failed: {outcome.reason}")
        self._attach_log(outcome, new)
        # Interrupted, the release ends with what served before, whatever auto_rollback says.
        if (not rollout.auto_rollback and not self.adapters.interrupted()) or not previous or previous == new:
            outcome.status = Status.FAILED
            if not previous:
                outcome.reason += "; nothing to roll back to"
            return outcome
        serving = self.moves.restore(previous, new, multiple=spec.multiple, timeout=rollout.timeout)
        outcome.status = Status.ROLLED_BACK
        outcome.attempted, outcome.revision = new, serving
        outcome.details["traffic_after"] = array(self.moves.traffic_view())
        return outcome

    def _attach_log(self, outcome: TargetOutcome, revision: str) -> None:
        """The failed revision's last lines go with the outcome: into the error and the job summary."""
        log = self.adapters.failed_log(revision)
        if log:
            outcome.details["log"] = array(log)

    def _first_deploy(self, spec: AppSpec, tag: str, environment: str | None, rollout: _Rollout) -> TargetOutcome:
        suffix = revision_suffix(self.name, tag, spec)
        revision = f"{self.name}--{suffix}"
        spec_with_env = with_environment(spec, self.environment_id(environment))
        traffic: list[JsonObject] | None = (
            [{"revisionName": revision, "weight": 100, "label": "blue"}] if rollout.blue_green else None
        )
        created = self.session.create(create_body(spec_with_env, suffix, traffic))
        self.apply_auth(spec)  # the app exists now; before the gate, which then meets the agent as callers will
        host = revision_host(self.session.revision(revision))
        ok, reason = self.gate.gate(
            revision, spec.health_path, rollout.timeout, external=spec.external, url_host=host, verify=rollout.verify
        )
        status = Status.SUCCEEDED if ok else Status.FAILED
        reason += "" if ok else "; nothing to roll back to"
        after = self.moves.traffic_view()
        outcome = release_outcome(status, created, revision, "", reason, changes=["created"], after=after)
        if not ok:
            self._attach_log(outcome, revision)
        return outcome

    def _candidate(self, spec: AppSpec, outcome: TargetOutcome, rollout: _Rollout) -> TargetOutcome:
        """Blue/green: the new revision waits at 0% with the label `green`, verified at its label URL."""
        new, previous = outcome.revision, outcome.previous
        ok, reason = self.gate.wait_ready(new, rollout.timeout, latest=False)
        if ok:
            now = self.lease.confirm_lease(f"labelling {new} green")
            labelled: list[JsonObject] = [
                {"revisionName": previous, "weight": 100, "label": "blue"},
                {"revisionName": new, "weight": 0, "label": "green"},
                *kept_previews(now),
            ]
            self.session.patch(traffic_patch(labelled), f"labelling {new} green")
            self.moves.deactivate_unrouted()  # an earlier candidate, a revision kept from before the last promote
            label_host = label_host_of(self.session.get_app() or {}, "green")
            outcome.label_url = f"https://{label_host}" if label_host else ""
            if spec.external and label_host:
                timeout = max(rollout.timeout / 2, 5.0)
                ok, reason = self.gate.wait_url(label_host, spec.health_path, timeout, verify=rollout.verify)
        outcome.reason = reason
        if ok:
            outcome.status = Status.CANDIDATE
            self.say(f"candidate {new} is healthy at {outcome.label_url or 'its label'}; 0% of traffic until promote")
        else:
            self.say(f"health gate failed: {reason}")
            self._attach_log(outcome, new)
            back = rollout.auto_rollback or bool(self.adapters.interrupted())
            outcome.status = Status.ROLLED_BACK if back else Status.FAILED
            if back:
                now = self.lease.confirm_lease("removing the failed candidate from traffic")
                self.session.patch(
                    traffic_patch([{"revisionName": previous, "weight": 100, "label": "blue"}, *kept_previews(now)]),
                    "removing the failed candidate from traffic",
                )
                self.session.set_active(new, False)
                outcome.attempted, outcome.revision = new, previous
        outcome.details["traffic_after"] = array(self.moves.traffic_view())
        return outcome
