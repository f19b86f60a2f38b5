"""Reading a container for the gate: a crash loop its restart policy hides (from the state the engine reports),
and the last lines it printed (for the error, targets/health.model_call_hint reads them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from docker.models.containers import Container

LOG_LINES_ON_FAILURE = 20
CRASH_CODE_WAIT = 5.0  # seconds to wait for the exit code of a container its restart policy started again


def exit_code_hidden(container: Container) -> bool:
    state = container.attrs.get("State", {})
    return container.status == "running" and not state.get("Restarting") and not state.get("ExitCode")


def crash(container: Container) -> str:
    """Why the container is not running its first start any more ("" while it is)."""
    state = container.attrs.get("State", {})
    restarts = int(container.attrs.get("RestartCount") or 0)
    if container.status in ("exited", "dead") or restarts > 0 or state.get("Restarting"):
        code = state.get("ExitCode")
        again = f", restarted {restarts} time(s) by its restart policy" if restarts else ""
        if exit_code_hidden(container):
            return f"the container exited{again}: it crashes at start-up"
        return f"the container exited with code {code}{again}: it crashes at start-up"
    return ""


def first_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def tail(container: Container, lines: int = LOG_LINES_ON_FAILURE) -> list[str]:
    try:
        return [str(line) for line in container.logs(tail=lines).decode(errors="replace").splitlines()]
    except Exception:
        return []


def lines_of(container: Container, *, tail: int, follow: bool) -> Iterator[str]:
    """The container's output as lines: the last `tail`, then (`follow`) what it prints until it stops."""
    if not follow:
        yield from container.logs(tail=tail).decode(errors="replace").splitlines()
        return
    buffer = b""
    for chunk in container.logs(stream=True, follow=True, tail=tail):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line.decode(errors="replace")
    if buffer:
        yield buffer.decode(errors="replace")
