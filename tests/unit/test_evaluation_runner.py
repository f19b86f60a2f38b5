"""The evaluation gate replaying cases over real HTTP against a server on 127.0.0.1 that answers as HoloDeck 0.7.1's
REST chat route does (tests/fakes/holodeck_rest.py): sessions, 429 + Retry-After, the per-case timeout, and the
docker target's gate running it after the verify turns."""

from __future__ import annotations

import re
import time
from typing import Any

from agentdeploy.targets.docker import LocalDockerTarget, Release
from agentdeploy.targets.evaluation import EvalCase, EvalTurn, EvaluationPlan, ExpectedTool, Replay, evaluate
from agentdeploy.targets.health import ChatCheck, ProbeAnswer, http_post_json
from fakes.holodeck_rest import FakeHoloDeckRest, Said, Script

SUPPORT = {
    "Can I return an item?": Said("Returns are accepted within 30 days.", [("faq_search", {"query": "return"})], 31),
    "Where is order A-1?": Said("Order A-1 has shipped.", [("order_status", {"order_id": "A-1"})], 12),
    "My name is Ada.": Said("Nice to meet you, Ada.", tokens=None),
    "What is my name?": Said("You told me: Ada.", tokens=9),
}
CASES = (
    EvalCase("refund", (EvalTurn("Can I return an item?", "within 30 days", (ExpectedTool("faq_search"),)),)),
    EvalCase("order", (EvalTurn("Where is order A-1?", "delivered", (ExpectedTool("order_status"),)),)),
    EvalCase("memory", (EvalTurn("My name is Ada."), EvalTurn("What is my name?", "Ada"))),
)


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def test_each_case_runs_in_its_own_session_and_multi_turn_cases_keep_theirs() -> None:
    lines: list[str] = []
    with FakeHoloDeckRest(Script("support", dict(SUPPORT))) as agent:
        verdict = evaluate(Replay(http_post_json, agent.url, "support", on_line=lines.append), EvaluationPlan(CASES))
        sent = agent.script.requests
    assert [request["message"] for request in sent] == [
        "Can I return an item?",
        "Where is order A-1?",
        "My name is Ada.",
        "What is my name?",
    ]
    assert ["session_id" in request for request in sent] == [False, False, False, True]
    # the second turn went in the session the first answer named
    assert len(sent[3]["session_id"]) == 26
    assert [(r.name, r.passed, r.reason, r.tokens, r.turns) for r in verdict.results] == [
        ("refund", True, "passed", 31, 1),
        ("order", False, "the answer does not contain the ground truth 'delivered': 'Order A-1 has shipped.'", 12, 1),
        ("memory", True, "passed", 9, 2),
    ]
    assert all(0 <= result.latency_ms < 2000 for result in verdict.results)
    assert (verdict.passed, verdict.reason) == (False, "2 of 3 case(s) passed (67%; at least 100% required)")
    assert lines[0] == f"evaluating: 3 case(s) to {agent.url}/agent/support/chat"
    assert lines[-1] == "evaluation failed: 2 of 3 case(s) passed (67%; at least 100% required)"


def test_a_429_is_sent_again_after_the_wait_retry_after_asks() -> None:
    sleeps = Sleeps()
    with FakeHoloDeckRest(Script("support", dict(SUPPORT), busy=2)) as agent:
        replay = Replay(http_post_json, agent.url, "support", sleep=sleeps)
        verdict = evaluate(replay, EvaluationPlan(CASES[:1]))
        assert len(agent.script.requests) == 3
    assert sleeps.waits == [5.0, 5.0]  # HoloDeck's Retry-After: 5
    assert verdict.passed and verdict.results[0].reason == "passed"


def test_a_429_whose_wait_outlasts_the_case_fails_it_without_waiting() -> None:
    sleeps = Sleeps()
    with FakeHoloDeckRest(Script("support", dict(SUPPORT), busy=1, retry_after="120")) as agent:
        verdict = evaluate(Replay(http_post_json, agent.url, "support", sleep=sleeps), EvaluationPlan(CASES[:1]))
    assert sleeps.waits == []
    assert verdict.results[0].reason == (
        "the agent answered 429 (too many sessions; Retry-After 120s) past the case's timeout"
    )


def test_a_case_that_outlasts_its_timeout_fails_and_the_next_case_still_runs() -> None:
    with FakeHoloDeckRest(Script("support", dict(SUPPORT), delay=1.5)) as agent:
        start = time.monotonic()
        plan = EvaluationPlan((CASES[0], CASES[0]), timeout=1.0, pass_rate=0.0)
        verdict = evaluate(Replay(http_post_json, agent.url, "support"), plan)
        took = time.monotonic() - start
    assert [result.reason for result in verdict.results] == ["no answer within the case's 1s"] * 2
    assert 2.0 <= took < 3.5  # each case waited its own second, not the server's 1.5 s
    assert verdict.passed  # pass_rate 0: the verdict follows the configured rate


