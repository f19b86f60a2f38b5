"""The timing half of scripts/bench_workflow.py: the harness's Job timed from outside, and the pure readers of what
it measured (the run steps' stamps, the installs, the tool's share). Imported by bench_workflow.py; not a benchmark
of its own."""

from __future__ import annotations

import os
import re
import shlex
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from action import harness  # noqa: E402

# Passes the run step's output on unchanged and writes the time each ::group:: / ::endgroup:: line arrived.
STAMPER = r"""
import sys, time
with open(sys.argv[1], "a") as marks:
    for line in sys.stdin.buffer:
        now = time.time()
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
        text = line.decode("utf-8", "replace").strip()
        if text.startswith(("::group::", "::endgroup::")):
            marks.write(f"{now:.6f} {text}\n")
            marks.flush()
"""


class TimedJob(harness.Job):
    """The harness's Job, each piece timed from outside. run_workflow makes its jobs through `harness.Job`, which
    `timed_jobs()` points here for the time of a run."""

    made: ClassVar[list[TimedJob]] = []
    scratch: ClassVar[Path]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.install_logs: list[str] = []
        handle, name = tempfile.mkstemp(prefix="marks-", dir=TimedJob.scratch)
        os.close(handle)
        self.marks = Path(name)
        super().__init__(*args, **kwargs)
        action = yaml.safe_load((self.world.action / "action.yml").read_text())
        self.step_of = {
            step["run"]: step.get("id") or step["name"] for step in action["runs"]["steps"] if "run" in step
        }
        TimedJob.made.append(self)

    @contextmanager
    def timing(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def checkout(self, options: Mapping[str, Any]) -> tuple[int, dict[str, str], str]:
        with self.timing("checkout"):
            return super().checkout(options)

    def cache(self, path: Path, key: str) -> tuple[int, dict[str, str], str]:
        with self.timing("restore"):
            return super().cache(path, key)

    def shell(self, script: str, env: Mapping[str, str]) -> tuple[int, dict[str, str], str]:
        step = self.step_of.get(script, "workflow run step")
        if step == "run":
            # The same command, its stdout through the stamper; pipefail keeps its exit code.
            marks, python = shlex.quote(str(self.marks)), shlex.quote(sys.executable)
            script = (
                f"trap 'echo \"${{EPOCHREALTIME/,/.}} exit\" >> {marks}' EXIT\n"
                f'echo "${{EPOCHREALTIME/,/.}} start" >> {marks}\n'
                f"{script} | {python} -c {shlex.quote(STAMPER)} {marks}\n"
            )
        with self.timing(step):
            code, outputs, log = super().shell(script, env)
        if step == "install":
            self.install_logs.append(log)
        return code, outputs, log

    def run_action(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, str], str]:
        with self.timing("action"):
            return super().run_action(*args, **kwargs)

    def finish(self) -> None:
        with self.timing("post"):
            super().finish()

    def run_marks(self) -> list[RunMarks]:
        """Each run step of this job (one per use of the action), from its stamped lines."""
        lines = [line.split(" ", 1) for line in self.marks.read_text().splitlines()]
        return split_runs([(float(stamp), text) for stamp, text in lines])


@dataclass(frozen=True)
class RunMarks:
    startup: float  # the process's start to its first ::group:: (the whole run when it has no stages)
    tail: float  # its last ::endgroup:: to its exit
    grouped: float  # the stages' groups together
    whole: float


def split_runs(times: list[tuple[float, str]]) -> list[RunMarks]:
    """The stamps of a job's run steps, one `start` ... `exit` each. A run without stages (`command: agents`) is
    start-up alone: all of it is our own code."""
    runs: list[RunMarks] = []
    current: list[tuple[float, str]] = []
    for stamp, text in times:
        current.append((stamp, text))
        if text != "exit":
            continue
        start, end = current[0][0], stamp
        opened = [at for at, line in current if line.startswith("::group::")]
        closed = [at for at, line in current if line.startswith("::endgroup::")]
        assert current[0][1] == "start" and len(opened) == len(closed), f"unpaired stamps: {current}"
        if opened:
            grouped = sum(b - a for a, b in zip(opened, closed, strict=True))
            runs.append(RunMarks(opened[0] - start, end - closed[-1], grouped, end - start))
        else:
            runs.append(RunMarks(end - start, 0.0, 0.0, end - start))
        current = []
    return runs


def tool_share(python_and_key: float, install: float, startup: float, plan: float, tail: float) -> float:
    """The tool's own share: the sum of its measured parts (each a duration, never negative), not the run step's
    total minus docker's and Azure's stages (two clocks whose difference can come out below zero)."""
    parts = (python_and_key, install, startup, plan, tail)
    assert all(part >= 0 for part in parts), f"a measured part is negative: {parts}"
    return sum(parts)


def installers(install_logs: list[str]) -> str:
    """What each use of the action did to install, in order: `uv 4s`, `pip 30s`, or `cached` (the environment
    restored by actions/cache was current)."""
    done = []
    for log in install_logs:
        found = re.search(r"installed with (\w+) in (\d+)s", log)
        done.append(f"{found.group(1)} {found.group(2)}s" if found else "cached")
    return ", ".join(done)


@contextmanager
def timed_jobs() -> Iterator[None]:
    original = harness.Job
    harness.Job = TimedJob  # type: ignore[misc]
    try:
        yield
    finally:
        harness.Job = original  # type: ignore[misc]
