"""The images agentdeploy builds, run by the REAL HoloDeck runtime (holodeck-ai 0.7.1 from PyPI).

Every deploy here goes through the CLI as a separate process, onto the local Docker engine, from a base
built of real parts (what `agentdeploy base build` makes). The agents talk to a fake OpenAI-compatible model on
127.0.0.1 (tests/fakes/llm.py); proxies point at a dead loopback port, so nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit import COMPAT, DEAD_PROXY, FIXTURES, REGISTRY, ROOT, offline_agent_env, post_json

pytestmark = [pytest.mark.docker, pytest.mark.realruntime]

API_KEY = "sk-test-real-runtime-0123456789"


@dataclass
class Deployed:
    config: Path
    container: str
    port: int
    agent: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def chat(self, message: str) -> tuple[int, dict[str, Any]]:
        return post_json(f"{self.url}/agent/{self.agent}/chat", {"message": message}, timeout=90)


@dataclass
class Cli:
    code: int
    out: str
    err: str

    @property
    def data(self) -> dict[str, Any]:
        return dict(json.loads(self.out))


def agentdeploy(*argv: str, env: dict[str, str] | None = None) -> Cli:
    environ = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "OPENAI_API_KEY": API_KEY}
    environ.update(env or {})
    if "DOCKER_HOST" in os.environ:
        environ["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    result = subprocess.run(
        [sys.executable, "-m", "agentdeploy", *argv], capture_output=True, text=True, env=environ, timeout=600
    )
    return Cli(result.returncode, result.stdout, result.stderr)


@pytest.fixture
def stage(
    tmp_path: Path, real_base: str, fake_llm: Any, free_port: Callable[[], int], docker_client: Any
) -> Iterator[Callable[..., Deployed]]:
    """stage(source_dir) copies an agent into tmp and points it at the real base and the fake model."""
    made: list[Deployed] = []

    def make(source: Path, *, registry: bool = False, edit: Callable[[dict[str, Any]], None] | None = None) -> Deployed:
        project = tmp_path / f"{source.name}-{len(made)}"
        shutil.copytree(source, project, ignore=shutil.ignore_patterns(".agentdeploy", ".holodeck", "__pycache__"))
        config = project / "agent.yaml"
        data = yaml.safe_load(config.read_text())
        deployment = data.setdefault("deployment", {})
        port = free_port()
        container = f"agentdeploy-real-{uuid.uuid4().hex[:8]}"
        deployment["port"] = port
        deployment.setdefault("build", {})["base_image"] = real_base
        deployment.setdefault("environment", {}).update(offline_agent_env(fake_llm.base_url))
        deployment.setdefault("target", {})["provider"] = "docker"
        deployment["target"]["docker"] = {"container_name": container}
        if registry:
            deployment["registry"] = {
                "url": REGISTRY,
                "repository": f"it-real/{uuid.uuid4().hex[:10]}",
                "tag_strategy": "custom",
                "custom_tag": "v1",
            }
        else:
            deployment.pop("registry", None)
        if edit is not None:
            edit(data)
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        deployed = Deployed(config, container, port, str(data["name"]))
        made.append(deployed)
        return deployed

    yield make
    for deployed in made:
        for name in (deployed.container, deployed.container + "-previous"):
            with contextlib.suppress(Exception):
                docker_client.containers.get(name).remove(force=True, v=True)


class _Orders(BaseHTTPRequestHandler):
    """The order API the support agent's function tool calls (ORDER_API_URL)."""

    def do_GET(self) -> None:
        order = self.path.rsplit("/", 1)[-1]
        body = json.dumps({"id": order, "status": f"shipped-{order}"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def order_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Orders)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def tool_names(answer: dict[str, Any]) -> list[str]:
    return [str(call["name"]) for call in answer.get("tool_calls") or []]


def test_hello_agent_serves_and_answers_from_its_own_knowledge(stage: Callable[..., Deployed], fake_llm: Any) -> None:
    agent = stage(ROOT / "examples" / "hello-agent")
    result = agentdeploy("deploy", str(agent.config), "--json")
    assert result.code == 0, result.err
    assert result.data["status"] == "succeeded"
    # The example's verify turn went to the new version before it was trusted, and it searched.
    assert "1 chat turn(s) answered as expected" in result.err
    verify_requests = [body for path, body in fake_llm.model.requests if path.endswith("/responses")]
    assert any("What is agentdeploy?" in json.dumps(body.get("input")) for body in verify_requests)

    status, answer = agent.chat("What does agentdeploy do when a release is unhealthy?")
    assert status == 200, answer
    assert tool_names(answer) == ["knowledge_search"]
    # The answer quotes the agent's own file: ingestion wrote its cache and the search found the chunk.
    assert "rolls back" in str(answer["content"]) and "/app/data/knowledge.md" in str(answer["content"])
    assert "/v1/embeddings" in fake_llm.model.paths()
    # The secret reached the runtime (the model was called with it), not the image.
    image = result.data["image"]
    import docker

    client = docker.from_env()
    assert API_KEY not in json.dumps(client.images.get(image).attrs)
    record = json.loads((agent.config.parent / ".agentdeploy" / "hello-agent.local.json").read_text())
    assert record["current"]["runtime"] == "holodeck-ai[openai-agents]==0.7.1"
    assert client.images.get(image).labels["dev.agentdeploy.holodeck-runtime"] == "holodeck-ai[openai-agents]==0.7.1"
    client.close()


def test_support_agent_calls_its_function_tool(stage: Callable[..., Deployed], order_api: str) -> None:
    def use_order_api(data: dict[str, Any]) -> None:
        data["deployment"]["environment"]["ORDER_API_URL"] = order_api

    agent = stage(ROOT / "examples" / "support-agent", registry=True, edit=use_order_api)
    result = agentdeploy("deploy", str(agent.config), "--json", env={"SUPPORT_API_KEY": API_KEY})
    assert result.code == 0, result.err
    assert result.data["image"].startswith(f"{REGISTRY}/it-real/") and "@sha256:" in result.data["image"]

    status, answer = agent.chat("Check order_status for order_id=A-1001 please")
    assert status == 200, answer
    assert "order_status" in tool_names(answer) and "faq_search" in tool_names(answer)
    assert "shipped-A-1001" in str(answer["content"])  # the tool's own answer, from the order API
    status, answer = agent.chat("Can I return an item?")
    assert status == 200 and "within 30 days" in str(answer["content"]), answer


@pytest.mark.parametrize(
    ("source", "searches"),
    [
        ("fixture", ["catalog_search", "faq_search", "knowledge_search"]),
        ("compat", ["faq_search", "knowledge_base_search", "product_catalog_search"]),
    ],
)
def test_an_agent_with_three_vector_stores_and_an_npx_mcp_server_answers(
    stage: Callable[..., Deployed], fake_llm: Any, source: str, searches: list[str]
) -> None:
    """Three vector stores and an MCP memory server run by npx: our fixture of that shape, and the real sample
    someone else wrote (the optional corpus) when it sits beside the clone."""
    if source == "compat" and not COMPAT.is_dir():
        pytest.skip(f"optional corpus: no real agent configs at {COMPAT} (see tests/fixtures/README.md)")
    folder = (
        FIXTURES / "agents" / "vectorstores"
        if source == "fixture"
        else COMPAT / "holodeck-samples" / "customer-support" / "openai"
    )

    def add_key(data: dict[str, Any]) -> None:
        # Its key lives in the project config.yaml, which the image does not carry: give it as a secret.
        data["deployment"]["secrets"] = {"OPENAI_API_KEY": "${OPENAI_API_KEY}"}
        # The test base keeps npm's offline cache in /opt/npm-cache (tests/realruntime/base), which npx writes to
        # even to read it: under the read-only root it is named as a writable path (a volume seeded from the image).
        data["deployment"]["target"]["docker"]["writable"] = ["/opt/npm-cache"]

    agent = stage(folder, edit=add_key)
    result = agentdeploy("deploy", str(agent.config), "--json")
    assert result.code == 0, result.err
    assert "config.yaml beside the agent config is not copied into the image" in result.err
    status, answer = agent.chat("How do I reset my password?")
    assert status == 200, answer
    assert sorted(tool_names(answer)) == searches
    assert str(answer["content"]).startswith("From my tools:")


def test_a_broken_tool_fails_the_release_and_the_previous_version_answers(
    stage: Callable[..., Deployed], order_api: str
) -> None:
    def use_order_api(data: dict[str, Any]) -> None:
        data["deployment"]["environment"]["ORDER_API_URL"] = order_api

    agent = stage(ROOT / "examples" / "support-agent", edit=use_order_api)
    env = {"SUPPORT_API_KEY": API_KEY}
    assert agentdeploy("deploy", str(agent.config), env=env).code == 0
    tool = agent.config.parent / "tools" / "orders.py"
    tool.write_text('raise RuntimeError("the orders tool is broken at import")\n' + tool.read_text())

    broken = agentdeploy("deploy", str(agent.config), "--json", env=env)
    assert broken.code == 9, broken.err  # rolled back
    assert "within" not in broken.err.split("rolled back")[0].rsplit("health gate failed", 1)[-1]  # not a timeout
    status, answer = agent.chat("Check order_status for order_id=B-7 please")
    assert status == 200 and "shipped-B-7" in str(answer["content"]), answer


def test_a_key_exported_only_in_the_shell_is_named_in_the_error_with_the_agents_own_lines(
    stage: Callable[..., Deployed],
) -> None:
    """Issue 24 point 4: OPENAI_API_KEY is exported where agentdeploy runs, but the config forwards it nowhere: the
    runtime starts healthy, the verify turn fails (HTTP 500), and the error shows the runtime's own lines and which
    settings reach the container, not "read the output above"."""
    agent = stage(ROOT / "examples" / "hello-agent", edit=lambda data: data["deployment"].pop("secrets"))

    result = agentdeploy("deploy", str(agent.config))  # its environment has OPENAI_API_KEY

    assert result.code == 8, result.err  # a first deploy: nothing to roll back to
    lines = result.err.splitlines()
    error = lines[next(i for i, line in enumerate(lines) if line.startswith("error: ")) + 1 :]
    assert error[0] == f"  the agent's last {len(error) - 2} log line(s):"
    assert any(
        line.startswith(
            f"    {agent.container}: RuntimeError: Agent execution failed: Configuration error in 'openai': "
        )
        and "OPENAI_API_KEY is required for provider 'openai'" in line
        for line in error
    ), error
    assert error[-1] == (
        "  fix: the agent needs OPENAI_API_KEY: only deployment.environment and deployment.secrets reach the "
        "container; OPENAI_API_KEY was not given to it (add `OPENAI_API_KEY: ${OPENAI_API_KEY}` under "
        "deployment.secrets and export it where you deploy; for one deploy: --env OPENAI_API_KEY)"
    )


def test_a_failed_verification_rolls_back_and_quotes_the_answer(stage: Callable[..., Deployed]) -> None:
    agent = stage(ROOT / "examples" / "hello-agent")
    assert agentdeploy("deploy", str(agent.config)).code == 0
    data = yaml.safe_load(agent.config.read_text())
    data["deployment"]["verify"]["chat"][0]["expect"] = "a sentence this agent never says"
    data["description"] = "v2"
    agent.config.write_text(yaml.safe_dump(data, sort_keys=False))

    result = agentdeploy("deploy", str(agent.config))
    assert result.code == 9, result.err
    assert "the answer does not contain 'a sentence this agent never says'" in result.err
    assert "From my tools: [knowledge_search]" in result.err  # the agent's own words, quoted
    status, answer = agent.chat("What is agentdeploy?")
    assert status == 200 and tool_names(answer) == ["knowledge_search"]


def test_a_base_without_the_agents_extra_fails_the_build_clearly(
    stage: Callable[..., Deployed], real_base: str, docker_client: Any, tmp_path: Path
) -> None:
    lacking = real_base.replace("holodeck-base:", "holodeck-base-no-extra:")
    recipe = tmp_path / "lacking"
    recipe.mkdir()
    (recipe / "Dockerfile").write_text(
        f"FROM {real_base}\nUSER root\nRUN /opt/holodeck/bin/pip uninstall --yes --quiet openai-agents\nUSER holodeck\n"
    )
    docker_client.images.build(path=str(recipe), tag=lacking, rm=True)

    def use_lacking_base(data: dict[str, Any]) -> None:
        data["deployment"]["build"]["base_image"] = lacking
        # The install the check tries must not leave the machine either.
        data["deployment"]["build"]["build_args"] = {"HTTPS_PROXY": DEAD_PROXY, "HTTP_PROXY": DEAD_PROXY}

    agent = stage(ROOT / "examples" / "hello-agent", edit=use_lacking_base)
    result = agentdeploy("deploy", str(agent.config))
    assert result.code == 6, result.err
    lines = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert lines == [
        "error: the base image lacks holodeck-ai[openai-agents]==0.7.1 (openai-agents (of the [openai-agents] "
        "extra) is not installed) and installing it failed (see pip's last lines above); use a base image that "
        "has it, or let the build reach the package index"
    ], result.err
    with pytest.raises(Exception, match="No such container"):
        docker_client.containers.get(agent.container)


def _configs_to_check() -> list[Path]:
    configs = sorted((FIXTURES / "agents").rglob("*.yaml")) + sorted((ROOT / "examples").rglob("agent.yaml"))
    configs += [ROOT / "tests" / "action" / "azure-agent" / "agent.yaml"]
    configs += sorted(COMPAT.rglob("*.yaml")) if COMPAT.is_dir() else []  # the optional corpus, when present
    # Agent configs only: upstream's schema and the project config.yaml are not agent files.
    return [
        path
        for path in configs
        if path.name != "config.yaml" and "schemas" not in path.parts and path.parent.name != "data"
    ]


def test_the_runtime_loads_every_config_as_the_image_carries_it(real_base: str, tmp_path: Path) -> None:
    """HoloDeck's own loader, in the real base, reads agentdeploy's copy of every config we know; the
    user's original file is refused wherever it has agentdeploy's additions (that is the bug this fixes)."""
    from agentdeploy.config.loader import load_config
    from agentdeploy.errors import ConfigError

    cases: list[dict[str, Any]] = []
    refused_by_validate: set[str] = set()
    for index, path in enumerate(_configs_to_check()):
        name = str(path.relative_to(ROOT)) if ROOT in path.parents else "compat/" + str(path.relative_to(COMPAT))
        case_dir = tmp_path / f"case{index}"
        shutil.copytree(path.parent, case_dir, ignore=shutil.ignore_patterns(".agentdeploy", "config.yaml"))
        (case_dir / "original.yaml").write_text(path.read_text())
        try:
            config = load_config(path)
            runtime_text, names = config.runtime_files[0].text, {v.name for v in config.runtime_variables}
        except ConfigError:  # `validate` refuses it, as upstream's models do: the runtime must refuse it as written
            refused_by_validate.add(name)
            runtime_text, names = path.read_text(), set(re.findall(r"\$\{(\w+)", path.read_text()))
        (case_dir / "runtime.yaml").write_text(runtime_text)
        variables = {
            variable: "https://set-by-test.invalid" if "URL" in variable or "ENDPOINT" in variable else "set-by-test"
            for variable in names
        }
        cases.append({"dir": f"/cases/case{index}", "name": name, "env": variables})
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    script = (
        "import json, os\n"
        "from holodeck.config.loader import ConfigLoader\n"
        "out = []\n"
        "for case in json.load(open('/cases/cases.json')):\n"
        "    os.environ.update(case['env'])\n"
        "    verdicts = {}\n"
        "    for which in ('runtime', 'original'):\n"
        "        try:\n"
        "            ConfigLoader().load_agent_yaml(case['dir'] + '/' + which + '.yaml')\n"
        "            verdicts[which] = 'ok'\n"
        "        except Exception as exc:\n"
        "            text = str(exc).replace(case['dir'] + '/' + which + '.yaml', 'FILE')\n"
        "            verdicts[which] = ' '.join(text.split())[:600]\n"
        "    out.append({'name': case['name'], **verdicts})\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--user",
            "root",
            "-v",
            f"{tmp_path}:/cases:ro",
            "--entrypoint",
            "/opt/holodeck/bin/python",
            real_base,
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    verdicts = {case["name"]: case for case in json.loads(result.stdout.strip().splitlines()[-1])}
    refused = {name: case["runtime"] for name, case in verdicts.items() if case["runtime"] != "ok"}
    # One upstream test fixture of the optional corpus does not fit holodeck-ai 0.7.1's own schema (an `mcp.server`
    # key, metrics without `type`): the runtime refuses it as its author wrote it, with or without agentdeploy.
    unfit = "compat/holodeck/agents/valid_agent.yaml"
    assert refused == ({unfit: verdicts[unfit]["original"]} if unfit in verdicts else {}), refused
    assert refused_by_validate == set(refused)  # validate refuses exactly what the runtime would crash on
    # The examples carry agentdeploy's keys (health, secrets, verify...): the runtime refuses them as written.
    for example in ("examples/hello-agent/agent.yaml", "examples/support-agent/agent.yaml"):
        assert verdicts[example]["original"] != "ok", verdicts[example]
    assert len(verdicts) >= 10


def _listening_addresses(port: int) -> list[str]:
    """Addresses with a socket listening on `port` in this network namespace (the agent shares it: host network)."""
    import ipaddress

    found = []
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        with contextlib.suppress(FileNotFoundError), open(table) as handle:
            for line in handle.read().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, _, hex_port = local.partition(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    raw = bytes.fromhex(address)
                    # the kernel prints each 32-bit word in host (little-endian) order
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, size, 4))
                    found.append(str(ipaddress.ip_address(words)))
    return sorted(found)


def _other_local_address() -> str | None:
    """An IPv4 address of one of this machine's own interfaces that is not loopback (None when it has none)."""
    result = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=False)
    for line in result.stdout.splitlines():
        address = line.split()[3].split("/")[0]
        if not address.startswith("127."):
            return address
    return None


