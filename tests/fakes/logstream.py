"""The fake's Container Apps log stream: what `az containerapp logs show` talks to, mounted on FakeArm.

Built from the Azure CLI's own use of it (azure-cli, command_modules/containerapp: custom.py
`stream_containerapp_logs`, _clients.py `get_auth_token` and `list_replicas`, _validators.py
`_set_ssh_defaults`) and the SDK's models (ContainerAppAuthToken, ReplicaCollection):

- ARM: POST `.../containerApps/{app}/getAuthToken` -> `{"properties": {"token", "expires"}}` (the SDK spells it
  getAuthtoken: ARM paths are case-insensitive); GET `.../revisions/{rev}/replicas[/{replica}]` -> the replicas
  of a revision that runs (one per minimum replica; none while it provisions, is inactive, never started, failed
  its activation, or sits scaled to zero);
- the stream, on the host of the app's eventStreamEndpoint (no `providers/Microsoft.App` in its paths, no
  api-version): GET `/subscriptions/{sub}/resourceGroups/{rg}/containerApps/{app}/revisions/{rev}/replicas/{replica}/
  containers/{container}/logstream?tailLines=N&follow=true|false&output=text` and `.../containerApps/{app}/eventstream`
  (system events, JSON lines). Only with `Authorization: Bearer <a token getAuthToken gave>`: 401 without it.
  `follow=true` keeps the answer open (chunked) and sends lines as the replica prints them.

What a replica prints is the tester's: POST /_fake/apps/{sub}/{rg}/{app}/revisions/{rev}/logs
`{"lines": [...], "system": [...], "end": false}` appends lines to its console log (and system events to the
app's); `"end": true` closes the followed streams of that revision. POST /_fake/logs `{"image", "lines"}` sets what
every replica of an image prints from its start (for a revision a release is about to make).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fakes.arm_state import ApiError, Reply, error_reply, revision_state, ticks

if TYPE_CHECKING:
    from fakes.arm import FakeArm, Headers
    from fakes.arm_state import App, Revision

MAX_TAIL = 300
TOKEN_LIFETIME = timedelta(hours=1)
NO_REPLICA_BEHAVIOURS = ("never-starts", "activation-failed")


@dataclass
class Streamed(Reply):
    """An answer written as it comes (chunked), not as one JSON body: see _Handler._serve in fakes.arm."""

    chunks: Iterator[bytes] = field(default_factory=lambda: iter(()))


@dataclass
class _Log:
    lines: list[str] = field(default_factory=list)
    ended: bool = False


def is_stream_path(lowered: list[str]) -> bool:
    """/subscriptions/{s}/resourceGroups/{rg}/containerApps/{app}/... without providers/: the stream's, not ARM's."""
    return (
        len(lowered) >= 7
        and lowered[0] == "subscriptions"
        and lowered[2] == "resourcegroups"
        and (lowered[4] == "containerapps" and lowered[-1] in ("logstream", "eventstream"))
    )


def replica_name(revision: str, index: int) -> str:
    """Stable, shaped like the service's (a Kubernetes pod's): <revision>-<10 hex>-<5 letters and digits>."""
    digest = hashlib.sha256(f"{revision}/{index}".encode()).hexdigest()
    return f"{revision}-{digest[:10]}-{digest[10:15]}"


class LogStreams:
    def __init__(self, fake: FakeArm) -> None:
        self.fake = fake
        self.tokens: set[str] = set()
        self.console: dict[tuple[str, ...], _Log] = {}  # (sub, rg, app, revision), lower-case
        self.system: dict[tuple[str, ...], _Log] = {}  # (sub, rg, app)
        self.image_prints: dict[str, list[str]] = {}  # what every replica of an image prints when it starts
        self.changed = threading.Condition()
        self.closed = False

    def close(self) -> None:
        with self.changed:
            self.closed = True
            self.changed.notify_all()

    # -- ARM ---------------------------------------------------------------------------------------------------

    def arm(self, method: str, app: App, low: list[str], seg: list[str]) -> Reply | None:
        """getAuthToken and the replica reads of one app; None for any other path."""
        if len(low) == 9 and low[8] == "getauthtoken" and method == "POST":
            return self._token(app)
        if len(low) in (11, 12) and low[8] == "revisions" and low[10] == "replicas" and method == "GET":
            rev = self.fake.state.require_revision(app, seg[9])
            replicas = [self._replica(app, rev, name) for name in self.replicas(app, rev)]
            if len(low) == 11:
                return Reply(200, {"value": replicas})
            found = [r for r in replicas if r["name"].lower() == low[11]]
            if not found:
                raise ApiError(404, "ResourceNotFound", f"Replica '{seg[11]}' was not found in revision '{rev.name}'.")
            return Reply(200, found[0])
        return None

    def _token(self, app: App) -> Reply:
        token = secrets.token_urlsafe(32)
        self.tokens.add(token)
        expires = self.fake.clock.wall() + TOKEN_LIFETIME
        app_id = f"/subscriptions/{app.sub}/resourceGroups/{app.rg}/providers/Microsoft.App/containerApps/{app.name}"
        return Reply(
            200,
            {
                "id": f"{app_id}/authtoken",
                "name": app.name,
                "type": "Microsoft.App/containerApps/authtoken",
                "location": app.env.location,
                "properties": {"token": token, "expires": ticks(expires)},
            },
        )

    def replicas(self, app: App, rev: Revision) -> list[str]:
        now = self.fake.clock.now()
        if not rev.active or rev.behaviour in NO_REPLICA_BEHAVIOURS or now < rev.provisioned_at:
            return []
        if rev.behaviour == "scale-to-zero" and not rev.woken:
            return []
        # A crash-looping replica stays listed (its container restarts): its log is what says why.
        count = max(1, rev.template["scale"].get("minReplicas") or 0)
        return [replica_name(rev.name, index) for index in range(count)]

    def _replica(self, app: App, rev: Revision, name: str) -> dict[str, Any]:
        state = revision_state(rev, self.fake.clock.now(), rev.template["scale"].get("minReplicas") or 0)
        crashing = rev.behaviour == "crashloop"
        restarted = rev.gone_bad(self.fake.clock.now(), "restarts")  # crashed and came back (FAILURES)
        containers = [
            {
                "name": container["name"],
                "containerId": "containerd://" + hashlib.sha256(f"{name}/{container['name']}".encode()).hexdigest(),
                "ready": state.serving,
                "started": not crashing,
                "restartCount": 5 if crashing else 3 if restarted else 0,
                "runningState": "Waiting" if crashing else "Running",
            }
            for container in rev.template["containers"]
        ]
        return {
            "id": f"/subscriptions/{app.sub}/resourceGroups/{app.rg}/providers/Microsoft.App/containerApps/{app.name}"
            f"/revisions/{rev.name}/replicas/{name}",
            "name": name,
            "type": "Microsoft.App/containerApps/revisions/replicas",
            "properties": {
                "createdTime": ticks(rev.created_wall),
                "runningState": "NotRunning" if crashing else "Running",
                "containers": containers,
            },
        }

    # -- the stream --------------------------------------------------------------------------------------------

    def serve(self, method: str, seg: list[str], query: dict[str, str], headers: Headers) -> Reply:
        low = [s.lower() for s in seg]
        authorization = headers.get("Authorization") or ""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or token not in self.tokens:
            return Reply(401, None, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if method != "GET":
            return error_reply(405, "MethodNotAllowed", f"The requested method {method} is not allowed.")
        state = self.fake.state
        app = state.require_app(seg[1], seg[3], seg[5])
        try:
            tail = int(query.get("tailLines") or 0)
        except ValueError:
            tail = -1
        if not 0 <= tail <= MAX_TAIL:
            return error_reply(400, "BadRequest", f"tailLines must be between 0 and {MAX_TAIL}.")
        follow = query.get("follow", "false").lower() == "true"
        key: tuple[str, ...]
        if low[-1] == "eventstream" and len(low) == 7:
            key = (app.sub.lower(), app.rg.lower(), app.name.lower())
            log = self.system.setdefault(key, _Log())
        elif len(low) == 13 and low[6] == "revisions" and low[8] == "replicas" and low[10] == "containers":
            rev = state.require_revision(app, seg[7])
            if low[9] not in [name.lower() for name in self.replicas(app, rev)]:
                return error_reply(404, "ReplicaNotFound", f"Replica '{seg[9]}' was not found.")
            if low[11] not in [c["name"].lower() for c in rev.template["containers"]]:
                return error_reply(404, "ContainerNotFound", f"Container '{seg[11]}' was not found.")
            log = self._console(app, rev)
        else:
            return error_reply(404, "NotFound", "No log stream at " + "/".join(seg))
        return Streamed(200, None, {"Content-Type": "text/plain; charset=utf-8"}, self._lines(log, tail, follow))

    def _lines(self, log: _Log, tail: int, follow: bool) -> Iterator[bytes]:
        with self.changed:
            sent = len(log.lines)
            first = log.lines[sent - tail :] if tail else []
        for line in first:
            yield (line + "\n").encode()
        while follow:
            with self.changed:
                while len(log.lines) == sent and not log.ended and not self.closed:
                    self.changed.wait(0.5)
                fresh, sent = log.lines[sent:], len(log.lines)
                done = log.ended or self.closed
            for line in fresh:
                yield (line + "\n").encode()
            if done:
                return

    def _console(self, app: App, rev: Revision) -> _Log:
        key = (app.sub.lower(), app.rg.lower(), app.name.lower(), rev.name.lower())
        if key not in self.console:
            image = str(rev.template["containers"][0].get("image") or "")
            self.console[key] = _Log(list(self.image_prints.get(image, [])))
        return self.console[key]

    # -- the tester's control route ----------------------------------------------------------------------------

    def print_lines(self, sub: str, rg: str, name: str, revision: str, body: dict[str, Any]) -> dict[str, Any]:
        """What a replica of `revision` prints (`lines`), what the platform says (`system`), `end` closes."""
        app = self.fake.state.require_app(sub, rg, name)
        rev = self.fake.state.require_revision(app, revision)
        lines, events = body.get("lines") or [], body.get("system") or []
        if not all(isinstance(line, str) for line in lines) or not all(isinstance(e, dict) for e in events):
            raise ValueError("lines: a list of strings; system: a list of objects")
        with self.changed:
            console = self.console.setdefault(
                (app.sub.lower(), app.rg.lower(), app.name.lower(), rev.name.lower()), _Log()
            )
            console.lines.extend(lines)
            system = self.system.setdefault((app.sub.lower(), app.rg.lower(), app.name.lower()), _Log())
            for event in events:
                system.lines.append(json.dumps({"ContainerAppName": app.name, "RevisionName": rev.name, **event}))
            if body.get("end"):
                console.ended = system.ended = True
            self.changed.notify_all()
            return {"revision": rev.name, "lines": len(console.lines), "system": len(system.lines)}

    def print_for_image(self, body: dict[str, Any]) -> dict[str, Any]:
        image, lines = body.get("image"), body.get("lines")
        if not isinstance(image, str) or not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
            raise ValueError("image: a string; lines: a list of strings")
        with self.changed:
            self.image_prints[image] = list(lines)
        return {"image": image, "lines": len(lines)}
