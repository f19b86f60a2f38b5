"""A canary release (rollout.strategy: canary): the new revision, created at 0% and through the health gate, takes
the traffic in steps (5 -> 25 -> 50 -> 100 % by default), each held for a bake time and then judged: the revision's
state, its replicas' restarts, its runtime's health verdict and verify turns at its own URL, and the evaluation gate
(Adapters.evaluate, given the canary's and the stable revision's own URLs). A failed step, or a signal, puts all the
traffic back on the stable revision and deactivates the canary. Every traffic change holds this run's lease and
first checks that the traffic is as this run left it. Multiple revision mode only: traffic by revision name."""

from __future__ import annotations

import json
from dataclasses import dataclass

from agentdeploy.jsonvalue import JsonObject, JsonValue, array, int_at, object_at, objects_at, text_at
from agentdeploy.targets.azure.api import AppSession
from agentdeploy.targets.azure.body import AppSpec
from agentdeploy.targets.azure.gate import RUNNING_STATES, TERMINAL_STATES, Gate
from agentdeploy.targets.azure.lease import LEASE_MARGIN, ReleaseLease
from agentdeploy.targets.azure.moves import TrafficMoves
from agentdeploy.targets.azure.settings import Verify
from agentdeploy.targets.azure.views import kept_previews, named_traffic, revision_host, traffic_patch
from agentdeploy.targets.base import Status, TargetOutcome

DEFAULT_STEPS = (5, 25, 50, 100)
STABLE_LABEL, CANARY_LABEL = "stable", "canary"
STEP_PROBE_SECONDS = 30.0  # how long a step's health verdict may take to come back healthy (a replica starting)


@dataclass(frozen=True)
class CanaryPlan:
    """The steps (percent of traffic on the canary, rising, ending at 100) and how long each runs before judged."""

    steps: tuple[int, ...] = DEFAULT_STEPS
    bake_seconds: float = 60.0


@dataclass(frozen=True)
class StepVerdict:
    passed: bool
    reason: str
    results: JsonObject  # what each check found, for the record and the job summary


def canary_traffic(stable: str, canary: str, percent: int) -> list[JsonObject]:
    """The traffic at one step: `percent` on the canary, the rest on the stable revision; all on it at 100."""
    if percent >= 100:
        return [{"revisionName": canary, "weight": 100}]
    return [
        {"revisionName": stable, "weight": 100 - percent, "label": STABLE_LABEL},
        {"revisionName": canary, "weight": percent, "label": CANARY_LABEL},
    ]


def restart_counts(replicas: list[JsonObject]) -> dict[str, int]:
    """Replica name -> its containers' restarts (restartCount of each container, as the replicas API lists them)."""
    return {
        text_at(replica, "name"): sum(
            int_at(c, "restartCount") for c in objects_at(replica, "properties", "containers")
        )
        for replica in replicas
    }


def canary_lines(details: JsonValue) -> list[str]:
    """One line per step for people (the job summary): its traffic, its verdict and what the gates found."""
    lines = []
    for step in objects_at(details, "steps"):
        gate = object_at(step, "gate")
        passed = step.get("passed")
        verdict = "not judged" if passed is None else "passed" if passed else "failed"
        found = [f"restarts {gate['restarts']}"] if "restarts" in gate else []
        if gate.get("evaluation"):
            found.append("evaluation " + json.dumps(gate["evaluation"], sort_keys=True)[:200])
        lines.append(f"{step.get('percent')}%: {verdict}" + (f" ({'; '.join(found)})" if found else ""))
    if object_at(details).get("reason"):
        lines.append(f"failed at {object_at(details)['failed_step']}%: {object_at(details)['reason']}")
    return lines


def new_restarts(before: dict[str, int], now: dict[str, int]) -> int:
    """Restarts since `before`; a replica started since then counts all of its own."""
    return sum(max(count - before.get(name, 0), 0) for name, count in now.items())


