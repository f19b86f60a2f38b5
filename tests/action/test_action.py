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
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from action.harness import Artifacts
from agentdeploy.errors import ExitCode
from agentdeploy.github.inputs import ActionInputs
from testkit import ROOT, git, http_get, offline_agent_env

ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
WORKFLOWS = sorted([*ROOT.glob("examples/workflows/*.yml"), *ROOT.glob(".github/workflows/*.yml")])
CHECK_JSONSCHEMA = str(Path(sys.executable).with_name("check-jsonschema"))
ACTIONLINT = str(Path(sys.executable).with_name("actionlint"))  # from the test extras (pyproject.toml)


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_action_metadata_validates_against_the_published_schema() -> None:
    result = subprocess.run(
        [CHECK_JSONSCHEMA, "--builtin-schema", "vendor.github-actions", str(ROOT / "action.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# What the Marketplace's publish form accepts (GitHub's docs, "Publishing actions in GitHub Marketplace" and the
# metadata syntax's `branding`): a name no GitHub user, organization (a login has no spaces) or category has, a
# description under 125 characters ("Description must be less than 125 characters"), and branding in one of nine
# colours with a Feather icon GitHub supports (the list the schema above enforces).
MARKETPLACE_COLORS = {"white", "black", "yellow", "blue", "green", "orange", "red", "purple", "gray-dark"}
MARKETPLACE_OMITTED_ICONS = {
    *("coffee", "columns", "divide-circle", "divide-square", "divide", "frown", "hexagon"),
    *("key", "meh", "mouse-pointer", "smile", "tool", "x-octagon"),
}
MARKETPLACE_CATEGORIES = {
    *("api management", "chat", "code quality", "code review", "continuous integration", "dependency management"),
    *("deployment", "ides", "learning", "localization", "mobile", "monitoring", "project management"),
    *("publishing", "security", "support", "testing", "utilities"),
}


def test_action_metadata_is_what_the_marketplace_accepts() -> None:
    name, description, branding = ACTION["name"], ACTION["description"], ACTION["branding"]
    assert isinstance(name, str) and name == name.strip() and " " in name, "a one-word name can be someone's login"
    assert name.lower() not in MARKETPLACE_CATEGORIES
    assert isinstance(description, str) and "\n" not in description.strip()
    assert len(description) < 125, f"{len(description)} characters: the Marketplace takes fewer than 125"
    assert set(branding) == {"icon", "color"}  # the badge next to the name: both or the Marketplace shows none
    assert branding["color"] in MARKETPLACE_COLORS
    assert branding["icon"] not in MARKETPLACE_OMITTED_ICONS


def test_the_schema_knows_the_marketplace_branding_rules() -> None:
    """The vendored schema enforces the branding lists: the colours are the documented nine, and no icon GitHub
    omits is allowed (so a schema update that loosened them would fail here, not on the publish form)."""
    import check_jsonschema

    schema_file = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "github-actions.json"
    branding = json.loads(schema_file.read_text())["properties"]["branding"]["properties"]
    assert set(branding["color"]["enum"]) == MARKETPLACE_COLORS
    icons = set(branding["icon"]["enum"])
    assert ACTION["branding"]["icon"] in icons
    assert not icons & MARKETPLACE_OMITTED_ICONS


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=_relative)
def test_workflows_pass_actionlint(workflow: Path) -> None:
    result = subprocess.run([ACTIONLINT, str(workflow)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_refuses_a_broken_workflow(tmp_path: Path) -> None:
    """The linter .ci/run runs catches what the schema cannot: an output of a step that does not exist, and an
    action on a runtime GitHub retired."""
    workflow = tmp_path / "broken.yml"
    workflow.write_text(
        "on: push\n"
        "jobs:\n"
        "  build:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - uses: actions/checkout@v3\n"
        "      - id: first\n"
        "        run: echo ok\n"
        "      - run: echo ${{ steps.frist.outputs.value }}\n"
    )
    schema_check = [CHECK_JSONSCHEMA, "--builtin-schema", "vendor.github-workflows", str(workflow)]
    schema = subprocess.run(schema_check, capture_output=True, check=False)
    assert schema.returncode == 0  # valid to the schema
    result = subprocess.run([ACTIONLINT, "-shellcheck=", str(workflow)], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    findings = re.findall(r"^\S+broken\.yml:(\d+):\d+: .*\[(\S+)\]$", result.stdout, re.M)
    assert sorted(findings) == [("6", "action"), ("9", "expression")], result.stdout


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=_relative)
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


@pytest.mark.parametrize(
    ("python3", "found"),
    [
        ('exec "{python}" "$@"', "true"),  # this interpreter (3.11 or newer)
        ('case "$*" in *version_info*) exit 1;; esac; exec "{python}" "$@"', "false"),  # too old
        (None, "false"),  # none on PATH
    ],
)
def test_the_python_step_decides_whether_setup_python_runs(tmp_path: Path, python3: str | None, found: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if python3 is not None:
        shim = bin_dir / "python3"
        shim.write_text("#!/bin/sh\n" + python3.format(python=sys.executable) + "\n")
        shim.chmod(0o755)
    runner = Runner(tmp_path, tmp_path)
    runner.path = str(bin_dir)  # only the shim (or nothing) answers to python3
    step = next(s for s in ACTION["runs"]["steps"] if s.get("id") == "python")
    assert step["run"].count("python3") == 2
    result = runner.run({}, step_id="python")
    assert result.returncode == 0, result.stderr
    assert runner.output.read_text() == f"found={found}\n"
    setup = next(s for s in ACTION["runs"]["steps"] if str(s.get("uses", "")).startswith("actions/setup-python@"))
    assert setup["if"] == "steps.python.outputs.found != 'true'"


def _uses_agentdeploy(step: dict[str, Any]) -> bool:
    return step.get("uses") == "./" or str(step.get("uses", "")).startswith("your-org/agentdeploy@")


def test_the_examples_pin_the_action_to_its_major_tag_as_the_readme_does() -> None:
    """Every example, and the README's own snippet, takes the action at the major tag the release moves (`@v1`),
    never a branch or a fixed release a copy would be stuck on."""
    readme = (ROOT / "README.md").read_text()
    snippets = "\n".join(re.findall(r"```yaml\n(.*?)```", readme, re.S))
    in_readme = set(re.findall(r"uses: (your-org/agentdeploy@\S+)", snippets))
    in_examples = {
        str(step["uses"])
        for workflow in sorted(ROOT.glob("examples/workflows/*.yml"))
        for job in yaml.safe_load(workflow.read_text())["jobs"].values()
        for step in job.get("steps") or []
        if str(step.get("uses", "")).startswith("your-org/agentdeploy@")
    }
    assert in_examples == in_readme == {"your-org/agentdeploy@v1"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=_relative)
def test_workflows_ask_for_exactly_the_permissions_their_state_mode_needs(workflow: Path) -> None:
    document = yaml.safe_load(workflow.read_text())
    for job in document["jobs"].values():
        steps = job.get("steps") or []  # a job that calls a reusable workflow has none
        modes = {(step.get("with") or {}).get("state", "none") for step in steps if _uses_agentdeploy(step)}
        if not modes:
            continue
        permissions = job.get("permissions", document.get("permissions"))
        assert isinstance(permissions, dict), f"{workflow.name}: set permissions explicitly"
        assert (permissions.get("contents") == "write") == ("commit" in modes), workflow.name
        assert (permissions.get("actions") == "read") == ("artifact" in modes), workflow.name


def test_every_input_says_when_it_is_required_and_gives_an_example() -> None:
    for name, spec in ACTION["inputs"].items():
        description = spec["description"]
        assert "Example:" in description, name
        assert "Required" in description or "Optional" in description, name
        assert "${{" not in description, name


def run_step() -> dict[str, Any]:
    return next(step for step in ACTION["runs"]["steps"] if step.get("id") == "run")


def test_every_input_reaches_python_through_env() -> None:
    from agentdeploy.github.inputs import CREDENTIAL_INPUTS

    env = run_step()["env"]
    mapped = {re.fullmatch(r"\$\{\{ inputs\.([a-z-]+) \}\}", value).group(1) for value in env.values()}  # type: ignore[union-attr]
    assert mapped == set(ACTION["inputs"])
    given = {
        "AGENTDEPLOY_COMMAND": "rollback",
        "AGENTDEPLOY_CONFIG": "agents/a/agent.yaml",
        "AGENTDEPLOY_ENVIRONMENT": "production",
        "AGENTDEPLOY_ROLLBACK_TO": "v1.2.0",
        "AGENTDEPLOY_TARGET": "azure",
        "AGENTDEPLOY_STATE": "commit",
        "AGENTDEPLOY_STATE_BRANCH": "deployments",
        "AGENTDEPLOY_STATE_WORKFLOWS": "release.yml rollback.yml",
        "AGENTDEPLOY_DRY_RUN": "true",
        "AGENTDEPLOY_FORCE": "true",
        "AGENTDEPLOY_FAIL_ON_DRIFT": "true",
        "AGENTDEPLOY_PULL": "true",
        "AGENTDEPLOY_MOVE_TAG": "true",
        "AGENTDEPLOY_REQUIRE_ATTESTATION": "true",
        "AGENTDEPLOY_CONFIRM_DESTROY": "true",
        "AGENTDEPLOY_HEALTH_TIMEOUT": "30",
        "AGENTDEPLOY_SINCE": "main",
        "AGENTDEPLOY_PARALLEL": "2",
        "AGENTDEPLOY_PREVIEW_NAME": "pr-7",
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
        pull=True,
        move_tag=True,
        require_attestation=True,
        confirm_destroy=True,
        health_timeout=30.0,
        environment="production",
        state="commit",
        state_branch="deployments",
        state_workflows="release.yml rollback.yml",
        since="main",
        parallel=2,
        preview_name="pr-7",
    )
    defaults = {
        f"AGENTDEPLOY_{k.upper().replace('-', '_')}": str(v.get("default", "")) for k, v in ACTION["inputs"].items()
    }
    assert ActionInputs.from_env(defaults).command == "deploy"


def read_file_command(path: Path) -> dict[str, str]:
    """GITHUB_OUTPUT and GITHUB_ENV share one format: NAME=value lines, or NAME<<DELIMITER / value / DELIMITER
    blocks (the toolkit's delimiter is random per value)."""
    block = re.compile(r"^([\w-]+)<<(\S+)\n(.*?)\n\2$", re.M | re.S)
    text = path.read_text()
    found = {name: value for name, _, value in block.findall(text)}
    found.update(line.split("=", 1) for line in block.sub("", text).splitlines() if "=" in line)
    return found


class Runner:
    """Runs the composite's run steps like the runner: env evaluated from inputs, GITHUB_ENV lines written by
    earlier steps applied to later ones (step env: wins over them), files for outputs and the summary."""

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
        self.github_env = tmp / "github_env"
        self.github_env.touch()  # a step before this one (the fake Azure) may have written to it
        self.path = os.environ["PATH"]

    def job_env(self) -> dict[str, str]:
        """What steps appended to GITHUB_ENV."""
        return read_file_command(self.github_env)

    def run(self, inputs: dict[str, str], step_id: str = "run") -> subprocess.CompletedProcess[str]:
        self.output.write_text("")
        self.summary.write_text("")
        values = {name: str(spec.get("default", "")) for name, spec in ACTION["inputs"].items()}
        values.update(inputs)
        values["github-token"] = "ghs_fake_workflow_token_123"

        def evaluate(template: str) -> str:
            return re.sub(r"\$\{\{ inputs\.([a-z-]+) \}\}", lambda m: values[m.group(1)], template)

        step = next(step for step in ACTION["runs"]["steps"] if step.get("id") == step_id)
        env = {key: value for key, value in os.environ.items() if not key.startswith(("AGENTDEPLOY_", "GITHUB_"))}
        env["PATH"] = self.path
        env.update(self.job_env())
        env.update({key: evaluate(value) for key, value in (step.get("env") or {}).items()})
        env.update(
            GITHUB_ENV=str(self.github_env),
            GITHUB_OUTPUT=str(self.output),
            GITHUB_STEP_SUMMARY=str(self.summary),
            RUNNER_TEMP=str(self.temp),
            GITHUB_ACTIONS="true",
            GITHUB_WORKSPACE=str(self.workspace),
        )
        env.update(self.extra_env)
        return subprocess.run(
            [shutil.which(step["shell"]) or step["shell"], "-c", step["run"]],
            cwd=self.workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def outputs(self) -> dict[str, str]:
        return read_file_command(self.output)


@pytest.fixture
def workspace(
    tmp_path: Path,
    real_base: str,
    fake_llm: Any,
    free_port: Any,
    docker_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """The hello example as a user copies it, run by the real HoloDeck runtime against the fake model (its
    verify turn included); the workflow's secret reaches the step through the job's environment."""
    project = tmp_path / "workspace"
    # A user who ran the example has .agentdeploy/ in it: the test starts from the example, not their record.
    shutil.copytree(
        ROOT / "examples" / "hello-agent", project / "agents" / "hello", ignore=shutil.ignore_patterns(".agentdeploy")
    )
    config = project / "agents" / "hello" / "agent.yaml"
    port = free_port()
    data = yaml.safe_load(config.read_text())
    data["deployment"]["port"] = port
    data["deployment"]["environment"].update(offline_agent_env(fake_llm.base_url))
    data["deployment"]["build"] = {"base_image": real_base}
    data["deployment"]["target"] = {"docker": {"container_name": f"action-it-{port}"}}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-action-test-0123456789")
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
    # Not pushed: no manifest digest to give; the image is named by its local id.
    assert outputs["image"].startswith("sha256:") and outputs["image-id"] == outputs["image"]
    assert outputs["digest"] == ""
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
    (project / "agent.yaml").write_text(
        "name: x\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {inline: hi}\ndeployment:\n  prot: rest\n"
    )
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


@pytest.mark.docker
def test_a_tag_push_run_commits_its_record_to_the_default_branch(workspace: Any, tmp_path: Path) -> None:
    project, _, _ = workspace
    # The repository on "GitHub", and the checkout actions/checkout makes for a tag push.
    git(project, "init", "-q", "-b", "main")
    git(project, "add", ".")
    git(project, "commit", "-q", "-m", "hello")
    git(project, "tag", "v1.0.0")
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(project), str(origin))
    shutil.rmtree(project)
    git(tmp_path, "clone", "-q", "--depth=1", "--branch", "v1.0.0", f"file://{origin}", str(project))
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"ref": "refs/tags/v1.0.0", "repository": {"default_branch": "main"}}))
    runner = Runner(project, tmp_path)
    runner.extra_env = {"GITHUB_REF": "refs/tags/v1.0.0", "GITHUB_EVENT_PATH": str(event)}

    result = runner.run({"config": "agents/hello/agent.yaml", "target": "docker", "state": "commit"})

    assert result.returncode == 0, result.stdout + result.stderr
    outputs = runner.outputs()
    tag = outputs["image-tag"]
    assert outputs["status"] == "succeeded" and tag == git(project, "rev-parse", "HEAD")[:7]  # tag_strategy git_sha
    assert outputs["state-commit"] == git(origin, "rev-parse", "main")
    assert git(origin, "log", "-1", "--format=%s", "main") == (
        f"agentdeploy: hello-agent (local) deploy succeeded {tag} [skip ci]"
    )
    recorded = json.loads(git(origin, "show", "main:agents/hello/.agentdeploy/hello-agent.local.json"))
    assert (
        recorded["current"]["image_id"] == outputs["image-id"] and recorded["current"]["git_ref"] == "refs/tags/v1.0.0"
    )
    assert "::group::state to branch main" in result.stdout
    assert git(project, "rev-parse", "--abbrev-ref", "HEAD") == "HEAD"  # still detached at the tag

    # A second run starts from the branch's record: nothing changed, so nothing is deployed or committed.
    shutil.rmtree(project / "agents" / "hello" / ".agentdeploy")
    again = runner.run({"config": "agents/hello/agent.yaml", "target": "docker", "state": "commit"})
    assert again.returncode == 0, again.stdout + again.stderr
    assert "state: read agents/hello/.agentdeploy/hello-agent.local.json from branch main" in again.stdout
    assert runner.outputs()["status"] == "unchanged" and "state-commit" not in runner.outputs()
    assert "::group::state to branch" not in again.stdout  # nothing recorded, so nothing to commit
    assert git(origin, "rev-parse", "main") == outputs["state-commit"]

    # A branch the workflow may not push to: the deployment stands, the run fails with exit 10 and says why.
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'GH006: Protected branch update failed for refs/heads/main.' >&2\nexit 1\n")
    hook.chmod(0o755)
    config = project / "agents" / "hello" / "agent.yaml"
    config.write_text(config.read_text().replace("LOG_LEVEL: info", "LOG_LEVEL: debug"))
    refused = runner.run({"config": "agents/hello/agent.yaml", "target": "docker", "state": "commit"})
    assert refused.returncode == 10, refused.stdout + refused.stderr
    assert runner.outputs()["status"] == "succeeded" and "state-commit" not in runner.outputs()
    annotation = "\n".join(line for line in refused.stdout.splitlines() if line.startswith("::error"))
    assert annotation == (
        "::error title=agentdeploy::the push of the state record to 'main' was refused: "
        "GH006: Protected branch update failed for refs/heads/main.; [remote rejected] (pre-receive hook declined) "
        "(fix: the job needs permissions contents: write and actions/checkout with persist-credentials (the "
        "default); for a protected branch, name another in state-branch)"
    )
    assert git(origin, "rev-parse", "main") == outputs["state-commit"]
    local = json.loads((project / "agents" / "hello" / ".agentdeploy" / "hello-agent.local.json").read_text())
    assert local["current"]["image_id"] == runner.outputs()["image-id"]  # the checkout's copy still has the record


def test_a_later_run_restores_the_newest_state_artifact(tmp_path: Path) -> None:
    from agentdeploy.state.artifact import fetch_state_artifact

    api = Artifacts("ghs_token")
    name = "agentdeploy-state-hello-agent-local"
    trusted = {".github/workflows/release.yml"}
    for run_id, (artifact, created, tag, expired) in enumerate(
        (
            (name, "2026-11-01T10:00:00Z", "old", False),
            (name, "2026-11-20T10:00:00Z", "newest", False),
            (name, "2026-11-22T10:00:00Z", "expired", True),
            ("agentdeploy-state-other-agent-local", "2026-11-23T10:00:00Z", "other", False),
        ),
        start=1,
    ):
        api.add_run(run_id, ref="refs/tags/v1" if tag == "old" else "refs/heads/main")
        payload = json.dumps({"schema_version": 1, "current": {"tag": tag}}).encode()
        api.add(artifact, "hello-agent.local.json", payload, run_id=run_id, created=created, expired=expired)
    api.tags.add("v1")
    destination = tmp_path / ".agentdeploy" / "hello-agent.local.json"
    found = fetch_state_artifact(
        api_url=api.url,
        repository="org/agents",
        token="ghs_token",
        name=name,
        destination=destination,
        workflows=trusted,
    )
    assert found.found is not None and (found.found.run_id, found.found.branch) == (2, "main")
    assert found.skipped == ["artifact 3: expired"]
    assert json.loads(destination.read_text())["current"]["tag"] == "newest"
    nothing = fetch_state_artifact(
        api_url=api.url,
        repository="org/agents",
        token="ghs_token",
        name="agentdeploy-state-nobody-local",
        destination=tmp_path / "x.json",
        workflows=trusted,
    )
    assert nothing.found is None and not (tmp_path / "x.json").exists()
    from agentdeploy.errors import StateError

    with pytest.raises(StateError) as exc:
        fetch_state_artifact(
            api_url=api.url,
            repository="org/agents",
            token="wrong",
            name=name,
            destination=tmp_path / "y.json",
            workflows=trusted,
        )
    assert "actions: read" in (exc.value.hint or "")
    api.close()


def test_only_a_trusted_runs_artifact_is_taken_never_a_forks_newer_one(tmp_path: Path) -> None:
    """The artifacts API lists every run's artifacts, a fork's pull request's included: a newer record from a fork,
    another workflow, a pull request or a feature branch is skipped, and each one says why."""
    from agentdeploy.state.artifact import fetch_state_artifact

    api = Artifacts("ghs_token")
    name = "agentdeploy-state-hello-agent-local"
    runs = [
        (1, {"ref": "refs/tags/v1.0.0"}, "trusted-v1"),
        (2, {"ref": "refs/heads/main", "workflow": "rollback.yml", "event": "workflow_dispatch"}, "trusted-rollback"),
        (3, {"ref": "refs/heads/feature", "event": "push"}, "feature-branch"),
        (4, {"ref": "refs/heads/main", "workflow": "ci.yml"}, "other-workflow"),
        (5, {"ref": "refs/heads/main", "event": "pull_request"}, "same-repo-pull-request"),
        (6, {"ref": "refs/heads/main", "event": "pull_request", "fork": True}, "fork"),
    ]
    api.tags.add("v1.0.0")
    for run_id, run, tag in runs:
        api.add_run(run_id, **run)
        record = {"action": "deploy", "status": "succeeded", "started_at": "t", "tag": tag}
        payload = json.dumps({"schema_version": 1, "current": record, "history": [record]}).encode()
        api.add(name, "hello-agent.local.json", payload, run_id=run_id, created=f"2026-11-0{run_id}T10:00:00Z")

    def fetch(workflows: set[str]) -> Any:
        destination = tmp_path / "-".join(sorted(w.rsplit("/", 1)[1] for w in workflows)) / "state.json"
        found = fetch_state_artifact(
            api_url=api.url,
            repository="org/agents",
            token="ghs_token",
            name=name,
            destination=destination,
            workflows=workflows,
        )
        return found, (json.loads(destination.read_text())["current"]["tag"] if destination.exists() else None)

    both = {".github/workflows/release.yml", ".github/workflows/rollback.yml"}
    found, tag = fetch(both)
    assert tag == "trusted-rollback" and found.found.run_id == 2 and found.found.workflow == "rollback.yml"
    assert found.skipped == [
        "artifact 6: run 6 came from another repository (a fork: head repository 8675309)",
        "artifact 5: run 5 was triggered by pull_request",
        "artifact 4: run 4 is of .github/workflows/ci.yml, not a trusted workflow (release.yml, rollback.yml)",
        "artifact 3: run 3 ran on feature, neither the default branch main nor a tag",
    ]
    found, tag = fetch({".github/workflows/release.yml"})  # only the release workflow's own runs
    assert tag == "trusted-v1" and (found.found.run_id, found.found.branch) == (1, "v1.0.0")
    found, tag = fetch({".github/workflows/promote.yml"})  # none trusted: no state, and every reason
    assert tag is None and found.found is None and len(found.skipped) == 6
    api.close()


@pytest.mark.docker
def test_status_run_with_state_artifact_uses_the_earlier_record(workspace: Any, tmp_path: Path) -> None:
    project, config, _ = workspace
    api = Artifacts()  # the workflow token, repository org/agents
    record = {
        "action": "deploy",
        "status": "succeeded",
        "started_at": "t",
        "tag": "v7",
        "image": "sha256:" + "a" * 64,
        "url": "http://127.0.0.1:1",
    }
    payload = {"schema_version": 1, "agent": "hello-agent", "current": record, "history": [record]}
    api.add_run(7, workflow="release.yml", ref="refs/tags/v7")
    api.tags.add("v7")
    api.add("agentdeploy-state-hello-agent-local", "hello-agent.local.json", json.dumps(payload).encode(), run_id=7)
    runner = Runner(project, tmp_path)
    runner.extra_env = {
        "GITHUB_API_URL": api.url,
        "GITHUB_REPOSITORY": "org/agents",
        "GITHUB_WORKFLOW_REF": "org/agents/.github/workflows/status.yml@refs/heads/main",
    }
    result = runner.run(
        {
            "config": "agents/hello/agent.yaml",
            "command": "status",
            "state": "artifact",
            "state-workflows": "release.yml",
        }
    )
    assert result.returncode == 0, result.stdout
    source = (
        "run 7 (release.yml on v7, push, uploaded 2026-11-30T10:00:01Z) https://github.com/org/agents/actions/runs/7"
    )
    assert f"state: restored from artifact agentdeploy-state-hello-agent-local of {source}" in result.stdout
    assert f"| State | artifact agentdeploy-state-hello-agent-local of {source} |" in runner.summary.read_text()
    outputs = runner.outputs()
    assert (outputs["image"], outputs["state-artifact"]) == (
        "sha256:" + "a" * 64,
        "agentdeploy-state-hello-agent-local",
    )
    assert (config.parent / ".agentdeploy" / "hello-agent.local.json").exists()


@pytest.fixture
def fake_azure(tmp_path: Path) -> Any:
    """tests/fakes/serve.py started the way the self-test workflow starts it, writing to the job's GITHUB_ENV."""
    directory, github_env = tmp_path / "fake-azure", tmp_path / "github_env"
    github_env.write_text("")
    serve = [sys.executable, str(ROOT / "tests" / "fakes" / "serve.py"), "--dir", str(directory)]
    server = subprocess.Popen([*serve, "--github-env", str(github_env), "--provisioning-delay", "0.5"])
    try:
        for _ in range(100):
            if (directory / "env").exists() or server.poll() is not None:
                break
            time.sleep(0.1)
        assert (directory / "env").exists(), "the fake Azure did not start"
        yield lambda: _stop(server, directory)
    finally:
        if server.poll() is None:
            server.kill()


def _stop(server: subprocess.Popen[bytes], directory: Path) -> dict[str, Any]:
    server.terminate()
    server.wait(timeout=30)
    return dict(json.loads((directory / "report.json").read_text()))


@pytest.mark.docker
def test_composite_step_deploys_to_azure_and_reports_the_traffic(
    fake_azure: Any, tmp_path: Path, base_image: str, repository_name: str
) -> None:
    stop = fake_azure
    project = tmp_path / "workspace"
    shutil.copytree(ROOT / "tests" / "action" / "azure-agent", project / "agents" / "selftest")
    config = project / "agents" / "selftest" / "agent.yaml"
    config.write_text(
        config.read_text().replace("repository: selftest/agent", f"repository: {repository_name}")
        + f"  build:\n    base_image: {base_image}\n"
    )
    git(project, "init", "-q", "-b", "main")
    git(project, "add", ".")
    git(project, "commit", "-q", "-m", "agent")
    runner = Runner(project, tmp_path)  # its GITHUB_ENV holds what the fake's start step appended
    env = runner.job_env()
    assert env["AGENTDEPLOY_ARM_ENDPOINT"].startswith("https://127.0.0.1:")
    inputs = {
        "config": "agents/selftest/agent.yaml",
        "environment": "production",
        "azure-client-id": env["FAKE_AZURE_CLIENT_ID"],
        "azure-tenant-id": env["FAKE_AZURE_TENANT_ID"],
        "azure-subscription-id": env["FAKE_AZURE_SUBSCRIPTION_ID"],
    }

    first = runner.run(inputs)
    assert first.returncode == 0, first.stdout + first.stderr
    v1 = runner.outputs()
    assert v1["status"] == "succeeded" and v1["previous-revision"] == ""
    assert v1["image"] == f"127.0.0.1:5000/{repository_name}@{v1['digest']}"
    # <app>--<tag>-<6 hex of the template>; a suffix must start with a letter, so a sha may get an "r"
    assert re.fullmatch(rf"selftest-agent--r?{v1['image-tag']}-[0-9a-f]{{6}}", v1["revision"]), v1["revision"]
    assert v1["url"].startswith("https://selftest-agent.") and v1["url"].endswith(".azurecontainerapps.io")
    summary = runner.summary.read_text()
    assert "### agentdeploy deploy in environment `production`" in summary
    assert f"| Traffic after | {v1['revision']}: 100% (latest) |" in summary

    config.write_text(config.read_text().replace("LOG_LEVEL: info", "LOG_LEVEL: debug"))
    second = runner.run(inputs)
    assert second.returncode == 0, second.stdout + second.stderr
    v2 = runner.outputs()
    assert v2["status"] == "succeeded" and v2["previous-revision"] == v1["revision"]
    assert v2["revision"] != v1["revision"]
    summary = runner.summary.read_text()
    assert f"| Traffic before | {v1['revision']}: 100% (latest) |" in summary
    assert f"| Traffic after | {v2['revision']}: 100% (latest) |" in summary

    status = runner.run({**inputs, "command": "status"})
    assert status.returncode == 0, status.stdout + status.stderr
    assert runner.outputs()["revision"] == v2["revision"] and runner.outputs()["image"] == v2["image"]

    report = stop()
    assert report["server_errors"] == []
    app = report["apps"]["selftest-agent"]
    container = app["properties"]["template"]["containers"][0]
    assert container["image"] == v2["image"]
    assert {"name": "OPENAI_API_KEY", "secretRef": "openai-api-key"} in container["env"]  # a secret, not a value
    assert {"name": "LOG_LEVEL", "value": "debug"} in container["env"]
    writes = [
        r
        for r in report["requests"]
        if r["method"] in ("PUT", "PATCH", "POST", "DELETE") and not r["path"].endswith("/listSecrets")
    ]
    # Create; then one merge patch carrying this run's lease (an ARM tag); then the lease given up.
    assert [w["method"] for w in writes] == ["PUT", "PATCH", "PATCH"]
    assert app["tags"]["agentdeploy-lease"].endswith(";held=0")


def test_the_action_log_is_plain_its_groups_do_not_nest_and_it_reports_stage_timings(
    tmp_path: Path, free_port: Any
) -> None:
    """The composite's run step with the Python it runs swapped for tests/fakes/offline_cli.py (a stand-in
    Docker engine, the process target), so no Docker: the log as a runner shows it, and the timings."""
    project = tmp_path / "workspace"
    project.mkdir()
    (project / "prompt.md").write_text("Be kind.")
    (project / "agent.yaml").write_text(
        "name: toy\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {file: prompt.md}\n"
        f"deployment:\n  port: {free_port()}\n  health: {{timeout_seconds: 5}}\n"
    )
    runner = Runner(project, tmp_path)
    offline = ROOT / "tests" / "fakes" / "offline_cli.py"
    python = runner.temp / "agentdeploy-venv" / "bin" / "python"
    python.write_text(
        f'#!/bin/sh\n[ "$1 $2" = "-m agentdeploy" ] && shift 2\nexec "{sys.executable}" "{offline}" "$@"\n'
    )
    inputs = {"config": "agent.yaml", "target": "process"}
    try:
        result = runner.run(inputs)
        assert result.returncode == 0, result.stdout + result.stderr
        outputs = runner.outputs()
        assert outputs["status"] == "succeeded"
        timings = json.loads(outputs["timings"])
        assert set(timings) == {"deploy", "plan", "image", "pull", "build", "release", "gate"}
        assert timings["deploy"] >= timings["image"] >= timings["build"] > 0
        [row] = [line for line in runner.summary.read_text().splitlines() if line.startswith("| Time |")]
        assert re.fullmatch(
            r"\| Time \| plan \d+\.\ds; image \d+\.\ds \(pull \d+\.\ds, build \d+\.\ds\); "
            r"release \d+\.\ds \(gate \d+\.\ds\); total \d+\.\ds \|",
            row,
        ), row
        log = result.stdout
        assert "\x1b" not in log and "\r" not in log  # a runner's log is no terminal
        depth, groups = 0, []
        for line in log.splitlines():
            if line.startswith("::group::"):
                assert depth == 0, f"a group inside a group: {line}"  # GitHub does not nest them
                depth += 1
                groups.append(line.removeprefix("::group::"))
            elif line == "::endgroup::":
                depth -= 1
        assert depth == 0 and groups == ["plan", "image: build, push, verify", "release to process"]
        token = re.search(r"^::stop-commands::([0-9a-f]{32})$", log, re.M)
        assert token, log
        build_log = log[log.index(token.group(0)) : log.index(f"::{token.group(1)}::")]
        assert "Step 1/4 : FROM agentdeploy-test-base:1\n ---> 3f2a1b0c9d8e\n" in build_log  # whole, not condensed

        # A failed build still reports how long what ran took.
        runner.extra_env = {"FAKE_BUILD_FAIL": "1"}
        failed = runner.run({**inputs, "force": "true"})
        assert failed.returncode == 6, failed.stdout
        outputs = runner.outputs()
        assert outputs["status"] == "failed"
        assert set(json.loads(outputs["timings"])) == {"deploy", "plan", "image", "pull", "build"}
        assert "| Time | plan " in runner.summary.read_text()
    finally:
        runner.extra_env = {}
        runner.run({**inputs, "command": "destroy", "confirm-destroy": "true"})


def test_several_agents_in_one_run_give_a_results_list_a_summary_table_and_the_worst_exit_code(
    tmp_path: Path, free_port: Any
) -> None:
    """`config: agents/*/agent.yaml` (a glob, expanded by agentdeploy) through the composite's run step, with the
    Python it runs swapped for tests/fakes/offline_cli.py (the process target, no Docker): one entry per agent in
    the `results` output, a table in the job summary, the worst exit code; one agent keeps today's outputs too."""
    project = tmp_path / "workspace"
    ports = {name: free_port() for name in ("alpha", "beta", "gamma")}

    def write(name: str, *, unhealthy: bool = False) -> None:
        directory = project / "agents" / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "prompt.md").write_text(f"You are {name}.")
        environment = '{AGENT_UNHEALTHY: "1"}' if unhealthy else "{LOG_LEVEL: info}"
        (directory / "agent.yaml").write_text(
            f"name: {name}\nmodel: {{provider: openai, name: gpt-4o}}\ninstructions: {{file: prompt.md}}\n"
            f"deployment:\n  port: {ports[name]}\n  health: {{timeout_seconds: 3}}\n  environment: {environment}\n"
        )

    for name in ports:
        write(name)
    runner = Runner(project, tmp_path)
    offline = ROOT / "tests" / "fakes" / "offline_cli.py"
    python = runner.temp / "agentdeploy-venv" / "bin" / "python"
    python.write_text(
        f'#!/bin/sh\n[ "$1 $2" = "-m agentdeploy" ] && shift 2\nexec "{sys.executable}" "{offline}" "$@"\n'
    )
    inputs = {"config": "agents/*/agent.yaml", "target": "process"}
    try:
        first = runner.run(inputs)
        assert first.returncode == 0, first.stdout + first.stderr
        outputs = runner.outputs()
        results = json.loads(outputs["results"])
        assert [(r["agent"], r["status"], r["exit_code"]) for r in results] == [
            ("alpha", "succeeded", 0),
            ("beta", "succeeded", 0),
            ("gamma", "succeeded", 0),
        ]
        assert results[1]["url"] == f"http://127.0.0.1:{ports['beta']}" and "deploy" in results[1]["timings"]
        assert "url" not in outputs and "status" not in outputs  # several agents: the list, not one agent's outputs
        assert re.search(r"^\[beta\] ", first.stdout, re.M) and "::group::" not in first.stdout
        summary = runner.summary.read_text()
        assert "### agentdeploy deploy: 3 agents" in summary
        assert f"| alpha | process | **succeeded** | http://127.0.0.1:{ports['alpha']} |" in summary

        write("gamma", unhealthy=True)
        second = runner.run(inputs)
        assert second.returncode == 9, second.stdout
        results = json.loads(runner.outputs()["results"])
        assert [(r["agent"], r["status"], r["exit_code"]) for r in results] == [
            ("alpha", "unchanged", 0),
            ("beta", "unchanged", 0),
            ("gamma", "rolled-back", 9),
        ]
        assert re.search(r"^::error title=agentdeploy::the new version failed its health gate", second.stdout, re.M)
        summary = runner.summary.read_text()
        assert "| gamma | process | **rolled-back (exit 9)** |" in summary
        assert "- **gamma**: `the new version failed its health gate" in summary  # it quotes the agent: as code

        # Several lines of the config input, one of them an agent alone: one agent gives today's outputs as well.
        single = runner.run({"config": "agents/alpha/agent.yaml", "target": "process"})
        assert single.returncode == 0, single.stdout
        outputs = runner.outputs()
        assert outputs["status"] == "unchanged" and outputs["url"] == f"http://127.0.0.1:{ports['alpha']}"
        assert [(r["agent"], r["status"]) for r in json.loads(outputs["results"])] == [("alpha", "unchanged")]
        lines = runner.run({"config": "agents/alpha/agent.yaml\nagents/beta/agent.yaml\n", "target": "process"})
        assert lines.returncode == 0, lines.stdout
        assert [r["agent"] for r in json.loads(runner.outputs()["results"])] == ["alpha", "beta"]
        refused = runner.run({**inputs, "state": "artifact"})
        assert refused.returncode == 2 and "state: artifact keeps one agent's record per run" in refused.stdout
    finally:
        for name in ports:
            runner.run(
                {
                    "config": f"agents/{name}/agent.yaml",
                    "target": "process",
                    "command": "destroy",
                    "confirm-destroy": "true",
                }
            )


def test_several_agents_with_state_commit_record_each_agent_on_the_branch(tmp_path: Path, free_port: Any) -> None:
    """state: commit with a glob: each agent's record is read from the branch first and committed afterwards (one
    commit each), its sha in that agent's `results` entry; the checkout's HEAD stays as it was."""
    project = tmp_path / "workspace"
    ports = {name: free_port() for name in ("alpha", "beta")}
    for name, port in ports.items():
        directory = project / "agents" / name
        directory.mkdir(parents=True)
        (directory / "prompt.md").write_text(f"You are {name}.")
        (directory / "agent.yaml").write_text(
            f"name: {name}\nmodel: {{provider: openai, name: gpt-4o}}\ninstructions: {{file: prompt.md}}\n"
            f"deployment:\n  port: {port}\n  health: {{timeout_seconds: 3}}\n"
        )
    git(project, "init", "-q", "-b", "main")
    git(project, "add", ".")
    git(project, "commit", "-q", "-m", "agents")
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(project), str(origin))
    git(project, "remote", "add", "origin", f"file://{origin}")
    git(project, "fetch", "-q", "origin")
    head = git(project, "rev-parse", "HEAD")
    runner = Runner(project, tmp_path)
    runner.extra_env = {"GITHUB_REF": "refs/heads/main"}
    offline = ROOT / "tests" / "fakes" / "offline_cli.py"
    python = runner.temp / "agentdeploy-venv" / "bin" / "python"
    python.write_text(
        f'#!/bin/sh\n[ "$1 $2" = "-m agentdeploy" ] && shift 2\nexec "{sys.executable}" "{offline}" "$@"\n'
    )
    inputs = {"config": "agents/*/agent.yaml", "target": "process", "state": "commit"}
    try:
        result = runner.run(inputs)
        assert result.returncode == 0, result.stdout + result.stderr
        results = json.loads(runner.outputs()["results"])
        assert [(r["agent"], r["status"]) for r in results] == [("alpha", "succeeded"), ("beta", "succeeded")]
        log = git(origin, "log", "--format=%H %s", "main").splitlines()
        assert [line.split(" ", 1)[1] for line in log[:2]] == [
            f"agentdeploy: beta (process) deploy succeeded {head[:7]} [skip ci]",
            f"agentdeploy: alpha (process) deploy succeeded {head[:7]} [skip ci]",
        ]
        assert [r["state_commit"] for r in results] == [log[1].split()[0], log[0].split()[0]]
        for name in ports:
            recorded = json.loads(git(origin, "show", f"main:agents/{name}/.agentdeploy/{name}.process.json"))
            assert recorded["current"]["status"] == "succeeded"
        assert git(project, "rev-parse", "HEAD") == head  # only the branch got the records
    finally:
        for name in ports:
            runner.run(
                {
                    "config": f"agents/{name}/agent.yaml",
                    "target": "process",
                    "command": "destroy",
                    "confirm-destroy": "true",
                }
            )


def test_command_changed_gives_the_matrix_and_a_summary_of_every_agent(tmp_path: Path) -> None:
    project = tmp_path / "workspace"
    for name in ("alpha", "beta"):
        (project / "agents" / name).mkdir(parents=True)
        (project / "agents" / name / "agent.yaml").write_text(
            f"name: {name}\nmodel: {{provider: openai, name: gpt-4o}}\ninstructions: {{file: prompt.md}}\n"
        )
        (project / "agents" / name / "prompt.md").write_text(f"You are {name}.")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "two agents")
    start = git(project, "rev-parse", "HEAD")
    runner = Runner(project, tmp_path)

    # A push that touched no agent: an empty matrix, and any-changed false to skip the matrix job with.
    (project / "README.md").write_text("docs")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "docs")
    result = runner.run({"command": "changed", "config": "agents/*/agent.yaml", "since": start})
    assert result.returncode == 0, result.stdout
    assert runner.outputs() == {"status": "planned", "matrix": '{"include":[]}', "any-changed": "false"}
    summary = runner.summary.read_text()
    assert f"### agentdeploy changed since `{start[:12]}`: 0 of 2 agents to deploy" in summary
    assert "| alpha | `agents/alpha/agent.yaml` | docker | no | unchanged |" in summary

    (project / "agents" / "beta" / "prompt.md").write_text("You are beta, and brief.")
    git(project, "commit", "-q", "-am", "beta")
    result = runner.run({"command": "changed", "config": "agents/*/agent.yaml", "since": start})
    assert result.returncode == 0, result.stdout
    outputs = runner.outputs()
    assert json.loads(outputs["matrix"]) == {
        "include": [{"agent": "beta", "config": "agents/beta/agent.yaml", "target": "docker"}]
    }
    assert outputs["any-changed"] == "true"
    assert "| beta | `agents/beta/agent.yaml` | docker | **yes** | agents/beta/prompt.md changed |" in (
        runner.summary.read_text()
    )

    # Outside a push (workflow_dispatch has no `before`): one clear error, on no file.
    result = runner.run({"command": "changed", "config": "agents/*/agent.yaml", "since": ""})
    assert result.returncode == ExitCode.USAGE
    assert "::error title=agentdeploy::input since is empty: command changed compares HEAD with a commit" in (
        result.stdout
    )
    # A commit this shallow checkout lacks: exit 5, with the fetch-depth hint.
    result = runner.run({"command": "changed", "config": "agents/*/agent.yaml", "since": "f" * 40})
    assert result.returncode == ExitCode.GIT and "fetch-depth: 0" in result.stdout


