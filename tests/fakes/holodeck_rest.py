"""HoloDeck's REST chat route on 127.0.0.1, as holodeck-ai 0.7.1 serves it (holodeck/serve/protocols/rest.py,
holodeck/serve/models.py ChatResponse, holodeck/serve/server.py capacity response).

`POST /agent/<name>/chat` with `{"message", "session_id"?}` answers `{message_id, content, session_id, tool_calls:
[{name, arguments, status}], tokens_used: {prompt_tokens, completion_tokens, total_tokens} | null,
execution_time_ms}`; ids are ULIDs (26 Crockford base-32 characters). Over the active-turn cap it answers 429 with
`{"error": "capacity_exceeded", ...}` and `Retry-After: 5`.

A test scripts the agent: `answers[message]` is what it says to that message (content, the tools it calls with their
arguments, tokens); `busy` is how many requests get the 429 first; `delay` makes every answer slow. Every request is
kept (its JSON body) so tests assert what the gate sent.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid() -> str:
    return "".join(random.choice(_CROCKFORD) for _ in range(26))


@dataclass
class Said:
    """What the scripted agent answers to one message."""

    content: str
    tools: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    tokens: int | None = 42


@dataclass
class Script:
    agent: str
    answers: dict[str, Said] = field(default_factory=dict)
    busy: int = 0  # requests answered 429 (capacity) before any is served
    retry_after: str = "5"  # HoloDeck's _CAPACITY_RETRY_AFTER_SECONDS
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            if self.path != f"/agent/{script.agent}/chat":
                self._send(404, {"detail": "Not Found"})
                return
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            with script.lock:
                script.requests.append(request)
                busy = script.busy > 0
                script.busy -= 1 if busy else 0
            if busy:
                capacity = {"error": "capacity_exceeded", "message": "Server at capacity (max 1 active turns)"}
                self._send(
                    429, {**capacity, "active_sessions": 1, "max_sessions": 1}, {"Retry-After": script.retry_after}
                )
                return
            started = time.monotonic()
            time.sleep(script.delay)
            said = script.answers.get(request["message"], Said(""))
            tokens = (
                None
                if said.tokens is None
                else {"prompt_tokens": said.tokens - 2, "completion_tokens": 2, "total_tokens": said.tokens}
            )
            self._send(
                200,
                {
                    "message_id": ulid(),
                    "content": said.content,
                    "session_id": request.get("session_id") or ulid(),
                    "tool_calls": [{"name": name, "arguments": args, "status": "success"} for name, args in said.tools],
                    "tokens_used": tokens,
                    "execution_time_ms": int((time.monotonic() - started) * 1000),
                },
            )

    return Handler


class FakeHoloDeckRest:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeHoloDeckRest:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
