"""The evaluation gate of a canary step on Azure: the agent's own test cases (targets/evaluation/) replayed at the
canary revision's URL, never passing below the stable revision's own rate, measured once in the same run."""

from __future__ import annotations

from collections.abc import Callable

from agentdeploy.jsonvalue import JsonObject
from agentdeploy.targets.azure.settings import Evaluate
from agentdeploy.targets.evaluation import EvaluationPlan, GateVerdict, Replay, evaluate
from agentdeploy.targets.health import ChatPost


def canary_evaluator(
    plan: EvaluationPlan,
    *,
    post: ChatPost,
    agent: str,
    say: Callable[[str], None],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Evaluate:
    """Adapters.evaluate for a canary: (canary URL, stable URL) -> (passed, the verdict as JSON, with a `reason`)."""
    baselines: dict[str, GateVerdict] = {}

    def replay(url: str) -> Replay:
        return Replay(post, url, agent, clock=clock, sleep=sleep, on_line=say)

    def step(canary_url: str, stable_url: str) -> tuple[bool, JsonObject]:
        baseline = None
        if stable_url:
            if stable_url not in baselines:  # the stable revision does not change during the run: measured once
                say(f"measuring the stable revision's own pass rate at {stable_url}")
                baselines[stable_url] = evaluate(replay(stable_url), plan)
            baseline = baselines[stable_url]
        verdict = evaluate(replay(canary_url), plan, baseline=baseline)
        stable: JsonObject = {"stable": baseline.as_json()} if baseline is not None else {}
        return verdict.passed, {**verdict.as_json(), "reason": verdict.summary(), **stable}

    return step
