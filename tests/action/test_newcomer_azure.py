"""Issue 22's "done when", as a newcomer does it: a new repository with a HoloDeck agent for Azure goes from nothing
to a release on a tag, a rollback and a promote by workflow_dispatch, following only the README, in the workflow
harness (action/harness.py) against the fake Azure running as a process.

What the newcomer types and copies is read from README.md (the set-up commands, the workflows it recommends and
where they go, the dispatch inputs it names, the logs command), so a README step that stops being true fails here.
The set-up script `agentdeploy setup azure agent.yaml` prints is run as the README says (in one shell), with
stand-ins for `az` and `gh` on PATH (tests/fakes/azcli.py) that do to the fake what the real tools do to Azure and
GitHub.

The only changes that are not the README's are those of this machine: the fake cannot be an Azure Container
Registry, so the image goes to the registry on 127.0.0.1:5000 (a public registry: no registry_identity, as the
README's non-ACR path says), and the base image is a local one (nothing can be pulled here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from action.harness import FakeAzureProcess, Job, World, run_workflow
from action.test_workflows import app, changing_leg
from fakes.azcli import AZ_TOKEN, BUILT_IN_ROLES
from testkit import GIT_IDENTITY, ROOT, git

README = (ROOT / "README.md").read_text()
AGENT_NAME = "azure-agent"
OPENAI_KEY = "sk-newcomer-secret-0123456789"
REPOSITORY = "org/agents"  # the harness's GitHub repository


@pytest.fixture
def empty_azure(tmp_path: Path) -> Iterator[FakeAzureProcess]:
    """The fake Azure as a process, on a subscription with nothing in it yet: a new user's."""
    fake = FakeAzureProcess(tmp_path / "fake-azure", empty=True)
    try:
        yield fake
    finally:
        fake.kill()


def readme(pattern: str) -> re.Match[str]:
    """What the README says, where the newcomer reads it: the test fails when it stops saying so."""
    found = re.search(pattern, README, re.S)
    assert found, f"the README no longer says {pattern!r}"
    return found


# -- the README's instructions ----------------------------------------------------------------------------------


def readme_passage(name: str) -> str:
    """A section of the README (`## name`) or a passage that starts `name: ` up to the next heading."""
    start = re.search(rf"^#+ {re.escape(name)}\n|^{re.escape(name)}: ", README, re.M)
    assert start, f"the README has no section or passage {name!r}"
    end = re.compile(r"^#", re.M).search(README, start.end())
    return README[start.start() : end.start() if end else len(README)]


def setup_pointer(workflow: str) -> str:
    """Where the release workflow sends the newcomer for its one-time set-up."""
    found = re.search(
        r'^# One-time setup.*?README, "([^"]+)"', (ROOT / "examples" / "workflows" / workflow).read_text(), re.M | re.S
    )
    assert found, f"{workflow} no longer says where its one-time setup is"
    return found.group(1)


def setup_commands() -> tuple[str, str]:
    """`agentdeploy setup azure agent.yaml` (the script) and its `--check`, as the README writes them."""
    script = readme(r"Azure set-up, once: `(agentdeploy setup azure agent\.yaml)` prints the `az` commands").group(1)
    check = readme(r"To see what is done: `(agentdeploy setup azure agent\.yaml --check)`").group(1)
    return script, check


def recommended_workflows() -> tuple[str, list[str], str]:
    """The release workflow (on a version tag), the dispatch ones, and where the README says they go."""
    section = readme(r"\nReady-to-copy workflows(.*?)\nRunners and queues").group(1)
    bullets = section.split("\n- ")
    [on_tag] = [b for b in bullets if "on a version tag" in b]
    [by_hand] = [b for b in bullets if "(`workflow_dispatch`" in b]
    release = re.match(r"`examples/workflows/([\w-]+\.yml)`", on_tag)
    assert release, on_tag
    dispatched = re.findall(r"`([\w-]+\.yml)`", by_hand.split("(`workflow_dispatch`")[0])
    destination = readme(r"copy them into your repository's `([^`]+)`").group(1)
    return release.group(1), dispatched, destination


