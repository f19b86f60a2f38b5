"""The local gate's reading of a crash loop, on the states the engine reports in turn (no engine needed)."""

from __future__ import annotations

from typing import Any

from agentdeploy.targets.docker import CRASH_CODE_WAIT, LocalDockerTarget


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class _Container:
    """Each reload() shows the next state the engine reported (the last one stays)."""

    def __init__(self, states: list[tuple[str, dict[str, Any], int]]) -> None:
        self.states = states
        self.reloads = 0
        self.status, self.attrs = "created", {}

    def reload(self) -> None:
        status, state, restarts = self.states[min(self.reloads, len(self.states) - 1)]
        self.reloads += 1
        self.status, self.attrs = status, {"State": state, "RestartCount": restarts}


def _gate(container: _Container) -> tuple[bool, str, float]:
    clock = _Clock()
    target = LocalDockerTarget(
        client=None,  # type: ignore[arg-type]  # the gate never calls the engine itself
        container_name="agent",
        probe=lambda url: None,  # nothing answers
        sleep=clock.sleep,
        clock=clock,
    )
    return target.wait_healthy(container, "http://127.0.0.1:9", "/health", 600)  # type: ignore[arg-type]


RESTARTED_RUNNING = ("running", {"Status": "running", "ExitCode": 0, "Restarting": False}, 1)
RESTARTING = ("restarting", {"Status": "restarting", "ExitCode": 3, "Restarting": True}, 1)


def test_a_restarted_container_shows_its_exit_code_once_it_exits_again() -> None:
    # Seen on the engine: after the restart policy started it again, State.ExitCode reads 0 until the next exit.
    healthy, reason, _ = _gate(_Container([RESTARTED_RUNNING, RESTARTED_RUNNING, RESTARTING]))
    assert not healthy
    assert (
        reason == "the container exited with code 3, restarted 1 time(s) by its restart policy: it crashes at start-up"
    )


def test_a_container_restarted_once_that_keeps_running_fails_without_a_made_up_code() -> None:
    healthy, reason, seconds = _gate(_Container([RESTARTED_RUNNING]))
    assert not healthy
    assert reason == "the container exited, restarted 1 time(s) by its restart policy: it crashes at start-up"
    assert CRASH_CODE_WAIT <= seconds < CRASH_CODE_WAIT + 1  # waited a little for the code, not the 600 s timeout


def test_an_exited_container_fails_at_once_with_its_code() -> None:
    healthy, reason, seconds = _gate(_Container([("exited", {"Status": "exited", "ExitCode": 3}, 0)]))
    assert (healthy, reason, seconds) == (False, "the container exited with code 3: it crashes at start-up", 0.0)
