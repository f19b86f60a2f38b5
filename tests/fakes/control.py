"""The tester's routes of the fake Azure: JSON under /_fake/ on the fake's own URL (the same HTTPS server and
port as ARM), so whatever a test stages in-process through FakeArm is also reachable when the fake runs as a
process (tests/fakes/serve.py). ARM paths start with /subscriptions/ and Entra's with a tenant, which cannot be
"_fake", so nothing collides. The routes need no bearer token (they are the tester's, not ARM's; the server
listens on 127.0.0.1 only) and are not written to the request log, which keeps showing what ARM, Entra and
GitHub saw.

    GET   /_fake                                   this list
    POST  /_fake/images        {"image", "behaviour", "start_seconds"}           FakeArm.set_image_behaviour
    GET   /_fake/images                                                          the behaviours set so far
    POST  /_fake/faults        {"status", "count", "retry_after", "method", "path", "code", "message"}   FakeArm.inject
                               {"kind": "failed-operation", "code", "message", "count"}     fail_next_operation
                               {"kind": "drop-connection", "count", "method", "path"}       inject(reset=True)
    GET   /_fake/faults                                                          the faults still pending
    DELETE /_fake/faults                                                         drop every pending fault
    GET   /_fake/apps                                                            every app, as ARM's GET renders it
    GET   /_fake/apps/{sub}/{rg}/{app}             the app (with secret values), its revisions, traffic and labels
    PATCH /_fake/apps/{sub}/{rg}/{app}             an ARM-shaped merge patch made by "someone else" (the portal)
    POST  /_fake/apps/{sub}/{rg}/{app}/revisions/{revision}/purge                FakeArm.forget_revision
    POST  /_fake/apps/{sub}/{rg}/{app}/revisions/{revision}/fail {"details"}     FakeArm.fail_revision
    POST  /_fake/apps/{sub}/{rg}/{app}/revisions/{revision}/logs {"lines", "system", "end"}   what it prints
    POST  /_fake/logs          {"image", "lines"}                             what its replicas print
    POST  /_fake/resource-groups {"subscription", "name", "location"}              FakeArm.add_resource_group
    POST  /_fake/environments  {"subscription", "resource_group", "name", "location", "domain"}
    POST  /_fake/tokens        {"token"}                                         FakeArm.allow_token
    POST  /_fake/identities    {"subscription", "resource_group", "name"}        FakeArm.rbac.add_identity
    POST  /_fake/identities/{sub}/{rg}/{name}/credentials {"name", "subject", "issuer", "audiences"}
    POST  /_fake/role-assignments {"scope", "role", "principal_id"}              FakeArm.rbac.add_role_assignment
    GET   /_fake/identities, GET /_fake/role-assignments                         what is staged (fakes.rbac)
    GET   /_fake/requests[?since=N]                the request log, bodies included
    GET   /_fake/writes[?since=N]                  the writes in it (FakeArm.writes)
    POST  /_fake/clock         {"advance": seconds}                              FakeArm.advance
    GET   /_fake/settings, POST /_fake/settings {"provisioning_delay", "deactivation_delay",
                               "entra_token_lifetime", "github_token_lifetime"}

Answers are JSON; an unknown route is 404 and a body that does not fit is 400, both as {"error": "..."}.
"""

from __future__ import annotations

import json
import math
import re
import traceback
from typing import TYPE_CHECKING, Any

from fakes import rbac
from fakes.arm import INJECTED_ERRORS, Headers, RecordedRequest
from fakes.arm_state import BEHAVIOURS, ApiError, Reply

if TYPE_CHECKING:
    from fakes.arm import FakeArm

PREFIX = "/_fake"
SOMEONE_ELSE = "someone else"
PORTAL_API_VERSION = "2026-07-01"  # written into the Location of a change made by someone else
FAULT_KINDS = ("status", "failed-operation", "drop-connection")
SETTINGS = ("provisioning_delay", "deactivation_delay", "entra_token_lifetime", "github_token_lifetime")


