"""What "healthy" and "it answers" mean, for every target: HoloDeck's verdicts and a real chat turn.

HoloDeck's `/health`, `/health/agent` and `/ready` always answer HTTP 200; the verdict is in the JSON
body (`status`: healthy|degraded|unhealthy, `ready`: true|false). So a 2xx is healthy only when the
body is not such a verdict (a bring-your-own image), and a HoloDeck verdict must say healthy, and
`/ready` must say ready. `/health` is healthy even without an API key: only a chat turn shows that the
agent works, which is what `verify` turns are for (FACTS.md, "The real HoloDeck runtime").

Judging is pure; the HTTP calls are the small functions at the bottom, passed in by the targets.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from agentdeploy.jsonvalue import JsonObject, JsonValue, objects_at, text_at

READY_PATH = "/ready"


@dataclass(frozen=True)
class ProbeAnswer:
    status: int | None  # None: nothing answered (refused, reset, timed out)
    body: bytes = b""
    retry_after: float | None = None  # seconds, from a 429's Retry-After header (HoloDeck's session cap)


# URL -> answer. Probes that only know a status code (an int, or None) are accepted as well.
HealthProbe = Callable[[str], "ProbeAnswer | int | None"]
# (URL, JSON body, timeout) -> answer
ChatPost = Callable[[str, JsonObject, float], ProbeAnswer]


def as_answer(raw: ProbeAnswer | int | None) -> ProbeAnswer:
    return raw if isinstance(raw, ProbeAnswer) else ProbeAnswer(raw)


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    reason: str
    holodeck: bool = False  # the body was HoloDeck's JSON verdict (so /ready is asked as well)


def _json_object(body: bytes) -> JsonObject | None:
    try:
        value: JsonValue = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def judge_health(answer: ProbeAnswer) -> Verdict:
    """The verdict of one answer from the health path."""
    if answer.status is None:
        return Verdict(False, "nothing answered")
    if not 200 <= answer.status < 300:
        return Verdict(False, f"HTTP {answer.status}")
    verdict = _json_object(answer.body)
    if verdict is None or not isinstance(verdict.get("status"), str):
        return Verdict(True, f"HTTP {answer.status}")
    status = verdict["status"]
    if status != "healthy":
        return Verdict(False, f"HTTP {answer.status}, status {status!r}", holodeck=True)
    return Verdict(True, f"HTTP {answer.status}, status 'healthy'", holodeck=True)


def judge_ready(answer: ProbeAnswer) -> Verdict:
    """The verdict of HoloDeck's /ready: `{"ready": true}`."""
    if answer.status is None:
        return Verdict(False, "/ready: nothing answered")
    verdict = _json_object(answer.body)
    if not 200 <= answer.status < 300 or verdict is None or verdict.get("ready") is not True:
        shown = _short(answer.body[:80].decode("utf-8", "replace"))  # the agent's words: on one line
        return Verdict(False, f"/ready: HTTP {answer.status} {shown}".rstrip(), holodeck=True)
    return Verdict(True, "ready", holodeck=True)


def check_health(probe: HealthProbe, base_url: str, health_path: str) -> Verdict:
    """One look: the health path, then (for HoloDeck) /ready."""
    verdict = judge_health(as_answer(probe(base_url + health_path)))
    if not verdict.healthy or not verdict.holodeck or health_path == READY_PATH:
        return verdict
    ready = judge_ready(as_answer(probe(base_url + READY_PATH)))
    if not ready.healthy:
        return Verdict(False, f"{verdict.reason}; {ready.reason}", holodeck=True)
    return Verdict(True, f"{verdict.reason}, ready", holodeck=True)


# -- verification: the agent answers ------------------------------------------------------------------


@dataclass(frozen=True)
class ChatCheck:
    """One chat turn to send, and what its answer must show."""

    message: str
    expect: tuple[str, ...] = ()  # texts the answer must contain (case-insensitive)
    expect_tools: tuple[str, ...] = ()  # tools the agent must have called for it


@dataclass
class ChatResult:
    ok: bool
    reason: str
    answers: list[str] = field(default_factory=list)


def chat_url(base_url: str, agent: str) -> str:
    return f"{base_url}/agent/{agent}/chat"


def judge_chat(check: ChatCheck, answer: ProbeAnswer) -> tuple[bool, str, str]:
    """(ok, reason, the answer's text) for one REST chat turn (HoloDeck's ChatResponse JSON)."""
    if answer.status is None:
        return False, "nothing answered the chat request", ""
    body = _json_object(answer.body)
    text = answer.body.decode("utf-8", "replace")
    if answer.status != 200 or body is None:
        return False, f"the chat request got HTTP {answer.status}: {_short(text)}", text
    content = body.get("content")
    if not isinstance(content, str) or not content.strip():
        # openai>=2.45 with openai-agents 0.17.4 fails every turn yet answers 200 with empty content.
        return False, "the agent answered HTTP 200 with no content (the model call failed inside the agent)", ""
    missing = [expected for expected in check.expect if expected.lower() not in content.lower()]
    if missing:
        return False, f"the answer does not contain {missing[0]!r}: {_short(content)!r}", content
    called = {str(call.get("name")) for call in objects_at(body, "tool_calls")}
    absent = [tool for tool in check.expect_tools if tool not in called]
    if absent:
        seen = ", ".join(sorted(called)) or "none"
        return False, f"the agent did not call {absent[0]!r} (tools called: {seen}): {_short(content)!r}", content
    return True, "answered", content


