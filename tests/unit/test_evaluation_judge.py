"""The evaluation gate's judging (pure): one REST chat answer, shaped as holodeck-ai 0.7.1's ChatResponse, against
its turn; a multi-turn case; the gate's verdict from the pass rate and the stable version's baseline."""

from __future__ import annotations

import json
from typing import Any, Literal

from agentdeploy.targets.evaluation import EvalTurn, ExpectedTool, gate_verdict, judge_answer
from agentdeploy.targets.evaluation.cases import ArgMatch
from agentdeploy.targets.evaluation.judge import CaseResult, TurnResult, case_result
from agentdeploy.targets.health import ProbeAnswer


def answer(content: str, tools: list[tuple[str, dict[str, Any]]] = (), tokens: int | None = 30) -> ProbeAnswer:  # type: ignore[assignment]
    body = {
        "message_id": "01JF0000000000000000000000",
        "content": content,
        "session_id": "01JF0000000000000000000001",
        "tool_calls": [{"name": name, "arguments": args, "status": "success"} for name, args in tools],
        "tokens_used": None
        if tokens is None
        else {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": tokens},
        "execution_time_ms": 120,
    }
    return ProbeAnswer(200, json.dumps(body).encode())


def test_an_answer_with_content_and_nothing_else_asked_passes_with_its_tokens_session_and_tools() -> None:
    result = judge_answer(EvalTurn("hi"), answer("Hello!", [("faq_search", {"query": "hi"})], 30), "contains")
    assert result == TurnResult(True, "passed", "Hello!", "01JF0000000000000000000001", ("faq_search",), 30)


def test_an_empty_answer_fails_even_with_http_200() -> None:
    # openai>=2.45 with openai-agents 0.17.4: every turn fails inside yet answers 200 with empty content (FACTS.md).
    result = judge_answer(EvalTurn("hi"), answer("  "), "contains")
    assert (result.passed, result.reason) == (False, "the agent answered with no content (the model call failed)")


def test_an_http_error_and_no_answer_fail_with_what_came_back() -> None:
    failed = judge_answer(EvalTurn("hi"), ProbeAnswer(500, b'{"detail": "Agent execution failed"}'), "contains")
    assert failed.reason == 'the chat request got HTTP 500: {"detail": "Agent execution failed"}'
    assert judge_answer(EvalTurn("hi"), ProbeAnswer(None), "contains").reason == "nothing answered the chat request"


def test_an_expected_tool_matches_as_a_substring_of_the_name_called_as_holodeck_does() -> None:
    turn = EvalTurn("reset?", expected_tools=(ExpectedTool("search"),))
    assert judge_answer(turn, answer("Do X.", [("faq_search", {})]), "contains").passed
    missing = judge_answer(turn, answer("Do X.", [("order_status", {})]), "contains")
    assert missing.reason == "the agent did not call 'search' (tools called: order_status): 'Do X.'"
    # verify's expect_tools name a tool exactly
    exact = EvalTurn("reset?", expected_tools=(ExpectedTool("search", exact=True),))
    assert judge_answer(exact, answer("Do X.", [("faq_search", {})]), "contains").reason == (
        "the agent did not call 'search' (tools called: faq_search): 'Do X.'"
    )


def test_an_expected_tool_with_a_count_needs_that_many_calls() -> None:
    turn = EvalTurn("two orders", expected_tools=(ExpectedTool("order_status", count=2),))
    once = judge_answer(turn, answer("A shipped.", [("order_status", {"id": "A"}), ("faq_search", {})]), "contains")
    assert once.reason == (
        "the agent called 'order_status' 1 time(s), at least 2 expected (tools called: order_status, faq_search): "
        "'A shipped.'"
    )
    twice = answer("Both shipped.", [("order_status", {"id": "A"}), ("order_status", {"id": "B"})])
    assert judge_answer(turn, twice, "contains").passed


def test_expected_tool_arguments_literal_fuzzy_and_regex() -> None:
    def turn(kind: Literal["literal", "fuzzy", "regex"], value: Any) -> EvalTurn:
        return EvalTurn(
            "q", expected_tools=(ExpectedTool("order_status", args=(("order_id", ArgMatch(kind, value)),)),)
        )

    called = answer("ok", [("order_status", {"order_id": "A-1,001"}), ("add", {"a": 2})])
    assert judge_answer(turn("fuzzy", "a-1001"), called, "contains").passed
    assert judge_answer(turn("regex", r"A-[0-9,]+"), called, "contains").passed
    assert not judge_answer(turn("regex", r"A-1"), called, "contains").passed  # a full match, as HoloDeck's
    literal = judge_answer(turn("literal", "A-1001"), called, "contains")
    assert literal.reason == (
        "the agent did not call 'order_status' with order_id='A-1001' (tools called: order_status, add): 'ok'"
    )
    number = EvalTurn("q", expected_tools=(ExpectedTool("add", args=(("a", ArgMatch("literal", 2.0)),)),))
    assert judge_answer(number, called, "contains").passed  # 2 == 2.0, as HoloDeck's literal match


def test_ground_truth_contains_ignores_case_and_spacing() -> None:
    turn = EvalTurn("return?", ground_truth="within  30 days")
    assert judge_answer(turn, answer("Returns are accepted WITHIN 30\ndays."), "contains").passed
    wrong = judge_answer(turn, answer("Returns are accepted within 14 days."), "contains")
    assert wrong.reason == (
        "the answer does not contain the ground truth 'within 30 days': 'Returns are accepted within 14 days.'"
    )


def test_ground_truth_as_a_regex_is_searched_in_the_answer() -> None:
    turn = EvalTurn("order?", ground_truth=r"shipped-[A-Z]-\d{4}")
    assert judge_answer(turn, answer("Status: shipped-A-1001 today"), "regex").passed
    wrong = judge_answer(turn, answer("Status: pending"), "regex")
    assert (
        wrong.reason == "the answer does not match the ground truth regex 'shipped-[A-Z]-\\\\d{4}': 'Status: pending'"
    )
    # the same text under `contains` is not a pattern
    assert not judge_answer(turn, answer("Status: shipped-A-1001 today"), "contains").passed


def test_verify_expectations_are_checked_like_the_verify_turns() -> None:
    turn = EvalTurn("What is agentdeploy?", expect=("ships", "agents"))
    assert judge_answer(turn, answer("It SHIPS HoloDeck agents."), "contains").passed
    assert (
        judge_answer(turn, answer("It ships."), "contains").reason
        == "the answer does not contain 'agents': 'It ships.'"
    )


def test_a_multi_turn_case_fails_at_its_first_failing_turn_and_sums_tokens() -> None:
    turns = [TurnResult(True, "passed", tokens=10), TurnResult(False, "the answer does not contain 'Ada'", tokens=7)]
    assert case_result("memory", turns, 250, 3) == CaseResult(
        "memory", False, "turn 2: the answer does not contain 'Ada'", 250, 17, 2
    )
    assert case_result("one", [TurnResult(True, "passed", tokens=5)], 90, 1) == CaseResult(
        "one", True, "passed", 90, 5, 1
    )


def test_the_gate_passes_at_the_configured_rate_and_never_below_the_baseline() -> None:
    results = [CaseResult(f"c{i}", i != 4, "passed" if i != 4 else "the answer does not contain 'x'") for i in range(5)]
    at_80 = gate_verdict(results, 0.8)
    assert (at_80.passed, at_80.reason) == (True, "4 of 5 case(s) passed (80%; 80% required)")
    every = gate_verdict(results, 1.0)
    assert (every.passed, every.reason) == (False, "4 of 5 case(s) passed (80%; at least 100% required)")
    assert every.failures == ("case 'c4': the answer does not contain 'x'",)
    below_stable = gate_verdict(results, 0.5, baseline=1.0)
    assert (below_stable.passed, below_stable.reason) == (
        False,
        "4 of 5 case(s) passed (80%; the stable version passed 100% in this run)",
    )
    assert gate_verdict(results, 0.5, baseline=0.8).passed
    assert every.summary() == (
        "the evaluation gate failed: 4 of 5 case(s) passed (80%; at least 100% required)\n"
        "    case 'c4': the answer does not contain 'x'"
    )
    assert every.as_json()["pass_rate"] == 0.8 and every.as_json()["cases"][4] == {  # type: ignore[index]
        "name": "c4",
        "passed": False,
        "reason": "the answer does not contain 'x'",
        "latency_ms": 0,
        "tokens": 0,
    }
