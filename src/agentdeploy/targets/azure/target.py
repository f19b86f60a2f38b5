"""Azure Container Apps behind the Target protocol (targets/base.py): ContainerAppTarget builds the one
AzureRelease of a run (release.py) from its frozen settings and adapters, and the AppSpec (spec.py) of each
request; `make_target` is the factory targets/registry.py names for `--target azure`."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from agentdeploy.config.models import DEFAULT_HEALTH_TIMEOUT_SECONDS
from agentdeploy.config.rules import environment_name
from agentdeploy.errors import DeployError, TargetUnavailableError, UntrustedRecordError, UsageError
from agentdeploy.jsonvalue import JsonObject, JsonValue, array, objects_at
from agentdeploy.targets.azure.body import AppSpec, secret_name
from agentdeploy.targets.azure.canary import CanaryPlan
from agentdeploy.targets.azure.evaluation import canary_evaluator
from agentdeploy.targets.azure.logs import SYSTEM, LogStream, failed_revision_log
from agentdeploy.targets.azure.preview import AzurePreviews, check_preview_name
from agentdeploy.targets.azure.release import AzureRelease
from agentdeploy.targets.azure.settings import NO_VERIFY, Adapters, AzureSettings, Verify
from agentdeploy.targets.azure.spec import app_name, app_spec, multiple_revisions
from agentdeploy.targets.azure.views import app_url, changes_of, revision_image, serving_names, serving_revision
from agentdeploy.targets.base import Action, Live, ReleaseRequest, Status, TargetContext, TargetOutcome
from agentdeploy.targets.evaluation import evaluation_plan, refuse_evaluation
from agentdeploy.targets.health import http_post_json, http_probe, model_call_hint

if TYPE_CHECKING:
    from agentdeploy.state.store import DeploymentRecord


_ENDED_AS_ASKED = (Status.SUCCEEDED, Status.CANDIDATE, Status.PROMOTED, Status.UNCHANGED)


def azure_release(context: TargetContext, app: str) -> AzureRelease:
    """The one place a run's Azure settings and adapters are built (from its context), once."""
    resolved = context.resolved
    azure = context.config.deploy.target.azure
    if resolved is None or context.azure_client is None or azure is None:
        raise TargetUnavailableError("no Azure client is configured")
    ids = resolved.azure_ids
    settings = AzureSettings(
        resource_group=ids["resource_group"],
        app_name=app,
        agent=context.config.agent.name,
        run_id=context.run_id or "agentdeploy",
        environment_group=ids.get("environment_resource_group", ""),
        ip_restricted=bool(azure.ip_allow),
    )
    client = context.azure_client(ids["subscription_id"])
    rg = ids["resource_group"]
    adapters = Adapters(
        probe=context.probe or http_probe,
        post=context.post or http_post_json,
        say=context.on_line,
        progress=context.on_progress,
        timed=context.timed,
        interrupted=context.interrupted,
        failed_log=lambda revision: failed_revision_log(client, rg, app, revision),  # targets/azure/logs.py
    )
    plan = evaluation_plan(context.config)
    if plan is not None:  # a canary step replays the agent's test cases (deployment.rollout.evaluation)
        evaluator = canary_evaluator(
            plan,
            post=adapters.post,
            agent=settings.agent_name,
            say=adapters.say,
            clock=adapters.clock,
            sleep=adapters.sleep,
        )
        adapters = replace(adapters, evaluate=evaluator)
    return AzureRelease.over_sdk(client, settings, adapters)


def with_log_hint(outcome: TargetOutcome, given: Collection[str]) -> TargetOutcome:
    """When the failed revision's log (details["log"]) shows a failed model call, the hint names the settings that
    reach the container (`given`: the names of the variables it got)."""
    log = outcome.details.get("log")
    hint = model_call_hint([str(line) for line in log], given) if isinstance(log, list) and log else ""
    if hint:
        outcome.details["hint"] = hint
    return outcome