def verify_chat(post: ChatPost, base_url: str, agent: str, checks: Sequence[ChatCheck], timeout: float) -> ChatResult:
    """Send each turn in one session; stop at the first answer that fails its check."""
    result = ChatResult(True, "no chat turns to verify")
    session: str | None = None
    for number, check in enumerate(checks, 1):
        payload: JsonObject = {"message": check.message}
        if session:
            payload["session_id"] = session
        answer = post(chat_url(base_url, agent), payload, timeout)
        ok, reason, text = judge_chat(check, answer)
        result.answers.append(text)
        if not ok:
            return ChatResult(False, f"verify turn {number} ({check.message!r}): {reason}", result.answers)
        session = text_at(_json_object(answer.body), "session_id") or session
        result = ChatResult(True, f"{number} chat turn(s) answered as expected", result.answers)
    return result


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- HTTP --------------------------------------------------------------------------------------------


def http_probe(url: str) -> ProbeAnswer:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return ProbeAnswer(int(response.status), response.read(65536))
    except urllib.error.HTTPError as exc:
        return ProbeAnswer(int(exc.code), exc.read(65536) if exc.fp else b"")
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return ProbeAnswer(None)


def http_post_json(url: str, payload: JsonObject, timeout: float) -> ProbeAnswer:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return ProbeAnswer(int(response.status), response.read(1 << 20))
    except urllib.error.HTTPError as exc:
        wait = _seconds(exc.headers.get("Retry-After")) if exc.headers else None
        return ProbeAnswer(int(exc.code), exc.read(1 << 20) if exc.fp else b"", wait)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return ProbeAnswer(None)


def _seconds(header: str | None) -> float | None:
    """Retry-After in seconds; None when absent or an HTTP date (the caller waits its own default then)."""
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None


# -- what the agent's log says about a failed turn ----------------------------------------------------------------

# Only these reach the agent's container: a variable exported in the deploying shell does not (issue 24).
REACHES_THE_CONTAINER = "only deployment.environment and deployment.secrets reach the container"
# What the real HoloDeck runtime (0.7.1, openai-agents, LiteLLM) prints when a model call fails, as seen on its log:
# "Configuration error in 'openai': OPENAI_API_KEY is required for provider 'openai'" (no key given),
# "Error getting response: Error code: 401 - {... 'code': 'invalid_api_key'}" / "litellm.AuthenticationError" (a key
# the endpoint refuses), "Error getting response: Connection error." (an endpoint it cannot reach).
_MISSING_KEY = re.compile(r"\b([A-Z][A-Z0-9_]*_API_KEY) is required\b")
# At start-up the runtime substitutes every ${VAR} in agent.yaml and stops on an unset one (FACTS.md).
_UNSET_VARIABLE = re.compile(r"Environment variable '([A-Za-z_][A-Za-z0-9_]*)' not found")
_REFUSED_KEY = re.compile(r"AuthenticationError|Error code: 401\b|invalid_api_key|Incorrect API key")
_UNREACHABLE = re.compile(r"Connection error\.|Connection refused|APIConnectionError|Name or service not known")
_ENDPOINT = re.compile(r"^[A-Z][A-Z0-9_]*_(BASE_URL|ENDPOINT|API_BASE)$")


def model_call_hint(lines: Sequence[str], given: Collection[str]) -> str:
    """The fix a failed model call (or an unset variable) in the agent's log points to, naming what reached its
    container (`given`: the names of the variables the container got); "" when the log shows neither."""
    text = "\n".join(lines)
    missing = _MISSING_KEY.search(text) or _UNSET_VARIABLE.search(text)
    if missing:
        name = missing.group(1)
        if name in given:
            return f"the agent needs {name}: it reached the container empty; give it a value"
        return (
            f"the agent needs {name}: {REACHES_THE_CONTAINER}; {name} was not given to it "
            f"(add `{name}: ${{{name}}}` under deployment.secrets and export it where you deploy; "
            f"for one deploy: --env {name})"
        )
    keys = sorted(name for name in given if name.endswith("_API_KEY"))
    if _REFUSED_KEY.search(text):
        if keys:
            return f"the model endpoint refused the agent's API key (HTTP 401): check the value of {', '.join(keys)}"
        return (
            f"the model endpoint refused the agent's call (HTTP 401): {REACHES_THE_CONTAINER}; no *_API_KEY was "
            "given to it"
        )
    if _UNREACHABLE.search(text):
        endpoints = sorted(name for name in given if _ENDPOINT.match(name))
        if endpoints:
            return (
                f"the agent could not reach its model endpoint ({', '.join(endpoints)} as given): check that the "
                "address is reachable from inside the container"
            )
        return (
            f"the agent could not reach its model endpoint: {REACHES_THE_CONTAINER}; no *_BASE_URL was given to it, "
            "so it calls the provider's public endpoint: check this machine's network and proxy"
        )
    return ""
