"""The real-runtime base image for tests: what `agentdeploy base build` makes with its defaults (holodeck-ai
[openai-agents] 0.7.1 from PyPI, pinned, on a Debian bookworm rootfs made by mmdebstrap here, where nothing can
be pulled), through the product's own builder (agentdeploy.image.base).

Built once per machine and found again by its content key (over the starting image and the recipe in
src/agentdeploy/image/templates/base/), so a second test run, a second test, or a user's `agentdeploy base
build` reuses it; a changed recipe builds a new one. Run this file to build it ahead of the tests and print
its name and the time it took:

    python tests/realbase.py
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from agentdeploy.image.base import BaseRecipe, ensure_base


def ensure_real_base(client: Any, log: Callable[[str], None] = print, *, cold: bool = False) -> str:
    """The base image's name, building it first when this machine does not have it yet (with `cold`:
    from nothing, the rootfs included and no layer cache, as a fresh machine does)."""
    shown = (lambda line: None) if not cold else log  # the whole pip log only when asked to build cold
    made = ensure_base(client, BaseRecipe(), rebuild=cold, on_line=lambda line: _progress(line, log, shown))
    if made.built:
        log(f"built {made.name} in {made.seconds:.0f}s")
    return made.name


def _progress(line: str, log: Callable[[str], None], shown: Callable[[str], None]) -> None:
    # The steps and our own lines, not every line pip prints.
    if line.startswith(("Step ", "building ", "making ", "pulling ")):
        log(line)
    else:
        shown(line)


if __name__ == "__main__":
    import docker

    started = time.monotonic()
    print(ensure_real_base(docker.from_env()), f"({time.monotonic() - started:.1f}s)")
    sys.exit(0)
