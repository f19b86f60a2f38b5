"""A fake OpenAI-compatible model server on 127.0.0.1, for agents running the real HoloDeck runtime.

It speaks what HoloDeck's openai provider uses (FACTS.md): the Responses API (`POST /v1/responses`,
plain and `stream: true` as server-sent events) through openai-agents, and `POST /v1/embeddings`
(float lists or base64) through LiteLLM. Its behaviour is a deterministic stand-in for a model:

- A turn that offers tools and has no tool output yet calls, in one response, every vector-store or
  document search tool (`*_search`) with the user's message as the query, and every other function
  tool whose name the user's message mentions (arguments from the message's `key=value` words).
- Once tool outputs are in the input, it answers with text that quotes each tool's output.
- Without tools it echoes the user's message.
- Embeddings are bags of hashed words, so a query shares direction with the chunks that share its
  words: a vector search over an agent's own files finds the chunk that answers.

Every request is kept (path and JSON body) so tests can assert what the agent sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

EMBEDDING_DIMENSIONS = 1536
_WORD = re.compile(r"[a-z0-9]+")
_KEY_VALUE = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|\S+)")


def embed(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        bucket = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big") % dimensions
        vector[bucket] += 1.0
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [v / norm for v in vector]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _last_user_message(items: list[dict[str, Any]]) -> str:
    for item in reversed(items):
        if item.get("role") == "user":
            return _text_of(item.get("content"))
    return ""


def _tool_outputs(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(tool name, output) of the calls answered since the last user message."""
    names: dict[str, str] = {}
    outputs: list[tuple[str, str]] = []
    for item in items:
        if item.get("role") == "user":
            names.clear()
            outputs.clear()
        elif item.get("type") == "function_call":
            names[str(item.get("call_id"))] = str(item.get("name"))
        elif item.get("type") == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else json.dumps(output)
            outputs.append((names.get(str(item.get("call_id")), "?"), text))
    return outputs


def _arguments_for(tool: dict[str, Any], message: str) -> dict[str, Any]:
    properties = (tool.get("parameters") or {}).get("properties") or {}
    given = {key: value.strip('"') for key, value in _KEY_VALUE.findall(message)}
    arguments: dict[str, Any] = {}
    for name, schema in properties.items():
        if name in given:
            value: Any = given[name]
            if (schema or {}).get("type") == "integer":
                value = int(value)
            arguments[name] = value
        elif name in ("query", "question", "text", "q"):
            arguments[name] = message
    return arguments


@dataclass
class FakeModel:
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, path: str, body: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append((path, body))

    def paths(self) -> list[str]:
        with self.lock:
            return [path for path, _ in self.requests]

    def respond(self, body: dict[str, Any]) -> dict[str, Any]:
        raw_input = body.get("input")
        items: list[dict[str, Any]] = (
            [{"role": "user", "content": raw_input}] if isinstance(raw_input, str) else list(raw_input or [])
        )
        message = _last_user_message(items)
        outputs = _tool_outputs(items)
        tools = [tool for tool in body.get("tools") or [] if tool.get("type") == "function"]
        output: list[dict[str, Any]] = []
        if tools and not outputs:
            for tool in tools:
                name = str(tool.get("name"))
                if name.endswith("_search") or name.lower() in message.lower():
                    output.append(
                        {
                            "type": "function_call",
                            "id": "fc_" + uuid.uuid4().hex[:24],
                            "call_id": "call_" + uuid.uuid4().hex[:24],
                            "name": name,
                            "arguments": json.dumps(_arguments_for(tool, message)),
                            "status": "completed",
                        }
                    )
        if not output:
            if outputs:
                text = " ".join(f"[{name}] {result}" for name, result in outputs)
                answer = f"From my tools: {text}"
            else:
                answer = f"You said: {message}"
            output.append(
                {
                    "type": "message",
                    "id": "msg_" + uuid.uuid4().hex[:24],
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": answer, "annotations": [], "logprobs": []}],
                }
            )
        return {
            "id": "resp_" + uuid.uuid4().hex[:24],
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": body.get("model", "fake-model"),
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "temperature": 1.0,
            "top_p": 1.0,
            "instructions": body.get("instructions"),
            "metadata": {},
            "error": None,
            "incomplete_details": None,
            "usage": {
                "input_tokens": 10,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 5,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 15,
            },
        }


def stream_events(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The server-sent events of a streamed response, in the order the Responses API sends them."""
    in_progress = {**response, "status": "in_progress", "output": [], "usage": None}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": in_progress},
        {"type": "response.in_progress", "response": in_progress},
    ]
    for index, item in enumerate(response["output"]):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            events.append(
                {"type": "response.output_item.added", "output_index": index, "item": {**item, "content": []}}
            )
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append(
                {
                    "type": "response.content_part.added",
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "part": part,
                }
            )
            for start in range(0, len(text), 40):
                events.append(
                    {
                        "type": "response.output_text.delta",
                        "item_id": item["id"],
                        "output_index": index,
                        "content_index": 0,
                        "delta": text[start : start + 40],
                        "logprobs": [],
                    }
                )
            events.append(
                {
                    "type": "response.output_text.done",
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "text": text,
                    "logprobs": [],
                }
            )
            events.append(
                {
                    "type": "response.content_part.done",
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "part": {**part, "text": text},
                }
            )
        else:
            events.append(
                {"type": "response.output_item.added", "output_index": index, "item": {**item, "arguments": ""}}
            )
            events.append(
                {
                    "type": "response.function_call_arguments.delta",
                    "item_id": item["id"],
                    "output_index": index,
                    "delta": item["arguments"],
                }
            )
            events.append(
                {
                    "type": "response.function_call_arguments.done",
                    "item_id": item["id"],
                    "output_index": index,
                    "arguments": item["arguments"],
                    "name": item["name"],
                }
            )
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    events.append({"type": "response.completed", "response": response})
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    dimensions = int(body.get("dimensions") or EMBEDDING_DIMENSIONS)
    data = []
    for index, text in enumerate(texts or []):
        vector = embed(str(text), dimensions)
        value: Any = vector
        if body.get("encoding_format") == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    return {
        "object": "list",
        "data": data,
        "model": body.get("model", "fake-embedding"),
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        path = self.path.split("?")[0]
        model = self.server.model
        model.record(path, body)
        if path.endswith("/responses"):
            response = model.respond(body)
            if body.get("stream"):
                self._stream(stream_events(response))
            else:
                self._send_json(200, response)
        elif path.endswith("/embeddings"):
            self._send_json(200, embeddings(body))
        else:
            self._send_json(404, {"error": {"message": f"no route {path}", "type": "invalid_request_error"}})

    def _stream(self, events: list[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for event in events:
            self.wfile.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
        self.wfile.flush()
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    model: FakeModel


class FakeLlmServer:
    """`with FakeLlmServer() as llm:` serves on 127.0.0.1:<llm.port>; `llm.base_url` ends in /v1."""

    def __init__(self, port: int = 0) -> None:
        self.model = FakeModel()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.model = self.model
        self.port = int(self._server.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeLlmServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
