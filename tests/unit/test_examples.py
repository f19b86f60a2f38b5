"""Every example a user copies is valid as shipped."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from agentdeploy.cli import main
from agentdeploy.errors import ExitCode
from testkit import ROOT

EXAMPLES = sorted((ROOT / "examples").glob("*/agent.yaml"))
SUBSCRIPTION = "0b1f6471-1bf0-4dda-aec3-111122223333"


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("config", EXAMPLES, ids=lambda p: p.parent.name)
def test_example_validates(config: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    environ = {"SUPPORT_API_KEY": "x", "OPENAI_API_KEY": "x", "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION}
    code = main(["validate", str(config), "--resolve", "--json"], environ=environ, out=out, err=err)
    assert code == ExitCode.OK, err.getvalue()
    assert err.getvalue() == ""  # not even a warning
    summary = json.loads(out.getvalue())
    assert summary["provider"] == ("azure" if config.parent.name == "azure-agent" else "docker")
    assert summary["files"][0] == "agent.yaml"