AGENT_SECRET = "tok-S3cr3t-0123"  # the agent's secret (deployment.secrets), which the misbehaving agent echoes


HOSTILE_CHAT = "Sure.\n::set-output name=url::http://evil ##[error title=spoofed]pwned $AGENT_TOKEN <b>ok</b>"


@pytest.mark.parametrize(
    ("setting", "said", "config"),
    [
        # HoloDeck's /ready body is shown when it says "not ready": a line break in it started a line of the log.
        ("AGENT_READY_BODY", '{"ready":false}\n::error title=spoofed::pwned $AGENT_TOKEN', "toy/agent.yaml"),
        ("AGENT_READY_BODY", '{"ready":false}\r  ::set-output name=url::http://evil.example', "toy/agent.yaml"),
        ("AGENT_READY_BODY", '{"ready":false} ##[add-mask]ready $AGENT_TOKEN', "toy/agent.yaml"),
        # A verify turn's answer is shown when it misses what was expected; the old `##[` form needs no new line.
        ("AGENT_CHAT_ANSWER", HOSTILE_CHAT, "toy/agent.yaml"),
        # Several agents (a glob): the summary lists what stopped each one.
        ("AGENT_CHAT_ANSWER", HOSTILE_CHAT, "*/agent.yaml"),
    ],
    ids=["ready-error-line", "ready-carriage-return", "ready-old-form", "chat-old-form", "chat-several-agents"],
)
def test_what_a_hostile_agent_says_commands_nothing_and_its_echoed_secret_reaches_no_channel(
    tmp_path: Path, free_port: Any, setting: str, said: str, config: str
) -> None:
    """The agent (the process target's stand-in runtime, misbehaving on purpose) answers /ready or its verify turn
    with workflow commands and the secret it was given. The runner reads the step's output by GitHub's own rules
    (tests/runner_log.py): the only commands in it are the ones agentdeploy issued (masks, groups, its one error
    annotation, which reports what the agent said as data), and the secret is in no channel: the log, the
    annotations, GITHUB_OUTPUT (the `results` JSON too), the job summary, the state file."""
    from runner_log import annotations, shown_log, workflow_commands

    project = tmp_path / "workspace"
    (project / "toy").mkdir(parents=True)
    (project / "toy" / "prompt.md").write_text("Be kind.")
    (project / "toy" / "agent.yaml").write_text(
        "name: toy\nmodel: {provider: openai, name: gpt-4o}\ninstructions: {file: prompt.md}\n"
        f"deployment:\n  port: {free_port()}\n  health: {{timeout_seconds: 1}}\n"
        "  secrets: {AGENT_TOKEN: '${AGENT_TOKEN}'}\n"
        "  verify: {chat: [{message: hello, expect: toy}]}\n"
    )
    runner = Runner(project, tmp_path)
    offline = ROOT / "tests" / "fakes" / "offline_cli.py"
    python = runner.temp / "agentdeploy-venv" / "bin" / "python"
    python.write_text(
        f'#!/bin/sh\n[ "$1 $2" = "-m agentdeploy" ] && shift 2\nexec "{sys.executable}" "{offline}" "$@"\n'
    )
    runner.extra_env = {"AGENT_TOKEN": AGENT_SECRET, setting: said}
    inputs = {"config": config, "target": "process", "registry-password": "pw-not-used-9"}
    try:
        result = runner.run(inputs)
        assert result.returncode == ExitCode.DEPLOY, result.stdout + result.stderr
        commands = workflow_commands(result.stdout)
        assert {command.name for command in commands} <= {"add-mask", "group", "endgroup", "error"}, commands
        masks = sorted(command.data for command in commands if command.name == "add-mask")
        assert masks == sorted([AGENT_SECRET, "pw-not-used-9", "ghs_fake_workflow_token_123"])
        [annotation] = annotations(result.stdout)
        assert annotation.properties == {"title": "agentdeploy"}
        assert annotation.data.startswith("the new version failed its health gate: ")
        shown = said.replace("$AGENT_TOKEN", "***")  # what the agent said is reported, as the annotation's data
        assert shown.split()[-1] in annotation.data
        outputs_text = runner.output.read_text()
        [entry] = json.loads(runner.outputs()["results"])
        assert entry["status"] == "failed" and entry["error"] == annotation.data.split(" (fix: ")[0]
        summary = runner.summary.read_text()
        if config != "toy/agent.yaml":  # several agents: the summary says what stopped each, as code
            assert (
                "- **toy**: `the new version failed its health gate: verify turn 1 ('hello'): the answer does"
                in summary
            )
            assert "<b>ok</b>" in summary.split("`")[1]  # inside the code span, where markdown reads no HTML
        state_files = list((project / "toy" / ".agentdeploy").glob("*.json"))
        assert state_files, "the failed release is recorded"
        for channel, text in [
            ("the log", shown_log(result.stdout) + result.stderr),
            ("GITHUB_OUTPUT", outputs_text),
            ("the job summary", summary),
            *((f"the state file {path.name}", path.read_text()) for path in state_files),
        ]:
            assert AGENT_SECRET not in text, f"the agent's secret reached {channel}"
        assert "http://evil" not in runner.outputs().get("url", "")
    finally:
        runner.extra_env = {}
        runner.run({**inputs, "config": "toy/agent.yaml", "command": "destroy", "confirm-destroy": "true"})
