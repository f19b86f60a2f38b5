"""A runner for the example workflows and the composite action, as GitHub's runner runs them.

Every job of a run, in the order `needs` allows, each on a fresh runner: a job's `if:` sees the `needs` context (its
jobs' results and outputs), a `strategy.matrix` (vectors, or `include` from `fromJSON(...)`) gives one job per leg
with its `matrix` context, and `runs-on` and `concurrency` are evaluated (every job runs here, on a runner whose
`runner.environment` is self-hosted when `runs-on` names that label, else github-hosted). `actions/checkout`
clones the repository on "GitHub" (a bare repository here) at the event's commit, `fetch-depth: 0` for all of its
history; `uses: your-org/agentdeploy@v1` (or `./`) runs every step of action.yml in order, its key, cache, install
(the real one: uv or pip) and run steps included; `actions/cache` keeps what it saves between jobs;
`actions/upload-artifact` hands the file to a local stand-in of GitHub's artifacts REST API, which the next
run's agentdeploy reads back; `actions/attest-build-provenance` stores a provenance bundle through the fake
attestations API at the same API URL, when the job's permissions allow it as GitHub's would. Expressions
(`${{ ... }}`, `if:`) are evaluated with the contexts a runner gives (github, inputs, vars, secrets, env, steps,
runner, needs, matrix). An expression, step or action the harness does not know fails the test, so a workflow
cannot use something this harness quietly skips. A matrix's legs run one after another, not at once.
"""

from __future__ import annotations

import fnmatch
import http.server
import io
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import yaml

from fakes.attestations import FakeAttestationsApi
from fakes.github_api import FakeGitHubApi
from testkit import ROOT, git

TOKEN = "ghs_fake_workflow_token_123"  # github.token
REPOSITORY = "org/agents"
ACTION_REFS = ("your-org/agentdeploy@v1", "./")
ACTION_FILES = ("action.yml", "pyproject.toml", "README.md", "src")


def copy_action(destination: Path, source: Path = ROOT) -> Path:
    """The action as the runner downloads it for `uses: owner/repo@ref`: the repository's files, no build output."""
    destination.mkdir(parents=True)
    for name in ACTION_FILES:
        if (source / name).is_dir():
            shutil.copytree(
                source / name, destination / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
            )
        else:
            shutil.copy2(source / name, destination / name)
    return destination


# -- expressions ---------------------------------------------------------------------------------------------------

_EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.S)
_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>\d+(?:\.\d+)?)|(?P<op>==|!=|&&|\|\||!|\(|\)|,)"
    r"|(?P<name>[A-Za-z_][\w-]*(?:\.[\w-]+)*))"
)
STATUS_FUNCTIONS = ("always", "success", "failure", "cancelled")


class Expression:
    """As much of GitHub's expression language as action.yml and the examples use: contexts (a.b.c; missing is
    null), 'strings', true/false/null, numbers, ! == != && || ( ), and the status functions."""

    def __init__(self, text: str, context: Mapping[str, Any], *, failed: bool = False) -> None:
        self.context, self.failed = context, failed
        self.tokens: list[tuple[str, str]] = []
        position, text = 0, text.strip()
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                raise AssertionError(f"the harness cannot read the expression {text!r} at {text[position:]!r}")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.index = 0

    def value(self) -> Any:
        result = self._or()
        assert self.index == len(self.tokens), f"unread tokens in expression: {self.tokens[self.index :]}"
        return result

    def _peek(self) -> str | None:
        return self.tokens[self.index][1] if self.index < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def _or(self) -> Any:
        value = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            value = value if truthy(value) else right
        return value

    def _and(self) -> Any:
        value = self._equality()
        while self._peek() == "&&":
            self._take()
            right = self._equality()
            value = right if truthy(value) else value
        return value

    def _equality(self) -> Any:
        value = self._unary()
        if self._peek() in ("==", "!="):
            operator = self._take()[1]
            same = comparable(value) == comparable(self._unary())
            return same if operator == "==" else not same
        return value

    def _unary(self) -> Any:
        if self._peek() == "!":
            self._take()
            return not truthy(self._unary())
        return self._primary()

    def _primary(self) -> Any:
        kind, text = self._take()
        if text == "(":
            value = self._or()
            assert self._take()[1] == ")"
            return value
        if kind == "string":
            return text[1:-1].replace("''", "'")
        if kind == "number":
            return float(text)
        if kind != "name":
            raise AssertionError(f"unexpected {text!r} in an expression")
        if self._peek() == "(":
            self._take()
            arguments = []
            if self._peek() != ")":
                arguments.append(self._or())
                while self._peek() == ",":
                    self._take()
                    arguments.append(self._or())
            assert self._take()[1] == ")", f"unclosed call of {text}()"
            return self._call(text, arguments)
        if text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        value: Any = self.context
        for part in text.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        return value

    def _call(self, name: str, arguments: list[Any]) -> Any:
        if name in STATUS_FUNCTIONS:
            assert not arguments, f"{name}() takes no arguments"
            return {"always": True, "success": not self.failed, "failure": self.failed, "cancelled": False}[name]
        if name == "fromJSON":
            [text] = arguments
            return json.loads(text)  # GitHub fails the run on text that is not JSON, as this does
        if name == "toJSON":
            [value] = arguments
            return json.dumps(value, indent=2)
        if name == "contains":
            haystack, needle = arguments
            if isinstance(haystack, list):
                return any(comparable(item) == comparable(needle) for item in haystack)
            return comparable(as_text(needle)) in comparable(as_text(haystack))
        raise AssertionError(f"the harness does not know the function {name}()")