class ContainerAppTarget:
    """Azure Container Apps behind the Target protocol (targets/base.py)."""

    requires_registry = True
    reads_upstream_state = True  # upstream HoloDeck recorded its Azure deploys in .holodeck/deployments.json

    def __init__(self, context: TargetContext) -> None:
        config = context.config
        if config.deploy.target.azure is None:
            raise UsageError(
                "the azure target needs a `target.azure` block in the config",
                hint="add deployment.target.azure with subscription_id, resource_group and environment_name "
                "(or environment_id)",
            )
        self.context = context
        self.config = config
        self.azure = config.deploy.target.azure
        self.app = app_name(config)
        self._api: AzureRelease | None = None

    @property
    def resource(self) -> str:
        return f"containerapp {self.app}"

    @property
    def environment(self) -> str:
        # The environment's name, also when the config gives its id (the id's last segment): the state file keeps
        # its name whichever way the environment is named. A placeholder name: one state file for all of them.
        name = environment_name(self.azure) or "azure"
        return "azure" if "${" in name else name

    @property
    def api(self) -> AzureRelease:
        if self._api is None:
            self._api = azure_release(self.context, self.app)
        return self._api

    def _ids(self) -> Mapping[str, str]:
        resolved = self.context.resolved
        return resolved.azure_ids if resolved else {}

    def _environment_name(self) -> str | None:
        """The environment as the API takes it: its resource id (environment_id), or its name."""
        ids = self._ids()
        return ids.get("environment_id") or ids.get("environment_name")

    def observe(self, recorded: DeploymentRecord | None) -> Live:
        live = self.api.live(recorded.revision if recorded else "")
        wanted = self.context.resolved.runtime.secrets if self.context.resolved else {}
        if not live.exists or not wanted:
            return live
        held = self.api.session.secret_values()  # compared here, never printed or recorded
        rotated = tuple(
            sorted(env for env, value in wanted.items() if secret_name(env) in held and held[secret_name(env)] != value)
        )
        return replace(live, rotated_secrets=rotated)

    def release(self, request: ReleaseRequest) -> TargetOutcome:
        spec = app_spec(self.config, request, self._ids())
        verify = Verify(request.checks, request.verify_timeout)
        if spec.auth is not None and request.checks:
            # Built-in authentication lets /health and /ready through (excludedPaths) but not the chat route.
            self.context.on_line(
                "note: built-in authentication (target.azure.auth) is on: the verify chat turns need a signed-in "
                "caller and are not sent; the gate reads the runtime's verdict on /health and /ready, which stay open"
            )
            verify = NO_VERIFY
        if spec.registry is None:
            self.context.on_line(
                "note: Container Apps will pull the image anonymously (no registry_identity, no "
                "<PREFIX>_USERNAME/_PASSWORD); for a private image set target.azure.registry_identity (Azure "
                "Container Registry) or pass <PREFIX>_USERNAME/_PASSWORD (any other registry, GHCR included)"
            )
        auth_changed = self._auth_of_existing_app(spec)
        outcome = self.api.deploy(
            spec,
            tag=request.tag,
            environment=self._environment_name(),
            timeout=request.health_timeout,
            auto_rollback=request.auto_rollback,
            blue_green=request.strategy == "blue-green",
            verify=verify,
            canary=CanaryPlan(request.canary_steps, request.bake_seconds) if request.strategy == "canary" else None,
        )
        if auth_changed:
            outcome.details["changes"] = array([*changes_of(outcome), "built-in authentication"])
            if outcome.status == Status.UNCHANGED:  # the app changed: recorded, so the plan stops naming auth
                outcome.status = Status.SUCCEEDED
                outcome.reason = f"built-in authentication set; {outcome.revision} serves as before"
        return self._outcome(outcome, given={*spec.env, *spec.secret_env})

    def _auth_of_existing_app(self, spec: AppSpec) -> bool:
        """An existing app gets its authentication before the release's gate (a new one right after it is
        created); True when it changed. Never while another run holds the app's lease."""
        if spec.auth is None:
            return False
        app = self.api.session.get_app()
        if app is None:
            return False
        self.api.lease.lease_free(app)
        return self.api.apply_auth(spec)

    def _outcome(self, outcome: TargetOutcome, given: Collection[str] = ()) -> TargetOutcome:
        """A release that did not end as asked names the signal that stopped it, if one did; a failed revision's
        log that shows a failed model call names the settings that reach the container (`given`: their names)."""
        if outcome.status not in _ENDED_AS_ASKED:
            outcome.interrupted = self.context.interrupted()
        return with_log_hint(outcome, given)

    def repair(self, pending: DeploymentRecord, last_good: DeploymentRecord | None) -> TargetOutcome:
        """After a run died mid-release: the revision that last passed the gate gets the traffic again, and the
        dead run's revisions stop; without one, what serves is judged now."""
        api = self.api
        if pending.run_id:
            api.lease.give_up_lease(of=pending.run_id)  # the dead run's lease would hold every run off until it ends
        app = api.session.get_app()
        health = pending.health() or (self.config.deploy.effective_health_path, DEFAULT_HEALTH_TIMEOUT_SECONDS)
        if app is None:
            reason = f"container app {self.app} does not exist"
            return TargetOutcome(status=Status.FAILED, url="", revision="", previous="", reason=reason)
        good = last_good.revision if last_good and last_good.revision else ""
        if good and api.session.revision(good) is not None:
            return self._back_to(good, app, pending.image, health)
        return self._judge_serving(app, pending.image, health[1])

    def _back_to(self, good: str, app: JsonObject, image: str, health: tuple[str, float]) -> TargetOutcome:
        """Repair towards `good`, the revision that last passed the gate; the dead run's `image` stops."""
        serving, url = serving_revision(app), app_url(app)
        # A canary that died mid-way leaves a split (75/25): `good` serves most, but not all, of the traffic.
        if serving == good and serving_names(app) == {good}:
            stopped = self.api.moves.deactivate_image(image, keep=good)
            reason = f"{good}, the revision that last passed the gate, still serves" + _stopped(stopped)
            return TargetOutcome(status=Status.ROLLED_BACK, url=url, revision=good, previous=good, reason=reason)
        moved = self.api.moves.shift_to(
            good,
            *health,
            multiple=multiple_revisions(self.config.deploy),
            external=self.azure.ingress_external,
        )
        if moved.status != Status.SUCCEEDED:
            return TargetOutcome(status=Status.FAILED, url=url, revision=serving, previous=good, reason=moved.reason)
        stopped = self.api.moves.deactivate_image(image, keep=moved.revision)
        back = "" if moved.revision == good else f" (as {moved.revision}, a copy of it: Single mode)"
        reason = f"traffic is back on {good}{back}, the revision that last passed the gate" + _stopped(stopped)
        return TargetOutcome(
            status=Status.ROLLED_BACK, url=url, revision=moved.revision, previous=serving, reason=reason
        )

    def _judge_serving(self, app: JsonObject, image: str, timeout: float) -> TargetOutcome:
        """No good revision to go back to: what serves is the interrupted release's version, healthy now, or not."""
        api, serving = self.api, serving_revision(app)
        ok, reason = (
            api.gate.wait_ready(serving, timeout, latest=False, interruptible=False) if serving else (False, "")
        )
        runs = revision_image(api.session.revision(serving)) if serving else ""
        if ok and runs == image:
            healthy = f"{serving} is healthy now"
            return TargetOutcome(
                status=Status.SUCCEEDED, url=app_url(app), revision=serving, previous="", reason=healthy
            )
        reason = f"{serving or 'no revision'} serves and is not the interrupted release's healthy version ({reason})"
        return TargetOutcome(status=Status.FAILED, url=app_url(app), revision=serving, previous="", reason=reason)

    def rollback(self, record: DeploymentRecord, request: ReleaseRequest) -> TargetOutcome:
        """Reactivate the recorded revision and give it the traffic; redeploy its digest when it is gone."""
        if record.revision and self.api.session.revision(record.revision) is not None:
            return self._outcome(
                self.api.moves.shift_to(
                    record.revision,
                    request.health_path,
                    request.health_timeout,
                    multiple=multiple_revisions(self.config.deploy),
                    external=self.azure.ingress_external,
                )
            )
        if not record.image:
            raise DeployError(f"revision {record.revision} does not exist and no image is recorded for it")
        self.context.on_line(f"revision {record.revision or '(unknown)'} is gone; redeploying {record.image}")
        return self._outcome(
            self.api.deploy(
                app_spec(self.config, request, self._ids()),
                tag=record.tag or "rollback",
                environment=self._environment_name(),
                timeout=request.health_timeout,
                auto_rollback=True,
                blue_green=False,
            )
        )

    def check_record(self, record: DeploymentRecord) -> None:
        """A recorded revision that still exists must run the recorded image: rollback gives it the traffic."""
        revision = self.api.session.revision(record.revision) if record.revision else None
        runs = revision_image(revision) if revision is not None else ""
        if revision is not None and record.image and runs != record.image:
            raise UntrustedRecordError(
                f"the record's revision {record.revision} runs {runs}, not the recorded image {record.image}; "
                "nothing was changed",
                hint="roll back by the image's tag or digest, or restore the state from a record agentdeploy wrote",
            )

    def recorded_elsewhere(self, to: str) -> DeploymentRecord | None:
        """A revision of this app named on the command line (`<app>--<suffix>`), recorded or not."""
        from agentdeploy.state.store import DeploymentRecord

        if not to.startswith(f"{self.app}--"):
            return None
        # What it runs is checked like a recorded version's image before anything changes.
        image = revision_image(self.api.session.revision(to))
        return DeploymentRecord(action=Action.DEPLOY, status=Status.SUCCEEDED, started_at="", revision=to, image=image)

    def promote(self, request: ReleaseRequest) -> TargetOutcome:
        return self._outcome(
            self.api.moves.promote(request.health_path, request.health_timeout, external=self.azure.ingress_external)
        )

    def check_preview(self, name: str) -> None:
        check_preview_name(name)  # before any request
        AzurePreviews(self.api, self.config.deploy.rollout.preview_max_age).check_app("deployed")

    def preview(self, request: ReleaseRequest, name: str) -> TargetOutcome:
        """Previews: a revision labelled `name` at 0% of the traffic, verified at its label's URL (preview.py)."""
        check_preview_name(name)
        spec = app_spec(self.config, request, self._ids())
        verify = Verify(request.checks, request.verify_timeout) if spec.auth is None else NO_VERIFY
        previews = AzurePreviews(self.api, self.config.deploy.rollout.preview_max_age)
        outcome = previews.create(spec, name, tag=request.tag, timeout=request.health_timeout, verify=verify)
        return self._outcome(outcome, given={*spec.env, *spec.secret_env})

    def remove_preview(self, name: str) -> list[str]:
        return AzurePreviews(self.api, self.config.deploy.rollout.preview_max_age).remove(name)

    def previews(self) -> list[JsonObject]:
        return AzurePreviews(self.api, self.config.deploy.rollout.preview_max_age).previews()

    def status(self) -> JsonObject:
        live = self.api.status()
        if not live.get("exists"):
            return {**live, "summary": [f"container app {live['app']}: does not exist"]}
        lines: list[JsonValue] = [
            f"container app {live['app']}: {live['provisioning']}, {live['running']}, "
            f"{live['revision_mode']} revision mode, latest ready {live['latest_ready_revision']}"
        ]
        for revision in objects_at(live, "revisions"):
            label = f" [{revision['label']}]" if revision.get("label") else ""
            lines.append(
                f"  {revision['name']}{label}: traffic {revision['traffic']}%, "
                f"{'active' if revision['active'] else 'inactive'}, {revision['provisioning']}, "
                f"{revision['running']}, {revision['health']}"
            )
        return {**live, "summary": lines}

    def logs(self, *, tail: int, follow: bool) -> Iterator[str]:
        """Streams: the latest revision's console log, as `az containerapp logs show` reads it."""
        return self._stream().lines(tail=tail, follow=follow)

    def system_logs(self, *, tail: int, follow: bool) -> Iterator[str]:
        """StreamsSystem: the app's events (`az containerapp logs show --type system`)."""
        return self._stream().lines(tail=tail, follow=follow, kind=SYSTEM)

    def _stream(self) -> LogStream:
        context, ids = self.context, self._ids()
        if context.azure_client is None or not ids:
            raise TargetUnavailableError("no Azure client is configured")
        client = context.azure_client(ids["subscription_id"])
        return LogStream(client, resource_group=ids["resource_group"], app=self.app)

    def preflight(self) -> None:
        """Broken test cases fail before the build; the evaluation gate runs in a canary's steps only, so elsewhere
        a configured one is refused, never skipped silently."""
        if self.config.deploy.rollout.strategy == "canary":
            evaluation_plan(self.config)
        else:
            refuse_evaluation(self.config, "the Azure target outside a canary (rollout.strategy: canary)")

    def destroy(self) -> list[str]:
        if self.api.session.get_app() is None:
            return []
        self.api.delete()
        return [f"container app {self.app}"]


def _stopped(names: list[str]) -> str:
    return f"; deactivated {', '.join(names)}" if names else ""


def make_target(context: TargetContext) -> ContainerAppTarget:
    return ContainerAppTarget(context)
