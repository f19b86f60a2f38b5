"""The health gate of a new revision: it is trusted only when it is the latest ready one, Provisioned, Running
and Healthy, and (with external ingress) its own URL answers healthy by the runtime's verdict and then the
config's chat turns. Provisioning state `Succeeded` on the app alone proves nothing (FACTS.md). Each wait
counts under the console's stage key `gate`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from agentdeploy.jsonvalue import object_at, text_at, value_at
from agentdeploy.retry import backoff
from agentdeploy.targets.azure.api import AppSession
from agentdeploy.targets.azure.settings import NO_VERIFY, Adapters, AzureSettings, Verify
from agentdeploy.targets.azure.views import failure_details, revision_failure
from agentdeploy.targets.health import as_answer, check_health, verify_chat
from agentdeploy.terminal import waiting_text

_P = ParamSpec("_P")
_R = TypeVar("_R")

# Revision running states (FACTS.md: the service reports more than the REST spec lists).
RUNNING_STATES = ("Running", "RunningAtMaxScale")  # at max scale under load: healthy
IDLE_STATES = ("ScaledToZero", "Activating")  # min replicas 0: it starts at the first request
# Ready without a probe of our own: a revision that ran and scaled down. Activating is NOT: a revision that never
# starts (wrong target port, a crashing container) shows Activating, sometimes for long, before ActivationFailed
# (microsoft/azure-container-apps#1219, #1502, #1217).
IDLE_READY_STATES = ("ScaledToZero",)
TERMINAL_STATES = ("Failed", "ActivationFailed")  # ActivationFailed does not recover (image pull, volume mount)


def _gate_clock(wait: Callable[Concatenate[Gate, _P], _R]) -> Callable[Concatenate[Gate, _P], _R]:
    """A health wait counts under the console's stage key `gate`."""

    @functools.wraps(wait)
    def timed(gate: Gate, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with gate.adapters.timed("gate"):
            return wait(gate, *args, **kwargs)

    return timed


class Gate:
    def __init__(self, session: AppSession, settings: AzureSettings, adapters: Adapters) -> None:
        self.session, self.settings, self.adapters = session, settings, adapters

    def _interrupted(self) -> str:
        signal = self.adapters.interrupted()
        return f"interrupted by {signal} during the health gate" if signal else ""

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
        clock, start = self.adapters.clock, self.adapters.clock()
        woken = False
        waits = backoff(0.25, factor=1.5, cap=2.0)
        while True:
            if interruptible and self._interrupted():
                return False, self._interrupted()
            props = object_at(self.session.revision(revision), "properties")
            provisioning, running = text_at(props, "provisioningState"), text_at(props, "runningState")
            health = text_at(props, "healthState")
            last = (
                f"provisioningState {provisioning or '?'}, runningState {running or '?'}, healthState {health or '?'}"
            )
            details = failure_details(props)
            if provisioning == "Failed" or running in TERMINAL_STATES:
                return False, revision_failure(revision, last, details)
            if wake is not None and not woken and provisioning == "Provisioned" and running in IDLE_STATES:
                self.adapters.say(f"revision {revision} is {running} (min replicas 0): waking it with a request")
                wake()
                woken = True
            serving = running in RUNNING_STATES and health == "Healthy" and props.get("replicas") != 0
            unprobed_idle = wake is None and running in IDLE_READY_STATES
            if provisioning == "Provisioned" and (serving or unprobed_idle):
                if not latest:
                    return True, last
                ready = value_at(self.session.get_app(), "properties", "latestReadyRevisionName")
                if ready == revision:
                    return True, last
                last += f"; latestReadyRevisionName is {ready}"
            self.adapters.progress(waiting_text(f"revision {revision}", clock() - start, timeout, last))
            if clock() - start >= timeout:
                return False, revision_failure(revision, f"not healthy within {timeout:g}s ({last})", details, verb="")
            self.adapters.sleep(next(waits))

    @_gate_clock
    def wait_url(self, host: str, health_path: str, timeout: float, *, verify: Verify = NO_VERIFY) -> tuple[bool, str]:
        """Until https://<host> is healthy by the runtime's own verdict; then `verify`'s chat turns must be
        answered there, before it gets traffic or is called good. Called once the revision's own
        state is good: when the app's ip_allow refuses this machine, that state is the verdict."""
        refused = self.ip_refused(host, health_path)
        if refused:
            return True, refused
        base = f"https://{host}"
        clock, start = self.adapters.clock, self.adapters.clock()
        while True:
            if self._interrupted():
                return False, self._interrupted()
            verdict = check_health(self.adapters.probe, base, health_path)
            if verdict.healthy:
                break
            self.adapters.progress(waiting_text(f"{base}{health_path}", clock() - start, timeout, verdict.reason))
            if clock() - start >= timeout:
                return False, f"{base}{health_path} was not healthy within {timeout:g}s (last: {verdict.reason})"
            self.adapters.sleep(0.5)
        reason = f"{base}{health_path}: {verdict.reason}"
        if not verify.checks:
            return True, reason
        agent = self.settings.agent_name
        self.adapters.say(f"verifying: {len(verify.checks)} chat turn(s) to {base}/agent/{agent}/chat")
        result = verify_chat(self.adapters.post, base, agent, verify.checks, verify.timeout)
        return result.ok, (f"{reason}; {result.reason}" if result.ok else result.reason)

    def gate(
        self,
        revision: str,
        health_path: str,
        timeout: float,
        *,
        external: bool,
        url_host: str | None,
        verify: Verify = NO_VERIFY,
    ) -> tuple[bool, str]:
        start = self.adapters.clock()
        refused = self.ip_refused(url_host, health_path) if external and url_host else ""
        # With min replicas 0 a good revision can wait in ScaledToZero until a request reaches its own fqdn (one
        # from a machine ip_allow refuses never does: then, as behind internal ingress, idle counts as ready).
        reachable = external and url_host and not refused
        wake = (lambda: self.adapters.probe(f"https://{url_host}{health_path}")) if reachable else None
        ok, reason = self.wait_ready(revision, timeout, wake=wake)
        if not ok:
            return ok, reason
        if refused:
            return True, f"{reason} ({refused})"
        if not external or not url_host:
            if verify.checks:
                self.adapters.say("note: internal ingress: the verify chat turns cannot reach the revision from here")
            return True, reason + " (internal ingress: not probed from here)"
        remaining = max(timeout - (self.adapters.clock() - start), 5.0)
        return self.wait_url(url_host, health_path, remaining, verify=verify)

    def ip_refused(self, host: str, health_path: str) -> str:
        """Why this machine cannot probe https://<host>: ip_allow guards the ingress and it answers 403 (Envoy's
        "RBAC: access denied", microsoft/azure-container-apps#527); "" when it is not refused."""
        if not self.settings.ip_restricted:
            return ""
        if as_answer(self.adapters.probe(f"https://{host}{health_path}")).status != 403:
            return ""
        self.adapters.say(
            "note: the app's ip_allow does not admit this machine (HTTP 403): the revision's state decides and the "
            "verify chat turns are not sent; add this machine's address to ip_allow to have it probed"
        )
        return "ip_allow does not admit this machine: not probed from here"