def truthy(value: Any) -> bool:
    return value not in (None, False, 0, 0.0, "")


def comparable(value: Any) -> Any:
    if value is None:
        return ""
    return value.casefold() if isinstance(value, str) else value


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else json.dumps(value)


def interpolate(template: Any, context: Mapping[str, Any]) -> str:
    """A YAML value as the runner hands it on: a string with its expressions evaluated (true stays "true")."""
    if not isinstance(template, str):
        return as_text(template)
    return _EXPRESSION.sub(lambda m: as_text(Expression(m.group(1), context).value()), template)


def evaluate(template: Any, context: Mapping[str, Any]) -> Any:
    """A YAML value where an object may stand (strategy.matrix): one whole `${{ }}` keeps its value's type."""
    if isinstance(template, str):
        whole = _EXPRESSION.fullmatch(template.strip())
        if whole:
            return Expression(whole.group(1), context).value()
        return interpolate(template, context)
    if isinstance(template, list):
        return [evaluate(item, context) for item in template]
    if isinstance(template, dict):
        return {key: evaluate(value, context) for key, value in template.items()}
    return template


def condition(text: Any, context: Mapping[str, Any], *, failed: bool) -> bool:
    """A step's `if:`; without a status function it means `success() && (...)`, as on GitHub."""
    if text is None:
        return not failed
    source = str(text).strip()
    whole = _EXPRESSION.fullmatch(source)
    source = whole.group(1) if whole else source
    if not re.search(rf"\b({'|'.join(STATUS_FUNCTIONS)})\(", source):
        source = f"success() && ({source})"
    return truthy(Expression(source, context, failed=failed).value())


def read_file_command(path: Path) -> dict[str, str]:
    """GITHUB_OUTPUT and GITHUB_ENV: NAME=value lines, or NAME<<DELIMITER / value / DELIMITER blocks."""
    if not path.exists():
        return {}
    block = re.compile(r"^([\w-]+)<<(\S+)\n(.*?)\n\2$", re.M | re.S)
    text = path.read_text()
    found = {name: value for name, _, value in block.findall(text)}
    found.update(line.split("=", 1) for line in block.sub("", text).splitlines() if "=" in line)
    return found


# -- GitHub's artifacts API --------------------------------------------------------------------------------------


