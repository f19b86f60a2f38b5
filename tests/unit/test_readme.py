"""The README stays true: its commands exist, its exit codes are the real ones, CI runs its test command."""

from __future__ import annotations

import re

from agentdeploy.cli import build_parser
from agentdeploy.errors import ExitCode
from testkit import ROOT

README = (ROOT / "README.md").read_text()


def test_every_command_in_the_readme_exists() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    known = set(subparsers.choices)  # type: ignore[arg-type]
    shell_blocks = "\n".join(re.findall(r"```sh\n(.*?)```", README, re.S))
    mentioned = set(re.findall(r"`agentdeploy (\w+)", README)) | set(
        re.findall(r"^agentdeploy (\w+)", shell_blocks, re.M)
    )
    assert mentioned, "the README shows no command"
    assert mentioned <= known, mentioned - known
    assert {"deploy", "rollback", "status", "logs", "destroy", "validate", "dockerfile"} <= mentioned


def test_exit_code_table_matches_the_code() -> None:
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", README, re.M))
    assert {int(code) for code in table} == {int(code) for code in ExitCode}


def test_ci_runs_the_readme_test_command() -> None:
    section = README.split("## Run the tests", 1)[1].split("\n## ", 1)[0]
    commands = [line for line in section.splitlines() if line.startswith("python -m pytest")]
    assert commands, "README must give the test command under 'Run the tests'"
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[-1] in ci_lines


def test_readme_lists_every_action_input_and_output() -> None:
    import yaml

    action = yaml.safe_load((ROOT / "action.yml").read_text())
    for name in [*action["inputs"], *action["outputs"]]:
        assert f"| `{name}` |" in README, name


def test_the_json_keys_the_readme_names_are_the_ones_deploy_prints() -> None:
    from pathlib import Path

    from agentdeploy.image.builder import ImageResult
    from agentdeploy.release.commands import release_outputs
    from agentdeploy.release.pipeline import DeployResult
    from agentdeploy.targets.base import Status

    readme = (ROOT / "README.md").read_text()
    paragraph = readme[readme.index("`deploy --json` (and `rollback`, `promote`) prints the outputs:") :]
    paragraph = paragraph[: paragraph.index("They\nare the Action's outputs too")]
    named = set(re.findall(r"`([a-z_]+)`", paragraph)) - {"rollback", "promote"}
    image = ImageResult(
        reference="sha256:1",
        tag="v1",
        repository="agentdeploy/x",
        manifest_digest=None,
        image_id="sha256:1",
        inputs_digest="sha256:2",
        skipped_build=False,
    )
    result = DeployResult(
        Status.CANDIDATE,
        "http://x",
        image,
        "r2",
        "r1",
        Path("s.json"),
        extra={"label_url": "https://green", "attestation": "https://api/bundles/1"},
    )
    printed = set(release_outputs(result)) - {"plan"}  # `plan` goes to the Action only (--json has the table's items)
    assert named == printed
