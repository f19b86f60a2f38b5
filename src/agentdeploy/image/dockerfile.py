"""Render the agent's Dockerfile from the jinja2 template shipped in the package (pure).

No value can break the file or add an instruction: every value that reaches the template is
either validated to a small character set (checked again here, at render time) or emitted as a
JSON array for an exec-form instruction, where Docker does no variable expansion and JSON
escaping keeps quotes, backslashes and newlines inside the string.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from importlib import resources

import jinja2

from agentdeploy.config.loader import LoadedConfig
from agentdeploy.config.models import DEFAULT_HOLODECK_VERSION
from agentdeploy.errors import ConfigError

NON_ROOT_UID = 10001
NODE_COMMANDS = frozenset({"node", "npx"})
# Bare values (not JSON) must match this: image refs, numbers, enum words, file names.
_SAFE_BARE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$")
CONFIG_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class _Json(str):
    """Output of the `json` filter: already escaped, emitted as it is."""


class UnsafeDockerfileValue(ValueError):
    pass


def _json_filter(value: object) -> _Json:
    # ensure_ascii keeps every control or exotic character as a \uXXXX escape on one line.
    return _Json(json.dumps(value, ensure_ascii=True))


def _finalize(value: object) -> object:
    if isinstance(value, _Json):
        return value
    if isinstance(value, bool):
        raise UnsafeDockerfileValue(f"boolean {value!r} reached the Dockerfile template")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _SAFE_BARE.match(value):
        return value
    raise UnsafeDockerfileValue(f"unsafe value {value!r} reached the Dockerfile template")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
    )
    env.filters["json"] = _json_filter
    return env


def _load_template(name: str) -> str:
    return resources.files("agentdeploy.image").joinpath("templates", name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class DockerfileSpec:
    """Everything the template needs; built from the config by `spec_from_config`."""

    base_image: str
    config_name: str
    port: int
    protocol: str
    health_path: str
    needs_node: bool
    holodeck_version: str = DEFAULT_HOLODECK_VERSION
    extras: tuple[str, ...] = ()
    uid: int = NON_ROOT_UID


# holodeck-ai extras by what the agent uses (upstream's own generator installs the same ones on top of
# its base, plus openai-agents, without which `provider: openai` has no `agents` module: FACTS.md).
_PROVIDER_EXTRAS = {"openai": "openai-agents", "azure_openai": "openai-agents", "anthropic": "claude-otel"}
_DATABASE_EXTRAS = frozenset({"chromadb", "pinecone", "postgres"})


def runtime_extras(config: LoadedConfig) -> tuple[str, ...]:
    """The holodeck-ai extras the agent's model provider and tools need at run time (pure)."""
    agent = config.agent
    extras: set[str] = set()
    provider = agent.model.get("provider") if isinstance(agent.model, dict) else None
    if isinstance(provider, str) and provider in _PROVIDER_EXTRAS:
        extras.add(_PROVIDER_EXTRAS[provider])
    for tool in agent.tools or []:
        if tool.type not in ("vectorstore", "hierarchical_document"):
            continue
        # A database named by a string refers to the project config, which the image does not carry:
        # the runtime then falls back to its in-memory store, which needs no extra.
        database = getattr(tool, "database", None)
        name = database.get("provider") if isinstance(database, dict) else None
        if isinstance(name, str) and name in _DATABASE_EXTRAS:
            extras.add(name)
        if isinstance(tool.source, str) and tool.source.startswith("az://"):
            extras.add("azure-blob")
    return tuple(sorted(extras))


def needs_node(config: LoadedConfig) -> bool:
    return any(
        isinstance(tool.command, str) and tool.command.strip() in NODE_COMMANDS for tool in config.agent.tools or []
    )


