"""Upstream HoloDeck's own files, fetched from PyPI at test time and cached: the `holodeck-ai` wheel carries its
published agent schema (`templates/*/schemas/agent.schema.json`) and the templates `holodeck init` writes
agent.yaml from. Nobody on this project wrote them, and a fresh clone reaches them through the package
registry that `.ci/run` installs from anyway (nothing outside the clone is read).

The wheel is pinned by version and by its sha256 (as PyPI lists it), so a changed file fails loudly.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

VERSION = "0.7.1"  # the runtime the real-runtime base installs (tests/realbase.py)
WHEEL = f"holodeck_ai-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "b6eda469e9c2a5c6ca4f7811246423b19133724c69711bca0c8b8f498f9d6de0"
TEMPLATES = ("conversational", "customer-support", "research")


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "agentdeploy-tests" / f"holodeck-ai-{VERSION}"


@cache
def wheel() -> Path:
    """The wheel's path, downloaded once per machine (a lock keeps two test processes from racing)."""
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / WHEEL
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists() or _sha256(path) != WHEEL_SHA256:
            pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:"]
            result = subprocess.run(
                [*pip, "--dest", str(directory), f"holodeck-ai=={VERSION}"],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if result.returncode != 0 or not path.exists():
                raise RuntimeError(
                    f"could not download holodeck-ai=={VERSION} from the package index "
                    f"(pip said: {result.stderr.strip()[-500:]})"
                )
    digest = _sha256(path)
    if digest != WHEEL_SHA256:
        raise RuntimeError(f"{path} has sha256 {digest}, expected {WHEEL_SHA256}")
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read(member: str) -> str:
    """One file of the installed package, e.g. 'holodeck/templates/research/agent.yaml.j2'."""
    with zipfile.ZipFile(wheel()) as archive:
        return archive.read(member).decode()


def agent_schema() -> str:
    return read("holodeck/templates/conversational/schemas/agent.schema.json")


def template_files(template: str) -> dict[str, str]:
    """The files of one `holodeck init` template, by their path inside it."""
    prefix = f"holodeck/templates/{template}/"
    with zipfile.ZipFile(wheel()) as archive:
        return {
            name.removeprefix(prefix): archive.read(name).decode()
            for name in archive.namelist()
            if name.startswith(prefix) and not name.endswith("/")
        }


# What `holodeck init` asks for: an OpenAI model, a ChromaDB vector store, the memory MCP server run by npx.
INIT_ANSWERS = {
    "project_name": "init-demo",
    "description": "made by holodeck init",
    "author": "",
    "llm_provider": "openai",
    "llm_model": "gpt-4o-mini",
    "llm_endpoint": "",
    "vector_store": "chromadb",
    "vector_store_endpoint": "http://127.0.0.1:8000",
    "mcp_servers": [
        {
            "name": "memory",
            "display_name": "Memory",
            "description": "Knowledge graph memory",
            "command": "npx",
            "package": "@modelcontextprotocol/server-memory",
        }
    ],
    "evals": ["rag-faithfulness"],
}


def render_init(template_text: str) -> str:
    """A file of a `holodeck init` template as the command writes it for INIT_ANSWERS."""
    import jinja2

    return jinja2.Environment().from_string(template_text).render(**INIT_ANSWERS)


def unpacked() -> Path:
    """The wheel's files, unpacked once beside it: upstream's own models, importable with only pydantic."""
    directory = cache_dir() / "unpacked"
    archive_path = wheel()  # before the lock: wheel() takes it too
    with (cache_dir() / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (directory / "holodeck" / "models" / "agent.py").exists():
            partial = directory.with_name("unpacking")  # renamed when whole: a killed run leaves no half copy
            shutil.rmtree(partial, ignore_errors=True)
            with zipfile.ZipFile(archive_path) as archive:
                archive.extractall(partial)
            shutil.rmtree(directory, ignore_errors=True)
            partial.rename(directory)
    return directory


# Runs in a child interpreter, so that no test imports upstream's package by accident: agentdeploy must not need it.
_MODELS = """
import json, sys
from pydantic import ValidationError
from holodeck.models.agent import Agent
request = json.load(sys.stdin)
if request == "schema":
    print(json.dumps(Agent.model_json_schema()))
else:
    verdicts = {}
    for name, document in request.items():
        try:
            Agent.model_validate(document)
            verdicts[name] = []
        except ValidationError as exc:
            verdicts[name] = [".".join(map(str, error["loc"])) for error in exc.errors()]
    print(json.dumps(verdicts))
"""


def _models(request: object) -> Any:
    result = subprocess.run(
        [sys.executable, "-c", _MODELS],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(unpacked())},
    )
    if result.returncode != 0:
        raise RuntimeError(f"upstream's models failed: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout)


def models_schema() -> dict[str, Any]:
    """The JSON schema of the model holodeck-ai validates agent.yaml with (`holodeck.models.agent.Agent`)."""
    schema: dict[str, Any] = _models("schema")
    return schema


def models_verdicts(documents: dict[str, object]) -> dict[str, list[str]]:
    """For each document, the places upstream's Agent model refuses (empty when it accepts it)."""
    verdicts: dict[str, list[str]] = _models(documents)
    return verdicts