class Artifacts:
    """GitHub's artifact REST endpoints on 127.0.0.1, filled by the harness's actions/upload-artifact, shaped as
    docs.github.com/rest/actions/artifacts and /rest/actions/workflow-runs say: an artifact names its
    `workflow_run` (id, repository_id, head_repository_id, head_branch, head_sha); the run (GET .../runs/{id})
    names its workflow file (`path`), `event`, `head_branch`, `head_repository` and `repository`. The listing
    holds every run's artifacts, those of a fork's pull request included (FACTS.md, "Trust on GitHub"). Also the
    repository itself (its id, default branch) and its tags (git/ref/tags/{name})."""

    REPOSITORY_ID = 1296269  # the repository's id; a fork has another
    FORK_ID = 8675309

    def __init__(self, token: str = TOKEN, repository: str = REPOSITORY) -> None:
        # GitHub's attestations endpoints live under the same API URL: requests for them are passed on to the fake.
        self.attestations = FakeAttestationsApi(token, repository)
        # So are a pull request's comments and deployments (a preview's): passed on to fakes/github_api.py.
        self.pulls = FakeGitHubApi(repository, pulls=(7,))
        self.pulls.token(token)
        self.listed: list[dict[str, Any]] = []
        self.zips: dict[int, bytes] = {}
        self.requests: list[str] = []
        self.runs: dict[int, dict[str, Any]] = {}
        self.tags: set[str] = set()
        self.origin: Path | None = None  # the repository on "GitHub": its tags count as well
        self._ids = itertools.count(1)
        store = self
        base = f"/repos/{repository}"

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                store.requests.append(f"POST {self.path}")
                self._forward(store.pulls.url, "POST")

            def do_PATCH(self) -> None:
                store.requests.append(f"PATCH {self.path}")
                self._forward(store.pulls.url, "PATCH")

            def do_GET(self) -> None:
                store.requests.append(self.path)
                path = urlparse(self.path).path
                if "/attestations" in self.path:
                    self._forward()
                elif path.startswith((f"{base}/issues/", f"{base}/deployments")):
                    self._forward(store.pulls.url)
                elif self.headers.get("Authorization") != f"Bearer {token}":
                    self._send(401, b'{"message": "Bad credentials"}')
                elif path == base:
                    about = {"id": store.REPOSITORY_ID, "full_name": repository, "default_branch": "main"}
                    self._send(200, json.dumps(about).encode())
                elif path == f"{base}/actions/artifacts":
                    wanted = parse_qs(urlparse(self.path).query)["name"][0]
                    found = [a for a in reversed(store.listed) if a["name"] == wanted]  # newest first
                    self._send(200, json.dumps({"total_count": len(found), "artifacts": found}).encode())
                elif path.startswith(f"{base}/actions/runs/") and path.rsplit("/", 1)[1].isdigit():
                    run = store.runs.get(int(path.rsplit("/", 1)[1]))
                    self._send(200, json.dumps(run).encode()) if run else self._send(404, b'{"message": "Not Found"}')
                elif path.startswith(f"{base}/git/ref/tags/"):
                    tag = unquote(path.removeprefix(f"{base}/git/ref/tags/"))
                    if store.has_tag(tag):
                        self._send(200, json.dumps({"ref": f"refs/tags/{tag}"}).encode())
                    else:
                        self._send(404, b'{"message": "Not Found"}')
                elif self.path.startswith("/zip/"):
                    self._send(200, store.zips[int(self.path.rsplit("/", 1)[1])], "application/zip")
                else:
                    self._send(404, b"{}")

            def _forward(self, to: str = "", method: str = "GET") -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = urllib.request.Request(
                    (to or store.attestations.url) + self.path,
                    data=self.rfile.read(length) if method != "GET" else None,
                    method=method,
                    headers={
                        key: value
                        for key, value in self.headers.items()
                        if key.lower() in ("authorization", "content-type", "accept")
                    },
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        self._send(answer.status, answer.read())
                except urllib.error.HTTPError as error:
                    self._send(error.code, error.read())

            def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def has_tag(self, name: str) -> bool:
        if name in self.tags:
            return True
        if self.origin is None:
            return False
        found = subprocess.run(
            ["git", "--git-dir", str(self.origin), "show-ref", "--verify", "--quiet", f"refs/tags/{name}"], check=False
        )
        return found.returncode == 0

    def add_run(
        self,
        run_id: int,
        *,
        workflow: str = "release.yml",
        ref: str = "refs/heads/main",
        event: str = "push",
        fork: bool = False,
        sha: str = "0" * 40,
    ) -> None:
        """A workflow run as GET /repos/{owner}/{repo}/actions/runs/{id} shows it. A fork's pull request runs in
        this repository (`repository`) with the fork as `head_repository`, on the fork's branch."""
        head_id = self.FORK_ID if fork else self.REPOSITORY_ID
        self.runs[run_id] = {
            "id": run_id,
            "path": f".github/workflows/{workflow}",
            "event": event,
            "head_branch": ref.split("/", 2)[2] if ref.startswith(("refs/heads/", "refs/tags/")) else ref,
            "head_sha": sha,
            "html_url": f"https://github.com/{REPOSITORY}/actions/runs/{run_id}",
            "repository": {"id": self.REPOSITORY_ID, "full_name": REPOSITORY},
            "head_repository": {"id": head_id, "full_name": "someone/agents" if fork else REPOSITORY},
        }

    def upload(self, name: str, path: Path, run_id: int) -> None:
        """actions/upload-artifact with overwrite: true, which replaces the artifact of the same name uploaded
        earlier in the same run."""
        self.listed = [a for a in self.listed if not (a["name"] == name and a["run_id"] == run_id)]
        self.add(name, path.name, path.read_bytes(), run_id=run_id)

    def add(
        self, name: str, member: str, content: bytes, *, run_id: int = 0, created: str = "", expired: bool = False
    ) -> int:
        """An artifact holding one file, as the API lists it (newest last here, newest first in answers), of the
        run `run_id` (add_run first: an artifact of no known run names none)."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as bundle:
            bundle.writestr(member, content)
        artifact_id = next(self._ids)
        self.zips[artifact_id] = buffer.getvalue()
        run = self.runs.get(run_id)
        self.listed.append(
            {
                "id": artifact_id,
                "name": name,
                "run_id": run_id,
                "created_at": created or f"2026-11-30T10:{artifact_id // 60:02d}:{artifact_id % 60:02d}Z",
                "expired": expired,
                "archive_download_url": f"{self.url}/zip/{artifact_id}",
                "workflow_run": {
                    "id": run_id,
                    "repository_id": run["repository"]["id"],
                    "head_repository_id": run["head_repository"]["id"],
                    "head_branch": run["head_branch"],
                    "head_sha": run["head_sha"],
                }
                if run
                else None,
            }
        )
        return artifact_id

    def names(self) -> list[str]:
        return [a["name"] for a in self.listed]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.attestations.close()
        self.pulls.close()


# -- the runner ----------------------------------------------------------------------------------------------------


@dataclass
class World:
    """What outlives a job: the repository on "GitHub", its variables, secrets and artifacts, the actions cache,
    and the action's own checkout."""

    tmp: Path
    action: Path
    cache: Path
    artifacts: Artifacts
    origin: Path | None = None
    vars: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    # GitHub environments' own secrets, by environment name: a job that runs in one sees them over the repository's.
    environment_secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    job_env: str = ""  # what a step before ours appended to GITHUB_ENV (the fake Azure's endpoints)
    extra_env: dict[str, str] = field(default_factory=dict)
    path: str = field(default_factory=lambda: os.environ["PATH"])
    runs: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def connect(
        self,
        fake: FakeAzureProcess,
        origin: Path,
        secrets: Mapping[str, str],
        environment_secrets: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """The repository on "GitHub", the fake Azure as if a step before ours had started it (the self-test
        does), and the repository's variables (the fake's identity) and secrets, and its environments' secrets."""
        env = fake.env
        self.origin, self.job_env = origin, fake.env_lines
        self.artifacts.origin = origin
        self.vars = {
            "AZURE_CLIENT_ID": env["FAKE_AZURE_CLIENT_ID"],
            "AZURE_TENANT_ID": env["FAKE_AZURE_TENANT_ID"],
            "AZURE_SUBSCRIPTION_ID": env["FAKE_AZURE_SUBSCRIPTION_ID"],
        }
        self.secrets = dict(secrets)
        self.environment_secrets = {name: dict(values) for name, values in (environment_secrets or {}).items()}


@dataclass
class StepResult:
    name: str
    outcome: str  # success, failure or skipped
    outputs: dict[str, str]
    log: str
    exit_code: int | None = None  # None: skipped


class Job:
    """One job on a fresh runner: its own workspace, RUNNER_TEMP, GITHUB_ENV, and step contexts."""

    def __init__(
        self,
        world: World,
        *,
        event_name: str = "push",
        ref: str = "refs/heads/main",
        inputs: Mapping[str, str] | None = None,
        workflow: Mapping[str, Any] | None = None,
        job: Mapping[str, Any] | None = None,
        run_id: int | None = None,
        name: str = "",
        payload: Mapping[str, Any] | None = None,
        needs: Mapping[str, Any] | None = None,
        matrix: Mapping[str, Any] | None = None,
        workflow_file: str = "release.yml",
    ) -> None:
        self.world = world
        self.name = name
        self.workflow_file = workflow_file  # its file in .github/workflows (GITHUB_WORKFLOW_REF)
        self.run_id = next(world.runs) if run_id is None else run_id  # every job of one workflow run shares it
        leg = "-".join(value for value in (matrix or {}).values() if isinstance(value, str))
        where = "-".join(part for part in (name, leg) if part).replace("/", "_")
        self.root = world.tmp / (f"run-{self.run_id}-{where}" if where else f"run-{self.run_id}")
        self.workspace = self.root / "workspace"
        self.temp = self.root / "runner-temp"
        self.files = self.root / "files"
        for directory in (self.workspace, self.temp, self.files):
            directory.mkdir(parents=True)
        self.github_env = self.files / "github_env"
        self.github_env.write_text(world.job_env)
        self.ref, self.event_name = ref, event_name
        if ref.startswith("refs/tags/"):  # the tag a run starts from exists in the repository
            world.artifacts.tags.add(ref.removeprefix("refs/tags/"))
        event: dict[str, Any] = {
            "ref": ref,
            "repository": {"full_name": REPOSITORY, "default_branch": "main"},
            **(payload or {}),
        }
        if inputs is not None:
            event["inputs"] = dict(inputs)
        (self.files / "event.json").write_text(json.dumps(event))
        sha = git(world.origin, "rev-parse", f"{ref}^{{commit}}") if world.origin else "0" * 40
        self.github: dict[str, Any] = {
            "event_name": event_name,
            "event": event,
            "ref": ref,
            "ref_name": ref.rsplit("/", 1)[-1],
            "sha": sha,
            "repository": REPOSITORY,
            "actor": "octocat",
            "token": TOKEN,
            "workspace": str(self.workspace),
            "run_id": str(self.run_id),
        }
        self.runner = {"temp": str(self.temp), "os": "Linux", "arch": "X64", "environment": "github-hosted"}
        self.workflow_env = {**((workflow or {}).get("env") or {}), **((job or {}).get("env") or {})}
        # The job's token and OIDC permissions: the job's own `permissions:`, else the workflow's.
        self.permissions: dict[str, str] = dict(
            (job or {}).get("permissions", (workflow or {}).get("permissions")) or {}
        )
        self.context: dict[str, Any] = {
            "github": self.github,
            "inputs": dict(inputs or {}),
            "vars": world.vars,
            "secrets": world.secrets,
            "runner": self.runner,
            "steps": {},
            "env": {},
            "needs": dict(needs or {}),
            "matrix": dict(matrix or {}),
        }
        self.context["env"] = {k: interpolate(v, self.context) for k, v in self.workflow_env.items()}
        # The GitHub environment the job runs in (its name may use the matrix): its secrets win over the
        # repository's, and a job in no environment, or in another, never sees them.
        environment = (job or {}).get("environment")
        name = environment.get("name") if isinstance(environment, dict) else environment
        self.environment_name = interpolate(name, self.context) if name else ""
        self.context["secrets"] = {**world.secrets, **world.environment_secrets.get(self.environment_name, {})}
        self.failed = False
        self.steps: list[StepResult] = []
        self.summary = ""
        self.posts: list[Callable[[], None]] = []
        self.path = world.path
        self.action_steps: dict[str, Any] = {}  # the composite's own steps, as its last run left them
        self.runs_on: Any = None  # as the job's runs-on evaluated (the harness runs every job here)
        self.concurrency: Any = None
        self.environment_url = ""
        self._files = itertools.count(1)

    @property
    def log(self) -> str:
        return "".join(f"--- {step.name} ({step.outcome})\n{step.log}" for step in self.steps)

    def place_on(self, runs_on: str | list[str]) -> None:
        """The runner its `runs-on` labels pick: `self-hosted` among them is a machine of the team's, anything else
        (ubuntu-latest) one of GitHub's, as `runner.environment` and RUNNER_ENVIRONMENT say on GitHub."""
        labels = [runs_on] if isinstance(runs_on, str) else list(runs_on)
        self.runner["environment"] = "self-hosted" if "self-hosted" in labels else "github-hosted"

    def outputs(self, step_id: str) -> dict[str, str]:
        return dict(self.context["steps"][step_id]["outputs"])

    # -- what a runner gives every process

    def environment(self, *layers: Mapping[str, str]) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("AGENTDEPLOY_", "GITHUB_"))}
        env.update(
            PATH=self.path,
            CI="true",
            GITHUB_ACTIONS="true",
            GITHUB_WORKSPACE=str(self.workspace),
            GITHUB_REF=self.ref,
            GITHUB_REF_NAME=self.github["ref_name"],
            GITHUB_SHA=self.github["sha"],
            GITHUB_REPOSITORY=REPOSITORY,
            GITHUB_REPOSITORY_ID=str(Artifacts.REPOSITORY_ID),
            GITHUB_WORKFLOW_REF=f"{REPOSITORY}/.github/workflows/{self.workflow_file}@{self.ref}",
            GITHUB_EVENT_NAME=self.event_name,
            GITHUB_EVENT_PATH=str(self.files / "event.json"),
            GITHUB_ACTOR="octocat",
            GITHUB_API_URL=self.world.artifacts.url,
            GITHUB_SERVER_URL="https://github.com",
            GITHUB_RUN_ID=str(self.run_id),
            GITHUB_RUN_NUMBER=str(self.run_id),
            GITHUB_RUN_ATTEMPT="1",
            GITHUB_ENV=str(self.github_env),
            RUNNER_TEMP=str(self.temp),
            RUNNER_OS="Linux",
            RUNNER_ARCH="X64",
            RUNNER_ENVIRONMENT=self.runner["environment"],
        )
        env.update(read_file_command(self.github_env))
        env.update(self.context["env"])
        for layer in layers:
            env.update(layer)
        env.update(self.world.extra_env)
        return env

    def shell(self, script: str, env: Mapping[str, str]) -> tuple[int, dict[str, str], str]:
        """A `run:` step: bash as GitHub starts it, with fresh GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files."""
        number = next(self._files)
        output, summary = self.files / f"output-{number}", self.files / f"summary-{number}"
        output.touch()
        summary.touch()
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=self.workspace,
            env={**env, "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        self.summary += summary.read_text()
        return result.returncode, read_file_command(output), result.stdout + result.stderr

    # -- the workflow's steps

    def run_steps(self, steps: list[Mapping[str, Any]]) -> None:
        for number, step in enumerate(steps, 1):
            name = str(step.get("name") or step.get("id") or step.get("uses") or f"step {number}")
            if not condition(step.get("if"), self.context, failed=self.failed):
                self._record(step, StepResult(name, "skipped", {}, ""))
                continue
            env = {key: interpolate(value, self.context) for key, value in (step.get("env") or {}).items()}
            uses = step.get("uses")
            if "run" in step:
                code, outputs, log = self.shell(step["run"], self.environment(env))
            elif uses in ("actions/checkout@v4", "actions/checkout@v5"):  # v5: the same, on node24
                code, outputs, log = self.checkout(step.get("with") or {})
            elif uses == "actions/attest-build-provenance@v2":
                code, outputs, log = self.attest({k: interpolate(v, self.context) for k, v in step["with"].items()})
            elif uses in ACTION_REFS:
                given = {key: interpolate(value, self.context) for key, value in (step.get("with") or {}).items()}
                code, outputs, log = self.run_action(given, env)
            else:
                raise AssertionError(f"the harness does not know the action {uses!r}")
            self._record(step, StepResult(name, "success" if code == 0 else "failure", outputs, log, code))
            if code != 0 and not step.get("continue-on-error"):
                self.failed = True
        self.finish()

    def finish(self) -> None:
        """The post steps, last registered first (actions/cache saves here)."""
        for post in reversed(self.posts):
            post()
        self.posts = []

    def _record(self, step: Mapping[str, Any], result: StepResult) -> None:
        self.steps.append(result)
        if step.get("id"):
            self.context["steps"][step["id"]] = {
                "outputs": result.outputs,
                "outcome": result.outcome,
                "conclusion": result.outcome,
            }

    def checkout(self, options: Mapping[str, Any]) -> tuple[int, dict[str, str], str]:
        """actions/checkout@v4 or @v5: the event's commit, one commit deep (`fetch-depth: 0`: all history, branches and
        tags), origin set for later pushes."""
        assert set(options) <= {"fetch-depth"}, f"the harness knows only the option fetch-depth, not {options}"
        assert self.world.origin is not None, "no repository to check out"
        depth = int(options.get("fetch-depth", 1))
        branch = self.ref.removeprefix("refs/tags/").removeprefix("refs/heads/")
        shutil.rmtree(self.workspace)
        shallow = [f"--depth={depth}"] if depth else []
        if self.ref.startswith("refs/pull/"):  # a pull request's merge commit, kept by GitHub under refs/pull/<n>/
            git(self.root, "clone", "-q", *shallow, f"file://{self.world.origin}", "workspace")
            git(self.workspace, "fetch", "-q", *shallow, "origin", self.ref)
            git(self.workspace, "checkout", "-q", "--detach", "FETCH_HEAD")
            return 0, {}, f"checked out {self.ref} at {git(self.workspace, 'rev-parse', 'HEAD')}\n"
        git(self.root, "clone", "-q", *shallow, "--branch", branch, f"file://{self.world.origin}", "workspace")
        if self.github["sha"] != "0" * 40 and git(self.workspace, "rev-parse", "HEAD") != self.github["sha"]:
            git(self.workspace, "checkout", "-q", "--detach", self.github["sha"])  # the event's commit, not the tip
        return 0, {}, f"checked out {self.ref} at {git(self.workspace, 'rev-parse', 'HEAD')}\n"

    def attest(self, options: Mapping[str, str]) -> tuple[int, dict[str, str], str]:
        """actions/attest-build-provenance@v2 for an image: it signs with the job's OIDC token (`id-token: write`)
        and stores the bundle through the attestations API (`attestations: write`); subject-digest must be a
        sha256 digest. The bundle goes to the fake API that `deploy --require-attestation` asks."""
        assert set(options) <= {"subject-name", "subject-digest", "push-to-registry"}, sorted(options)
        assert options.get("push-to-registry", "false") == "false", "the harness stores attestations in the API only"
        if self.permissions.get("id-token") != "write":
            return 1, {}, "Error: Unable to get ACTIONS_ID_TOKEN_REQUEST_URL env variable\n"
        if self.permissions.get("attestations") != "write":
            return 1, {}, "Error: Failed to persist attestation: Resource not accessible by integration\n"
        digest, subject = options.get("subject-digest", ""), options.get("subject-name", "")
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            return 1, {}, f'Error: subject-digest must be in the format "sha256:<hex-digest>", not {digest!r}\n'
        if not subject:
            return 1, {}, "Error: One of subject-path or subject-digest must be provided\n"
        api = self.world.artifacts.attestations
        api.attest(subject, digest, builder=f"https://github.com/{REPOSITORY}/.github/workflows/release.yml@{self.ref}")
        number = len(api.stored)
        bundle = self.temp / f"attestation-{number}.jsonl"
        bundle.write_text(json.dumps(api.stored[-1]["bundle"]) + "\n")
        url = f"https://github.com/{REPOSITORY}/attestations/{number}"
        outputs = {"bundle-path": str(bundle), "attestation-id": str(number), "attestation-url": url}
        return 0, outputs, f"Attestation created for {subject}@{digest}\n{url}\n"

    # -- the composite action

    def run_action(
        self, given: Mapping[str, str], outer_env: Mapping[str, str], *, stop_after: str | None = None
    ) -> tuple[int, dict[str, str], str]:
        """action.yml's steps in order, the way the runner runs a composite action: inputs from `with:` and the
        defaults, each step's env: evaluated, `if:` against the composite's own steps."""
        action = yaml.safe_load((self.world.action / "action.yml").read_text())
        unknown = set(given) - set(action["inputs"])
        assert not unknown, f"inputs action.yml does not declare: {sorted(unknown)}"
        inputs = {
            name: given[name] if name in given else interpolate(spec.get("default", ""), self.context)
            for name, spec in action["inputs"].items()
        }
        context: dict[str, Any] = {
            **self.context,
            "github": {**self.github, "action_path": str(self.world.action)},
            "inputs": inputs,
            "steps": {},
        }
        failed, logs = False, []
        for step in action["runs"]["steps"]:
            name = step.get("name") or step.get("id")
            if not condition(step.get("if"), context, failed=failed):
                continue
            env = {key: interpolate(value, context) for key, value in (step.get("env") or {}).items()}
            uses = str(step.get("uses", ""))
            options = {key: interpolate(value, context) for key, value in (step.get("with") or {}).items()}
            if "run" in step:
                assert step.get("shell") == "bash", name
                process_env = self.environment(outer_env, env, {"GITHUB_ACTION_PATH": str(self.world.action)})
                code, outputs, log = self.shell(step["run"], process_env)
            elif uses.startswith("actions/setup-python@"):
                raise AssertionError("setup-python would run, but this runner has Python 3.11 or newer as python3")
            elif uses.startswith("actions/cache@"):
                code, outputs, log = self.cache(Path(options["path"]), options["key"])
            elif uses.startswith("actions/upload-artifact@"):
                assert options.get("overwrite") == "true"
                self.world.artifacts.add_run(
                    self.run_id,
                    workflow=self.workflow_file,
                    ref=self.ref,
                    event=self.event_name,
                    sha=self.github["sha"],
                )
                self.world.artifacts.upload(options["name"], Path(options["path"]), self.run_id)
                code, outputs, log = 0, {}, f"uploaded artifact {options['name']}\n"
            else:
                raise AssertionError(f"the harness does not know the action {uses!r}")
            logs.append(f"  [{name}]\n{log}")
            if step.get("id"):
                context["steps"][step["id"]] = {"outputs": outputs}
            if code != 0:
                failed = True
            if step.get("id") == stop_after:
                break
        self.action_steps = context["steps"]
        outputs = {name: interpolate(spec["value"], context) for name, spec in action["outputs"].items()}
        return (1 if failed else 0), outputs, "".join(logs)

    def cache(self, path: Path, key: str) -> tuple[int, dict[str, str], str]:
        """actions/cache@v4: restore on an exact key; save in the job's post step when it missed and the job
        succeeded (its post-if is success())."""
        assert key, "an empty cache key"
        stored = self.world.cache / key
        if stored.is_dir():
            if path.exists():
                shutil.rmtree(path)  # the archive is extracted over what is there
            shutil.copytree(stored, path, symlinks=True)
            return 0, {"cache-hit": "true"}, f"Cache restored from key: {key}\n"

        def save() -> None:
            if not self.failed and path.is_dir() and not stored.exists():
                shutil.copytree(path, stored, symlinks=True)

        self.posts.append(save)
        return 0, {"cache-hit": "false"}, f"Cache not found for input keys: {key}\n"


@dataclass
class WorkflowRun:
    """One run of a workflow: every job that ran (a matrix job: one Job per leg), by the job's key."""

    jobs: dict[str, list[Job]]
    results: dict[str, str]  # job key -> success, failure or skipped (as the needs context has it)

    @property
    def job(self) -> Job:
        """The run's only job (a workflow of one job, no matrix)."""
        ran = [leg for legs in self.jobs.values() for leg in legs]
        assert len(ran) == 1, f"{len(ran)} jobs ran: {sorted(self.jobs)}"
        return ran[0]

    @property
    def conclusion(self) -> str:
        return "failure" if "failure" in self.results.values() else "success"

    @property
    def environment_url(self) -> str:
        return self.job.environment_url

    @property
    def summary(self) -> str:
        """The run's summary page: every job's step summaries, in the order the jobs ran."""
        return "".join(leg.summary for legs in self.jobs.values() for leg in legs)

    @property
    def log(self) -> str:
        return "".join(
            f"=== {key} {leg.context['matrix'] or ''}\n{leg.log}" for key, legs in self.jobs.items() for leg in legs
        )

    def outputs(self, step_id: str) -> dict[str, str]:
        return self.job.outputs(step_id)


def expand_matrix(matrix: Any) -> list[dict[str, Any]]:
    """strategy.matrix as GitHub expands it, for the shapes the examples use: vectors (a product), or `include`
    alone (one leg per entry)."""
    assert isinstance(matrix, dict), f"strategy.matrix is no object: {matrix!r}"
    include = matrix.get("include") or []
    vectors = {key: value for key, value in matrix.items() if key not in ("include", "exclude")}
    assert not (vectors and include) and "exclude" not in matrix, "the harness expands vectors or include, not both"
    if include:
        return [dict(entry) for entry in include]
    legs: list[dict[str, Any]] = [{}]
    for key, values in vectors.items():
        legs = [{**leg, key: value} for leg in legs for value in values]
    return legs if vectors else []


def run_workflow(
    world: World,
    workflow: Path,
    *,
    event_name: str,
    ref: str,
    inputs: Mapping[str, str] | None = None,
    payload: Mapping[str, Any] | None = None,
) -> WorkflowRun:
    """Every job of the workflow, for an event its `on:` accepts, each on a fresh runner, in the order `needs`
    allows (a matrix job's legs one after another). `payload` adds to the event (a push's `before`)."""
    document = yaml.safe_load(workflow.read_text())
    triggers = document.get(True, document.get("on"))  # YAML 1.1 reads the key `on` as true
    assert event_name in triggers, f"{workflow.name} does not run on {event_name}"
    given = dict(inputs or {})
    if event_name == "workflow_dispatch":
        declared = (triggers["workflow_dispatch"] or {}).get("inputs") or {}
        assert set(given) <= set(declared), f"{workflow.name} declares no inputs {sorted(set(given) - set(declared))}"
        given = {name: given.get(name, str(spec.get("default", ""))) for name, spec in declared.items()}
        assert all(given[n] for n, s in declared.items() if s.get("required")), "a required input is empty"
    elif event_name == "pull_request":  # GitHub runs it for the activity types `types:` lists (or its default three)
        types = (triggers["pull_request"] or {}).get("types") or ["opened", "synchronize", "reopened"]
        assert (payload or {}).get("action") in types, f"{workflow.name} ignores a pull request's {payload!r}"
    elif event_name == "push":
        patterns = (triggers["push"] or {}).get("tags" if ref.startswith("refs/tags/") else "branches") or []
        name = ref.split("/", 2)[2]
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), f"{workflow.name} ignores {ref}"
    specs: dict[str, Any] = document["jobs"]
    several_jobs = len(specs) > 1
    run_id = next(world.runs)
    ran: dict[str, list[Job]] = {}
    results: dict[str, str] = {}
    needs_context: dict[str, Any] = {}
    while len(results) < len(specs):
        ready = [
            key for key, spec in specs.items() if key not in results and all(need in results for need in _needs(spec))
        ]
        assert ready, f"jobs whose needs never finish: {sorted(set(specs) - set(results))}"
        key = ready[0]
        spec = specs[key]
        needed = {need: needs_context[need] for need in _needs(spec)}
        context = {
            "github": {
                "event_name": event_name,
                "ref": ref,
                "repository": REPOSITORY,
                "event": {**dict(payload or {})},
            },
            "inputs": given,
            "vars": world.vars,
            "needs": needed,
        }
        all_succeeded = all(needs_context[need]["result"] == "success" for need in needed)
        if not condition(spec.get("if"), context, failed=not all_succeeded):
            results[key], ran[key] = "skipped", []
            needs_context[key] = {"result": "skipped", "outputs": {}}
            continue

        def make(matrix: Mapping[str, Any] | None, key: str = key, spec: Any = spec, needed: Any = needed) -> Job:
            return Job(
                world,
                event_name=event_name,
                ref=ref,
                inputs=given,
                workflow=document,
                job=spec,
                run_id=run_id,
                name=key if several_jobs else "",
                payload=payload,
                needs=needed,
                matrix=matrix,
                workflow_file=workflow.name,
            )

        strategy = spec.get("strategy") or {}
        legs: list[Job] = []
        if "matrix" in strategy:
            probe = make(None)  # the contexts a matrix expression may read (needs, inputs, vars, github)
            combinations = expand_matrix(evaluate(strategy["matrix"], probe.context))
            assert combinations, f"job {key}: the matrix has no legs (GitHub fails such a job: guard it with if:)"
            legs = [make(combination) for combination in combinations]
        else:
            legs = [make(None)]
        outputs: dict[str, str] = {}
        for leg in legs:
            leg.runs_on = evaluate(spec["runs-on"], leg.context)
            assert leg.runs_on and isinstance(leg.runs_on, (str, list)), f"job {key}: runs-on is {leg.runs_on!r}"
            leg.place_on(leg.runs_on)
            leg.concurrency = evaluate(spec.get("concurrency"), leg.context)
            leg.run_steps(spec["steps"])
            environment = spec.get("environment") or {}
            if isinstance(environment, dict):
                leg.environment_url = interpolate(environment.get("url", ""), leg.context)
            # A matrix job's outputs: what its legs set, the later over the earlier (GitHub keeps one leg's value).
            outputs |= {name: interpolate(value, leg.context) for name, value in (spec.get("outputs") or {}).items()}
        ran[key] = legs
        results[key] = "failure" if any(leg.failed for leg in legs) else "success"
        needs_context[key] = {"result": results[key], "outputs": outputs}
    return WorkflowRun(ran, results)


