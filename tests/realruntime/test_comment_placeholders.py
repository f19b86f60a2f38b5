"""Against the real HoloDeck runtime (holodeck-ai in the real base): its loader substitutes `${VAR}` in the raw text,
comments included (FACTS.md), so a placeholder in a comment of the image's copy would make the container need
(and be given) that variable. agentdeploy's copy drops such comments: the real loader reads it with exactly the
variables agentdeploy forwards, and refuses the user's original with the same environment."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.realruntime]

AGENT = """\
# In CI the key comes from ${GITHUB_TOKEN}; never ${ACTIONS_ID_TOKEN_REQUEST_TOKEN}
name: commented
model:
  provider: openai   # or ${RUNNER_TEMP}
  name: gpt-4o-mini
  api_key: ${OPENAI_API_KEY}
instructions:
  inline: "Answer briefly. # is text here: ${STYLE}"
"""


def test_the_real_runtime_reads_the_copy_with_only_the_forwarded_variables(real_base: str, tmp_path: Path) -> None:
    from agentdeploy.config.loader import load_config

    (tmp_path / "agent.yaml").write_text(AGENT)
    config = load_config(tmp_path / "agent.yaml")
    forwarded = {variable.name: f"set-by-test-{variable.name.lower()}" for variable in config.runtime_variables}
    assert sorted(forwarded) == ["OPENAI_API_KEY", "STYLE"]
    (tmp_path / "runtime.yaml").write_text(config.runtime_files[0].text)
    (tmp_path / "original.yaml").write_text(AGENT)
    script = (
        "import json, os\n"
        "from holodeck.config.loader import ConfigLoader\n"
        f"os.environ.update({json.dumps(forwarded)})\n"
        "for name in ('GITHUB_TOKEN', 'ACTIONS_ID_TOKEN_REQUEST_TOKEN', 'RUNNER_TEMP'):\n"
        "    os.environ.pop(name, None)\n"
        "out = {}\n"
        "for which in ('runtime', 'original'):\n"
        "    try:\n"
        "        agent = ConfigLoader().load_agent_yaml('/cases/' + which + '.yaml')\n"
        "        out[which] = 'ok: ' + agent.instructions.inline\n"
        "    except Exception as exc:\n"
        "        out[which] = ' '.join(str(exc).split())[:300]\n"
        "print(json.dumps(out))\n"
    )
    docker = ["docker", "run", "--rm", "--network", "none", "--user", "root", "-v", f"{tmp_path}:/cases:ro"]
    result = subprocess.run(
        [*docker, "--entrypoint", "/opt/holodeck/bin/python", real_base, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    verdicts = json.loads(result.stdout.strip().splitlines()[-1])
    assert verdicts["runtime"] == "ok: Answer briefly. # is text here: set-by-test-style"
    # The original, with the same environment: the runtime wants the variable a comment names.
    assert "GITHUB_TOKEN" in verdicts["original"], verdicts
