"""The generated Dockerfile: one instruction per line, no value can add another."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from agentdeploy.config.loader import load_config
from agentdeploy.errors import ConfigError
from agentdeploy.image.dockerfile import (
    DockerfileSpec,
    UnsafeDockerfileValue,
    _finalize,
    healthcheck_command,
    render_dockerfile,
    spec_from_config,
)


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(keyword, arguments) per instruction, joining `\\` continuations like Docker's parser."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in dockerfile.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, rest = full.strip().partition(" ")
        result.append((keyword.upper(), rest))
    assert not pending, "dangling line continuation"
    return result


SPEC = DockerfileSpec(
    base_image="ghcr.io/justinbarias/holodeck-base:latest",
    config_name="agent.yaml",
    port=8080,
    protocol="rest",
    health_path="/health",
    needs_node=False,
)


def test_shape_of_the_generated_dockerfile() -> None:
    steps = instructions(render_dockerfile(SPEC))
    assert [keyword for keyword, _ in steps] == [
        "FROM",
        "USER",
        "COPY",
        "RUN",
        "COPY",
        "COPY",
        "WORKDIR",
        "ENV",
        "USER",
        "EXPOSE",
        "HEALTHCHECK",
        "ENTRYPOINT",
        "CMD",
        "COPY",
    ]
    args = dict(steps[:1] + steps[9:13])
    assert args["FROM"] == "ghcr.io/justinbarias/holodeck-base:latest"
    # The runtime check runs before the agent's files are copied, so it is cached with the base.
    assert steps[2] == ("COPY", "agentdeploy/check-runtime.sh /opt/agentdeploy/check-runtime.sh")
    assert json.loads(steps[3][1]) == ["/bin/sh", "/opt/agentdeploy/check-runtime.sh", "0.7.1", ""]
    # Owners by COPY --chown, never a RUN step: the home is the user's; /app (workdir/app, mode 1775 in the
    # context) root's, group-writable by the runtime user with the sticky bit; the agent's files root's.
    assert steps[4] == ("COPY", "--chown=10001:10001 home/ /home/agent/")
    assert steps[5] == ("COPY", "--chown=0:10001 workdir/ /")
    assert [step for step in steps if step[0] == "RUN"] == [steps[3]]
    assert steps[6] == ("WORKDIR", "/app")
    assert steps[8] == ("USER", "10001:10001")  # non-root at run time
    # The agent's files last: a prompt change rebuilds one layer, every other step comes from the cache.
    assert steps[-1] == ("COPY", "--chown=0:0 app/ /app/")
    assert args["EXPOSE"] == "8080"
    healthcheck = args["HEALTHCHECK"]
    probe = json.loads(healthcheck[healthcheck.index("CMD ") + 4 :])
    assert probe[:2] == ["/bin/sh", "-c"] and 'url="http://127.0.0.1:${PORT:-8080}"/health' in probe[2]
    entrypoint = json.loads(args["ENTRYPOINT"])
    # Every interface unless the docker target says otherwise (HOLODECK_HOST=127.0.0.1 under host networking).
    assert entrypoint[2] == (
        'exec holodeck serve "$HOLODECK_AGENT_CONFIG" --host "${HOLODECK_HOST:-0.0.0.0}" --port "$PORT" '
        '--protocol "$PROTOCOL"'
    )
    assert "HOLODECK_AGENT_CONFIG=/app/agent.yaml" in steps[7][1] and "HOME=/home/agent" in steps[7][1]


def test_runtime_pin_and_extras_reach_the_check(write_agent: Callable[..., Path]) -> None:
    path = write_agent(
        """
        name: a
        model: {provider: openai, name: gpt-4o}
        instructions: {inline: hi}
        tools:
          - {name: kb, type: vectorstore, source: kb.md, database: {provider: chromadb}, description: kb}
          - {name: faq, type: vectorstore, source: kb.md, database: chromadb, description: faq}
        deployment:
          build: {holodeck_version: "0.7.0"}
        """,
        files={"kb.md": "x"},
    )
    spec = spec_from_config(load_config(path))
    # A database named by a string lives in the project config, which the image does not carry.
    assert spec.extras == ("chromadb", "openai-agents")
    check = next(args for keyword, args in instructions(render_dockerfile(spec)) if keyword == "RUN")
    assert json.loads(check) == ["/bin/sh", "/opt/agentdeploy/check-runtime.sh", "0.7.0", "chromadb,openai-agents"]


def test_nothing_changes_between_renders() -> None:
    assert render_dockerfile(SPEC) == render_dockerfile(SPEC)
    assert "created" not in render_dockerfile(SPEC).lower().replace("labels (version, revision, created", "")


def test_node_install_only_when_needed() -> None:
    without = render_dockerfile(SPEC)
    with_node = render_dockerfile(DockerfileSpec(**{**SPEC.__dict__, "needs_node": True}))
    assert "nodejs" not in without
    runs = [args for keyword, args in instructions(with_node) if keyword == "RUN"]
    assert len(runs) == 2 and "apt-get install -y --no-install-recommends nodejs npm" in runs[0]  # node, runtime
    assert [args for keyword, args in instructions(without) if keyword == "RUN"] == runs[1:]


def test_port_and_health_path_reach_probe_and_env(write_agent: Callable[..., Path]) -> None:
    config = load_config(
        write_agent(
            "name: d\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: hi}\n"
            "deployment: {port: 9000, protocol: ag-ui, health: {path: '/ready?deep=1'}}\n"
        )
    )
    text = render_dockerfile(spec_from_config(config))
    assert "EXPOSE 9000" in text and "PROTOCOL=ag-ui" in text
    assert """url=\\"http://127.0.0.1:${PORT:-9000}\\"'/ready?deep=1'""" in text


class _Verdicts(BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, tuple[int, bytes]]] = {
        "/healthy": (200, b'{"status": "healthy", "agent_ready": true}'),
        "/unhealthy": (200, b'{"status": "unhealthy", "agent_ready": false}'),
        "/degraded": (200, b'{"status": "degraded"}'),
        "/ready-no": (200, b'{"ready": false}'),
        "/plain": (200, b"ok"),
        "/broken": (503, b"down"),
    }

    def do_GET(self) -> None:
        status, body = self.answers[self.path]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("path", "healthy"),
    [
        ("/healthy", True),
        ("/unhealthy", False),
        ("/degraded", False),
        ("/ready-no", False),
        ("/plain", True),
        ("/broken", False),
    ],
)
def test_healthcheck_reads_holodecks_verdict(path: str, healthy: bool) -> None:
    """The HEALTHCHECK script itself, run by sh with python3 (as in a HoloDeck image) against real answers:
    HoloDeck answers 200 with an unhealthy verdict, which must count as unhealthy."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Verdicts)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        command = healthcheck_command(8080, path)
        env = {"PATH": os.environ["PATH"], "PORT": str(server.server_address[1])}
        result = subprocess.run(command, env=env, capture_output=True, timeout=20)
    finally:
        server.shutdown()
    assert (result.returncode == 0) is healthy, result.stderr


