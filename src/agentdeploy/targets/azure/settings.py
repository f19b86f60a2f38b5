"""What one Azure release runs with, built once by target.py's factory (or a test) and never changed after:
the app's settings (`AzureSettings`), the adapters to the world outside ARM (`Adapters`: probes, the console,
the clocks) and, per release, the chat turns a new revision must answer (`Verify`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from agentdeploy.config.models import DEFAULT_VERIFY_TIMEOUT_SECONDS
from agentdeploy.jsonvalue import JsonObject
from agentdeploy.targets.azure.arm import POLL_INTERVAL
from agentdeploy.targets.health import ChatCheck, ChatPost, HealthProbe, http_post_json


def _silent(text: str) -> None:
    return None


def _untimed(key: str) -> AbstractContextManager[None]:
    return contextlib.nullcontext()


def _never_interrupted() -> str:
    return ""


def _no_log(revision: str) -> list[str]:
    return []


Evaluate = Callable[[str, str], tuple[bool, JsonObject]]


def _verify_turns_only(canary_url: str, stable_url: str) -> tuple[bool, JsonObject]:
    """No evaluation of its own: a canary step is judged by its health verdict, restarts and verify turns."""
    return True, {"passed": True, "judge": "the verify chat turns only"}


@dataclass(frozen=True, kw_only=True)
class AzureSettings:
    resource_group: str
    app_name: str
    agent: str = ""  # the agent's name in its chat route; "": the app's name
    run_id: str = "agentdeploy"  # named in the app's lease tag, so another run can say who holds it
    environment_group: str = ""  # where environment_name lives ("": the app's resource group)
    ip_restricted: bool = False  # the config's ip_allow guards the ingress: a 403 may be for this machine
    poll_interval: float = POLL_INTERVAL  # of the SDK's long-running operations

    @property
    def agent_name(self) -> str:
        return self.agent or self.app_name


@dataclass(frozen=True, kw_only=True)
class Adapters:
    probe: HealthProbe
    post: ChatPost = http_post_json
    say: Callable[[str], None] = _silent  # a line of the run's log
    progress: Callable[[str], None] = _silent  # the live line while a wait goes on
    timed: Callable[[str], AbstractContextManager[None]] = _untimed  # the console's stage clock
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time  # a lease's end is wall time: other runs, other machines read it
    interrupted: Callable[[], str] = _never_interrupted  # a signal asked the release to stop: the gate fails
    # A revision that failed its gate: its last log lines, for the error and the job summary (targets/azure/logs.py).
    failed_log: Callable[[str], list[str]] = _no_log
    # The evaluation gate of a canary step: (canary revision's URL, stable revision's URL) -> (passed, its results
    # for the record and the job summary). The judge of the agent's test cases (targets/evaluation.py) plugs in here.
    evaluate: Evaluate = _verify_turns_only


@dataclass(frozen=True)
class Verify:
    """The chat turns a new revision must answer at its own URL before it is trusted."""

    checks: tuple[ChatCheck, ...] = ()
    timeout: float = DEFAULT_VERIFY_TIMEOUT_SECONDS


NO_VERIFY = Verify()
