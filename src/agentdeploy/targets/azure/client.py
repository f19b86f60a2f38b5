"""AzureTarget: the ARM calls for one container app (azure-mgmt-appcontainers), the health gate, and the
releases (deploy, blue/green candidate, shift, promote), each ending in an AzureOutcome. A release is
healthy only when the new revision is the latest ready one, Provisioned, Running and Healthy, and (with
external ingress) its URL answers 2xx on the health path; otherwise traffic goes back to the previous
revision and the new one is deactivated. Provisioning state `Succeeded` on the app alone proves nothing
(FACTS.md). Status values are the service's words, never enum reprs."""

from __future__ import annotations

import contextlib
import copy
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar, cast

from agentdeploy.console import waiting_text
from agentdeploy.errors import AgentDeployError, ConcurrentReleaseError, DeployError
from agentdeploy.jsonvalue import (
    JsonObject,
    array,
    int_at,
    object_at,
    objects_at,
    text_at,
    to_object,
    value_at,
)
from agentdeploy.retry import backoff
from agentdeploy.targets.azure.arm import POLL_INTERVAL, azure_errors, code_of, envelope, plain
from agentdeploy.targets.azure.body import (
    AppSpec,
    UpdatePlan,
    auth_config_body,
    create_body,
    revision_suffix,
    update_patch,
)
from agentdeploy.targets.azure.lease import LEASE_MARGIN, LEASE_TAG, Lease, lease_of, utc
from agentdeploy.targets.azure.spec import manages_secrets, with_environment
from agentdeploy.targets.azure.views import (
    app_host,
    app_url,
    failure_details,
    has_secrets,
    label_host_of,
    named_traffic,
    raw_traffic,
    revision_failure,
    revision_host,
    revision_host_in,
    revision_image,
    serving_in,
    traffic_patch,
)
from agentdeploy.targets.base import Live
from agentdeploy.targets.health import (
    ChatCheck,
    ChatPost,
    HealthProbe,
    as_answer,
    check_health,
    http_post_json,
    verify_chat,
)

if TYPE_CHECKING:
    from azure.core.polling import LROPoller
    from azure.mgmt.appcontainers import ContainerAppsAPIClient
    from azure.mgmt.appcontainers.models import ContainerApp
    from azure.mgmt.appcontainers.types import AuthConfig as AuthConfigEnvelope

_P = ParamSpec("_P")
_R = TypeVar("_R")
LOCK_CONFLICT_WAIT = 90.0

# Revision running states (FACTS.md: the service reports more than the REST spec lists).
RUNNING_STATES = ("Running", "RunningAtMaxScale")  # at max scale under load: healthy
IDLE_STATES = ("ScaledToZero", "Activating")  # min replicas 0: it starts at the first request
# Ready without a probe of our own: a revision that ran and scaled down. Activating is NOT: a revision that never
# starts (wrong target port, a crashing container) shows Activating, sometimes for long, before ActivationFailed
# (microsoft/azure-container-apps#1219, #1502, #1217).
IDLE_READY_STATES = ("ScaledToZero",)
TERMINAL_STATES = ("Failed", "ActivationFailed")  # ActivationFailed does not recover (image pull, volume mount)