def _needs(spec: Mapping[str, Any]) -> list[str]:
    needs = spec.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)


# -- the fake Azure as a process ---------------------------------------------------------------------------------


class FakeAzureProcess:
    """tests/fakes/serve.py, started the way the self-test workflow starts it."""

    def __init__(self, directory: Path, provisioning_delay: float = 0.5, *, empty: bool = False) -> None:
        self.directory = directory
        serve = [sys.executable, str(ROOT / "tests" / "fakes" / "serve.py"), "--dir", str(directory)]
        serve += ["--empty"] if empty else []  # no resource group or environment yet
        self.process = subprocess.Popen([*serve, "--provisioning-delay", str(provisioning_delay)])
        for _ in range(100):
            if (directory / "env").exists() or self.process.poll() is not None:
                break
            time.sleep(0.1)
        assert (directory / "env").exists(), "the fake Azure did not start"
        self.env = read_file_command(directory / "env")
        # The fake's bundle is its CA plus certifi's; a machine whose way to PyPI passes a TLS-intercepting proxy
        # trusts that proxy in its own store (SSL_CERT_FILE), so the install step's pip needs that store too.
        system = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
        if system.is_file():
            bundle = directory / "ca-bundle-with-system.pem"
            bundle.write_text(Path(self.env["REQUESTS_CA_BUNDLE"]).read_text().rstrip() + "\n" + system.read_text())
            self.env["REQUESTS_CA_BUNDLE"] = str(bundle)
        self.env_lines = "".join(f"{key}={value}\n" for key, value in self.env.items())

    def stop(self) -> dict[str, Any]:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        return dict(json.loads((self.directory / "report.json").read_text()))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
