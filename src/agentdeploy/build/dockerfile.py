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
from typing import Any

import jinja2

from agentdeploy.config.loader import LoadedConfig
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


def _json_filter(value: Any) -> _Json:
    # ensure_ascii keeps every control or exotic character as a \uXXXX escape on one line.
    return _Json(json.dumps(value, ensure_ascii=True))


def _finalize(value: Any) -> Any:
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
    return resources.files("agentdeploy.build").joinpath("templates", name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class DockerfileSpec:
    """Everything the template needs; built from the config by `spec_from_config`."""

    base_image: str
    config_name: str
    port: int
    protocol: str
    health_path: str
    needs_node: bool
    uid: int = NON_ROOT_UID


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
    )


def healthcheck_command(port: int, path: str) -> list[str]:
    """Exec-form HEALTHCHECK: healthy when python3, wget or curl (whichever exists) gets a 2xx.

    No timeout flag for wget: busybox's `wget -T` crashes in some builds, and HEALTHCHECK
    --timeout bounds the probe anyway.
    """
    url = shlex.quote(f"http://127.0.0.1:{port}{path}")
    script = (
        f"python3 -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=4)' {url}"
        f" 2>/dev/null || wget -q -O /dev/null {url} 2>/dev/null || curl -fsS -m 4 -o /dev/null {url}"
    )
    return ["/bin/sh", "-c", script]


def entrypoint_command() -> list[str]:
    # Values come from ENV at run time, so a deploy can override PORT/PROTOCOL without a rebuild;
    # `exec` makes holodeck PID 1 so it receives SIGTERM.
    return [
        "/bin/sh",
        "-c",
        'exec holodeck serve "$HOLODECK_AGENT_CONFIG" --host 0.0.0.0 --port "$PORT" --protocol "$PROTOCOL"',
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
            )
        )
    except UnsafeDockerfileValue as exc:
        # The config rules should have refused this value already; refuse to emit it anyway.
        raise ConfigError(f"refusing to render the Dockerfile: {exc}") from None
