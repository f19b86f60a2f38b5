"""Health verdicts and chat verification, from the answers HoloDeck's runtime really gives (FACTS.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentdeploy.targets.health import (
    ChatCheck,
    ProbeAnswer,
    check_health,
    judge_health,
    judge_ready,
    verify_chat,
)

# What holodeck-ai 0.7.1 answers (seen from the real runtime in tests/realruntime).
HEALTHY = b'{"status":"healthy","agent_name":"a","agent_ready":true,"active_sessions":0,"backend_ready":true}'
UNHEALTHY = b'{"status":"unhealthy","agent_name":"a","agent_ready":false}'


def answers(table: dict[str, ProbeAnswer | int | None]) -> Any:
    asked: list[str] = []

    def probe(url: str) -> ProbeAnswer | int | None:
        asked.append(url)
        return table.get(url, ProbeAnswer(404))

    probe.asked = asked  # type: ignore[attr-defined]
    return probe


@pytest.mark.parametrize(
    ("answer", "healthy", "reason"),
    [
        (ProbeAnswer(200, HEALTHY), True, "HTTP 200, status 'healthy'"),
        (ProbeAnswer(200, UNHEALTHY), False, "HTTP 200, status 'unhealthy'"),  # 200 is not the verdict
        (ProbeAnswer(200, b'{"status": "degraded"}'), False, "HTTP 200, status 'degraded'"),
        (ProbeAnswer(200, b"ok"), True, "HTTP 200"),  # not HoloDeck's JSON: a 2xx is enough
        (ProbeAnswer(204), True, "HTTP 204"),
        (ProbeAnswer(503, HEALTHY), False, "HTTP 503"),
        (ProbeAnswer(None), False, "nothing answered"),
    ],
)
def test_judge_health(answer: ProbeAnswer, healthy: bool, reason: str) -> None:
    verdict = judge_health(answer)
    assert (verdict.healthy, verdict.reason) == (healthy, reason)


def test_holodeck_must_also_be_ready() -> None:
    not_ready = answers({"u/health": ProbeAnswer(200, HEALTHY), "u/ready": ProbeAnswer(200, b'{"ready":false}')})
    verdict = check_health(not_ready, "u", "/health")
    assert not verdict.healthy and verdict.reason == "HTTP 200, status 'healthy'; /ready: HTTP 200 {\"ready\":false}"
    ready = answers({"u/health": ProbeAnswer(200, HEALTHY), "u/ready": ProbeAnswer(200, b'{"ready":true}')})
    assert check_health(ready, "u", "/health").healthy
    assert ready.asked == ["u/health", "u/ready"]


def test_a_ready_body_is_quoted_on_one_line() -> None:
    """What the agent answers is quoted in the reason, which goes to the log, an annotation and the record: its
    line breaks (CR too) must not start lines of their own there."""
    body = b'{"ready":false}\r\n::error title=spoofed::pwned\rnext'
    verdict = judge_ready(ProbeAnswer(200, body))
    assert verdict.reason == '/ready: HTTP 200 {"ready":false} ::error title=spoofed::pwned next'


def test_other_images_are_not_asked_for_ready() -> None:
    plain = answers({"u/healthz": ProbeAnswer(200, b"ok")})
    assert check_health(plain, "u", "/healthz").healthy
    assert plain.asked == ["u/healthz"]
    status_only = answers({"u/health": 200})  # probes that know only a status code
    assert check_health(status_only, "u", "/health").healthy


def chat_reply(content: str, tools: list[str], session: str = "01S") -> ProbeAnswer:
    body = {"message_id": "01M", "content": content, "session_id": session, "execution_time_ms": 3}
    body["tool_calls"] = [{"name": name, "arguments": {}, "status": "success"} for name in tools]
    return ProbeAnswer(200, json.dumps(body).encode())


def test_verify_sends_each_turn_in_one_session_and_checks_text_and_tools() -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    replies = [chat_reply("Three to five working days.", ["faq_search"]), chat_reply("Yes, within 30 days.", [])]

    def post(url: str, payload: dict[str, Any], timeout: float) -> ProbeAnswer:
        sent.append((url, payload))
        return replies[len(sent) - 1]

    checks = (
        ChatCheck("How long does shipping take?", expect=("working DAYS",), expect_tools=("faq_search",)),
        ChatCheck("Can I return it?", expect=("30 days",)),
    )
    result = verify_chat(post, "http://h:1", "support-agent", checks, 30)
    assert result.ok and result.reason == "2 chat turn(s) answered as expected"
    assert sent == [
        ("http://h:1/agent/support-agent/chat", {"message": "How long does shipping take?"}),
        ("http://h:1/agent/support-agent/chat", {"message": "Can I return it?", "session_id": "01S"}),
    ]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (
            chat_reply("I do not know.", ["faq_search"]),
            "verify turn 1 ('q'): the answer does not contain 'days': 'I do not know.'",
        ),
        (
            chat_reply("Five days.", []),
            "verify turn 1 ('q'): the agent did not call 'faq_search' (tools called: none): 'Five days.'",
        ),
        (
            ProbeAnswer(500, b'{"title":"Internal Server Error"}'),
            'verify turn 1 (\'q\'): the chat request got HTTP 500: {"title":"Internal Server Error"}',
        ),
        (
            chat_reply("", []),  # openai>=2.45 with openai-agents 0.17.4: HTTP 200, nothing said
            "verify turn 1 ('q'): the agent answered HTTP 200 with no content (the model call failed inside the agent)",
        ),
        (ProbeAnswer(None), "verify turn 1 ('q'): nothing answered the chat request"),
    ],
)
def test_verify_failures_say_what_the_agent_answered(reply: ProbeAnswer, reason: str) -> None:
    result = verify_chat(
        lambda url, payload, timeout: reply, "u", "a", (ChatCheck("q", ("days",), ("faq_search",)),), 30
    )
    assert not result.ok and result.reason == reason
