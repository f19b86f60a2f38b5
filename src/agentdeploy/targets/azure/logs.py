"""The agent's own output on Azure Container Apps, through the log stream API the Azure CLI reads.

What `az containerapp logs show` does (azure-cli, command_modules/containerapp: `stream_containerapp_logs` in
custom.py, the defaults in `_validators._set_ssh_defaults`, `ContainerAppClient.get_auth_token` in _clients.py):

- a token for the stream: POST `.../providers/Microsoft.App/containerApps/{app}/getAuthToken` (ARM), its
  `properties.token`;
- the stream's host: the app's `properties.eventStreamEndpoint`, cut before `/subscriptions/`;
- console logs: GET `{host}/subscriptions/{sub}/resourceGroups/{rg}/containerApps/{app}/revisions/{revision}/replicas/
  {replica}/containers/{container}/logstream?follow=true|false&output=text&tailLines=N`; the revision defaults
  to the app's latest, the replica to the revision's first, the container to the revision's first;
- system logs (the platform's events: pulls, probes, restarts): GET `{host}/subscriptions/{sub}/resourceGroups/{rg}/
  containerApps/{app}/eventstream?follow=...&output=json&tailLines=N`, JSON only;
- both with `Authorization: Bearer <token>`; the answer is text, one entry a line; empty lines are skipped, and
  the service writes some characters as `\\uXXXX` escapes, which the CLI turns back. `--tail` is 0..300.

The URLs and the line reading are pure; `http_lines` is the one HTTP call, passed in so tests can point it at
the fake.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from agentdeploy.errors import AgentDeployError, DeployError, TargetUnavailableError, UsageError
from agentdeploy.jsonvalue import JsonObject, objects_at, text_at
from agentdeploy.targets.azure.arm import azure_errors, plain

if TYPE_CHECKING:
    from azure.mgmt.appcontainers import ContainerAppsAPIClient

MAX_TAIL = 300  # the service's (and the CLI's) limit
LINES_ON_FAILURE = 20
CONSOLE, SYSTEM = "console", "system"
# Escapes the service leaves in the text, as the Azure CLI undoes them: quote, ESC (colours), plus, apostrophe.
_ESCAPES = {"\\u0022": '"', "\\u001B": "\x1b", "\\u001b": "\x1b", "\\u002B": "+", "\\u0027": "'"}

# (URL, headers, follow) -> the body's lines, as they arrive
LineReader = Callable[[str, Mapping[str, str], bool], Iterator[str]]
READ_TIMEOUT = 60.0  # seconds without a byte before a stream that is not followed counts as dead


@dataclass(frozen=True)
class Replica:
    """One container of one replica of one revision: what a console log stream reads."""

    subscription: str
    resource_group: str
    app: str
    revision: str
    replica: str
    container: str


def stream_host(event_stream_endpoint: str) -> str:
    """The log stream's scheme and host, from the app's eventStreamEndpoint (the CLI cuts it before /subscriptions/)."""
    host, found, _ = event_stream_endpoint.partition("/subscriptions/")
    if not found or not host.startswith("https://"):
        raise DeployError(
            f"the app's eventStreamEndpoint {event_stream_endpoint!r} is not a log stream URL",
            hint="read the app with `az containerapp show` and check properties.eventStreamEndpoint",
        )
    return host


def _query(tail: int, follow: bool, output: str) -> str:
    return urlencode({"follow": "true" if follow else "false", "output": output, "tailLines": str(tail)})


def console_url(host: str, source: Replica, *, tail: int, follow: bool) -> str:
    parts = (
        "subscriptions", source.subscription, "resourceGroups", source.resource_group, "containerApps", source.app,
        "revisions", source.revision, "replicas", source.replica, "containers", source.container, "logstream",
    )  # fmt: skip
    return f"{host}/{'/'.join(quote(part, safe='') for part in parts)}?{_query(tail, follow, 'text')}"


def system_url(host: str, subscription: str, resource_group: str, app: str, *, tail: int, follow: bool) -> str:
    parts = ("subscriptions", subscription, "resourceGroups", resource_group, "containerApps", app, "eventstream")
    return f"{host}/{'/'.join(quote(part, safe='') for part in parts)}?{_query(tail, follow, 'json')}"


def check_tail(tail: int) -> int:
    if not 0 <= tail <= MAX_TAIL:
        raise UsageError(
            f"--tail {tail}: the Container Apps log stream gives 0 to {MAX_TAIL} lines",
            hint=f"use --tail {MAX_TAIL} or less; older output is in Log Analytics (ContainerAppConsoleLogs_CL)",
        )
    return tail


def unescape(line: str) -> str:
    for escaped, plain_text in _ESCAPES.items():
        line = line.replace(escaped, plain_text)
    return line


def lines_of(chunks: Iterable[bytes]) -> Iterator[str]:
    """The non-empty lines of a body that arrives in pieces (a line may be split between two)."""
    rest = b""
    for chunk in chunks:
        rest += chunk
        *complete, rest = rest.split(b"\n")
        for raw in complete:
            line = unescape(raw.rstrip(b"\r").decode("utf-8", "replace"))
            if line:
                yield line
    if rest.strip():
        yield unescape(rest.rstrip(b"\r").decode("utf-8", "replace"))


def http_lines(url: str, headers: Mapping[str, str], follow: bool = False) -> Iterator[str]:
    """GET a log stream and yield its lines while it lasts (followed: until the caller stops, however quiet)."""
    import requests  # azure-core's transport: honours REQUESTS_CA_BUNDLE and the proxy variables, as the CLI

    try:
        response = requests.get(url, headers=dict(headers), stream=True, timeout=(30, None if follow else READ_TIMEOUT))
    except requests.RequestException as exc:
        raise TargetUnavailableError(f"the Container Apps log stream could not be reached: {exc}") from None
    with response:
        if response.status_code != 200:
            raise TargetUnavailableError(
                f"the Container Apps log stream answered HTTP {response.status_code} "
                f"{response.text[:200].strip()}".rstrip(),
                hint="the stream's token comes from getAuthToken on the app: the identity needs "
                "Microsoft.App/containerApps/getAuthToken/action (Contributor has it)",
            )
        try:
            yield from lines_of(response.iter_content(chunk_size=None))
        except requests.RequestException as exc:  # reset, timed out, cut mid-chunk
            raise TargetUnavailableError(f"the Container Apps log stream broke off: {exc}") from None


class LogStream:
    """Reads an app's log stream over ARM (the SDK client) and the stream's own endpoint (`read`)."""

    def __init__(
        self, client: ContainerAppsAPIClient, *, resource_group: str, app: str, read: LineReader | None = None
    ) -> None:
        self.client = client
        self.rg = resource_group
        self.app = app
        self.read = read or http_lines

    def lines(self, *, tail: int, follow: bool, kind: str = CONSOLE, revision: str = "") -> Iterator[str]:
        check_tail(tail)
        app = self._app()
        host = stream_host(text_at(app, "properties", "eventStreamEndpoint"))
        if kind == SYSTEM:
            subscription = _subscription_of(text_at(app, "id"))
            url = system_url(host, subscription, self.rg, self.app, tail=tail, follow=follow)
        else:
            source = self.replica(app, revision or text_at(app, "properties", "latestRevisionName"))
            url = console_url(host, source, tail=tail, follow=follow)
        return self.read(url, {"Authorization": f"Bearer {self._token()}"}, follow)

    def replica(self, app: JsonObject, revision: str) -> Replica:
        """The revision's first replica and first container, as the CLI picks them."""
        if not revision:
            raise DeployError(f"container app {self.app} has no revision yet", hint="deploy the agent first")
        with azure_errors(f"reading the replicas of revision {revision}"):
            replicas = plain(self.client.container_apps_revision_replicas.list_replicas(self.rg, self.app, revision))
            template = plain(self.client.container_apps_revisions.get_revision(self.rg, self.app, revision))
        names = [text_at(item, "name") for item in objects_at(replicas, "value")]
        containers = [text_at(item, "name") for item in objects_at(template, "properties", "template", "containers")]
        if not names or not names[0]:
            raise DeployError(
                f"revision {revision} has no replica running, so it has no console log to stream",
                hint="the revision's system log says why (`agentdeploy logs CONFIG --system`); a revision "
                "scaled to zero starts at its first request",
            )
        if not containers or not containers[0]:
            raise DeployError(f"revision {revision} names no container")
        subscription = _subscription_of(text_at(app, "id"))
        return Replica(subscription, self.rg, self.app, revision, names[0], containers[0])

    def tail_of(self, revision: str, lines: int = LINES_ON_FAILURE) -> list[str]:
        """A failed revision's last lines, for the gate's report; what kept them from being read, as one line,
        when they cannot be (no replica: it never started, or it crashed and was stopped)."""
        try:
            return list(self.lines(tail=lines, follow=False, revision=revision))
        except AgentDeployError as exc:  # a diagnosis of a failure: it never hides the failure itself
            return [f"(its log could not be read: {exc.message})"]

    def _app(self) -> JsonObject:
        from azure.core.exceptions import ResourceNotFoundError

        with azure_errors(f"reading container app {self.app}"):
            try:
                return plain(self.client.container_apps.get(self.rg, self.app))
            except ResourceNotFoundError:
                raise DeployError(
                    f"container app {self.app} does not exist in resource group {self.rg}",
                    hint="deploy the agent first",
                ) from None

    def _token(self) -> str:
        with azure_errors(f"asking for a log stream token for {self.app} (getAuthToken)"):
            token = text_at(plain(self.client.container_apps.get_auth_token(self.rg, self.app)), "properties", "token")
        if not token:
            raise TargetUnavailableError(f"getAuthToken on {self.app} answered without a token")
        return token


def _subscription_of(resource_id: str) -> str:
    parts = resource_id.split("/")
    lowered = [part.lower() for part in parts]
    if "subscriptions" not in lowered or lowered.index("subscriptions") + 1 >= len(parts):
        raise DeployError(f"the app's resource id {resource_id!r} names no subscription")
    return parts[lowered.index("subscriptions") + 1]


def failed_revision_log(
    client: ContainerAppsAPIClient, resource_group: str, app: str, revision: str, lines: int = LINES_ON_FAILURE
) -> list[str]:
    """What a revision that failed its gate printed last, each line after its name (as the docker target shows a
    container's): for the error and the job summary, which mask the secrets the console knows."""
    stream = LogStream(client, resource_group=resource_group, app=app)
    return [f"{revision}: {line}" for line in stream.tail_of(revision, lines)]
