"""Judging the evaluation gate (pure): one REST chat answer against its turn, a case from its turns, and the gate
from its cases.

HoloDeck's REST chat answer (holodeck/serve/models.py ChatResponse, 0.7.1): `content`, `session_id`, `tool_calls`
(`name`, `arguments`, `status`), `tokens_used` (`prompt_tokens`, `completion_tokens`, `total_tokens`, or null) and
`execution_time_ms`. A turn passes when the answer has content, every expected tool was called (at least `count`
times, with matching arguments when given) and the ground truth holds by the configured check.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from agentdeploy.config.yamlsource import YamlValue
from agentdeploy.jsonvalue import JsonObject, JsonValue, object_at, objects_at
from agentdeploy.targets.evaluation.cases import ArgMatch, Check, EvalTurn, ExpectedTool
from agentdeploy.targets.health import ProbeAnswer


@dataclass(frozen=True)
class TurnResult:
    passed: bool
    reason: str
    content: str = ""
    session_id: str = ""
    tools: tuple[str, ...] = ()  # the names of the tools the agent called, in order
    tokens: int = 0


@dataclass(frozen=True)
class CaseResult:
    name: str
    passed: bool
    reason: str  # "passed", or why it failed (with the turn when it has several)
    latency_ms: int = 0  # the case's turns, as this side measured them (request to answer)
    tokens: int = 0  # total_tokens over its turns (0 when the runtime reports none)
    turns: int = 0  # the turns that were sent

    def as_json(self) -> JsonObject:
        return {
            "name": self.name,
            "passed": self.passed,
            "reason": self.reason,
            "latency_ms": self.latency_ms,
            "tokens": self.tokens,
        }


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    reason: str
    rate: float
    required: float
    results: tuple[CaseResult, ...] = ()
    baseline: float | None = None  # the stable version's own rate, measured in the same run
    failures: tuple[str, ...] = field(default=())  # one line per failed case

    def summary(self) -> str:
        """One line when it passed; when it failed, one more line per failed case (the error shows them)."""
        if self.passed:
            return f"evaluation passed: {self.reason}"
        return "\n    ".join([f"the evaluation gate failed: {self.reason}", *self.failures])

    def as_json(self) -> JsonObject:
        """For the outcome's details (the job summary): rates and every case's latency and tokens."""
        data: JsonObject = {
            "passed": self.passed,
            "pass_rate": round(self.rate, 4),
            "required": self.required,
            "cases": [result.as_json() for result in self.results],
        }
        if self.baseline is not None:
            data["baseline"] = round(self.baseline, 4)
        return data


def judge_answer(turn: EvalTurn, answer: ProbeAnswer, check: Check) -> TurnResult:
    """One REST chat answer against its turn."""
    if answer.status is None:
        return TurnResult(False, "nothing answered the chat request")
    body = _json_object(answer.body)
    if answer.status != 200 or body is None:
        raw = answer.body.decode("utf-8", "replace")
        return TurnResult(False, f"the chat request got HTTP {answer.status}: {_short(raw)}")
    content = body.get("content")
    calls = objects_at(body, "tool_calls")
    tools = tuple(str(call.get("name")) for call in calls)
    total = object_at(body, "tokens_used").get("total_tokens")
    tokens = total if isinstance(total, int) and not isinstance(total, bool) else 0
    session = body.get("session_id")
    text = content if isinstance(content, str) else ""
    answered = TurnResult(True, "passed", text, session if isinstance(session, str) else "", tools, tokens)
    if not text.strip():
        return replace(answered, passed=False, reason="the agent answered with no content (the model call failed)")
    for expected in turn.expected_tools:
        missing = _tool_missing(expected, calls)
        if missing:
            seen = ", ".join(tools) or "none"
            return replace(answered, passed=False, reason=f"{missing} (tools called: {seen}): {_short(text)!r}")
    wrong = _ground_truth_fails(turn, text, check)
    if wrong:
        return replace(answered, passed=False, reason=f"{wrong}: {_short(text)!r}")
    return answered


def _tool_missing(expected: ExpectedTool, calls: Sequence[JsonObject]) -> str:
    """Why `expected` was not called as asked ("" when it was)."""
    named = [call for call in calls if _name_matches(expected, str(call.get("name", "")))]
    matching = [call for call in named if all(_arg_holds(m, object_at(call, "arguments"), k) for k, m in expected.args)]
    if len(matching) >= expected.count:
        return ""
    what = f"{expected.name!r}" + (" with " + _args_text(expected.args) if expected.args else "")
    if expected.count == 1:
        return f"the agent did not call {what}"
    return f"the agent called {what} {len(matching)} time(s), at least {expected.count} expected"


def _name_matches(expected: ExpectedTool, actual: str) -> bool:
    # HoloDeck 0.7.1 (tool_arg_matcher.tool_name_matches): case-sensitive substring.
    return expected.name == actual if expected.exact else expected.name in actual


def _arg_holds(match: ArgMatch, arguments: JsonObject, key: str) -> bool:
    if key not in arguments:
        return False
    actual = arguments[key]
    if match.kind == "regex":
        return re.fullmatch(str(match.value), _text(actual)) is not None
    if match.kind == "fuzzy":
        return _fuzzy(str(match.value), _text(actual))
    return _literal(match.value, actual)


def _literal(expected: YamlValue, actual: JsonValue) -> bool:
    """HoloDeck's literal match: equality, int and float alike, bool strict, lists and mappings item by item."""
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(_literal(e, a) for e, a in zip(expected, actual, strict=True))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return set(expected) == set(actual) and all(_literal(expected[k], actual[k]) for k in expected)
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return float(expected) == float(actual)
    return expected == actual