def test_the_hardened_container_indexes_its_knowledge_and_answers_on_loopback_only(
    stage: Callable[..., Deployed], fake_llm: Any, docker_client: Any, free_port: Callable[[], int]
) -> None:
    """The real runtime under cap-drop ALL, no-new-privileges, a read-only root and limits: its vector store
    still indexes (on the tmpfs at /app/.holodeck), the search finds the answer, and it listens on 127.0.0.1."""
    import socket

    agent = stage(ROOT / "examples" / "hello-agent")
    result = agentdeploy("deploy", str(agent.config), "--json")
    assert result.code == 0, result.err
    inspected = docker_client.api.inspect_container(agent.container)
    host = inspected["HostConfig"]
    assert (host["CapDrop"], host["SecurityOpt"], host["ReadonlyRootfs"]) == (["ALL"], ["no-new-privileges"], True)
    assert (host["NanoCpus"], host["Memory"], host["PidsLimit"]) == (10**9, 2 * 1024**3, 512)
    assert sorted(host["Tmpfs"]) == ["/app/.holodeck", "/home/agent", "/tmp"]

    status, answer = agent.chat("What does agentdeploy do when a release is unhealthy?")
    assert status == 200, answer
    assert tool_names(answer) == ["knowledge_search"]
    assert "rolls back" in str(answer["content"]) and "/app/data/knowledge.md" in str(answer["content"])
    container = docker_client.containers.get(agent.container)
    _, output = container.exec_run(["/bin/sh", "-c", "stat -c '%F %u' /app/.holodeck/cache; touch /app/x 2>&1"])
    cache, refused = output.decode().splitlines()
    # The runtime made its cache directory on the tmpfs (owned by the agent's user); the root stays read-only.
    assert cache == "directory 10001" and refused.endswith("Read-only file system"), output
    indexed = re.findall(r"VectorStoreTool initialized: .*, (\d+) chunks indexed", container.logs().decode())
    assert indexed and int(indexed[-1]) > 0, indexed

    # It listens on 127.0.0.1 alone: the socket table says so, its command line says so, and another address of
    # this machine's own is refused.
    assert _listening_addresses(agent.port) == ["127.0.0.1"]
    commands = [row[-1] for row in container.top()["Processes"]]
    serving = [command for command in commands if "holodeck serve" in command and "docker-init" not in command]
    assert len(serving) == 1 and " --host 127.0.0.1 " in serving[0], commands
    other = _other_local_address()
    if other is not None:
        with pytest.raises(ConnectionRefusedError), socket.create_connection((other, agent.port), timeout=5):
            pass

    # The control: the same image, as read-only, without the tmpfs at .holodeck, indexes nothing and its search
    # finds nothing, silently (FACTS.md); so it is the tmpfs that makes the answer above possible.
    port = free_port()
    env = [item for item in inspected["Config"]["Env"] if not item.startswith(("PORT=", "HOLODECK_HOST="))]
    control = docker_client.containers.run(
        inspected["Image"],
        detach=True,
        name=f"{agent.container}-control",
        environment=[*env, f"PORT={port}", "HOLODECK_HOST=127.0.0.1"],
        network_mode="host",
        read_only=True,
        tmpfs={"/tmp": "uid=10001,gid=10001", "/home/agent": "uid=10001,gid=10001"},
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                status, answer = post_json(
                    f"http://127.0.0.1:{port}/agent/{agent.agent}/chat",
                    {"message": "What does agentdeploy do when a release is unhealthy?"},
                    timeout=90,
                )
                break
            except OSError:
                assert time.monotonic() < deadline, control.logs(tail=20).decode()
                time.sleep(1)
        assert status == 200, answer
        assert "rolls back" not in str(answer["content"]), answer
        logs = control.logs().decode()
        assert "Read-only file system: '.holodeck'" in logs and ", 0 chunks indexed" in logs, logs[-3000:]
    finally:
        control.remove(force=True)