def test_the_baseline_is_the_stable_versions_own_rate_in_the_same_run() -> None:
    plan = EvaluationPlan(CASES, pass_rate=0.3)  # the canary reaches the rate, not the stable version
    with FakeHoloDeckRest(Script("support", dict(SUPPORT))) as stable:
        baseline = evaluate(Replay(http_post_json, stable.url, "support"), plan)
    worse = dict(SUPPORT, **{"What is my name?": Said("I do not know.")})
    with FakeHoloDeckRest(Script("support", worse)) as canary:
        verdict = evaluate(Replay(http_post_json, canary.url, "support"), plan, baseline=baseline)
    assert (baseline.rate, verdict.rate) == (2 / 3, 1 / 3)
    assert (verdict.passed, verdict.reason) == (
        False,
        "1 of 3 case(s) passed (33%; the stable version passed 67% in this run)",
    )
    assert verdict.as_json()["baseline"] == 0.6667


def test_the_docker_gate_runs_the_evaluation_after_the_verify_turns_and_reports_each_case() -> None:
    lines: list[str] = []
    with FakeHoloDeckRest(Script("support", dict(SUPPORT))) as agent:
        engine = LocalDockerTarget(
            client=None,  # type: ignore[arg-type]  # the gate itself never calls the engine
            container_name="agentdeploy-support",
            probe=lambda url: ProbeAnswer(
                200, b'{"status": "healthy"}' if url.endswith("/health") else b'{"ready": true}'
            ),
            post=http_post_json,
            on_line=lines.append,
        )
        release = Release(
            agent="support",
            image="sha256:1",
            port=1,
            health_path="/health",
            health_timeout=5,
            checks=(ChatCheck("My name is Ada.", ("Ada",)),),
            evaluation=EvaluationPlan(CASES),
        )
        ok, reason, details = engine._gate(None, release, agent.url)  # type: ignore[arg-type]
        sent = [request["message"] for request in agent.script.requests]
    assert sent[0] == "My name is Ada." and len(sent) == 5  # the verify turn first, then the four turns of the cases
    assert not ok
    assert reason == (
        "the evaluation gate failed: 2 of 3 case(s) passed (67%; at least 100% required)\n"
        "    case 'order': the answer does not contain the ground truth 'delivered': 'Order A-1 has shipped.'"
    )
    assert details["hint"] == "fix the agent (or its test cases) for the failed cases above"
    evaluation: Any = details["evaluation"]
    assert [(case["name"], case["passed"], case["tokens"]) for case in evaluation["cases"]] == [
        ("refund", True, 31),
        ("order", False, 12),
        ("memory", True, 9),
    ]
    assert (evaluation["pass_rate"], evaluation["required"]) == (0.6667, 1.0)
    assert [re.sub(r"\(\d+ ms", "(N ms", line) for line in lines if line.startswith("  case ")] == [
        "  case 'refund': passed (N ms, 31 tokens)",
        "  case 'order': FAILED: the answer does not contain the ground truth 'delivered': 'Order A-1 has shipped.' "
        "(N ms, 12 tokens)",
        "  case 'memory': passed (N ms, 9 tokens)",
    ]


def test_a_gate_with_no_evaluation_behaves_as_before() -> None:
    with FakeHoloDeckRest(Script("support", dict(SUPPORT))) as agent:
        engine = LocalDockerTarget(
            client=None,  # type: ignore[arg-type]
            container_name="agentdeploy-support",
            probe=lambda url: ProbeAnswer(200, b"ok"),
            post=http_post_json,
        )
        release = Release(agent="support", image="sha256:1", port=1, health_path="/health", health_timeout=5)
        assert engine._gate(None, release, agent.url) == (True, "HTTP 200", {})  # type: ignore[arg-type]
        assert agent.script.requests == []


def test_a_canary_step_on_azure_is_judged_against_the_stable_revisions_rate_measured_once() -> None:
    from agentdeploy.targets.azure.evaluation import canary_evaluator

    plan = EvaluationPlan(CASES, pass_rate=0.3)
    worse = dict(SUPPORT, **{"What is my name?": Said("I do not know.")})
    said: list[str] = []
    with (
        FakeHoloDeckRest(Script("support", dict(SUPPORT))) as stable,
        FakeHoloDeckRest(Script("support", worse)) as canary,
    ):
        step = canary_evaluator(
            plan, post=http_post_json, agent="support", say=said.append, clock=time.monotonic, sleep=Sleeps()
        )
        first = step(canary.url, stable.url)
        second = step(canary.url, stable.url)
        stable_turns = len(stable.script.requests)

    passed, data = first
    assert (passed, second[0]) == (False, False)
    assert (
        data["reason"]
        == second[1]["reason"]
        == (
            "the evaluation gate failed: 1 of 3 case(s) passed (33%; the stable version passed 67% in this run)\n"
            "    case 'order': the answer does not contain the ground truth 'delivered': 'Order A-1 has shipped.'\n"
            "    case 'memory': turn 2: the answer does not contain the ground truth 'Ada': 'I do not know.'"
        )
    )
    assert data["baseline"] == 0.6667
    assert stable_turns == 4  # the stable revision's cases ran once (4 turns), not once per step
    assert said.count(f"measuring the stable revision's own pass rate at {stable.url}") == 1