def _gate_clock(wait: Callable[Concatenate[AzureTarget, _P], _R]) -> Callable[Concatenate[AzureTarget, _P], _R]:
    """A health wait counts under the console's stage key `gate`."""

    @functools.wraps(wait)
    def timed(target: AzureTarget, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with target.timed("gate"):
            return wait(target, *args, **kwargs)

    return timed


@dataclass
class AzureOutcome:
    status: str  # succeeded | unchanged | candidate | promoted | rolled-back | failed
    url: str
    revision: str
    previous_revision: str = ""
    reason: str = ""
    label_url: str = ""  # blue/green candidate URL
    attempted: str = ""  # the revision this release made (set when it did not end up serving)
    changes: list[str] = field(default_factory=list)
    traffic_before: list[JsonObject] = field(default_factory=list)
    traffic_after: list[JsonObject] = field(default_factory=list)


class AzureTarget:
    def __init__(
        self,
        client: ContainerAppsAPIClient,
        *,
        resource_group: str,
        app_name: str,
        probe: HealthProbe,
        post: ChatPost = http_post_json,
        agent: str = "",
        checks: tuple[ChatCheck, ...] = (),
        verify_timeout: float = 60.0,
        on_line: Callable[[str], None] = lambda line: None,
        on_progress: Callable[[str], None] = lambda text: None,
        timed: Callable[[str], contextlib.AbstractContextManager[None]] = lambda key: contextlib.nullcontext(),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        poll_interval: float = POLL_INTERVAL,
        interrupted: Callable[[], str] = lambda: "",
        environment_group: str = "",
        ip_restricted: bool = False,
        run_id: str = "",
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.run_id = run_id or "agentdeploy"  # named in the app's lease tag, so another run can say who holds it
        self.wall = wall
        self._seen_traffic: list[JsonObject] | None = None  # the traffic as this run last left or found it
        self.interrupted = interrupted  # a signal asked the release to stop: the gate fails, traffic goes back
        self.rg = resource_group
        self.name = app_name
        self.probe = probe
        self.post = post
        self.agent = agent or app_name
        self.checks = checks  # chat turns a new revision must answer at its own URL before it is trusted
        self.verify_timeout = verify_timeout
        self.say = on_line
        self.progress = on_progress  # the live line while a wait goes on
        self.timed = timed
        self.sleep = sleep
        self.clock = clock
        self.poll_interval = poll_interval
        self.environment_group = environment_group  # where environment_name lives ("": the app's resource group)
        self.ip_restricted = ip_restricted  # the config's ip_allow guards the ingress: a 403 may be for this machine
        # Reads reused within a run (ARM throttles per subscription and principal, FACTS.md): the revision list and
        # the secrets, valid while the app they were read with is unchanged (same lastModifiedAt and revisions).
        self._listed: tuple[tuple[str, ...], list[JsonObject]] | None = None
        self._secrets: tuple[tuple[str, ...], tuple[dict[str, str], dict[str, JsonObject]]] | None = None
        self._last_app: JsonObject | None = None  # the app as this run last read or wrote it
        self._known_revisions: set[str] = set()  # revisions this run has seen exist
        self._observed: JsonObject | None = None  # the app live() read for the plan, for the release to start from

    # -- reads ---------------------------------------------------------------------------------
    def get_app(self) -> JsonObject | None:
        from azure.core.exceptions import ResourceNotFoundError

        with azure_errors(f"reading container app {self.name}"):
            try:
                app = plain(self.client.container_apps.get(self.rg, self.name))
            except ResourceNotFoundError:
                return None
        self._last_app = app
        return app

    @staticmethod
    def _stamp(app: JsonObject) -> tuple[str, ...]:
        """What changes whenever the app's revisions or secrets may have: any write moves lastModifiedAt."""
        props = object_at(app, "properties")
        return (
            text_at(app, "systemData", "lastModifiedAt"),
            text_at(props, "latestRevisionName"),
            text_at(props, "latestReadyRevisionName"),
        )

    def revisions_of(self, app: JsonObject) -> list[JsonObject]:
        """The app's revisions, listed once for this state of the app."""
        stamp = self._stamp(app)
        if self._listed is None or self._listed[0] != stamp or not stamp[0]:
            self._listed = (stamp, self.revisions())
        return self._listed[1]

    def secrets_of(self, app: JsonObject) -> tuple[dict[str, str], dict[str, JsonObject]]:
        stamp = self._stamp(app)
        if self._secrets is None or self._secrets[0] != stamp or not stamp[0]:
            self._secrets = (stamp, self.secrets())
        return self._secrets[1]

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
        group = self.environment_group or self.rg
        with azure_errors(f"reading Container Apps environment {environment} in resource group {group}"):
            managed = plain(self.client.managed_environments.get(group, environment))
        return str(managed["id"])

    def apply_auth(self, spec: AppSpec) -> bool:
        """Built-in authentication as the spec says (the app's authConfigs/current, set after the app exists and
        before the gate); False when the app already has it, and nothing is written."""
        if spec.auth is None:
            return False
        operations = self.client.container_apps_auth_configs
        with azure_errors(f"reading the authentication settings of container app {self.name}"):
            found = [plain(config) for config in operations.list_by_container_app(self.rg, self.name)]
        live = next((config for config in found if text_at(config, "name").lower() == "current"), {})
        body = auth_config_body(spec, live)
        if body is None:
            return False
        self.say(f"setting built-in authentication on {self.name}: Microsoft Entra app {spec.auth.client_id}")
        with azure_errors(f"setting the authentication of container app {self.name}"):
            operations.create_or_update(self.rg, self.name, "current", cast("AuthConfigEnvelope", body))
        return True

    def secret_values(self) -> dict[str, str]:
        app = self._last_app
        return self.secrets_of(app)[0] if app is not None else self.secrets()[0]

    def secrets(self) -> tuple[dict[str, str], dict[str, JsonObject]]:
        """(name -> value, name -> Key Vault reference) of the app's secrets. A reference has no value to read:
        it is kept as the service lists it ({name, keyVaultUrl, identity}), to be resent as it is."""
        with azure_errors("reading the app's secrets"):
            listed = plain(self.client.container_apps.list_secrets(self.rg, self.name))
        values: dict[str, str] = {}
        references: dict[str, JsonObject] = {}
        for secret in objects_at(listed, "value"):
            name = str(secret["name"])
            vault = secret.get("keyVaultUrl") or secret.get("key_vault_url")
            if vault:
                references[name] = {"name": name, "keyVaultUrl": vault}
                if secret.get("identity"):
                    references[name]["identity"] = secret["identity"]
            else:
                values[name] = text_at(secret, "value")
        return values, references

    def revisions(self) -> list[JsonObject]:
        with azure_errors("listing revisions"):
            listed = [plain(r) for r in self.client.container_apps_revisions.list_revisions(self.rg, self.name)]
        self._known_revisions.update(text_at(r, "name") for r in listed)
        return listed

    def revision(self, name: str) -> JsonObject | None:
        from azure.core.exceptions import ResourceNotFoundError

        with azure_errors(f"reading revision {name}"):
            try:
                found = plain(self.client.container_apps_revisions.get_revision(self.rg, self.name, name))
            except ResourceNotFoundError:
                self._known_revisions.discard(name)
                return None
        self._known_revisions.add(name)
        return found

    # -- writes --------------------------------------------------------------------------------
    def _lro(
        self, action: str, start: Callable[[], LROPoller[ContainerApp]], recheck: Callable[[], None] = lambda: None
    ) -> JsonObject:
        """Run a long-running write; wait out a write refused because another is in flight, calling `recheck`
        before each new try (the change in flight may be another run's release). Two refusals: 409
        ContainerAppLockConflict (a change to this app), and ContainerAppOperationInProgress (Container Apps
        serialises writes within a managed environment: another app's change there; microsoft/aspire#18682,
        `{"error": {"code": ..., "message": "Cannot modify a container app '<name>' because there is an active
        provisioning operation in progress. OperationId: '...'"}}`, 409). Keyed on the code, whatever the status.
        The waits grow with jitter, so runs that collided once do not collide again in step."""
        from azure.core.exceptions import HttpResponseError

        busy_codes = ("ContainerAppLockConflict", "ContainerAppOperationInProgress")
        deadline = self.clock() + LOCK_CONFLICT_WAIT
        waits = backoff(1.0, jitter=True)
        while True:
            try:
                with azure_errors(action):
                    try:
                        written = plain(start().result())
                        self._last_app = written or self._last_app
                        return written
                    except HttpResponseError as exc:
                        if code_of(exc) in busy_codes:
                            raise _LockConflict(code_of(exc)) from None
                        raise
            except _LockConflict as busy:
                delay = round(next(waits), 1)
                elsewhere = str(busy) == "ContainerAppOperationInProgress"
                holder = f"another app's change in its environment ({busy})" if elsewhere else "another operation"
                if self.clock() + delay > deadline:
                    raise DeployError(
                        f"container app {self.name} stayed locked by {holder} for {LOCK_CONFLICT_WAIT:g}s",
                        hint="wait for the other deployment to finish, then run again",
                    ) from None
                self.say(f"{holder} holds {self.name}; retrying in {delay:g}s")
                self.sleep(delay)
                recheck()

    def create(self, body: JsonObject) -> JsonObject:
        self.say(f"creating container app {self.name}")
        return self._lro(
            f"creating container app {self.name}",
            lambda: self.client.container_apps.begin_create_or_update(
                self.rg, self.name, envelope(body), polling_interval=self.poll_interval
            ),
        )

    def patch(self, body: JsonObject, what: str, recheck: Callable[[], None] = lambda: None) -> JsonObject:
        return self._lro(
            what,
            lambda: self.client.container_apps.begin_update(
                self.rg, self.name, envelope(body), polling_interval=self.poll_interval
            ),
            recheck,
        )

    def set_active(self, revision: str, active: bool) -> None:
        operations = self.client.container_apps_revisions
        with azure_errors(f"{'activating' if active else 'deactivating'} revision {revision}"):
            if active:
                operations.activate_revision(self.rg, self.name, revision)
            else:
                operations.deactivate_revision(self.rg, self.name, revision)

    def delete(self) -> None:
        with azure_errors(f"deleting container app {self.name}"):
            self.client.container_apps.begin_delete(self.rg, self.name, polling_interval=self.poll_interval).result()

    def known_mode(self, app: JsonObject) -> None:
        """Single or Multiple revision mode, else stop before any write: the preview `Labels` mode (FACTS.md) routes
        by label, and switching it back would drop the labels' traffic rules behind the owner's back."""
        mode = text_at(app, "properties", "configuration", "activeRevisionsMode")
        if mode and mode.lower() not in ("single", "multiple"):
            raise DeployError(
                f"container app {self.name} is in the {mode} revision mode, which agentdeploy does not manage "
                "(it deploys in Single or Multiple mode); nothing was changed",
                hint=f"switch the app to single or multiple mode yourself (az containerapp revision set-mode --name "
                f"{self.name} --mode single), or deploy to another app (deployment.target.azure.app_name)",
            )

    # -- the release lease -------------------------------------------------------------------------
    def lease_free(self, app: JsonObject) -> None:
        """A lease another live run holds on the app stops this run (exit 10) before it changes anything."""
        held = lease_of(app)
        if held is not None and held.run != self.run_id and held.holds(self.wall()):
            raise ConcurrentReleaseError(
                f"another agentdeploy run ({held.run}) is releasing to container app {self.name} "
                f"(its lease runs until {utc(held.until)}); nothing was changed",
                hint="wait for that run to finish and deploy again; a run that died gives its lease up when it "
                "expires, or at once when `agentdeploy status` repairs it from the same checkout",
            )

    def with_lease(self, app: JsonObject, patch: JsonObject, seconds: float) -> JsonObject:
        """`patch` carrying this run's lease (an ARM tag: no revision of its own), so the first change of a
        release also marks the app as this run's; the other tags are sent as they are."""
        self.lease_free(app)
        tags = {key: value for key, value in object_at(app, "tags").items() if isinstance(value, str)}
        tags[LEASE_TAG] = Lease(self.run_id, self.wall() + seconds, True).render()
        return {**patch, "tags": to_object(tags)}

    def own_lease(self, app: JsonObject) -> None:
        """After the first write: two runs that wrote at the same moment both see the last writer's lease."""
        mine = lease_of(app)
        if mine is None or mine.run != self.run_id:
            raise ConcurrentReleaseError(
                f"another agentdeploy run ({mine.run if mine else 'unknown'}) wrote to container app {self.name} "
                "at the same moment and holds its lease; this run stops and moves no traffic",
                hint="`agentdeploy status` shows what serves; deploy again when that run has finished",
            )

    def confirm_lease(self, doing: str, app: JsonObject | None = None) -> JsonObject:
        """Before moving traffic: the lease is still this run's and the traffic is as this run left it, else stop
        (exit 10) and reverse nothing: what serves is the other run's to decide. `app`: one read a moment ago."""
        app = app or self.get_app() or {}
        held = lease_of(app)
        traffic = raw_traffic(app)
        if held is not None and held.run != self.run_id and held.holds(self.wall()):
            who = held.run
            raise ConcurrentReleaseError(
                f"{who} took over container app {self.name} during this release; stopped before {doing}, "
                "nothing reversed",
                hint="`agentdeploy status` shows what serves now; deploy again when the other run has finished",
            )
        if self._seen_traffic is not None and traffic != self._seen_traffic:
            who = f"another agentdeploy run ({held.run})" if held and held.run != self.run_id else "someone else"
            raise ConcurrentReleaseError(
                f"the traffic of container app {self.name} was changed by {who} during this release "
                f"(now {traffic}); stopped before {doing}, nothing reversed",
                hint="`agentdeploy status` shows what serves now; deploy again when you know who changed it",
            )
        return app

    def give_up_lease(self, of: str = "", app: JsonObject | None = None) -> None:
        """End the lease (this run's, or `of` a dead run's) so the next run can start at once; best effort. `app`:
        the app as this run last saw it, a moment ago (else it is read)."""
        app = app or self.get_app()
        held = lease_of(app or {})
        if app is None or held is None or not held.held or held.run != (of or self.run_id):
            return
        tags = {key: value for key, value in object_at(app, "tags").items() if isinstance(value, str)}
        tags[LEASE_TAG] = Lease(held.run, self.wall(), False).render()
        patch: JsonObject = {"tags": to_object(tags)}
        suffix = text_at(app, "properties", "template", "revisionSuffix")
        requested = f"{self.name}--{suffix}"
        if suffix and requested not in self._known_revisions and self.revision(requested) is None:
            # The last requested template never became a revision (its operation failed): any write would
            # provision it now, ungated. The app gets the template of what serves back instead.
            serving = object_at(self.revision(self.serving_revision(app)), "properties", "template")
            if serving:
                patch["properties"] = {"template": serving}
        with contextlib.suppress(AgentDeployError):
            self.patch(patch, f"giving the release lease on container app {self.name} up")

    def released_tags(self, app: JsonObject) -> JsonObject:
        """The app's tags with this run's lease ended (held=0)."""
        tags = {key: value for key, value in object_at(app, "tags").items() if isinstance(value, str)}
        tags[LEASE_TAG] = Lease(self.run_id, self.wall(), False).render()
        return to_object(tags)

    def _seen(self, app: JsonObject | None) -> None:
        self._seen_traffic = raw_traffic(app or {})

    # -- health ----------------------------------------------------------------------------------
    @_gate_clock
    def wait_ready(
        self,
        revision: str,
        timeout: float,
        *,
        latest: bool = True,
        wake: Callable[[], object] | None = None,
        interruptible: bool = True,
    ) -> tuple[bool, str]:
        """Until the revision is Provisioned, Running, Healthy (and the latest ready one), it fails, or (when
        `interruptible`) a signal asks the release to stop."""
        start = self.clock()
        woken = False
        waits = backoff(0.25, factor=1.5, cap=2.0)
        last = "not seen yet"
        while True:
            if interruptible and self.interrupted():
                return False, f"interrupted by {self.interrupted()} during the health gate"
            props = object_at(self.revision(revision), "properties")
            provisioning = text_at(props, "provisioningState")
            running = text_at(props, "runningState")
            health = text_at(props, "healthState")
            last = (
                f"provisioningState {provisioning or '?'}, runningState {running or '?'}, healthState {health or '?'}"
            )
            details = failure_details(props)
            if provisioning == "Failed" or running in TERMINAL_STATES:
                return False, revision_failure(revision, last, details)
            idle = provisioning == "Provisioned" and running in IDLE_STATES
            if idle and wake is not None and not woken:
                self.say(f"revision {revision} is {running} (min replicas 0): waking it with a request")
                wake()
                woken = True
            replicas = props.get("replicas")
            serving = running in RUNNING_STATES and health == "Healthy" and replicas != 0
            unprobed_idle = wake is None and running in IDLE_READY_STATES
            if provisioning == "Provisioned" and (serving or unprobed_idle):
                if not latest:
                    return True, last
                ready = value_at(self.get_app(), "properties", "latestReadyRevisionName")  # kept: _last_app
                if ready == revision:
                    return True, last
                last += f"; latestReadyRevisionName is {ready}"
            self.progress(waiting_text(f"revision {revision}", self.clock() - start, timeout, last))
            if self.clock() - start >= timeout:
                return False, revision_failure(revision, f"not healthy within {timeout:g}s ({last})", details, verb="")
            self.sleep(next(waits))

    @_gate_clock
    def wait_url(self, host: str, health_path: str, timeout: float, *, verify: bool = True) -> tuple[bool, str]:
        """Until https://<host> is healthy by the runtime's own verdict; then (with `verify`) it must answer
        the config's chat turns there, before it gets traffic or is called good. Called once the revision's own
        state is good: when the app's ip_allow refuses this machine, that state is the verdict."""
        refused = self.ip_refused(host, health_path)
        if refused:
            return True, refused
        base = f"https://{host}"
        start = self.clock()
        while True:
            if self.interrupted():
                return False, f"interrupted by {self.interrupted()} during the health gate"
            verdict = check_health(self.probe, base, health_path)
            if verdict.healthy:
                break
            self.progress(waiting_text(f"{base}{health_path}", self.clock() - start, timeout, verdict.reason))
            if self.clock() - start >= timeout:
                return False, f"{base}{health_path} was not healthy within {timeout:g}s (last: {verdict.reason})"
            self.sleep(0.5)
        reason = f"{base}{health_path}: {verdict.reason}"
        if not verify or not self.checks:
            return True, reason
        self.say(f"verifying: {len(self.checks)} chat turn(s) to {base}/agent/{self.agent}/chat")
        result = verify_chat(self.post, base, self.agent, self.checks, self.verify_timeout)
        return result.ok, (f"{reason}; {result.reason}" if result.ok else result.reason)

    def gate(
        self, revision: str, health_path: str, timeout: float, *, external: bool, url_host: str | None
    ) -> tuple[bool, str]:
        start = self.clock()
        refused = self.ip_refused(url_host, health_path) if external and url_host else ""
        # With min replicas 0 a good revision can wait in ScaledToZero until a request reaches its own fqdn (one
        # from a machine ip_allow refuses never does: then, as behind internal ingress, idle counts as ready).
        reachable = external and url_host and not refused
        wake = (lambda: self.probe(f"https://{url_host}{health_path}")) if reachable else None
        ok, reason = self.wait_ready(revision, timeout, wake=wake)
        if not ok:
            return ok, reason
        if refused:
            return True, f"{reason} ({refused})"
        if not external or not url_host:
            if self.checks:
                self.say("note: internal ingress: the verify chat turns cannot reach the revision from here")
            return True, reason + " (internal ingress: not probed from here)"
        remaining = max(timeout - (self.clock() - start), 5.0)
        return self.wait_url(url_host, health_path, remaining)

    def ip_refused(self, host: str, health_path: str) -> str:
        """Why this machine cannot probe https://<host>: ip_allow guards the ingress and it answers 403 (Envoy's
        "RBAC: access denied", microsoft/azure-container-apps#527); "" when it is not refused."""
        if not self.ip_restricted or as_answer(self.probe(f"https://{host}{health_path}")).status != 403:
            return ""
        self.say(
            "note: the app's ip_allow does not admit this machine (HTTP 403): the revision's state decides and the "
            "verify chat turns are not sent; add this machine's address to ip_allow to have it probed"
        )
        return "ip_allow does not admit this machine: not probed from here"

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
    ) -> AzureOutcome:
        # The app this run observed for its plan, if any, decides a no-op (nothing is written, so nothing can be
        # reversed); a change reads the app again first, for the lease and for what may have moved since.
        observed, self._observed = self._observed, None
        app = observed or self.get_app()
        if app is None:
            return self._first_deploy(spec, tag=tag, environment=environment, timeout=timeout, blue_green=blue_green)
        release = self._release_plan(app, spec, blue_green)
        if release.plan.patch is not None and observed is not None:
            fresh = self.get_app()
            if fresh is None:
                raise DeployError(
                    f"container app {self.name} was deleted while this run prepared its release; nothing was changed",
                    hint="deploy again to create it",
                )
            app = fresh
            release = self._release_plan(app, spec, blue_green)
        plan, previous, traffic_before = release.plan, release.previous, release.traffic_before
        live_secrets, references, serving, traffic = (
            release.secrets,
            release.references,
            release.serving,
            release.traffic,
        )
        if plan.patch is None:
            self.say(f"{self.name} already runs this configuration: nothing to change")
            return AzureOutcome(
                "unchanged",
                app_url(app),
                previous,
                previous,
                traffic_before=traffic_before,
                traffic_after=traffic_before,
            )
        suffix = ""
        if plan.new_revision:
            taken = {text_at(r, "name") for r in self.revisions_of(app)}
            suffix = revision_suffix(self.name, tag, spec, taken)
            plan = update_patch(spec, serving, live_secrets, suffix, traffic=traffic, secret_references=references)
        assert plan.patch is not None
        plan = replace(plan, patch=self.with_lease(app, plan.patch, timeout + LEASE_MARGIN))
        ended = False
        try:
            outcome = self._update(spec, plan, previous, traffic_before, suffix, timeout, auto_rollback, blue_green)
            ended = True
            return outcome
        finally:
            # Ended as planned, the app this run last saw (a moment ago) is the one to release; after an error, the
            # app is read again (another run may hold it now).
            self.give_up_lease(app=self._last_app if ended else None)

    def _release_plan(self, app: JsonObject, spec: AppSpec, blue_green: bool) -> _ReleasePlan:
        """What a release to the existing `app` changes (no suffix yet), from the app, its revisions and secrets."""
        self.known_mode(app)
        previous = text_at(app, "properties", "latestReadyRevisionName")
        traffic_before = named_traffic(app)
        live_secrets, references = self.secrets_of(app) if manages_secrets(spec) or has_secrets(app) else ({}, {})
        previous = self.serving_revision(app) or previous
        if blue_green and previous:
            traffic: list[JsonObject] = [{"revisionName": previous, "weight": 100, "label": "blue"}]
        elif spec.multiple and previous:
            # Multiple mode: `latestRevision: true` would hand the new revision the traffic the moment it
            # exists (FACTS.md). Pin it to what serves; it moves only after the gate.
            traffic = [{"revisionName": previous, "weight": 100}]
        else:
            traffic = [{"weight": 100, "latestRevision": True}]
        # Compared with what SERVES: the app's own template is the last one requested, also when that
        # operation failed or its client was killed (FACTS.md), so it can name a version that never served.
        serving = self.serving_view(app)
        plan = update_patch(spec, serving, live_secrets, "pending", traffic=traffic, secret_references=references)
        return _ReleasePlan(plan, previous, traffic_before, live_secrets, references, serving, traffic)

    def _update(
        self,
        spec: AppSpec,
        plan: UpdatePlan,
        previous: str,
        traffic_before: list[JsonObject],
        suffix: str,
        timeout: float,
        auto_rollback: bool,
        blue_green: bool,
    ) -> AzureOutcome:
        """The write and the gate of a release to an existing app, under this run's lease."""
        self.say(f"updating {self.name}: " + ", ".join(plan.changes))
        updated = self.patch(
            plan.patch or {},
            f"updating container app {self.name}",
            recheck=lambda: self.lease_free(self.get_app() or {}),  # the write in flight may be another release
        )
        self.own_lease(updated)
        self._seen(updated)
        new = (
            f"{self.name}--{suffix}"
            if plan.new_revision
            else text_at(updated, "properties", "latestRevisionName") or previous
        )
        outcome = AzureOutcome(
            "succeeded", app_url(updated), new, previous, changes=plan.changes, traffic_before=traffic_before
        )
        if blue_green and previous and plan.new_revision:
            return self._candidate(spec, outcome, timeout, auto_rollback)
        host = revision_host_in(updated, new) if plan.new_revision else app_host(updated)
        ok, reason = self.gate(new, spec.health_path, timeout, external=spec.external, url_host=host)
        outcome.reason = reason
        if ok:
            self.say(f"revision {new} is healthy: {reason}")
            if spec.multiple and previous and plan.new_revision:
                # The app the gate read a moment ago; the move also ends this run's lease (one write, not two).
                now = self.confirm_lease(f"moving traffic to {new}", self._last_app)
                move = {**traffic_patch([{"revisionName": new, "weight": 100}]), "tags": self.released_tags(now)}
                self.patch(move, f"moving traffic to {new}")
            outcome.traffic_after = named_traffic(self._last_app or {})
            return outcome
        self.say(f"health gate failed: {reason}")
        # Interrupted, the release ends with what served before, whatever auto_rollback says.
        if (not auto_rollback and not self.interrupted()) or not previous or previous == new:
            outcome.status = "failed"
            if not previous:
                outcome.reason += "; nothing to roll back to"
            return outcome
        serving = self._restore(previous, new, multiple=spec.multiple, timeout=timeout)
        outcome.status = "rolled-back"
        outcome.attempted, outcome.revision = new, serving
        outcome.traffic_after = self._traffic_view()
        return outcome

    def _first_deploy(
        self, spec: AppSpec, *, tag: str, environment: str | None, timeout: float, blue_green: bool
    ) -> AzureOutcome:
        suffix = revision_suffix(self.name, tag, spec)
        revision = f"{self.name}--{suffix}"
        spec_with_env = with_environment(spec, self.environment_id(environment))
        traffic: list[JsonObject] | None = (
            [{"revisionName": revision, "weight": 100, "label": "blue"}] if blue_green else None
        )
        created = self.create(create_body(spec_with_env, suffix, traffic))
        self.apply_auth(spec)  # the app exists now; before the gate, which then meets the agent as callers will
        ok, reason = self.gate(
            revision,
            spec.health_path,
            timeout,
            external=spec.external,
            url_host=revision_host(self.revision(revision)),
        )
        outcome = AzureOutcome(
            "succeeded" if ok else "failed",
            app_url(created),
            revision,
            "",
            reason,
            changes=["created"],
            traffic_after=self._traffic_view(),
        )
        if not ok:
            outcome.reason += "; nothing to roll back to"
        return outcome

    def _candidate(self, spec: AppSpec, outcome: AzureOutcome, timeout: float, auto_rollback: bool) -> AzureOutcome:
        """Blue/green: the new revision waits at 0% with the label `green`, verified at its label URL."""
        new, previous = outcome.revision, outcome.previous_revision
        ok, reason = self.wait_ready(new, timeout, latest=False)
        if ok:
            self.confirm_lease(f"labelling {new} green")
            self.patch(
                traffic_patch(
                    [
                        {"revisionName": previous, "weight": 100, "label": "blue"},
                        {"revisionName": new, "weight": 0, "label": "green"},
                    ]
                ),
                f"labelling {new} green",
            )
            self.deactivate_unrouted()  # an earlier candidate, a revision kept from before the last promote
            label_host = label_host_of(self.get_app() or {}, "green")
            outcome.label_url = f"https://{label_host}" if label_host else ""
            if spec.external and label_host:
                ok, reason = self.wait_url(label_host, spec.health_path, max(timeout / 2, 5.0))
        outcome.reason = reason
        if ok:
            outcome.status = "candidate"
            self.say(f"candidate {new} is healthy at {outcome.label_url or 'its label'}; 0% of traffic until promote")
        else:
            self.say(f"health gate failed: {reason}")
            back = auto_rollback or bool(self.interrupted())
            outcome.status = "rolled-back" if back else "failed"
            if back:
                self.confirm_lease("removing the failed candidate from traffic")
                self.patch(
                    traffic_patch([{"revisionName": previous, "weight": 100, "label": "blue"}]),
                    "removing the failed candidate from traffic",
                )
                self.set_active(new, False)
                outcome.attempted, outcome.revision = new, previous
        outcome.traffic_after = self._traffic_view()
        return outcome

    def _traffic(self) -> list[JsonObject]:
        return objects_at(self.get_app(), "properties", "configuration", "ingress", "traffic")

    def _traffic_view(self) -> list[JsonObject]:
        return named_traffic(self.get_app() or {})

    def _restore(self, good: str, bad: str, *, multiple: bool, timeout: float) -> str:
        """Traffic back on `good`; returns the revision that serves now. Single mode takes no traffic by revision
        name ("Revision weights can not be used in this mode", the REST spec; `az containerapp` refuses it): there
        the traffic follows the latest READY revision, so when `bad` never got ready `good` still serves and `bad`
        is only stopped, and otherwise a new revision made from `good`'s template takes over (see single_restore)."""
        app = self.confirm_lease(f"rolling back to {good}")
        if not multiple:
            return self.single_restore(app, good, bad, timeout)
        self.say(f"rolling back: traffic to {good}, deactivating {bad}")
        if not value_at(self.revision(good), "properties", "active"):
            self.set_active(good, True)
        traffic: list[JsonObject] = [{"revisionName": good, "weight": 100, "label": "blue"}]
        self.patch(traffic_patch(traffic), f"moving traffic to {good}")
        if bad and self.revision(bad) is not None:
            self.set_active(bad, False)
        return good

    def single_restore(self, app: JsonObject, good: str, bad: str, timeout: float) -> str:
        """Single mode: `good` serves again. When it is still the latest ready revision (what `bad` never became)
        it serves already; otherwise its template is deployed again as a new revision (a copy, `<suffix>-r<n>`),
        which the platform switches to once it is ready. The copy is what serves and what is recorded; `good`
        itself stays inactive, listed."""
        if text_at(app, "properties", "latestReadyRevisionName") == good:
            self.say(f"rolling back: {good} still serves (Single mode: {bad} never became ready); stopping {bad}")
            if bad and value_at(self.revision(bad), "properties", "active"):
                self.set_active(bad, False)
            return good
        template = object_at(self.revision(good), "properties", "template")
        if not template:
            raise DeployError(
                f"cannot roll back container app {self.name} to {good}: the revision is gone",
                hint="deploy the version you want again (agentdeploy rollback --to <tag> redeploys its digest)",
            )
        taken = {text_at(r, "name") for r in self.revisions()}
        copy_name = f"{self.name}--{copy_suffix(self.name, good, taken)}"
        self.say(f"rolling back: {good}'s template as a new revision {copy_name} (Single mode)")
        patch: JsonObject = {"properties": {"template": restored_template(app, template, copy_name)}}
        self.patch(patch, f"rolling back container app {self.name} to {good}'s template")
        ok, reason = self.wait_ready(copy_name, timeout, interruptible=False)
        if not ok:
            raise DeployError(
                f"the rollback of container app {self.name} to {good}'s template did not come up: {reason}",
                hint="`agentdeploy status` shows what serves; roll back again, or deploy a version you trust",
            )
        if bad and value_at(self.revision(bad), "properties", "active"):
            self.set_active(bad, False)
        return copy_name

    def deactivate_image(self, image: str, *, keep: str) -> list[str]:
        """Stop the active revisions that run `image` and take no traffic (what a dead run left), except `keep`."""
        serving = {text_at(entry, "revisionName") for entry in self._traffic() if int_at(entry, "weight") > 0}
        stopped = []
        for revision in self.revisions():
            name = text_at(revision, "name")
            active = value_at(revision, "properties", "active")
            if name and name != keep and name not in serving and active and revision_image(revision) == image:
                self.set_active(name, False)
                stopped.append(name)
        return stopped

    def deactivate_unrouted(self) -> list[str]:
        """Stop the active revisions the traffic no longer names (a weight-0 entry still names one): old
        blue/green revisions, a rolled-back one. They stay listed, and `rollback` can activate them again."""
        traffic = self._traffic()
        routed = {text_at(entry, "revisionName") for entry in traffic}
        if any(entry.get("latestRevision") for entry in traffic):
            routed.add(text_at(self.get_app(), "properties", "latestReadyRevisionName"))
        stopped = []
        for revision in self.revisions():
            name = text_at(revision, "name")
            if name and name not in routed and value_at(revision, "properties", "active"):
                self.set_active(name, False)
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
    ) -> AzureOutcome:
        """Manual rollback (or roll forward) to an existing revision: no rebuild, no new revision; under this
        run's lease, like a release."""
        app = self.get_app()
        if app is None:
            raise DeployError(f"container app {self.name} does not exist", hint="deploy it first")
        self.known_mode(app)
        self.lease_free(app)  # checked again right before the traffic moves
        return self._shift(
            app, target, health_path, timeout, multiple=multiple, external=external, keep_current=keep_current
        )

    def _shift(
        self,
        app: JsonObject,
        target: str,
        health_path: str,
        timeout: float,
        *,
        multiple: bool,
        external: bool,
        keep_current: bool,
    ) -> AzureOutcome:
        """`keep_current` (a promote): what served stays active at 0% for an instant rollback, with no label,
        so `promote` never takes it for a candidate. Otherwise (a rollback) it is deactivated."""
        self._seen(self.get_app())
        current = serving_in(self._traffic()) or text_at(app, "properties", "latestReadyRevisionName")
        if not multiple:
            return self._single_shift(app, target, current, health_path, timeout, external=external)
        if not value_at(self.revision(target), "properties", "active"):
            self.say(f"activating revision {target}")
            self.set_active(target, True)
        ok, reason = self.wait_ready(target, timeout, latest=False)
        if ok and external:
            host = revision_host(self.revision(target))
            if host:
                ok, reason = self.wait_url(host, health_path, timeout, verify=False)
        if not ok:
            return AzureOutcome(
                "failed",
                app_url(app),
                current,
                current,
                f"{target} is not healthy: {reason}",
                traffic_before=named_traffic(app),
                traffic_after=named_traffic(app),
            )
        traffic: list[JsonObject] = [{"revisionName": target, "weight": 100, "label": "blue"}]
        if current and current != target and keep_current:
            traffic.append({"revisionName": current, "weight": 0})
        self.confirm_lease(f"moving traffic to {target}")
        self.patch(traffic_patch(traffic), f"moving traffic to {target}")
        self.deactivate_unrouted()
        return AzureOutcome(
            "succeeded",
            app_url(app),
            target,
            current,
            reason,
            traffic_before=named_traffic(app),
            traffic_after=self._traffic_view(),
        )

    def _single_shift(
        self, app: JsonObject, target: str, current: str, health_path: str, timeout: float, *, external: bool
    ) -> AzureOutcome:
        """Single mode: `target`'s template serves again through single_restore (no traffic by revision name),
        then, with external ingress, its URL must be healthy."""

        def failed(reason: str, serving: str) -> AzureOutcome:
            return AzureOutcome(
                "failed",
                app_url(app),
                serving,
                current,
                f"{target} is not healthy: {reason}",
                traffic_before=named_traffic(app),
                traffic_after=self._traffic_view(),
            )

        try:
            served = self.single_restore(self.confirm_lease(f"rolling back to {target}"), target, current, timeout)
        except DeployError as error:
            if isinstance(error, ConcurrentReleaseError):
                raise
            return failed(str(error), current)
        reason = f"{served} serves {target}'s template" if served != target else f"{target} serves"
        host = revision_host(self.revision(served)) if external else None
        if host:
            ok, reason = self.wait_url(host, health_path, timeout, verify=False)
            if not ok:
                return failed(reason, served)
        return AzureOutcome(
            "succeeded",
            app_url(app),
            served,
            current,
            reason,
            traffic_before=named_traffic(app),
            traffic_after=self._traffic_view(),
        )

    def promote(self, health_path: str, timeout: float, *, external: bool) -> AzureOutcome:
        traffic = self._traffic()
        green = next((t.get("revisionName") for t in traffic if t.get("label") == "green"), None)
        blue = next((t.get("revisionName") for t in traffic if t.get("label") == "blue"), None)
        if not green:
            raise DeployError(f"{self.name} has no candidate (no revision labelled green)", hint="deploy first")
        outcome = self.shift_to(str(green), health_path, timeout, multiple=True, external=external, keep_current=True)
        if outcome.status == "succeeded":
            outcome.status = "promoted"
            outcome.previous_revision = str(blue or "")
        return outcome

    def serving_revision(self, app: JsonObject) -> str:
        """The revision with the largest share of the traffic (a `latestRevision` entry means the latest READY
        one: a newer revision that never got ready takes no traffic)."""
        ready = text_at(app, "properties", "latestReadyRevisionName")
        best, weight = "", -1
        for entry in objects_at(app, "properties", "configuration", "ingress", "traffic"):
            name = text_at(entry, "revisionName") or (ready if entry.get("latestRevision") else "")
            share = int_at(entry, "weight")
            if name and share > weight:
                best, weight = name, share
        return best or ready

    def serving_view(self, app: JsonObject) -> JsonObject:
        """The app with the template of the revision that serves in place of the last requested one."""
        name = self.serving_revision(app)
        listed = next((r for r in self.revisions_of(app) if text_at(r, "name") == name), None) if name else None
        template = value_at(listed, "properties", "template")
        if not template:
            return app
        view = copy.deepcopy(app)
        properties = view.get("properties")
        if not isinstance(properties, dict):
            properties = view["properties"] = {}
        properties["template"] = template
        return view

    def live(self, recorded_revision: str) -> Live:
        """What runs now, for planning: the serving revision's image, and whether the recorded revision serves."""
        app = self._observed = self.get_app()
        if app is None:
            return Live(exists=False)
        props = object_at(self.serving_view(app), "properties")
        containers = objects_at(props, "template", "containers")
        ours = next((c for c in containers if c.get("name") == self.name), {})
        traffic = objects_at(props, "configuration", "ingress", "traffic")
        serving_names = {text_at(t, "revisionName") for t in traffic if int_at(t, "weight") > 0}
        if any(t.get("latestRevision") and int_at(t, "weight") > 0 for t in traffic):
            serving_names.add(text_at(props, "latestReadyRevisionName"))
        return Live(
            exists=True,
            image=text_at(ours, "image"),
            serving=not recorded_revision or recorded_revision in serving_names,
        )

    def status(self) -> JsonObject:
        app = self.get_app()
        if app is None:
            return {"app": self.name, "exists": False}
        props = object_at(app, "properties")
        configuration = object_at(props, "configuration")
        weights = {text_at(t, "revisionName"): t for t in objects_at(configuration, "ingress", "traffic")}
        revisions: list[JsonObject] = []
        for revision in self.revisions():
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


class _LockConflict(Exception):
    pass


@dataclass(frozen=True)
class _ReleasePlan:
    plan: UpdatePlan
    previous: str
    traffic_before: list[JsonObject]
    secrets: dict[str, str]
    references: dict[str, JsonObject]
    serving: JsonObject
    traffic: list[JsonObject]


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