def is_control(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def handle(fake: FakeArm, method: str, path: str, query: dict[str, str], raw: bytes) -> Reply:
    """Answer one control request. The caller holds the fake's lock."""
    try:
        return _route(fake, method, [s for s in path[len(PREFIX) :].split("/") if s], query, raw)
    except ControlError as error:
        return Reply(error.status, {"error": str(error)})
    except Exception:
        fake.server_errors.append(traceback.format_exc())
        return Reply(500, {"error": "the fake failed: see its server_errors (report.json)"})


# ---------------------------------------------------------------------------------------------------------------
# Routing
# ---------------------------------------------------------------------------------------------------------------


def _route(fake: FakeArm, method: str, seg: list[str], query: dict[str, str], raw: bytes) -> Reply:
    where = "/".join([PREFIX, *seg])
    if not seg:
        _allow(method, "GET", where)
        return Reply(200, {"routes": [line[4:] for line in _doc_routes()]})
    head, rest = seg[0], seg[1:]
    if head == "images" and not rest:
        if _allow(method, "GET POST", where) == "GET":
            rules = fake.state.image_rules
            return Reply(
                200, {k: {"behaviour": r.behaviour, "start_seconds": r.start_seconds} for k, r in rules.items()}
            )
        return _set_image(fake, _body(raw))
    if head == "faults" and not rest:
        verb = _allow(method, "GET POST DELETE", where)
        if verb == "GET":
            return Reply(200, _faults(fake))
        if verb == "DELETE":
            fake._injections.clear()
            fake.state.pending_failures.clear()
            return Reply(200, _faults(fake))
        return _add_fault(fake, _body(raw))
    if head == "apps":
        return _apps(fake, method, rest, raw, where)
    if head in ("identities", "role-assignments"):  # Microsoft.ManagedIdentity and Authorization: fakes.rbac
        return rbac.control(fake.rbac, head, method, rest, raw)
    if head == "logs" and not rest:  # fakes.logstream: what every replica of an image prints
        _allow(method, "POST", where)
        try:
            return Reply(200, fake.logstreams.print_for_image(_body(raw)))
        except ValueError as error:
            raise ControlError(400, str(error)) from None
    if head == "resource-groups" and not rest:
        _allow(method, "POST", where)
        given = _fields(_body(raw), required={"subscription": str, "name": str}, optional={"location": str})
        fake.add_resource_group(given["subscription"], given["name"], given.get("location", "eastus"))
        return Reply(201, {"id": f"/subscriptions/{given['subscription']}/resourceGroups/{given['name']}"})
    if head == "environments" and not rest:
        _allow(method, "POST", where)
        return _add_environment(fake, _body(raw))
    if head == "tokens" and not rest:
        _allow(method, "POST", where)
        token = _fields(_body(raw), required={"token": str})["token"]
        fake.allow_token(token)
        return Reply(200, {"allowed": True})
    if head in ("requests", "writes") and not rest:
        _allow(method, "GET", where)
        since = _since(query)
        records = list(enumerate(fake.requests))
        if head == "writes":
            writes = {id(r) for r in fake.writes()}
            records = [(i, r) for i, r in records if id(r) in writes]
        return Reply(200, {"value": [_render_request(i, r) for i, r in records if i >= since]})
    if head == "clock" and not rest:
        if _allow(method, "GET POST", where) == "POST":
            seconds = _fields(_body(raw), required={"advance": float})["advance"]
            if seconds < 0:
                raise ControlError(400, "advance: the clock only moves forward (seconds >= 0)")
            fake.advance(seconds)
        return Reply(200, {"offset": fake.clock.offset})
    if head == "settings" and not rest:
        if _allow(method, "GET POST", where) == "POST":
            given = _fields(_body(raw), optional=dict.fromkeys(SETTINGS, float))
            negative = [name for name, value in given.items() if value < 0]
            if negative:
                raise ControlError(400, f"{', '.join(negative)}: must be >= 0")
            for name, value in given.items():
                setattr(fake, name, int(value) if name == "entra_token_lifetime" else value)
        return Reply(200, {name: getattr(fake, name) for name in SETTINGS})
    raise ControlError(404, f"no control route {method} {where}: GET {PREFIX} lists them")


def _apps(fake: FakeArm, method: str, rest: list[str], raw: bytes, where: str) -> Reply:
    state = fake.state
    if not rest:
        _allow(method, "GET", where)
        state.settle()
        return Reply(200, {"value": [state.render_app(a) for a in state.apps.values()]})
    if len(rest) == 3:
        sub, rg, name = rest
        if _allow(method, "GET PATCH", where) == "PATCH":
            return _patch_as_someone_else(fake, sub, rg, name, _body(raw), raw)
        return Reply(200, _app_view(fake, sub, rg, name))
    if len(rest) == 6 and rest[3] == "revisions" and rest[5] == "fail":
        _allow(method, "POST", where)
        sub, rg, name, _, revision, _ = rest
        details = _fields(_body(raw) if raw.strip() else {}, optional={"details": str}).get("details")
        try:
            fake.fail_revision(sub, rg, name, revision, details)
        except KeyError:
            raise ControlError(404, f"no revision {revision} in app {sub}/{rg}/{name}") from None
        return Reply(200, {"failed": revision})
    if len(rest) == 6 and rest[3] == "revisions" and rest[5] == "logs":  # fakes.logstream
        _allow(method, "POST", where)
        try:
            return Reply(200, fake.logstreams.print_lines(*rest[:3], rest[4], _body(raw)))
        except ValueError as error:
            raise ControlError(400, str(error)) from None
        except ApiError:
            raise ControlError(404, f"no revision {rest[4]} in app {'/'.join(rest[:3])}") from None
    if len(rest) == 6 and rest[3] == "revisions" and rest[5] == "purge":
        _allow(method, "POST", where)
        sub, rg, name, _, revision, _ = rest
        try:
            fake.forget_revision(sub, rg, name, revision)
        except KeyError:
            raise ControlError(404, f"no revision {revision} in app {sub}/{rg}/{name}") from None
        except ValueError as error:
            raise ControlError(409, f"{revision}: {error}") from None
        return Reply(200, {"purged": revision})
    raise ControlError(404, f"no control route {method} {where}: GET {PREFIX} lists them")


def _allow(method: str, allowed: str, where: str) -> str:
    if method not in allowed.split():
        raise ControlError(405, f"{where} takes {' or '.join(allowed.split())}, not {method}")
    return method


def _doc_routes() -> list[str]:
    lines = (__doc__ or "").split("\n\n")[1].splitlines()
    return [line for line in lines if line.strip()]


# ---------------------------------------------------------------------------------------------------------------
# Bodies
# ---------------------------------------------------------------------------------------------------------------


def _body(raw: bytes) -> dict[str, Any]:
    """A JSON object, whatever the Content-Type says (curl -d sends form-urlencoded)."""
    if not raw.strip():
        raise ControlError(400, "the body must be a JSON object, and it is empty")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise ControlError(400, f"the body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise ControlError(400, f"the body must be a JSON object, not {type(body).__name__}")
    return body


def _fields(
    body: dict[str, Any], *, required: dict[str, type] | None = None, optional: dict[str, type] | None = None
) -> dict[str, Any]:
    """The body's fields checked against their types (float accepts any finite number); unknown fields are an
    error, so a typo (retry-after) does not pass silently."""
    required, optional = required or {}, optional or {}
    unknown = sorted(set(body) - set(required) - set(optional))
    if unknown:
        known = ", ".join([*required, *optional])
        raise ControlError(400, f"unknown field(s) {', '.join(unknown)}: this route takes {known}")
    missing = [name for name in required if body.get(name) is None]
    if missing:
        raise ControlError(400, f"missing field(s): {', '.join(missing)}")
    out: dict[str, Any] = {}
    for name, kind in {**required, **optional}.items():
        value = body.get(name)
        if value is None:
            continue
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ControlError(400, f"{name}: expected a number, got {json.dumps(value)}")
            value = float(value)
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ControlError(400, f"{name}: expected an integer, got {json.dumps(value)}")
        elif not isinstance(value, kind):
            raise ControlError(400, f"{name}: expected a {kind.__name__}, got {json.dumps(value)}")
        out[name] = value
    return out


def _since(query: dict[str, str]) -> int:
    try:
        return int(query.get("since") or 0)
    except ValueError:
        raise ControlError(400, f"since: expected an index, got {query['since']!r}") from None


# ---------------------------------------------------------------------------------------------------------------
# Actions
# ---------------------------------------------------------------------------------------------------------------


def _set_image(fake: FakeArm, body: dict[str, Any]) -> Reply:
    given = _fields(body, required={"image": str, "behaviour": str}, optional={"start_seconds": float})
    if given["behaviour"] not in BEHAVIOURS:
        raise ControlError(400, f"behaviour: {given['behaviour']!r} is not one of {', '.join(BEHAVIOURS)}")
    start = given.get("start_seconds", 0.0)
    if start < 0:
        raise ControlError(400, "start_seconds: must be >= 0")
    if not given["image"]:
        raise ControlError(400, "image: must not be empty (it would match every image)")
    fake.set_image_behaviour(given["image"], given["behaviour"], start_seconds=start)
    return Reply(200, {"image": given["image"], "behaviour": given["behaviour"], "start_seconds": start})


def _add_fault(fake: FakeArm, body: dict[str, Any]) -> Reply:
    kind = body.get("kind", "status")
    if kind not in FAULT_KINDS:
        raise ControlError(400, f"kind: {kind!r} is not one of {', '.join(FAULT_KINDS)}")
    rest = {k: v for k, v in body.items() if k != "kind"}
    if kind == "failed-operation":
        given = _fields(rest, optional={"code": str, "message": str, "count": int})
        count = _count(given)
        for _ in range(count):
            fake.fail_next_operation(given.get("code") or "ContainerAppOperationError", given.get("message"))
        return Reply(200, {"kind": kind, "count": count, **_faults(fake)})
    filters = {"count": int, "method": str, "path": str}
    if kind == "drop-connection":
        given = _fields(rest, optional=filters)
        fake.inject(reset=True, **_filters(given))
        return Reply(200, {"kind": kind, **_faults(fake)})
    given = _fields(
        rest, required={"status": int}, optional={**filters, "retry_after": float, "code": str, "message": str}
    )
    status = given["status"]
    if not 400 <= status <= 599:
        raise ControlError(400, f"status: {status} is not an error status (400-599)")
    if given.get("retry_after", 0.0) < 0:
        raise ControlError(400, "retry_after: must be >= 0")
    error_body = None
    if "code" in given or "message" in given:
        code, message = INJECTED_ERRORS.get(status, ("Error", "The request failed."))
        error_body = {"error": {"code": given.get("code", code), "message": given.get("message", message)}}
    fake.inject(status=status, retry_after=given.get("retry_after"), body=error_body, **_filters(given))
    return Reply(200, {"kind": kind, **_faults(fake)})


def _count(given: dict[str, Any]) -> int:
    count: int = given.get("count", 1)
    if count < 1:
        raise ControlError(400, "count: must be >= 1")
    return count


def _filters(given: dict[str, Any]) -> dict[str, Any]:
    """count, method, and path as a plain substring of the request's path (without the query)."""
    method = given.get("method")
    if method is not None and method.upper() not in ("GET", "PUT", "PATCH", "DELETE", "POST", "HEAD"):
        raise ControlError(400, f"method: {method!r} is not an HTTP method")
    path = given.get("path")
    return {
        "count": _count(given),
        "method": method.upper() if method else None,
        "path_regex": re.escape(path) if path else None,
    }


def _faults(fake: FakeArm) -> dict[str, Any]:
    pending = []
    for injection in fake._injections:
        if injection.count <= 0:
            continue
        pattern = injection.path_regex.pattern if injection.path_regex else None
        pending.append(
            {
                "kind": "drop-connection" if injection.reset else "status",
                "status": injection.status,
                "count": injection.count,
                "retry_after": injection.retry_after,
                "method": injection.method,
                "path": _unescape(pattern) if pattern is not None else None,
            }
        )
    failures = [{"kind": "failed-operation", **f} for f in fake.state.pending_failures]
    return {"pending": pending + failures}


def _unescape(pattern: str) -> str:
    """The substring given to _filters (a regex from FakeArm.inject shows as it is)."""
    plain = re.sub(r"\\(.)", r"\1", pattern)
    return plain if re.escape(plain) == pattern else pattern


def _add_environment(fake: FakeArm, body: dict[str, Any]) -> Reply:
    given = _fields(
        body,
        required={"subscription": str, "resource_group": str, "name": str},
        optional={"location": str, "domain": str},
    )
    domain = fake.add_managed_environment(
        given["subscription"],
        given["resource_group"],
        given["name"],
        given.get("location", "eastus"),
        domain=given.get("domain"),
    )
    env = fake.state.environments[
        (given["subscription"].lower(), given["resource_group"].lower(), given["name"].lower())
    ]
    return Reply(201, {"id": env.id, "defaultDomain": domain})


def _app_view(fake: FakeArm, sub: str, rg: str, name: str) -> dict[str, Any]:
    fake.state.settle()
    app = fake.state.find_app(sub, rg, name)
    if app is None:
        raise ControlError(404, f"no app {name} in {sub}/{rg}")
    now = fake.clock.now()
    latest = fake.state.latest_target(app, now)
    traffic, labels = [], {}
    for entry in fake.state.traffic_entries(app):
        serving = latest.name if entry.get("latestRevision") and latest else entry.get("revisionName")
        traffic.append({**entry, "revision": serving})
        if entry.get("label"):
            labels[entry["label"]] = serving
    return {
        "app": fake.app(sub, rg, name),
        "revisions": fake.revisions(sub, rg, name),
        "traffic": traffic,
        "weights": fake.state.traffic_weights(app, now),
        "labels": labels,
    }


def _patch_as_someone_else(fake: FakeArm, sub: str, rg: str, name: str, body: dict[str, Any], raw: bytes) -> Reply:
    """The same code path as ARM's PATCH (a new revision when the template changes, failures staged with
    failed-operation apply), recorded in the request log with by="someone else"."""
    path = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.App/containerApps/{name}"
    record = RecordedRequest("PATCH", path, {"api-version": PORTAL_API_VERSION}, Headers(), body, raw, by=SOMEONE_ELSE)
    fake.requests.append(record)
    try:
        fake.state.settle()
        reply = fake.state.patch_app(sub, rg, name, body, PORTAL_API_VERSION)
    except ApiError as error:
        reply = error.reply
    record.status, record.response_body, record.response_headers = reply.status, reply.body, Headers(reply.headers)
    if reply.status >= 400:
        inner = reply.body.get("error", reply.body) if isinstance(reply.body, dict) else {}
        message = f"ARM answered {reply.status} {inner.get('code')}: {inner.get('message')}"
        raise ControlError(reply.status, message)
    app = fake.state.find_app(sub, rg, name)
    assert app is not None
    return Reply(
        202,
        {
            "operation": reply.headers.get("Location"),
            "latestRevisionName": app.latest_revision,
            "provisioningState": fake.state.provisioning_state(app, fake.clock.now()),
        },
    )


def _render_request(index: int, record: RecordedRequest) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": index,
        "method": record.method,
        "path": record.path,
        "query": record.query,
        "status": record.status,  # None: the connection was dropped (drop-connection)
        "by": record.by or "client",
        "body": record.body,
    }
    if record.body is None and record.raw:
        out["raw"] = record.raw.decode("utf-8", "replace")
    out["response"] = record.response_body
    kept = ("Location", "Azure-AsyncOperation", "Retry-After")
    out["response_headers"] = {k: record.response_headers[k] for k in kept if k in record.response_headers}
    return out
