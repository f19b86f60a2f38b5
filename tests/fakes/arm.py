"""FakeArm: an HTTPS fake of Azure Resource Manager's Microsoft.App API on 127.0.0.1, plus a fake Entra token
endpoint and a fake GitHub Actions OIDC endpoint on the same server.

    with FakeArm(tls_files.cert, tls_files.key, provisioning_delay=0.3) as arm:
        arm.add_resource_group(SUB, "rg")
        domain = arm.add_managed_environment(SUB, "rg", "env")
        ...  # drive it with the real azure-mgmt-appcontainers SDK at base_url=arm.base_url

The rules live in fakes.arm_state (ARM) and fakes.identity (Entra, GitHub); this module is the thin HTTP shell:
routing, authentication of ARM calls, injected faults and the request log.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import struct
import threading
import traceback
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from agentdeploy.targets.health import ProbeAnswer
from fakes.arm_state import BAD_CONTENT, ApiError, ArmState, Clock, Reply, error_reply, not_found, short_location
from fakes.identity import IdentityState
from fakes.logstream import LogStreams, Streamed, is_stream_path
from fakes.rbac import RbacState

# The recorded shape of a default domain: <words>-<8 hex>.<region>.azurecontainerapps.io
DEFAULT_ENV_DOMAIN = "happyriver-5d4e2f1a.eastus.azurecontainerapps.io"
RESET = object()  # a reply that drops the connection instead of answering
ACTIONS = ("activate", "deactivate", "restart")


class Headers(dict[str, str]):
    """A dict of request headers with case-insensitive look-up."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__({k.lower(): v for k, v in dict(items).items()})

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


@dataclass
class RecordedRequest:
    method: str
    path: str  # decoded, without the query
    query: dict[str, str]
    headers: Headers
    body: Any  # parsed JSON, the fields of a form post, or None
    raw: bytes = b""
    status: int | None = None  # what the fake answered; None for a dropped connection
    response_headers: Headers = field(default_factory=Headers)
    response_body: Any = None
    by: str | None = None  # "someone else": a change made through PATCH /_fake/apps/... (fakes.control)


@dataclass
class Injection:
    status: int | None
    count: int
    retry_after: float | None
    method: str | None
    path_regex: re.Pattern[str] | None
    reset: bool
    body: Any

    def matches(self, method: str, path: str) -> bool:
        if self.count <= 0 or (self.method and self.method.upper() != method):
            return False
        if self.path_regex is None:
            return path.startswith("/subscriptions/")  # ARM calls only, unless told otherwise
        return self.path_regex.search(path) is not None


