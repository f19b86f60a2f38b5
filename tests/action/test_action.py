"""The Action: metadata and workflows valid against the published schemas, inputs only through
env:, and the composite's run step executed the way the runner does (env mapping, GITHUB_OUTPUT,
GITHUB_STEP_SUMMARY, working directory)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentdeploy.github import ActionInputs
from testkit import ROOT, http_get

ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
WORKFLOWS = sorted([*ROOT.glob("examples/workflows/*.yml"), *ROOT.glob(".github/workflows/*.yml")])
CHECK_JSONSCHEMA = str(Path(sys.executable).with_name("check-jsonschema"))


def test_action_metadata_validates_against_the_published_schema() -> None:
    result = subprocess.run(
        [CHECK_JSONSCHEMA, "--builtin-schema", "vendor.github-actions", str(ROOT / "action.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_validate_against_the_published_schema(workflow: Path) -> None:
    result = subprocess.run(
        [CHECK_JSONSCHEMA, "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def all_steps() -> list[tuple[str, dict[str, Any]]]:
    steps = [("action.yml", step) for step in ACTION["runs"]["steps"]]
    for workflow in WORKFLOWS:
        for job in (yaml.safe_load(workflow.read_text())["jobs"] or {}).values():
            steps.extend((workflow.name, step) for step in job.get("steps") or [])
    return steps


def test_no_run_step_interpolates_inputs() -> None:
    offenders = [
        (where, step.get("name"))
        for where, step in all_steps()
        if "run" in step and re.search(r"\$\{\{[^}]*\b(inputs|github\.event)\.", step["run"])
    ]
    assert offenders == []


def test_every_input_says_when_it_is_required_and_gives_an_example() -> None:
    for name, spec in ACTION["inputs"].items():
        description = spec["description"]
        assert "Example:" in description, name
        assert "Required" in description or "Optional" in description, name
        assert "${{" not in description, name


def run_step() -> dict[str, Any]:
    return next(step for step in ACTION["runs"]["steps"] if step.get("id") == "run")


def test_every_input_reaches_python_through_env() -> None:
    from agentdeploy.github import CREDENTIAL_INPUTS

    env = run_step()["env"]
    mapped = {re.fullmatch(r"\$\{\{ inputs\.([a-z-]+) \}\}", value).group(1) for value in env.values()}  # type: ignore[union-attr]
    assert mapped == set(ACTION["inputs"])
    given = {
        "AGENTDEPLOY_COMMAND": "rollback",
        "AGENTDEPLOY_CONFIG": "agents/a/agent.yaml",
        "AGENTDEPLOY_ENVIRONMENT": "production",
        "AGENTDEPLOY_ROLLBACK_TO": "v1.2.0",
        "AGENTDEPLOY_TARGET": "azure",
        "AGENTDEPLOY_STATE": "artifact",
        "AGENTDEPLOY_DRY_RUN": "true",
        "AGENTDEPLOY_FORCE": "true",
        "AGENTDEPLOY_FAIL_ON_DRIFT": "true",
        "AGENTDEPLOY_CONFIRM_DESTROY": "true",
        "AGENTDEPLOY_HEALTH_TIMEOUT": "30",
    }
    assert set(env) == {*given, *CREDENTIAL_INPUTS, "GITHUB_TOKEN"}  # nothing mapped that Python ignores
    assert ActionInputs.from_env(given) == ActionInputs(
        command="rollback",
        config="agents/a/agent.yaml",
        to="v1.2.0",
        target="azure",
        dry_run=True,
        force=True,
        fail_on_drift=True,
        confirm_destroy=True,
        health_timeout=30.0,
        environment="production",
        state="artifact",
    )
    defaults = {
        f"AGENTDEPLOY_{k.upper().replace('-', '_')}": str(v.get("default", "")) for k, v in ACTION["inputs"].items()
    }
    assert ActionInputs.from_env(defaults).command == "deploy"


class Runner:
    """Runs the composite's `run` step like the runner: env evaluated from inputs, files for outputs."""

    def __init__(self, workspace: Path, tmp: Path) -> None:
        self.workspace = workspace
        self.temp = tmp / "runner-temp"
        venv_bin = self.temp / "agentdeploy-venv" / "bin"
        venv_bin.mkdir(parents=True)
        # Stands in for what the install step made: this test run's interpreter and packages.
        wrapper = venv_bin / "python"
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        wrapper.chmod(0o755)
        self.extra_env: dict[str, str] = {}
        self.output = tmp / "github_output"
        self.summary = tmp / "step_summary"

    def run(self, inputs: dict[str, str]) -> subprocess.CompletedProcess[str]:
        self.output.write_text("")
        self.summary.write_text("")
        values = {name: str(spec.get("default", "")) for name, spec in ACTION["inputs"].items()}
        values.update(inputs)
        values["github-token"] = "ghs_fake_workflow_token_123"

        def evaluate(template: str) -> str:
            return re.sub(r"\$\{\{ inputs\.([a-z-]+) \}\}", lambda m: values[m.group(1)], template)

        step = run_step()
        env = {key: value for key, value in os.environ.items() if not key.startswith(("AGENTDEPLOY_", "GITHUB_"))}
        env.update({key: evaluate(value) for key, value in step["env"].items()})
        env.update(
            GITHUB_OUTPUT=str(self.output),
            GITHUB_STEP_SUMMARY=str(self.summary),
            RUNNER_TEMP=str(self.temp),
            GITHUB_ACTIONS="true",
            GITHUB_WORKSPACE=str(self.workspace),
        )
        env.update(self.extra_env)
        return subprocess.run(
            [step["shell"], "-c", step["run"]],
            cwd=self.workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def outputs(self) -> dict[str, str]:
        text = self.output.read_text()
        # name<<DELIMITER / value / DELIMITER, the delimiter random per output
        return {name: value for name, _, value in re.findall(r"^([a-z-]+)<<(\S+)\n(.*?)\n\2$", text, re.M | re.S)}


@pytest.fixture
def workspace(tmp_path: Path, base_image: str, free_port: Any, docker_client: Any) -> Any:
    project = tmp_path / "workspace"
    shutil.copytree(ROOT / "examples" / "hello-agent", project / "agents" / "hello")
    config = project / "agents" / "hello" / "agent.yaml"
    port = free_port()
    config.write_text(
        config.read_text().replace("port: 8080", f"port: {port}")
        + f"  build:\n    base_image: {base_image}\n  target:\n    docker: {{container_name: action-it-{port}}}\n"
    )
    yield project, config, port
    for name in (f"action-it-{port}", f"action-it-{port}-previous"):
        with contextlib.suppress(Exception):
            docker_client.containers.get(name).remove(force=True)


@pytest.mark.docker
def test_composite_step_deploys_and_publishes_outputs_and_summary(workspace: Any, tmp_path: Path) -> None:
    project, _, port = workspace
    runner = Runner(project, tmp_path)
    result = runner.run({"config": "agents/hello/agent.yaml", "target": "docker", "registry-password": "pw-not-used-9"})
    assert result.returncode == 0, result.stdout + result.stderr
    outputs = runner.outputs()
    assert outputs["status"] == "succeeded"
    assert outputs["url"] == f"http://127.0.0.1:{port}"
    assert outputs["image"].startswith("sha256:") and outputs["digest"] == outputs["image"]
    assert outputs["state-file"].endswith(".agentdeploy/hello-agent.local.json")
    assert http_get(outputs["url"] + "/health")[0] == 200
    stdout = result.stdout
    assert "::add-mask::pw-not-used-9" in stdout and "::add-mask::ghs_fake_workflow_token_123" in stdout
    assert stdout.index("::add-mask::pw-not-used-9") < stdout.index("::group::")
    assert "::group::image: build, push, verify" in stdout and "::endgroup::" in stdout
    token = re.search(r"^::stop-commands::([0-9a-f]{32})$", stdout, re.M)
    assert token and f"\n::{token.group(1)}::\n" in stdout
    build_log = stdout[stdout.index(token.group(0)) : stdout.index(f"::{token.group(1)}::")]
    assert "Step 1/" in build_log  # the docker output sits inside the stop-commands block
    summary = runner.summary.read_text()
    assert "### agentdeploy deploy" in summary and f"| URL | http://127.0.0.1:{port} |" in summary
    again = runner.run({"config": "agents/hello/agent.yaml", "target": "docker"})
    assert again.returncode == 0 and runner.outputs()["status"] == "unchanged"


def test_bad_config_fails_with_an_annotation(tmp_path: Path) -> None:
    project = tmp_path / "workspace"
    project.mkdir()
    (project / "agent.yaml").write_text("name: x\nmodel: {}\ninstructions: {inline: hi}\ndeployment:\n  prot: rest\n")
    runner = Runner(project, tmp_path)
    result = runner.run({})
    assert result.returncode == 3
    assert re.search(
        r"^::error title=deployment\.prot,file=agent\.yaml,line=5,endLine=5,col=3,endColumn=3::unknown key 'prot'",
        result.stdout,
        re.M,
    ), result.stdout
    assert runner.outputs()["status"] == "failed"


def test_shell_metacharacters_in_an_input_run_nothing(tmp_path: Path) -> None:
    project = tmp_path / "workspace"
    project.mkdir()
    marker = tmp_path / "pwned"
    runner = Runner(project, tmp_path)
    hostile = f'agent.yaml"; touch {marker}; echo "$(touch {marker})`touch {marker}`'
    result = runner.run({"config": hostile})
    assert not marker.exists()
    assert result.returncode == 3
    assert "does not exist" in result.stdout


def test_state_commit_is_refused_clearly(tmp_path: Path) -> None:
    runner = Runner(tmp_path, tmp_path)
    result = runner.run({"state": "commit"})
    assert result.returncode == 2 and "state: commit is not available in this version" in result.stdout


class FakeGitHubApi:
    """GitHub's artifact REST endpoints on 127.0.0.1, serving zips it was given."""

    def __init__(self, token: str) -> None:
        import http.server
        import threading

        self.token = token
        self.artifacts: list[dict[str, Any]] = []
        self.zips: dict[int, bytes] = {}
        self.requests: list[str] = []
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.requests.append(self.path)
                if self.headers.get("Authorization") != f"Bearer {api.token}":
                    self._send(401, b'{"message": "Bad credentials"}')
                elif self.path.startswith("/repos/org/agents/actions/artifacts?"):
                    from urllib.parse import parse_qs, urlparse

                    wanted = parse_qs(urlparse(self.path).query)["name"][0]
                    listed = [a for a in api.artifacts if a["name"] == wanted]
                    self._send(200, json.dumps({"total_count": len(listed), "artifacts": listed}).encode())
                elif self.path.startswith("/zip/"):
                    self._send(200, api.zips[int(self.path.rsplit("/", 1)[1])], "application/zip")
                else:
                    self._send(404, b"{}")

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

    def add(self, artifact_id: int, name: str, created: str, payload: dict[str, Any], *, expired: bool = False) -> None:
        import io
        import zipfile

        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as bundle:
            bundle.writestr("hello-agent.local.json", json.dumps(payload))
        self.zips[artifact_id] = buffer.getvalue()
        self.artifacts.append(
            {
                "id": artifact_id,
                "name": name,
                "created_at": created,
                "expired": expired,
                "archive_download_url": f"{self.url}/zip/{artifact_id}",
            }
        )


def test_a_later_run_restores_the_newest_state_artifact(tmp_path: Path) -> None:
    from agentdeploy.artifacts import fetch_state_artifact

    api = FakeGitHubApi("ghs_token")
    name = "agentdeploy-state-hello-agent-local"
    api.add(1, name, "2026-11-01T10:00:00Z", {"schema_version": 1, "current": {"tag": "old"}})
    api.add(2, name, "2026-11-20T10:00:00Z", {"schema_version": 1, "current": {"tag": "newest"}})
    api.add(3, name, "2026-11-22T10:00:00Z", {"schema_version": 1, "current": {"tag": "expired"}}, expired=True)
    api.add(4, "agentdeploy-state-other-agent-local", "2026-11-23T10:00:00Z", {"current": {"tag": "other"}})
    destination = tmp_path / ".agentdeploy" / "hello-agent.local.json"
    found = fetch_state_artifact(
        api_url=api.url, repository="org/agents", token="ghs_token", name=name, destination=destination
    )
    assert found and json.loads(destination.read_text())["current"]["tag"] == "newest"
    assert not fetch_state_artifact(
        api_url=api.url,
        repository="org/agents",
        token="ghs_token",
        name="agentdeploy-state-nobody-local",
        destination=tmp_path / "x.json",
    )
    from agentdeploy.errors import StateError

    with pytest.raises(StateError) as exc:
        fetch_state_artifact(
            api_url=api.url, repository="org/agents", token="wrong", name=name, destination=tmp_path / "y.json"
        )
    assert "actions: read" in (exc.value.hint or "")


@pytest.mark.docker
def test_status_run_with_state_artifact_uses_the_earlier_record(workspace: Any, tmp_path: Path) -> None:
    project, config, _ = workspace
    api = FakeGitHubApi("ghs_fake_workflow_token_123")
    record = {
        "action": "deploy",
        "status": "succeeded",
        "started_at": "t",
        "tag": "v7",
        "image": "sha256:abc",
        "url": "http://127.0.0.1:1",
    }
    api.add(
        9,
        "agentdeploy-state-hello-agent-local",
        "2026-11-20T10:00:00Z",
        {"schema_version": 1, "agent": "hello-agent", "current": record, "history": [record]},
    )
    runner = Runner(project, tmp_path)
    runner.extra_env = {"GITHUB_API_URL": api.url, "GITHUB_REPOSITORY": "org/agents"}
    result = runner.run({"config": "agents/hello/agent.yaml", "command": "status", "state": "artifact"})
    assert result.returncode == 0, result.stdout
    assert "state: restored from artifact agentdeploy-state-hello-agent-local" in result.stdout
    outputs = runner.outputs()
    assert (outputs["image"], outputs["state-artifact"]) == ("sha256:abc", "agentdeploy-state-hello-agent-local")
    assert (config.parent / ".agentdeploy" / "hello-agent.local.json").exists()
