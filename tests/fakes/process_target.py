"""A toy third target: the agent runs as a local process (a stand-in runtime), behind the Target protocol.

It exists to prove that a target plugs in through the protocol and the registry alone (ARCHITECTURE.md,
"Adding a target"): nothing in agentdeploy knows about it. The process it starts is a small HTTP server
that answers like HoloDeck's runtime (JSON verdicts on /health and /ready, REST chat); with
`AGENT_UNHEALTHY=1` in the release's environment its verdict says unhealthy, as HoloDeck's does (HTTP 200).
A misbehaving agent, for the tests of what reaches the Actions log: `AGENT_READY_BODY` is sent as the /ready
body, and `AGENT_CHAT_ANSWER` as the chat answer's content, each with `$NAME` filled from the agent's
environment (so it can echo a secret it was given).
What runs is kept in `<agent dir>/.process-target.json` (pid, port, image, tag, environment).

Its settings are a section of agent.yaml of its own, checked by its own model (`settings_model`), as any plugin
target's: `deployment.target.process: {port: N}` is where the process listens (deployment.port otherwise).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from agentdeploy.state.store import DeploymentRecord
from agentdeploy.targets.base import Live, ReleaseRequest, Status, TargetContext, TargetOutcome
from agentdeploy.targets.health import check_health, http_post_json, http_probe, verify_chat

RUNTIME = """
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port, agent = int(sys.argv[1]), sys.argv[2]
healthy = os.environ.get("AGENT_UNHEALTHY") != "1"
class Handler(BaseHTTPRequestHandler):
    def _send(self, body):
        data = json.dumps(body).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        if self.path == "/ready" and "AGENT_READY_BODY" in os.environ:
            data = os.path.expandvars(os.environ["AGENT_READY_BODY"]).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers()
            self.wfile.write(data)
        elif self.path == "/ready":
            self._send({"ready": healthy})
        else:
            self._send({"status": "healthy" if healthy else "unhealthy", "agent_ready": healthy})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = f"{agent} {os.environ.get('AGENT_VERSION')}: {body['message']}"
        if "AGENT_CHAT_ANSWER" in os.environ:
            text = os.path.expandvars(os.environ["AGENT_CHAT_ANSWER"])
        self._send({"message_id": "m", "content": text, "session_id": "s", "tool_calls": [], "execution_time_ms": 1})
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a child that exited but was not reaped yet is a zombie: not alive
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return True


class ProcessSettings(BaseModel):
    """deployment.target.process"""

    model_config = ConfigDict(extra="forbid")
    port: StrictInt | None = Field(None, ge=1, le=65535, description="Where the process listens")


class ProcessTarget:
    environment = "process"
    requires_registry = False
    settings_model = ProcessSettings

    def __init__(self, context: TargetContext) -> None:
        self.context = context
        self.agent = context.config.agent.name
        settings = context.config.target_settings(self.environment)
        port = settings.port if isinstance(settings, ProcessSettings) else None
        self.port = port or context.config.deploy.port
        self.record_file = context.config.project_dir / ".process-target.json"

    @property
    def resource(self) -> str:
        return f"process {self.agent}"

    def _running(self) -> dict[str, Any] | None:
        if not self.record_file.exists():
            return None
        running: dict[str, Any] = json.loads(self.record_file.read_text())
        return running if _alive(int(running["pid"])) else None

    def _start(self, image: str, tag: str, env: dict[str, str]) -> dict[str, Any]:
        process = subprocess.Popen(
            [sys.executable, "-c", RUNTIME, str(self.port), self.agent],
            env={**os.environ, **env, "AGENT_VERSION": tag},
            start_new_session=True,
        )
        running = {"pid": process.pid, "port": self.port, "image": image, "tag": tag, "env": env}
        self.record_file.write_text(json.dumps(running))
        return running

    def _stop(self, running: dict[str, Any] | None) -> None:
        if running is None:
            return
        try:
            os.kill(int(running["pid"]), signal.SIGTERM)
        except OSError:
            return
        deadline = time.monotonic() + 5
        while _alive(int(running["pid"])) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(running["pid"]), os.WNOHANG)
            time.sleep(0.05)

    def _gate(self, request: ReleaseRequest) -> tuple[bool, str]:
        url = f"http://127.0.0.1:{self.port}"
        probe = self.context.probe or http_probe
        deadline = time.monotonic() + request.health_timeout
        while True:
            verdict = check_health(probe, url, request.health_path)
            if verdict.healthy:
                break
            if time.monotonic() > deadline:
                return False, verdict.reason
            time.sleep(0.05)
        if request.checks:
            result = verify_chat(self.context.post or http_post_json, url, request.agent, request.checks, 10)
            return result.ok, result.reason
        return True, verdict.reason

    def observe(self, recorded: DeploymentRecord | None) -> Live:
        running = self._running()
        if running is None:
            return Live(exists=False)
        return Live(exists=True, image=str(running["image"]))

    def release(self, request: ReleaseRequest) -> TargetOutcome:
        previous = self._running()
        self._stop(previous)
        env = {**request.env, **request.secrets}
        started = self._start(request.image, request.tag, env)
        url = f"http://127.0.0.1:{self.port}"
        ok, reason = self._gate(request)
        if ok:
            return TargetOutcome(
                status=Status.SUCCEEDED, url=url, revision=str(started["pid"]), previous=_image(previous), reason=reason
            )
        self._stop(started)
        if previous is None or not request.auto_rollback:
            self.record_file.unlink(missing_ok=True)
            return TargetOutcome(status=Status.FAILED, url=url, revision="", previous=_image(previous), reason=reason)
        restored = self._start(previous["image"], previous["tag"], previous["env"])
        self._gate(replace(request, checks=()))
        return TargetOutcome(
            status=Status.ROLLED_BACK, url=url, revision=str(restored["pid"]), previous=_image(previous), reason=reason
        )

    def rollback(self, record: DeploymentRecord, request: ReleaseRequest) -> TargetOutcome:
        return self.release(request)

    def recorded_elsewhere(self, to: str) -> DeploymentRecord | None:
        return None

    def status(self) -> dict[str, Any]:
        running = self._running()
        line = f"process {self.agent}: " + (f"pid {running['pid']}, port {running['port']}" if running else "absent")
        return {"running": running, "summary": [line]}

    def destroy(self) -> list[str]:
        running = self._running()
        self._stop(running)
        self.record_file.unlink(missing_ok=True)
        return [f"process {running['pid']}"] if running else []

    def logs(self, *, tail: int, follow: bool) -> Iterator[str]:
        yield from ()


def _image(running: dict[str, Any] | None) -> str:
    return str(running["image"]) if running else ""


make_target = ProcessTarget  # the factory: ProcessTarget(context), with its settings_model