def spec_from_config(config: LoadedConfig) -> DockerfileSpec:
    deploy = config.deploy
    name = config.path.name
    if not CONFIG_NAME_RE.match(name):
        raise ConfigError(
            f"the config file name {name!r} cannot be used inside the image",
            hint="rename it to letters, digits, '.', '_' and '-' only (e.g. agent.yaml)",
        )
    return DockerfileSpec(
        base_image=deploy.build.base_image,
        config_name=name,
        port=deploy.port,
        protocol=deploy.protocol,
        health_path=deploy.effective_health_path,
        needs_node=needs_node(config),
        holodeck_version=deploy.build.holodeck_version,
        extras=runtime_extras(config),
    )


# Healthy when the answer is 2xx and, if it is HoloDeck's JSON verdict, that verdict is good: HoloDeck's
# /health and /ready always answer 200 and say `status` / `ready` in the body (FACTS.md).
_JUDGE_HEALTH = (
    "import json,sys,urllib.request\n"
    "body=urllib.request.urlopen(sys.argv[1],timeout=4).read()\n"
    "try: verdict=json.loads(body)\n"
    "except ValueError: sys.exit(0)\n"
    "ok=not isinstance(verdict,dict) or "
    "(verdict.get('status','healthy')=='healthy' and verdict.get('ready',True) is True)\n"
    "sys.exit(0 if ok else 1)"
)


def healthcheck_command(port: int, path: str) -> list[str]:
    """Exec-form HEALTHCHECK: python3 reads the verdict where the image has it; wget or curl check 2xx.

    The port is read at run time ($PORT), so a container started with another PORT is probed where it
    listens. No timeout flag for wget: busybox's `wget -T` crashes in some builds, and HEALTHCHECK
    --timeout bounds the probe anyway.
    """
    url = shlex.quote(path)
    judge = shlex.quote(_JUDGE_HEALTH)
    script = (
        f'url="http://127.0.0.1:${{PORT:-{port}}}"{url}; '
        f'if command -v python3 >/dev/null 2>&1; then exec python3 -c {judge} "$url"; fi; '
        'wget -q -O /dev/null "$url" 2>/dev/null || curl -fsS -m 4 -o /dev/null "$url"'
    )
    return ["/bin/sh", "-c", script]


def runtime_requirement(spec: DockerfileSpec) -> str:
    """The pip requirement of the runtime the image runs, as labelled and recorded."""
    extras = f"[{','.join(spec.extras)}]" if spec.extras else ""
    return f"holodeck-ai{extras}=={spec.holodeck_version}"


def runtime_check_command(version: str, extras: tuple[str, ...]) -> list[str]:
    return ["/bin/sh", "/opt/agentdeploy/check-runtime.sh", version, ",".join(extras)]


def entrypoint_command() -> list[str]:
    # Values come from ENV at run time, so a deploy can override PORT/PROTOCOL without a rebuild, and the
    # docker target sets HOLODECK_HOST when the container shares the host's network (listen on 127.0.0.1 only);
    # `exec` makes holodeck PID 1 so it receives SIGTERM.
    return [
        "/bin/sh",
        "-c",
        'exec holodeck serve "$HOLODECK_AGENT_CONFIG" --host "${HOLODECK_HOST:-0.0.0.0}" --port "$PORT" '
        '--protocol "$PROTOCOL"',
    ]


def render_dockerfile(spec: DockerfileSpec) -> str:
    try:
        return (
            _environment()
            .get_template("Dockerfile.j2")
            .render(
                base_image=spec.base_image,
                config_name=spec.config_name,
                port=spec.port,
                protocol=spec.protocol,
                needs_node=spec.needs_node,
                uid=spec.uid,
                healthcheck=healthcheck_command(spec.port, spec.health_path),
                entrypoint=entrypoint_command(),
                runtime_check=runtime_check_command(spec.holodeck_version, spec.extras),
            )
        )
    except UnsafeDockerfileValue as exc:
        # The config rules should have refused this value already; refuse to emit it anyway.
        raise ConfigError(f"refusing to render the Dockerfile: {exc}") from None