def dispatch_inputs() -> tuple[str, str]:
    """The dispatch workflows' inputs the README names: the agent's config, and rollback's version."""
    bullet = readme(r"\n- `rollback\.yml` and `promote\.yml` \(`workflow_dispatch`(.*?)\n- ").group(1)
    config = re.search(r"the agent's config as the input `(\w+)`", bullet)
    version = re.search(r"`rollback\.yml` the version as `(\w+)`", bullet)
    assert config and version, bullet
    return config.group(1), version.group(1)


def logs_command(config: str, lines: int) -> str:
    """The Commands table's `agentdeploy logs` row, filled in: the config and --tail."""
    usage = readme(r"\| `(agentdeploy logs CONFIG [^`]*)` \|").group(1)
    assert "[--tail N]" in usage, usage
    return re.sub(r" \[[^]]*\]", "", usage.replace("CONFIG", config)) + f" --tail {lines}"


# -- the newcomer's repository ----------------------------------------------------------------------------------


class Newcomer:
    """A new repository on "GitHub" (a bare one, pushed to as github.com/org/agents) and its clone, with the
    newcomer's shell: agentdeploy from this checkout's environment, and az and gh (stand-ins) on PATH."""

    def __init__(self, root: Path, fake: FakeAzureProcess) -> None:
        self.fake = fake
        self.work, self.origin, self.tools = root / "work", root / "origin.git", root / "bin"
        self.state = root / "stand-in-state"
        for directory in (self.work, self.tools, self.state, root / "home"):
            directory.mkdir(parents=True)
        self.home = root / "home"
        for tool in ("az", "gh"):
            path = self.tools / tool
            path.write_text(f'#!/bin/sh\nexec {sys.executable} {ROOT / "tests" / "fakes" / "azcli.py"} {tool} "$@"\n')
            path.chmod(0o755)
        git(root, "init", "-q", "--bare", str(self.origin))
        git(self.work, "init", "-q", "-b", "main")
        # The remote is GitHub's (setup reads the repository from it); pushes land in the bare repository.
        git(self.work, "remote", "add", "origin", f"https://github.com/{REPOSITORY}.git")
        git(self.work, "config", f"url.file://{self.origin}.pushInsteadOf", f"https://github.com/{REPOSITORY}.git")

    def shell(self, command: str, *, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """A command line typed in the clone, as `bash -e` runs it, with only what this shell has exported."""
        env = self.fake.env
        environ = {
            "PATH": f"{self.tools}:{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(self.home),
            **GIT_IDENTITY,
            # `az login` locally; here the fake's Entra through the GitHub OIDC route, as test_setup_check signs in.
            "AZURE_CLIENT_ID": env["FAKE_AZURE_CLIENT_ID"],
            "AZURE_TENANT_ID": env["FAKE_AZURE_TENANT_ID"],
            "ACTIONS_ID_TOKEN_REQUEST_URL": env["ACTIONS_ID_TOKEN_REQUEST_URL"],
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"],
            # README: these point at a test double's Entra and ARM.
            "AGENTDEPLOY_ARM_ENDPOINT": env["AGENTDEPLOY_ARM_ENDPOINT"],
            "AZURE_AUTHORITY_HOST": env["AZURE_AUTHORITY_HOST"],
            "REQUESTS_CA_BUNDLE": env["REQUESTS_CA_BUNDLE"],
            # The config's subscription_id: ${AZURE_SUBSCRIPTION_ID}.
            "AZURE_SUBSCRIPTION_ID": env["FAKE_AZURE_SUBSCRIPTION_ID"],
            "STAND_IN_STATE": str(self.state),
            **(extra or {}),
        }
        return subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", command],
            cwd=self.work,
            env=environ,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def write_agent(self, base_image: str, image_repository: str) -> Path:
        """The example Azure agent as the newcomer's own, at the root of the repository, with the values the example
        tells them to put in (their registry), and this machine's two changes (see the module's docstring)."""
        example = ROOT / "examples" / AGENT_NAME
        shutil.copytree(example, self.work, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".agentdeploy"))
        config = self.work / "agent.yaml"
        text = config.read_text()
        edited = text.replace("url: myagents.azurecr.io", "url: 127.0.0.1:5000")
        edited = edited.replace("repository: agents/azure-agent", f"repository: {image_repository}")
        edited = re.sub(r"^ +registry_identity: .*\n", "", edited, flags=re.M)
        assert edited.count("127.0.0.1:5000") == 1 and edited.count(image_repository) == 1
        config.write_text(edited + f"  build:\n    base_image: {base_image}\n")
        return config

    def commit_and_tag(self, message: str, tag: str) -> str:
        """Commit everything, tag it, push both (as `git push origin main vX.Y.Z`); the short sha."""
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", message)
        git(self.work, "tag", tag)
        git(self.work, "push", "-q", "origin", "main", tag)
        return git(self.work, "rev-parse", "--short=7", "HEAD")

    def stand_in(self, name: str) -> Any:
        path = self.state / name
        return json.loads(path.read_text()) if path.exists() else None