class CanaryRollout:
    def __init__(self, session: AppSession, lease: ReleaseLease, gate: Gate, moves: TrafficMoves) -> None:
        self.session, self.lease, self.gate, self.moves = session, lease, gate, moves
        self.adapters, self.name, self.say = session.adapters, session.name, session.adapters.say

    def walk(
        self, outcome: TargetOutcome, spec: AppSpec, plan: CanaryPlan, *, verify: Verify, timeout: float, back: bool
    ) -> TargetOutcome:
        """`outcome`: the release whose new revision passed its gate at 0%; `back`: a failed step moves the traffic
        back (auto_rollback), else the canary stays paused at that step for `promote` or `rollback` to decide."""
        canary, stable = outcome.revision, outcome.previous
        steps: list[JsonObject] = []  # each step's traffic and gate results, for the record and the job summary
        baseline = restart_counts(self.session.api.list_replicas(canary))
        for percent in plan.steps:
            if self.adapters.interrupted():
                return self._failed(outcome, percent, f"interrupted by {self.adapters.interrupted()}", back=True)
            traffic = self._move(stable, canary, percent, plan.bake_seconds + timeout + LEASE_MARGIN)
            step: JsonObject = {"percent": percent, "traffic": array(traffic)}
            steps.append(step)
            outcome.details["canary"] = {"canary": canary, "stable": stable, "steps": array(steps)}
            self._bake(percent, plan.bake_seconds)
            if self.adapters.interrupted():
                return self._failed(outcome, percent, f"interrupted by {self.adapters.interrupted()}", back=True)
            verdict = self.judge(canary, stable, spec, verify, baseline)
            step["passed"], step["gate"] = verdict.passed, verdict.results
            outcome.details["canary"] = {"canary": canary, "stable": stable, "steps": array(steps)}
            if not verdict.passed:
                return self._failed(outcome, percent, verdict.reason, back=back)
            self.say(f"canary {canary} passed its {percent}% step")
        outcome.reason = f"canary {canary} passed every step ({' -> '.join(map(str, plan.steps))} %): {outcome.reason}"
        outcome.details["traffic_after"] = array(named_traffic(self.session.last_app or {}))
        outcome.details["canary_summary"] = array(canary_lines(outcome.details["canary"]))
        return outcome

    def _move(self, stable: str, canary: str, percent: int, lease_seconds: float) -> list[JsonObject]:
        """One step's traffic, under this run's lease (renewed for the step's bake and judgement)."""
        doing = f"moving {percent}% of the traffic to {canary}"
        app = self.lease.confirm_lease(doing)
        self.say(f"canary: {percent}% of the traffic to {canary}, {100 - percent}% to {stable}")
        split = [*canary_traffic(stable, canary, percent), *kept_previews(app)]  # a pull request's preview stays
        patch = self.lease.with_lease(app, traffic_patch(split), lease_seconds)
        moved = self.session.patch(patch, doing)
        self.lease.seen(moved)
        return named_traffic(moved)

    def _bake(self, percent: int, seconds: float) -> None:
        """Let the step run; a signal ends the wait at once."""
        clock = self.adapters.clock
        end = clock() + seconds
        while (left := end - clock()) > 0 and not self.adapters.interrupted():
            self.adapters.progress(f"canary at {percent}%: judged in {left:.0f}s")
            self.adapters.sleep(min(left, 5.0))

    def judge(self, canary: str, stable: str, spec: AppSpec, verify: Verify, baseline: dict[str, int]) -> StepVerdict:
        """The canary after a step: its state, its replicas' restarts, its health verdict and verify turns at its
        own URL, then the evaluation gate (the canary's URL against the stable revision's)."""
        revision = self.session.revision(canary)
        props = object_at(revision, "properties")
        running, health = text_at(props, "runningState"), text_at(props, "healthState")
        state = f"runningState {running or '?'}, healthState {health or '?'}"
        results: JsonObject = {"state": state}
        bad_state = text_at(props, "provisioningState") == "Failed" or running in TERMINAL_STATES
        if revision is None or not props.get("active") or bad_state or health == "Unhealthy":
            return StepVerdict(False, f"revision {canary} is no longer healthy ({state})", results)
        restarted = new_restarts(baseline, restart_counts(self.session.api.list_replicas(canary)))
        results["restarts"] = restarted
        if restarted:
            return StepVerdict(
                False, f"the replicas of {canary} restarted {restarted} time(s) during the step", results
            )
        host = revision_host(revision)
        if not spec.external or not host or running not in (*RUNNING_STATES, "ScaledToZero"):
            results["health"] = "internal ingress: not probed from here"
            return StepVerdict(True, "", results)
        refused = self.gate.ip_refused(host, spec.health_path)
        if refused:
            results["health"] = refused
            return StepVerdict(True, "", results)
        healthy, reason = self.gate.wait_url(host, spec.health_path, STEP_PROBE_SECONDS, verify=verify)
        results["health"] = reason
        if not healthy:
            return StepVerdict(False, reason, results)
        stable_host = revision_host(self.session.revision(stable))
        passed, evaluation = self.adapters.evaluate(f"https://{host}", f"https://{stable_host}" if stable_host else "")
        results["evaluation"] = evaluation
        if not passed:
            why = text_at(evaluation, "reason") or "its test cases did not pass"
            return StepVerdict(False, f"the evaluation gate failed: {why}", results)
        return StepVerdict(True, "", results)

    def _failed(self, outcome: TargetOutcome, percent: int, reason: str, *, back: bool) -> TargetOutcome:
        """A failed (or interrupted) step: all traffic back on the stable revision and the canary deactivated, or,
        without auto_rollback, the canary paused where it is."""
        canary, stable = outcome.revision, outcome.previous
        details = object_at(outcome.details, "canary") or {"canary": canary, "stable": stable, "steps": []}
        outcome.details["canary"] = {**details, "failed_step": percent, "reason": reason}
        self.say(f"canary {canary} failed at {percent}%: {reason}")
        log = self.adapters.failed_log(canary)
        if log:
            outcome.details["log"] = array(log)
        if back or self.adapters.interrupted():
            self.moves.restore(stable, canary, multiple=True, timeout=0.0)
            outcome.status, outcome.attempted, outcome.revision = Status.ROLLED_BACK, canary, stable
            moved = " -> ".join(str(step.get("percent")) for step in objects_at(outcome.details, "canary", "steps"))
            outcome.reason = (
                f"canary {canary} failed at {percent}%: {reason}; all traffic is back on {stable} "
                f"(steps {moved or 'none'} -> 0%)"
            )
        else:
            outcome.status = Status.FAILED
            outcome.reason = (
                f"canary {canary} failed at {percent}%: {reason}; paused there (auto_rollback is off): "
                "`agentdeploy promote` finishes it, `agentdeploy rollback` aborts it"
            )
        outcome.details["traffic_after"] = array(self.moves.traffic_view())
        outcome.details["canary_summary"] = array(canary_lines(outcome.details["canary"]))
        return outcome
