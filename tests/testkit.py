"""Helpers the tests import (tests/ is on pytest's pythonpath; conftest.py cannot be imported)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

REGISTRY = "127.0.0.1:5000"  # started by .ci/services


def _wait_http(url: str, seconds: float = 15) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # 401 is an answer
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def start_registry(directory: Path, port: int, htpasswd: Path | None = None) -> subprocess.Popen[bytes]:
    """A docker-registry on 127.0.0.1:<port> (optionally with htpasswd auth)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.yml"
    auth = f"auth:\n  htpasswd:\n    realm: agentdeploy-test\n    path: {htpasswd}\n" if htpasswd else ""
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {directory / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{auth}"
    )
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _wait_http(f"http://127.0.0.1:{port}/v2/")
    return process