def _fuzzy(pattern: str, actual: str) -> bool:
    """HoloDeck's fuzzy match: case, whitespace and thousands separators ignored; numbers (and percentages) compared
    as numbers."""
    expected, got = _normalize(pattern), _normalize(actual)
    as_numbers = _number(expected), _number(got)
    if as_numbers[0] is not None and as_numbers[1] is not None:
        return math.isclose(as_numbers[0], as_numbers[1], rel_tol=0.0, abs_tol=1e-9)
    return expected == got


def _normalize(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[,_ ]", "", text.strip().lower()))


def _number(text: str) -> float | None:
    percent = text.endswith("%")
    try:
        value = float((text[:-1] if percent else text).replace(" ", ""))
    except ValueError:
        return None
    return value / 100 if percent else value


def _ground_truth_fails(turn: EvalTurn, content: str, check: Check) -> str:
    """Why the answer does not hold the turn's ground truth (or verify's expected texts); "" when it does."""
    folded = " ".join(content.split()).lower()
    for expected in turn.expect:
        if expected.lower() not in content.lower():
            return f"the answer does not contain {expected!r}"
    truth = turn.ground_truth
    if truth is None:
        return ""
    if check == "regex":
        return "" if re.search(truth, content) else f"the answer does not match the ground truth regex {truth!r}"
    if " ".join(truth.split()).lower() in folded:
        return ""
    return f"the answer does not contain the ground truth {_short(truth, 120)!r}"


def case_result(name: str, turns: Sequence[TurnResult], latency_ms: int, planned: int) -> CaseResult:
    """A case passes when each of its turns did; the reason names the first turn that did not."""
    tokens = sum(turn.tokens for turn in turns)
    for number, turn in enumerate(turns, 1):
        if not turn.passed:
            where = f"turn {number}: " if planned > 1 else ""
            return CaseResult(name, False, where + turn.reason, latency_ms, tokens, len(turns))
    return CaseResult(name, True, "passed", latency_ms, tokens, len(turns))


def gate_verdict(results: Sequence[CaseResult], required: float, baseline: float | None = None) -> GateVerdict:
    """The gate passes when the share of passed cases reaches `required` and (with a baseline: the stable version's
    own rate in the same run) is not below the baseline."""
    total = len(results)
    passed = sum(result.passed for result in results)
    rate = passed / total if total else 0.0
    failures = tuple(f"case {r.name!r}: {r.reason}" for r in results if not r.passed)
    head = f"{passed} of {total} case(s) passed ({rate:.0%}"
    # A tolerance: 4 of 5 must reach 0.8 although 0.8 has no exact binary form.
    if total == 0 or passed < required * total - 1e-9:
        why = f"{head}; at least {required:.0%} required)"
        return GateVerdict(False, why, rate, required, tuple(results), baseline, failures)
    if baseline is not None and rate < baseline - 1e-9:
        why = f"{head}; the stable version passed {baseline:.0%} in this run)"
        return GateVerdict(False, why, rate, required, tuple(results), baseline, failures)
    return GateVerdict(True, f"{head}; {required:.0%} required)", rate, required, tuple(results), baseline, failures)


def _json_object(body: bytes) -> JsonObject | None:
    try:
        value: JsonValue = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _text(value: JsonValue) -> str:
    return value if isinstance(value, str) else str(value)  # as HoloDeck: str(actual)


def _args_text(args: Sequence[tuple[str, ArgMatch]]) -> str:
    return ", ".join(f"{key}={match.value!r}" for key, match in args)


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