@pytest.mark.parametrize(
    "hostile",
    ['x"\nRUN touch /pwned', "a\\", "$(id)", "x y", "ok\rRUN id", "`id`", ""],
)
def test_unvalidated_values_cannot_reach_the_file(hostile: str) -> None:
    with pytest.raises(UnsafeDockerfileValue):
        _finalize(hostile)
    with pytest.raises(ConfigError):
        render_dockerfile(DockerfileSpec(**{**SPEC.__dict__, "base_image": hostile}))


def test_json_values_keep_hostile_text_on_one_line() -> None:
    from agentdeploy.image.dockerfile import _json_filter

    rendered = _json_filter(['a"\nRUN touch /pwned \\', "$HOME"])
    assert "\n" not in rendered
    assert json.loads(rendered) == ['a"\nRUN touch /pwned \\', "$HOME"]


def test_config_name_that_cannot_live_in_the_image(write_agent: Callable[..., Path]) -> None:
    path = write_agent(
        "name: d\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: hi}\n", name="my agent$.yaml"
    )
    with pytest.raises(ConfigError) as exc:
        spec_from_config(load_config(path))
    assert "rename it" in (exc.value.hint or "")


def test_environment_values_are_not_baked_in(write_agent: Callable[..., Path]) -> None:
    config = load_config(
        write_agent(
            "name: d\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: hi}\n"
            "deployment:\n  environment: {LOG_LEVEL: debug, OPENAI_API_KEY: '${OPENAI_API_KEY}'}\n"
        )
    )
    text = render_dockerfile(spec_from_config(config))
    assert "LOG_LEVEL" not in text and "OPENAI_API_KEY" not in text
