"""Azure Container Apps behind the Target protocol (targets/base.py): ContainerAppTarget builds AzureTarget
(client.py) and the AppSpec (spec.py) from the run's context and turns each AzureOutcome into a
TargetOutcome; `make_target` is the factory targets/registry.py names for `--target azure`."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from agentdeploy.config.rules import environment_name
from agentdeploy.errors import DeployError, TargetUnavailableError, UntrustedRecordError, UsageError
from agentdeploy.jsonvalue import JsonObject, JsonValue, array, objects_at
from agentdeploy.release.planner import Live
from agentdeploy.targets.azure.body import AppSpec, secret_name
from agentdeploy.targets.azure.client import AzureOutcome, AzureTarget
from agentdeploy.targets.azure.logs import SYSTEM, LogStream
from agentdeploy.targets.azure.spec import app_name, app_spec, multiple_revisions
from agentdeploy.targets.azure.views import app_url, revision_image
from agentdeploy.targets.base import ReleaseRequest, Status, TargetContext, TargetOutcome
from agentdeploy.targets.evaluation import refuse_evaluation
from agentdeploy.targets.health import http_post_json, http_probe, model_call_hint

if TYPE_CHECKING:
    from agentdeploy.state.store import DeploymentRecord


def _outcome(outcome: AzureOutcome, interrupted: str = "", given: Collection[str] = ()) -> TargetOutcome:
    hint = model_call_hint(outcome.log, given) if outcome.log else ""  # `given`: the env names the container got
    return TargetOutcome(
        attempted=outcome.attempted,
        interrupted=interrupted if outcome.status not in ("succeeded", "candidate", "promoted", "unchanged") else "",
        status=Status(outcome.status),
        url=outcome.url,
        revision=outcome.revision,
        previous=outcome.previous_revision,
        reason=outcome.reason,
        label_url=outcome.label_url,
        details={
            "changes": array(outcome.changes),
            "traffic_before": array(outcome.traffic_before),
            "traffic_after": array(outcome.traffic_after),
            **({"log": array(outcome.log)} if outcome.log else {}),  # shown in the error and the job summary
            **({"hint": hint} if hint else {}),
        },
    )


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
        self.settings = config.deploy.target.azure
        self.app = app_name(config)
        self._api: AzureTarget | None = None

    @property
    def resource(self) -> str:
        return f"containerapp {self.app}"

    @property
    def environment(self) -> str:
        # The environment's name, also when the config gives its id (the id's last segment): the state file keeps
        # its name whichever way the environment is named. A placeholder name: one state file for all of them.
        name = environment_name(self.settings) or "azure"
        return "azure" if "${" in name else name

    @property
    def api(self) -> AzureTarget:
        if self._api is None:
            resolved = self.context.resolved
            if resolved is None or self.context.azure_client is None:
                raise TargetUnavailableError("no Azure client is configured")
            ids = resolved.azure_ids
            self._api = AzureTarget(
                self.context.azure_client(ids["subscription_id"]),
                resource_group=ids["resource_group"],
                app_name=self.app,
                probe=self.context.probe or http_probe,
                post=self.context.post or http_post_json,
                agent=self.config.agent.name,
                on_line=self.context.on_line,
                on_progress=self.context.on_progress,
                timed=self.context.timed,
                interrupted=self.context.interrupted,
                run_id=self.context.run_id,
                environment_group=ids.get("environment_resource_group", ""),
                ip_restricted=bool(self.settings.ip_allow),
            )
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
        held = self.api.secret_values()  # compared here, never printed or recorded
        rotated = tuple(
            sorted(env for env, value in wanted.items() if secret_name(env) in held and held[secret_name(env)] != value)
        )
        return replace(live, rotated_secrets=rotated)

    def release(self, request: ReleaseRequest) -> TargetOutcome:
        spec = app_spec(self.config, request, self._ids())
        self.api.checks, self.api.verify_timeout = request.checks, request.verify_timeout
        if spec.auth is not None and request.checks:
            # Built-in authentication lets /health and /ready through (excludedPaths) but not the chat route.
            self.context.on_line(
                "note: built-in authentication (target.azure.auth) is on: the verify chat turns need a signed-in "
                "caller and are not sent; the gate reads the runtime's verdict on /health and /ready, which stay open"
            )
            self.api.checks = ()
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
            blue_green=self.config.deploy.rollout.strategy == "blue-green",
        )
        if auth_changed:
            outcome.changes.append("built-in authentication")
            if outcome.status == "unchanged":  # the app changed: recorded, so the plan stops naming auth
                outcome.status = "succeeded"
                outcome.reason = f"built-in authentication set; {outcome.revision} serves as before"
        return _outcome(outcome, self.context.interrupted(), {*spec.env, *spec.secret_env})

    def _auth_of_existing_app(self, spec: AppSpec) -> bool:
        """An existing app gets its authentication before the release's gate (a new one right after it is
        created); True when it changed. Never while another run holds the app's lease."""
        if spec.auth is None:
            return False
        app = self.api.get_app()
        if app is None:
            return False
        self.api.lease_free(app)
        return self.api.apply_auth(spec)

    def _outcome(self, outcome: AzureOutcome) -> TargetOutcome:
        return _outcome(outcome, self.context.interrupted())

    def repair(self, pending: DeploymentRecord, last_good: DeploymentRecord | None) -> TargetOutcome:
        """After a run died mid-release: the revision that last passed the gate gets the traffic again, and the
        dead run's revisions stop; without one, what serves is judged now."""
        api = self.api
        if pending.run_id:
            api.give_up_lease(of=pending.run_id)  # the dead run's lease would hold every run off until it expires
        app = api.get_app()
        health_path, timeout = pending.health() or (self.config.deploy.effective_health_path, 60.0)
        if app is None:
            return TargetOutcome(
                status=Status.FAILED,
                url="",
                revision="",
                previous="",
                reason=f"container app {self.app} does not exist",
            )
        serving = api.serving_revision(app)
        good = last_good.revision if last_good and last_good.revision else ""
        if good and api.revision(good) is not None:
            if serving != good:
                moved = api.shift_to(
                    good,
                    health_path,
                    timeout,
                    multiple=multiple_revisions(self.config.deploy),
                    external=self.settings.ingress_external,
                )
                if moved.status != "succeeded":
                    return TargetOutcome(
                        status=Status.FAILED, url=app_url(app), revision=serving, previous=good, reason=moved.reason
                    )
                stopped = api.deactivate_image(pending.image, keep=moved.revision)
                back = "" if moved.revision == good else f" (as {moved.revision}, a copy of it: Single mode)"
                return TargetOutcome(
                    status=Status.ROLLED_BACK,
                    url=app_url(app),
                    revision=moved.revision,
                    previous=serving,
                    reason=f"traffic is back on {good}{back}, the revision that last passed the gate"
                    + (f"; deactivated {', '.join(stopped)}" if stopped else ""),
                )
            stopped = api.deactivate_image(pending.image, keep=good)
            return TargetOutcome(
                status=Status.ROLLED_BACK,
                url=app_url(app),
                revision=good,
                previous=good,
                reason=f"{good}, the revision that last passed the gate, still serves"
                + (f"; deactivated {', '.join(stopped)}" if stopped else ""),
            )
        ok, reason = api.wait_ready(serving, timeout, latest=False, interruptible=False) if serving else (False, "")
        image = revision_image(api.revision(serving)) if serving else ""
        if ok and image == pending.image:
            return TargetOutcome(
                status=Status.SUCCEEDED,
                url=app_url(app),
                revision=serving,
                previous="",
                reason=f"{serving} is healthy now",
            )
        return TargetOutcome(
            status=Status.FAILED,
            url=app_url(app),
            revision=serving,
            previous="",
            reason=(
                f"{serving or 'no revision'} serves and is not the interrupted release's healthy version ({reason})"
            ),
        )

    def rollback(self, record: DeploymentRecord, request: ReleaseRequest) -> TargetOutcome:
        """Reactivate the recorded revision and give it the traffic; redeploy its digest when it is gone."""
        if record.revision and self.api.revision(record.revision) is not None:
            return self._outcome(
                self.api.shift_to(
                    record.revision,
                    request.health_path,
                    request.health_timeout,
                    multiple=multiple_revisions(self.config.deploy),
                    external=self.settings.ingress_external,
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
        revision = self.api.revision(record.revision) if record.revision else None
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
        image = revision_image(self.api.revision(to))
        return DeploymentRecord(action="deploy", status="succeeded", started_at="", revision=to, image=image)

    def promote(self, request: ReleaseRequest) -> TargetOutcome:
        return self._outcome(
            self.api.promote(request.health_path, request.health_timeout, external=self.settings.ingress_external)
        )

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
        return LogStream(self.api.client, resource_group=self.api.rg, app=self.app).lines(tail=tail, follow=follow)

    def system_logs(self, *, tail: int, follow: bool) -> Iterator[str]:
        """StreamsSystem: the app's events (`az containerapp logs show --type system`)."""
        stream = LogStream(self.api.client, resource_group=self.api.rg, app=self.app)
        return stream.lines(tail=tail, follow=follow, kind=SYSTEM)

    def preflight(self) -> None:
        refuse_evaluation(self.config, "the Azure target")  # not run here yet (it comes with the canary): refused

    def destroy(self) -> list[str]:
        if self.api.get_app() is None:
            return []
        self.api.delete()
        return [f"container app {self.app}"]


def make_target(context: TargetContext) -> ContainerAppTarget:
    return ContainerAppTarget(context)