def control(fake: FakeAzureProcess, method: str, route: str, body: Any = None) -> Any:
    env = fake.env
    answer = requests.request(
        method,
        f"{env['AGENTDEPLOY_ARM_ENDPOINT']}/_fake/{route}",
        data=None if body is None else json.dumps(body),
        verify=env["REQUESTS_CA_BUNDLE"],
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def record_of(leg: Job, outputs: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads(Path(leg.workspace, outputs["state-file"]).read_text()))


def serving(view: dict[str, Any]) -> dict[str, int]:
    """Revision -> weight, for the revisions that get traffic."""
    return {name: weight for name, weight in view["weights"].items() if weight}


class Workflows:
    """The README's recommended workflows, copied into the newcomer's repository where it says, and run there."""

    def __init__(self, newcomer: Newcomer, world: World) -> None:
        self.release_file, dispatched, destination = recommended_workflows()
        [self.rollback_file] = [name for name in dispatched if name.startswith("rollback")]
        [self.promote_file] = [name for name in dispatched if name.startswith("promote")]
        self.config_input, self.version_input = dispatch_inputs()
        self.directory, self.world = newcomer.work / destination, world
        self.directory.mkdir(parents=True)
        for name in (self.release_file, *dispatched):
            shutil.copy2(ROOT / "examples" / "workflows" / name, self.directory / name)
        # "change `config:` in its `agent` job": the release reads this agent's config.
        release = self.directory / self.release_file
        example_config = f"config: examples/{AGENT_NAME}/agent.yaml"
        assert release.read_text().count(example_config) == 1
        release.write_text(release.read_text().replace(example_config, "config: agent.yaml"))
        [agent_step] = [s for s in yaml.safe_load(release.read_text())["jobs"]["agent"]["steps"] if "with" in s]
        assert agent_step["with"]["config"] == "agent.yaml"

    def release(self, tag: str) -> tuple[Job, dict[str, str]]:
        run = run_workflow(self.world, self.directory / self.release_file, event_name="push", ref=f"refs/tags/{tag}")
        assert run.conclusion == "success", run.log
        leg = changing_leg(run)
        return leg, leg.outputs("deploy")

    def dispatch(self, name: str, step: str, version: str = "") -> tuple[Job, dict[str, str]]:
        given = {self.config_input: "agent.yaml"} | ({self.version_input: version} if version else {})
        run = run_workflow(
            self.world, self.directory / name, event_name="workflow_dispatch", ref="refs/heads/main", inputs=given
        )
        assert run.conclusion == "success", run.log
        leg = changing_leg(run)
        return leg, leg.outputs(step)


def set_up_azure(newcomer: Newcomer, fake: FakeAzureProcess) -> tuple[dict[str, Any], dict[str, str]]:
    """`--check` on a subscription with only the resource group and the environment (the fake's own) says what is
    missing; the printed script, run in one shell, makes it; `--check` then finds it. The deployer identity, and the
    repository variables the script's gh commands set."""
    sub, tenant = fake.env["FAKE_AZURE_SUBSCRIPTION_ID"], fake.env["FAKE_AZURE_TENANT_ID"]
    print_script, check = setup_commands()
    # Where the release workflow's header sends the newcomer for it.
    assert f"`{print_script}`" in readme_passage(setup_pointer(recommended_workflows()[0]))
    missing = newcomer.shell(check)
    deployer, identity_missing = "agentdeploy-agents", "missing: identity agentdeploy-agents in agents-rg"
    subjects = [f"repo:{REPOSITORY}:{s}" for s in ("environment:production", f"environment:production-{AGENT_NAME}")]
    subjects.append(f"repo:{REPOSITORY}:ref:refs/heads/main")
    expected = [
        f"1. Work in subscription {sub}: not checked: every other check reads this subscription",
        "2. Resource group agents-rg in eastus: missing: resource group agents-rg",
        "3. Container Apps environment agents-env in agents-rg: missing: environment agents-env in agents-rg",
        f"4. Deployer identity {deployer} (user-assigned managed identity): {identity_missing}",
        *[f"{n}. Trust GitHub tokens with subject {s}: {identity_missing}" for n, s in enumerate(subjects, 5)],
        f"8. Container Apps Contributor for {deployer} on resource group agents-rg: {identity_missing}",
        f"9. GitHub environments and variables of {REPOSITORY}: not checked: GitHub is not read",
    ]
    assert (missing.returncode, missing.stdout.splitlines()) == (1, expected), missing.stderr
    assert missing.stderr.splitlines()[-1] == (
        "7 step(s) missing: run their commands (agentdeploy setup azure agent.yaml prints them), then check again"
    )
    assert control(fake, "GET", "identities") == {"identities": [], "role_assignments": []}  # it only read

    control(fake, "POST", "tokens", {"token": AZ_TOKEN})  # `az login`: a token the fake's ARM takes
    printed = newcomer.shell(print_script)
    assert printed.returncode == 0, printed.stderr
    ran = newcomer.shell(printed.stdout)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    staged = control(fake, "GET", "identities")
    [identity] = staged["identities"]
    principal, client = identity["properties"]["principalId"], identity["properties"]["clientId"]
    assert identity["name"] == deployer
    group = f"/subscriptions/{sub}/resourceGroups/agents-rg"
    role = BUILT_IN_ROLES["Container Apps Contributor"]
    assert staged["role_assignments"] == [{"scope": group, "role": role, "principal_id": principal}]
    present = newcomer.shell(check)
    assert present.returncode == 0, present.stdout + present.stderr
    assert present.stdout.splitlines() == [re.sub(r": missing: .*", ": present", line) for line in expected]
    # What the script's gh commands made on GitHub: the environments and the variables the workflows read.
    assert newcomer.stand_in("environments") == {REPOSITORY: ["production", f"production-{AGENT_NAME}"]}
    variables = {"AZURE_CLIENT_ID": client, "AZURE_TENANT_ID": tenant, "AZURE_SUBSCRIPTION_ID": sub}
    assert newcomer.stand_in("variables") == {REPOSITORY: variables}
    return identity, variables


def first_release(
    newcomer: Newcomer, workflows: Workflows, fake: FakeAzureProcess, image_repository: str
) -> dict[str, str]:
    """v1.0.0: the release runs in the environment the set-up made, the agent serves, the record is written."""
    sha = newcomer.commit_and_tag("the agent and the workflows", "v1.0.0")
    leg, v1 = workflows.release("v1.0.0")
    assert leg.environment_name in newcomer.stand_in("environments")[REPOSITORY]
    assert (v1["status"], v1["previous-revision"], v1["image-tag"]) == ("succeeded", "", sha), leg.log
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", v1["digest"]), v1
    assert v1["image"] == f"127.0.0.1:5000/{image_repository}@{v1['digest']}"
    assert v1["revision"].startswith(f"{AGENT_NAME}--") and v1["url"].startswith(f"https://{AGENT_NAME}.")
    assert leg.environment_url == v1["url"]
    # The record: in .agentdeploy/<agent>.<environment>.json beside the config, uploaded as the state artifact.
    assert Path(v1["state-file"]) == leg.workspace / ".agentdeploy" / f"{AGENT_NAME}.agents-env.json"
    record = record_of(leg, v1)
    assert (record["current"]["revision"], record["current"]["image"]) == (v1["revision"], v1["image"])
    assert workflows.world.artifacts.names() == [f"agentdeploy-state-{AGENT_NAME}-agents-env"]
    live = app(fake, AGENT_NAME)
    [revision] = [r for r in live["revisions"] if r["name"] == v1["revision"]]
    assert revision["properties"]["template"]["containers"][0]["image"] == v1["image"]
    assert (revision["properties"]["runningState"], revision["properties"]["healthState"]) == ("Running", "Healthy")
    assert serving(live) == {v1["revision"]: 100}
    secrets = live["app"]["properties"]["configuration"]["secrets"]
    assert {"name": "openai-api-key", "value": OPENAI_KEY} in secrets  # from secrets.* through the step's env:
    return v1


def blue_green_and_promote(
    newcomer: Newcomer, workflows: Workflows, fake: FakeAzureProcess, serving_now: str
) -> tuple[str, dict[str, Any]]:
    """Blue/green, as the config's comment says, with a new FAQ: the release waits at 0% as the candidate, labelled
    green; promote.yml gives it all the traffic and the blue label. The candidate revision, and promote's record."""
    config = newcomer.work / "agent.yaml"
    blue_green = "  # rollout:\n  #   strategy: blue-green\n"
    assert blue_green in config.read_text()
    config.write_text(config.read_text().replace(blue_green, "  rollout:\n    strategy: blue-green\n"))
    with (newcomer.work / "data" / "faq.md").open("a") as handle:
        handle.write("\n## Is there a free trial?\n\nYes, 30 days.\n")
    newcomer.commit_and_tag("blue/green, and a new question", "v1.2.0")
    leg, candidate = workflows.release("v1.2.0")
    assert candidate["status"] == "candidate", leg.log
    assert candidate["label-url"].startswith(f"https://{AGENT_NAME}---green."), candidate
    view = app(fake, AGENT_NAME)
    assert (serving(view), view["labels"]["green"]) == ({serving_now: 100}, candidate["revision"])
    promoted_leg, promoted = workflows.dispatch(workflows.promote_file, "promote")
    assert (promoted["status"], promoted["revision"]) == ("promoted", candidate["revision"]), promoted_leg.log
    view = app(fake, AGENT_NAME)
    assert (serving(view), view["labels"]["blue"]) == ({candidate["revision"]: 100}, candidate["revision"])
    record = record_of(promoted_leg, promoted)
    assert (record["current"]["status"], record["current"]["revision"]) == ("promoted", candidate["revision"])
    return candidate["revision"], record


@pytest.mark.docker
def test_a_newcomer_follows_the_readme_from_nothing_to_a_release_a_rollback_a_promote_and_logs(
    empty_azure: FakeAzureProcess,
    world: World,
    tmp_path: Path,
    base_image: str,
    repository_name: str,
) -> None:
    newcomer = Newcomer(tmp_path / "newcomer", empty_azure)
    # 1. A new repository with the agent. 2. Azure, once.
    newcomer.write_agent(base_image, repository_name)
    identity, variables = set_up_azure(newcomer, empty_azure)

    # 3. The workflows; the repository's secrets (the config's deployment.secrets, passed in the step's env:) and the
    # variables the set-up's gh commands set.
    workflows = Workflows(newcomer, world)
    declared = yaml.safe_load((newcomer.work / "agent.yaml").read_text())["deployment"]["secrets"]
    assert declared == {"OPENAI_API_KEY": "${OPENAI_API_KEY}"}
    world.connect(empty_azure, newcomer.origin, {"OPENAI_API_KEY": OPENAI_KEY})
    world.vars = variables
    before_the_workflows = len(control(empty_azure, "GET", "requests")["value"])
    v1 = first_release(newcomer, workflows, empty_azure, repository_name)

    # v1.1.0: a change to the instructions (as the README's main job makes one).
    with (newcomer.work / "instructions.md").open("a") as handle:
        handle.write("Answer in one sentence.\n")
    newcomer.commit_and_tag("shorter answers", "v1.1.0")
    second, v2 = workflows.release("v1.1.0")
    assert (v2["status"], v2["previous-revision"]) == ("succeeded", v1["revision"]), second.log
    assert serving(app(empty_azure, AGENT_NAME)) == {v2["revision"]: 100}

    # Roll back by hand, with the inputs the README names. Single revision mode takes no traffic by name: v1's
    # template serves again as a new revision, no rebuild.
    back_leg, back = workflows.dispatch(workflows.rollback_file, "rollback", "previous")
    assert (back["status"], back["revision"], back["image"]) == ("succeeded", f"{v1['revision']}-r1", v1["image"])
    assert serving(app(empty_azure, AGENT_NAME)) == {back["revision"]: 100}
    record = record_of(back_leg, back)
    assert (record["current"]["revision"], record["current"]["image"]) == (back["revision"], v1["image"])

    candidate, record = blue_green_and_promote(newcomer, workflows, empty_azure, back["revision"])
    assert [(entry["status"], entry["revision"]) for entry in record["history"]] == [  # newest first
        ("promoted", candidate),
        ("candidate", candidate),
        ("succeeded", back["revision"]),
        ("succeeded", v2["revision"]),
        ("succeeded", v1["revision"]),
    ]
    # Every run signed in to Azure as the deployer identity the set-up made (vars.AZURE_CLIENT_ID).
    signed_in = [  # the form Entra's token endpoint was sent, as the fake parsed it
        request["body"]["client_id"]
        for request in control(empty_azure, "GET", f"requests?since={before_the_workflows}")["value"]
        if request["path"].endswith("/oauth2/v2.0/token")
    ]
    assert signed_in and set(signed_in) == {identity["properties"]["clientId"]}, signed_in

    # 4. The agent's output, from the newcomer's clone: the serving revision's last lines.
    sub = empty_azure.env["FAKE_AZURE_SUBSCRIPTION_ID"]
    printed = [f"INFO: line {n} of the agent" for n in range(1, 8)]
    route = f"apps/{sub}/agents-rg/{AGENT_NAME}/revisions/{candidate}/logs"
    control(empty_azure, "POST", route, {"lines": printed})
    logs = newcomer.shell(logs_command("agent.yaml", 5))
    assert (logs.returncode, logs.stdout.splitlines()) == (0, printed[-5:]), logs.stderr
    assert empty_azure.stop()["server_errors"] == []


def test_the_example_agents_set_up_on_azure_container_registry_as_its_comments_say(
    empty_azure: FakeAzureProcess,
    tmp_path: Path,
) -> None:
    """The example agent as it is, on an Azure Container Registry with the app's own pull identity (the path the
    workflow test cannot release: the fake is no registry), set up by the script, with only the edits the example's
    comments ask for: `--check` finds every step present, the roles each on its narrowest scope."""
    sub = empty_azure.env["FAKE_AZURE_SUBSCRIPTION_ID"]
    newcomer = Newcomer(tmp_path / "newcomer", empty_azure)
    shutil.copytree(ROOT / "examples" / AGENT_NAME, newcomer.work, dirs_exist_ok=True)
    config = newcomer.work / "agent.yaml"
    text = config.read_text()
    # The example's own instruction for the pull identity's id, which the set-up creates from it.
    asks = "# The pull identity's id (`agentdeploy setup azure` creates it): your subscription id in place of the zeros"
    assert asks in text
    config.write_text(text.replace("/subscriptions/00000000-0000-0000-0000-000000000000/", f"/subscriptions/{sub}/"))
    print_script, check = setup_commands()

    missing = newcomer.shell(check)
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert missing.stderr.splitlines()[-1].startswith("11 step(s) missing: ")
    control(empty_azure, "POST", "tokens", {"token": AZ_TOKEN})
    printed = newcomer.shell(print_script)
    assert printed.returncode == 0, printed.stderr
    ran = newcomer.shell(printed.stdout)
    assert ran.returncode == 0, ran.stdout + ran.stderr

    present = newcomer.shell(check)
    assert present.returncode == 0, present.stdout + present.stderr
    deployer, pull = "agentdeploy-agents", "agents-acr-pull"
    assert [line.split(": ", 1)[1] for line in present.stdout.splitlines()] == [
        "not checked: every other check reads this subscription",
        *["present"] * 2,  # the group, the environment
        "not checked: its roles are checked below",  # the registry
        *["present"] * 9,  # the deployer, 3 subjects, 2 roles, the pull identity, 2 roles
        "not checked: GitHub is not read",
    ], present.stdout
    staged = control(empty_azure, "GET", "identities")
    principals = {i["name"]: i["properties"]["principalId"] for i in staged["identities"]}
    assert sorted(principals) == [deployer, pull]
    group = f"/subscriptions/{sub}/resourceGroups/agents-rg"
    registry = f"{group}/providers/Microsoft.ContainerRegistry/registries/myagents"
    roles = {role: name for name, role in BUILT_IN_ROLES.items()}
    assert sorted((roles[a["role"]], a["scope"], a["principal_id"]) for a in staged["role_assignments"]) == sorted(
        [
            ("Container Apps Contributor", group, principals[deployer]),
            ("AcrPush", registry, principals[deployer]),
            (
                "Managed Identity Operator",
                f"{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{pull}",
                principals[deployer],
            ),
            ("AcrPull", registry, principals[pull]),
        ]
    )
