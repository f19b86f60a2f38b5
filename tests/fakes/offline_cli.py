"""The real `agentdeploy` command line with no Docker engine: for watching what a person sees.

`python tests/fakes/offline_cli.py deploy agent.yaml --target process ...` runs `agentdeploy.cli.main` as
its own process (so it can be given a pseudo-terminal or a pipe), with two stand-ins:

- the Docker engine is `FakeDockerClient`: the base image is there, no image was built from these
  inputs, and a build streams a legacy-builder log (`Step N/4 : ...`, `---> Using cache`, the output of
  a RUN) the way the engine's API does, failing at step 3 when FAKE_BUILD_FAIL=1. The image stage is
  the real one (context, digest, build accounting, console);
- the target is `fakes.process_target` (the agent as a local process), registered as `process`, whose
  gate first shows three live lines through the console the way the real targets' health waits do (the
  last state includes $AGENT_TOKEN when set, which the console must mask) and is timed as `gate`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for `fakes`

from fakes.process_target import RUNTIME, ProcessTarget

BASE_ID = "sha256:" + "ba5e" * 16
BUILT_ID = "sha256:" + "b1d0" * 16
BUILD_LOG = [
    "Step 1/4 : FROM agentdeploy-test-base:1",
    " ---> 3f2a1b0c9d8e",
    "Step 2/4 : COPY --chown=0:0 app/ /app/",
    " ---> Using cache",
    " ---> 5b1c2d3e4f5a",
    "Step 3/4 : RUN /agentdeploy/check-runtime.sh 0.7.1",
    " ---> Running in 9d8e7f6a5b4c",
    "agentdeploy: holodeck-ai 0.7.1 is in the base",
    "checking the runtime's extras",
    "Removing intermediate container 9d8e7f6a5b4c",
    " ---> 7a6b5c4d3e2f",
    'Step 4/4 : CMD ["holodeck", "serve", "/app/agent.yaml"]',
    " ---> Running in 1c2d3e4f5a6b",
    "Removing intermediate container 1c2d3e4f5a6b",
    " ---> e5f4a3b2c1d0",
    "Successfully built e5f4a3b2c1d0",
]
FAILED_AT = BUILD_LOG.index("checking the runtime's extras")
FAILURE = "agentdeploy: cannot install holodeck-ai==0.7.1: the base image has no pip"


class FakeImage:
    def __init__(self, image_id: str) -> None:
        self.id = image_id
        self.short_id = image_id[:19]
        self.labels: dict[str, str] = {}  # docker-py's Image.labels: none of ours, so nothing counts as built

    def tag(self, repository: str, tag: str) -> bool:
        return True


class FakeImages:
    def get(self, reference: str) -> FakeImage:
        return FakeImage(BUILT_ID if reference == BUILT_ID else BASE_ID)

    def list(self, filters: dict[str, str] | None = None) -> list[FakeImage]:
        return []  # nothing built from these inputs yet: every deploy builds


class FakeApi:
    def build(self, **options: Any) -> Iterator[dict[str, Any]]:
        fail = os.environ.get("FAKE_BUILD_FAIL") == "1"
        for index, line in enumerate(BUILD_LOG):
            if fail and index == FAILED_AT:
                yield {"stream": FAILURE + "\n"}
                message = "The command '/bin/sh -c /agentdeploy/check-runtime.sh 0.7.1' returned a non-zero code: 1"
                yield {"error": message, "errorDetail": {"message": message}}
                return
            yield {"stream": line + "\n"}
            if line.startswith("Step "):
                time.sleep(0.02)
        yield {"aux": {"ID": BUILT_ID}}


class FakeDockerClient:
    def __init__(self) -> None:
        self.api = FakeApi()
        self.images = FakeImages()


class WaitingProcessTarget(ProcessTarget):
    def _start(self, image: str, tag: str, env: dict[str, str]) -> dict[str, Any]:
        """As the process target starts the agent, but with its output elsewhere: a pipe reading the command's
        output must end when the command does, not when the agent it left running does."""
        process = subprocess.Popen(
            [sys.executable, "-c", RUNTIME, str(self.port), self.agent],
            env={**os.environ, **env, "AGENT_VERSION": tag},
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        running = {"pid": process.pid, "port": self.port, "image": image, "tag": tag, "env": env}
        self.record_file.write_text(json.dumps(running))
        return running

    def _gate(self, request: Any) -> tuple[bool, str]:
        from agentdeploy.terminal import waiting_text

        token = os.environ.get("AGENT_TOKEN", "")
        with self.context.timed("gate"):
            for second in range(3):
                last = f"starting, token {token}" if token else "starting"
                self.context.on_progress(
                    waiting_text(f"http://127.0.0.1:{self.port}/health", second, request.health_timeout, last)
                )
                time.sleep(0.05)
            return super()._gate(request)


def main() -> None:
    from agentdeploy import cli, targets
    from agentdeploy.image import engine

    targets.register("process", WaitingProcessTarget)
    engine.connect = lambda base_url=None: FakeDockerClient()  # type: ignore[assignment]
    cli.run()  # the console script's entry point: its streams, its signal handling, its exit


if __name__ == "__main__":
    main()
