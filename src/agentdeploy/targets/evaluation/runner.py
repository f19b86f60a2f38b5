"""Replaying the evaluation cases against a version's URL through the REST chat route, and the gate's verdict.

Each case runs in its own session (its turns share the `session_id` the first answer gives) within its own
timeout. HoloDeck answers 429 with Retry-After when its session cap is reached (FACTS.md): the turn is sent
again after the wait the header asks for, while the case's time lasts. The HTTP call is the ChatPost adapter
(targets/health.py) passed in; the clock and the sleep are passed in too, so tests need no real waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from agentdeploy.jsonvalue import JsonObject
from agentdeploy.targets.evaluation.cases import EvalCase, EvalTurn, EvaluationPlan
from agentdeploy.targets.evaluation.judge import (
    CaseResult,
    GateVerdict,
    TurnResult,
    case_result,
    gate_verdict,
    judge_answer,
)
from agentdeploy.targets.health import ChatPost, ProbeAnswer, chat_url

DEFAULT_RETRY_AFTER = 1.0  # seconds to wait on a 429 that names no wait (or an HTTP date)


@dataclass(frozen=True)
class Replay:
    """Where and how to replay: the version's base URL, the agent's name, the adapters."""

    post: ChatPost
    base_url: str
    agent: str
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    on_line: Callable[[str], None] = lambda line: None


def evaluate(replay: Replay, plan: EvaluationPlan, *, baseline: GateVerdict | None = None) -> GateVerdict:
    """Every case of `plan` against `replay.base_url`, and the gate's verdict (never below `baseline`'s rate: the
    stable version's own verdict measured in the same run)."""
    replay.on_line(f"evaluating: {len(plan.cases)} case(s) to {chat_url(replay.base_url, replay.agent)}")
    results = [run_case(replay, case, plan) for case in plan.cases]
    for result in results:
        mark = "passed" if result.passed else f"FAILED: {result.reason}"
        replay.on_line(f"  case {result.name!r}: {mark} ({result.latency_ms} ms, {result.tokens} tokens)")
    verdict = gate_verdict(results, plan.pass_rate, baseline.rate if baseline is not None else None)
    replay.on_line(f"evaluation {'passed' if verdict.passed else 'failed'}: {verdict.reason}")
    return verdict


def run_case(replay: Replay, case: EvalCase, plan: EvaluationPlan) -> CaseResult:
    """The case's turns in one session, stopping at the first that fails or when its timeout is spent."""
    start = replay.clock()
    deadline = start + plan.timeout
    session = ""
    done: list[TurnResult] = []
    for turn in case.turns:
        result = _send(replay, turn, plan, session, deadline)
        done.append(result)
        if not result.passed:
            break
        session = result.session_id or session
    latency = round((replay.clock() - start) * 1000)
    return case_result(case.name, done, latency, len(case.turns))


def _send(replay: Replay, turn: EvalTurn, plan: EvaluationPlan, session: str, deadline: float) -> TurnResult:
    """One turn, sent again after each 429 while the case's time lasts."""
    payload: JsonObject = {"message": turn.message, **({"session_id": session} if session else {})}
    while True:
        left = deadline - replay.clock()
        if left <= 0:
            return TurnResult(False, f"no answer within the case's {plan.timeout:g}s")
        answer: ProbeAnswer = replay.post(chat_url(replay.base_url, replay.agent), payload, left)
        if answer.status != 429:
            if answer.status is None and replay.clock() >= deadline:
                return TurnResult(False, f"no answer within the case's {plan.timeout:g}s")
            return judge_answer(turn, answer, plan.check)
        wait = answer.retry_after if answer.retry_after is not None else DEFAULT_RETRY_AFTER
        if replay.clock() + wait >= deadline:
            return TurnResult(
                False, f"the agent answered 429 (too many sessions; Retry-After {wait:g}s) past the case's timeout"
            )
        replay.on_line(f"  the agent answered 429 (too many sessions): waiting {wait:g}s as Retry-After asks")
        replay.sleep(wait)
