"""State artifacts: a later run (a rollback at 3 a.m.) finds the newest state an earlier run uploaded.

GitHub REST: GET /repos/{repo}/actions/artifacts?name=... lists artifacts of the whole repository,
newest first; the zip comes from archive_download_url. The token needs `actions: read`.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from agentdeploy.errors import StateError

TIMEOUT = 30


def artifact_name(agent: str, environment: str) -> str:
    """One artifact name per agent and environment, so two agents never replace each other's record."""
    return f"agentdeploy-state-{agent}-{environment}"


def fetch_state_artifact(
    *, api_url: str, repository: str, token: str, name: str, destination: Path, session: Any = None
) -> bool:
    """Write the newest unexpired artifact `name`'s JSON file to `destination`. False when there is none."""
    import requests

    http = session or requests.Session()
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}
    listing = http.get(
        f"{api_url.rstrip('/')}/repos/{repository}/actions/artifacts",
        params={"name": name, "per_page": "20"},
        headers=headers,
        timeout=TIMEOUT,
    )
    if listing.status_code in (401, 403):
        raise StateError(
            f"GitHub refused to list the artifacts of {repository} (HTTP {listing.status_code})",
            hint="give the job `permissions: actions: read`",
        )
    if listing.status_code != 200:
        raise StateError(f"listing the state artifacts of {repository} failed (HTTP {listing.status_code})")
    candidates = [a for a in listing.json().get("artifacts") or [] if a.get("name") == name and not a.get("expired")]
    if not candidates:
        return False
    newest = max(candidates, key=lambda a: str(a.get("created_at") or ""))
    archive = http.get(newest["archive_download_url"], headers=headers, timeout=TIMEOUT)
    if archive.status_code != 200:
        raise StateError(f"downloading state artifact {name} failed (HTTP {archive.status_code})")
    with zipfile.ZipFile(io.BytesIO(archive.content)) as bundle:
        files = [entry for entry in bundle.namelist() if entry.endswith(".json")]
        if len(files) != 1:
            raise StateError(f"state artifact {name} holds {len(files)} JSON files, expected one")
        data = bundle.read(files[0])
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(destination.name + ".download")
    temporary.write_bytes(data)
    temporary.replace(destination)
    return True