# Bodies of the real service for the statuses one is likely to inject.
INJECTED_ERRORS = {
    400: ("BadRequest", "The request is invalid."),
    401: ("InvalidAuthenticationToken", "The access token is invalid."),
    404: (
        "ResourceNotFound",
        "The Resource was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    ),
    408: ("RequestTimeout", "The request timed out."),
    409: ("Conflict", "The request conflicts with the current state of the resource."),
    429: (
        "SubscriptionRequestsThrottled",
        "Number of requests for subscription exceeded the limit. Please try again after some time.",
    ),
    500: ("InternalServerError", "There was an unexpected InternalServerError.  Please try again later."),
    502: (
        "BadGatewayConnection",
        "The network connectivity issue encountered for 'Microsoft.App'; cannot fulfill the request.",
    ),
    503: ("ServiceUnavailable", "The server is currently unable to handle the request. Please retry after some time."),
    504: (
        "GatewayTimeout",
        "The gateway did not receive a response from 'Microsoft.App' within the specified time period.",
    ),
}


class FakeArm:
    def __init__(
        self, cert: Path, key: Path, *, provisioning_delay: float = 0.0, env_domain: str = DEFAULT_ENV_DOMAIN
    ) -> None:
        self._cert, self._key = Path(cert), Path(key)
        self._lock = threading.RLock()
        self.clock = Clock()
        self.state = ArmState(provisioning_delay=provisioning_delay, env_domain=env_domain, clock=self.clock)
        self.identity = IdentityState(self.clock)
        self.rbac = RbacState(self.state)  # Microsoft.ManagedIdentity and Microsoft.Authorization reads (fakes.rbac)
        self.logstreams = LogStreams(self)  # getAuthToken, replicas and the log stream (fakes.logstream)
        self.requests: list[RecordedRequest] = []
        self.chats: list[tuple[str, str]] = []  # (revision, message) of every chat turn a revision answered
        self.server_errors: list[str] = []  # tracebacks of bugs in the fake (answered 500)
        self._injections: list[Injection] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def __enter__(self) -> FakeArm:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self._cert), str(self._key))
        self._server = _Server(("127.0.0.1", 0), _Handler, context, self)
        port = self._server.server_address[1]
        self.base_url = f"https://127.0.0.1:{port}"
        self.state.base_url = self.identity.base_url = self.base_url
        server = self._server
        self._thread = threading.Thread(target=lambda: server.serve_forever(0.05), name="fake-arm", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.logstreams.close()  # followed log streams end, so their handler threads do
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -- knobs ---------------------------------------------------------------------------------------------------

    @property
    def provisioning_delay(self) -> float:
        """Seconds an operation stays InProgress and a new revision takes to provision (read when each starts)."""
        return self.state.provisioning_delay

    @provisioning_delay.setter
    def provisioning_delay(self, seconds: float) -> None:
        with self._lock:
            self.state.provisioning_delay = seconds

    @property
    def deactivation_delay(self) -> float:
        """Single mode: seconds the previous revision stays active after its successor is ready (default 0; the
        recording showed the old revision still active with weight 0 a few seconds after the switch)."""
        return self.state.deactivation_delay

    @deactivation_delay.setter
    def deactivation_delay(self, seconds: float) -> None:
        with self._lock:
            self.state.deactivation_delay = seconds

    @property
    def env_domain(self) -> str:
        return self.state.env_domain

    @property
    def entra_token_lifetime(self) -> int:
        return self.identity.entra_token_lifetime

    @entra_token_lifetime.setter
    def entra_token_lifetime(self, seconds: int) -> None:
        self.identity.entra_token_lifetime = seconds

    @property
    def github_token_lifetime(self) -> float:
        return self.identity.github_token_lifetime

    @github_token_lifetime.setter
    def github_token_lifetime(self, seconds: float) -> None:
        self.identity.github_token_lifetime = seconds

    @property
    def oidc_request_url(self) -> str:
        return self.base_url + "/github/oidc/token"

    @property
    def oidc_request_token(self) -> str:
        return self.identity.oidc_request_token

    @property
    def github_tokens_issued(self) -> int:
        return len(self.identity.github_tokens)

    @property
    def issued_tokens(self) -> list[str]:
        return list(self.identity.access_tokens)

    def allow_token(self, token: str) -> None:
        with self._lock:
            self.identity.allowed_tokens.add(token)

    def advance(self, seconds: float) -> None:
        """Move the fake's clock forward (operations, provisioning, token lifetimes) without sleeping."""
        with self._lock:
            self.clock.offset += seconds

    # -- set-up --------------------------------------------------------------------------------------------------

    def add_resource_group(self, subscription_id: str, name: str, location: str = "eastus") -> None:
        with self._lock:
            self.state.add_resource_group(subscription_id, name, location)

    def add_managed_environment(
        self,
        subscription_id: str,
        resource_group: str,
        name: str,
        location: str = "eastus",
        *,
        domain: str | None = None,
        workload_profiles: list[dict[str, Any]] | None = None,
    ) -> str:
        """Returns the environment's default domain (env_domain unless `domain` is given). `workload_profiles`
        ([{"name": "Consumption", "workloadProfileType": "Consumption"}, {"name": "gpu", "workloadProfileType":
        "D4", ...}]) makes it a workload-profiles environment; without them it is Consumption-only."""
        with self._lock:
            env = self.state.add_environment(subscription_id, resource_group, name, location, domain, workload_profiles)
            return env.domain

    def set_image_behaviour(
        self,
        image: str,
        behaviour: str,
        *,
        start_seconds: float = 0.0,
        fails_after: float | None = None,
        failure: str = "",
    ) -> None:
        """healthy | unhealthy | crashloop | slow, for revisions made after this call whose image equals `image`
        or starts with it. `start_seconds` adds to the provisioning delay before the revision is up; `fails_after`
        seconds after it first runs it goes bad as `failure` says (unhealthy | restarts | wrong-answers:
        arm_state.FAILURES)."""
        with self._lock:
            self.state.set_image_behaviour(image, behaviour, start_seconds, fails_after, failure)

    def fail_next_operation(self, code: str = "ContainerAppOperationError", message: str | None = None) -> None:
        with self._lock:
            self.state.fail_next_operation(code, message)

    def inject(
        self,
        *,
        status: int | None = None,
        count: int = 1,
        retry_after: float | None = None,
        method: str | None = None,
        path_regex: str | None = None,
        reset: bool = False,
        body: dict[str, Any] | None = None,
    ) -> None:
        """The next `count` matching requests get `status` (with Retry-After when given, and the service's error
        body) or, with reset=True, a dropped connection. Without path_regex only ARM calls (/subscriptions/...)
        match; injections are used in the order they were made."""
        if status is None and not reset:
            raise ValueError("inject() needs a status or reset=True")
        with self._lock:
            regex = re.compile(path_regex) if path_regex else None
            self._injections.append(Injection(status, count, retry_after, method, regex, reset, body))

    def fail_revision(
        self, subscription_id: str, resource_group: str, app: str, revision: str, details: str | None = None
    ) -> None:
        """The service gives up on a revision that never started (one held in Activating by the never-starts
        behaviour, or any other): ActivationFailed, with `details` (default: the progress deadline) in
        runningStateDetails."""
        from fakes.arm_state import PROGRESS_DEADLINE

        with self._lock:
            self.state.settle()
            found = self.state.find_app(subscription_id, resource_group, app)
            rev = found.revision(revision) if found else None
            if found is None or rev is None:
                raise KeyError(f"no revision {revision} in {app}")
            rev.failed_details = details or PROGRESS_DEADLINE

    def forget_revision(self, subscription_id: str, resource_group: str, app: str, revision: str) -> None:
        """Purge an inactive revision, as the service does beyond its 100 kept inactive revisions (FACTS.md)."""
        with self._lock:
            self.state.settle()
            found = self.state.find_app(subscription_id, resource_group, app)
            rev = found.revision(revision) if found else None
            if found is None or rev is None:
                raise KeyError(f"no revision {revision} in {app}")
            if rev.active or revision == found.latest_revision:
                raise ValueError("only inactive revisions that are not the latest are purged")
            found.revisions.remove(rev)

    # -- assertions ----------------------------------------------------------------------------------------------

    def writes(self) -> list[RecordedRequest]:
        """PUT/PATCH/DELETE on Microsoft.App resources and the revision actions that change something."""
        with self._lock:
            return [r for r in self.requests if _is_write(r)]

    def budget(self, since: int = 0) -> dict[str, int]:
        """The request log from index `since`, counted: ARM `requests` (operation polls included), `writes`,
        `reads`, `gate_polls` (the reads between a write's completion and the next write: what a health gate
        asks while it waits) and Entra `tokens` issued."""
        with self._lock:
            records = self.requests[since:]
        counts = dict.fromkeys(("requests", "writes", "reads", "gate_polls", "tokens"), 0)
        written = in_gate = False
        for record in records:
            low = record.path.lower()
            if low.endswith("/oauth2/v2.0/token"):
                counts["tokens"] += 1
            if not low.startswith("/subscriptions/"):
                continue
            counts["requests"] += 1
            if _is_write(record):
                counts["writes"] += 1
                written, in_gate = True, False
            elif "/containerappoperation" in low:
                in_gate = written and record.status in (200, 204)  # the write is done: what follows is the gate
            elif in_gate:
                counts["gate_polls"] += 1
            else:
                counts["reads"] += 1
        return counts

    def app(self, subscription_id: str, resource_group: str, name: str) -> dict[str, Any] | None:
        """The app as GET would show it, but with the secret values."""
        with self._lock:
            self.state.settle()
            app = self.state.find_app(subscription_id, resource_group, name)
            return self.state.render_app(app, secret_values=True) if app else None

    def revisions(self, subscription_id: str, resource_group: str, app: str) -> list[dict[str, Any]]:
        with self._lock:
            self.state.settle()
            found = self.state.find_app(subscription_id, resource_group, app)
            return [self.state.render_revision(found, r) for r in found.revisions] if found else []

    def probe(self, url: str, *, from_environment: bool = False) -> int | None:
        with self._lock:
            self.state.settle()
            return self.state.probe(url, from_environment=from_environment)

    def http(self, url: str) -> ProbeAnswer:
        """GET <url> as a client outside the environment sees it, with the body HoloDeck's runtime answers:
        HTTP 200 and its JSON verdict on /health and /ready (a verdict that may say unhealthy)."""
        with self._lock:
            self.state.settle()
            status, rev = self.state.serving(url)
        if status != 200 or rev is None:
            return ProbeAnswer(status, b"upstream connect error" if status == 503 else b"")
        healthy = rev.behaviour != "verdict-unhealthy"
        if urlsplit(url).path == "/ready":
            return ProbeAnswer(200, json.dumps({"ready": healthy}).encode())
        verdict = {"status": "healthy" if healthy else "unhealthy", "agent_ready": healthy, "backend_ready": healthy}
        return ProbeAnswer(200, json.dumps(verdict).encode())

    def chat(self, url: str, payload: dict[str, Any], timeout: float) -> ProbeAnswer:
        """POST https://<fqdn>/agent/<name>/chat: the revision that serves the host answers (HoloDeck's
        ChatResponse), naming itself; a `mute` revision answers 500 as HoloDeck does without a working model."""
        with self._lock:
            self.state.settle()
            status, rev = self.state.serving(url)
            if status == 200 and rev is not None:
                self.chats.append((rev.name, str(payload.get("message"))))
        if status != 200 or rev is None:
            return ProbeAnswer(status)
        if rev.behaviour == "mute":
            return ProbeAnswer(500, b'{"title": "Internal Server Error", "status": 500}')
        wrong = rev.gone_bad(self.clock.now(), "wrong-answers")  # FAILURES: answers, but not to what was asked
        answer = {
            "message_id": "01M8PF0000000000000000000A",
            "content": "I cannot help with that." if wrong else f"{rev.name} heard: {payload.get('message')}",
            "session_id": str(payload.get("session_id") or "01M8PF0000000000000000000B"),
            "tool_calls": [],
            "execution_time_ms": 5,
        }
        return ProbeAnswer(200, json.dumps(answer).encode())

    # -- dispatch ------------------------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Headers, raw: bytes) -> Reply | object:
        parts = urlsplit(target)
        path = unquote(parts.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if path == "/_fake" or path.startswith("/_fake/"):  # the tester's routes, not ARM's: fakes.control
            from fakes import control

            with self._lock:
                return control.handle(self, method, path, query, raw)
        record = RecordedRequest(method, path, query, headers, _parse_body(headers, raw), raw)
        with self._lock:
            self.requests.append(record)
            reply = self._injected(method, path)
            if reply is None:
                try:
                    self.state.settle()
                    reply = self._route(method, path, query, headers, record.body, raw)
                except ApiError as error:
                    reply = error.reply
                except Exception:
                    self.server_errors.append(traceback.format_exc())
                    reply = error_reply(500, "InternalServerError", "The fake ARM failed: see FakeArm.server_errors.")
            if isinstance(reply, Reply):
                record.status, record.response_body = reply.status, reply.body
                record.response_headers = Headers(reply.headers)
        return reply

    def _injected(self, method: str, path: str) -> Reply | object | None:
        injection = next((i for i in self._injections if i.matches(method, path)), None)
        if injection is None:
            return None
        injection.count -= 1
        if injection.reset:
            return RESET
        assert injection.status is not None
        code, message = INJECTED_ERRORS.get(injection.status, ("Error", "The request failed."))
        reply = Reply(injection.status, injection.body or {"error": {"code": code, "message": message}})
        if injection.retry_after is not None:
            seconds = injection.retry_after
            reply.headers["Retry-After"] = str(int(seconds)) if seconds == int(seconds) else str(seconds)
        if injection.status == 401:
            reply.headers["WWW-Authenticate"] = (
                'Bearer authorization_uri="https://login.windows.net/", error="invalid_token", '
                'error_description="The access token is invalid."'
            )
        return reply

    def _route(self, method: str, path: str, query: dict[str, str], headers: Headers, body: Any, raw: bytes) -> Reply:
        segments = [s for s in path.split("/") if s]
        lowered = [s.lower() for s in segments]
        if is_stream_path(lowered):  # the log stream's host: its own token, no api-version
            return self.logstreams.serve(method, segments, query, headers)
        if lowered[:1] == ["subscriptions"]:
            refused = self.identity.check_bearer(headers.get("Authorization"))
            if refused:
                return refused
            if "api-version" not in query:
                raise ApiError(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            if raw and body is None and method in ("PUT", "PATCH"):
                raise ApiError(400, "InvalidRequestContent", BAD_CONTENT)
            return self._arm(method, segments, lowered, query["api-version"], query, body)
        if path == "/github/oidc/token" and method == "GET":
            return self.identity.github_token(headers.get("Authorization"), query)
        if path == "/common/discovery/instance" and method == "GET":
            return self.identity.instance_discovery(query)
        if len(lowered) == 4 and lowered[1:] == ["v2.0", ".well-known", "openid-configuration"] and method == "GET":
            return self.identity.openid_configuration(segments[0])
        if len(lowered) == 4 and lowered[1:] == ["oauth2", "v2.0", "token"] and method == "POST":
            return self.identity.token(segments[0], body if isinstance(body, dict) else {})
        return Reply(404, {"error": {"code": "NotFound", "message": f"No route for {method} {path}."}})

    def _arm(
        self, method: str, seg: list[str], low: list[str], api_version: str, query: dict[str, str], body: Any
    ) -> Reply:
        state = self.state
        sub = seg[1]
        rbac = self.rbac.route(method, seg, low, query)  # identities, federated credentials, role assignments
        if rbac is not None:
            return rbac
        # /subscriptions/{sub}/providers/Microsoft.App/locations/{loc}/containerappOperation{Statuses,Results}/{id}
        if len(low) == 8 and low[2:4] == ["providers", "microsoft.app"] and low[4] == "locations" and method == "GET":
            if low[6] == "containerappoperationstatuses":
                return state.operation_status(sub, short_location(seg[5]), seg[7])
            if low[6] == "containerappoperationresults":
                return state.operation_result(sub, seg[7], api_version)
        if len(low) < 4 or low[2] != "resourcegroups":
            return _no_route(method, seg)
        rg = seg[3]
        if len(low) == 4 and method == "GET":
            name = state.require_group(sub, rg)
            location = state.resource_groups[(sub.lower(), rg.lower())][1]
            return Reply(
                200,
                {
                    "id": f"/subscriptions/{sub}/resourceGroups/{name}",
                    "name": name,
                    "type": "Microsoft.Resources/resourceGroups",
                    "location": location,
                    "properties": {"provisioningState": "Succeeded"},
                },
            )
        if len(low) < 7 or low[4:6] != ["providers", "microsoft.app"]:
            return _no_route(method, seg)
        kind = low[6]
        if kind == "managedenvironments" and len(low) == 8 and method == "GET":
            state.require_group(sub, rg)
            env = state.environments.get((sub.lower(), rg.lower(), low[7]))
            if env is None:
                raise not_found("managedEnvironments", seg[7], rg)
            return Reply(200, state.render_environment(env))
        if kind != "containerapps":
            return _no_route(method, seg)
        if len(low) == 7 and method == "GET":
            state.require_group(sub, rg)
            apps = [a for a in state.apps.values() if a.key[:2] == (sub.lower(), rg.lower())]
            return Reply(200, {"value": [state.render_app(a) for a in apps]})
        if len(low) < 8:
            return _no_route(method, seg)
        name = seg[7]
        if len(low) == 8:
            if method == "GET":
                return Reply(200, state.render_app(state.require_app(sub, rg, name)))
            if method == "PUT":
                return state.put_app(sub, rg, name, body, api_version)
            if method == "PATCH":
                return state.patch_app(sub, rg, name, body, api_version)
            if method == "DELETE":
                return state.delete_app(sub, rg, name, api_version)
            return _no_route(method, seg)
        app = state.require_app(sub, rg, name)
        streams = self.logstreams.arm(method, app, low, seg)
        if streams is not None:
            return streams
        if len(low) == 9 and low[8] == "listsecrets" and method == "POST":
            secrets = [{k: v for k, v in s.items()} for s in app.config.get("secrets") or []]
            return Reply(200, {"value": secrets})
        if low[8] == "authconfigs":  # built-in authentication: .../containerApps/{app}/authConfigs[/{name}]
            if len(low) == 9 and method == "GET":
                return state.list_auth_configs(app)
            if len(low) == 10 and method == "GET":
                return state.get_auth_config(app, seg[9])
            if len(low) == 10 and method == "PUT":
                return state.put_auth_config(app, seg[9], body)
            return _no_route(method, seg)
        if low[8] != "revisions":
            return _no_route(method, seg)
        if len(low) == 9 and method == "GET":
            revisions = app.revisions
            active = re.search(r"active\s+eq\s+(true|false)", query.get("$filter", ""), re.IGNORECASE)
            if active:
                revisions = [r for r in revisions if r.active == (active.group(1).lower() == "true")]
            return Reply(200, {"value": [state.render_revision(app, r) for r in revisions]})
        if len(low) == 10 and method == "GET":
            return Reply(200, state.render_revision(app, state.require_revision(app, seg[9])))
        if len(low) == 11 and low[10] in ACTIONS and method == "POST":
            return state.revision_action(app, seg[9], low[10])
        return _no_route(method, seg)


def _no_route(method: str, seg: list[str]) -> Reply:
    path = "/".join(seg)
    if method not in ("GET", "PUT", "PATCH", "DELETE", "POST"):
        return error_reply(405, "MethodNotAllowed", f"The requested method {method} is not allowed.")
    return error_reply(404, "InvalidResourceType", f"The resource type could not be found for '{path}'.")


def _is_write(request: RecordedRequest) -> bool:
    low = request.path.lower()
    if "/providers/microsoft.app/" not in low or "/locations/" in low:
        return False
    if request.method in ("PUT", "PATCH", "DELETE"):
        return True
    return request.method == "POST" and low.rsplit("/", 1)[-1] in ACTIONS


def _parse_body(headers: Headers, raw: bytes) -> Any:
    if not raw:
        return None
    content_type = (headers.get("Content-Type") or "").lower()
    if "application/x-www-form-urlencoded" in content_type:
        return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, context: ssl.SSLContext, fake: FakeArm) -> None:
        self.ssl_context = context
        self.fake = fake
        self.connections: set[socket.socket] = set()
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        # The handshake happens in the handler's thread, so one slow client cannot stall accept().
        tls = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        self.connections.add(tls)
        return tls, address

    def shutdown_request(self, request: Any) -> None:
        self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End kept-alive connections, so their handler threads finish now rather than at their timeout."""
        for sock in list(self.connections):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away (or an injected reset) is not the fake's problem


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    timeout = 60
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    do_PUT = do_PATCH = do_DELETE = do_POST = do_HEAD = do_GET

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        reply = self.server.fake.handle(self.command, self.path, Headers(self.headers.items()), raw)
        if not isinstance(reply, Reply):  # RESET: drop the connection with a TCP reset, no answer
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
        if isinstance(reply, Streamed):
            self._stream(reply)
            return
        payload = b"" if reply.body is None else json.dumps(reply.body, separators=(",", ":")).encode()
        self.send_response(reply.status)
        if payload:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-cache")
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        self.send_header("x-ms-correlation-request-id", str(uuid.uuid4()))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    def _stream(self, reply: Streamed) -> None:
        """A log stream: chunked, each chunk sent as it comes, until its end or the client goes away."""
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in reply.chunks:
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
