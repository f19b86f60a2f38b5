"""Replay of real az CLI sessions against the live service (tests/azure/recordings/*.yaml) on the fake ARM.

For every recorded Microsoft.App interaction the fake implements, the recorded REQUEST is sent, in order, to the
fake, and its answer is compared with the recorded answer: status code, the notable headers (Azure-AsyncOperation
vs Location, x-ms-async-operation-timeout, never Retry-After) and the body. Bodies are compared whole after
normalising what legitimately differs: generated revision names and operation ids (mapped from recorded to fake
as they appear), timestamps, IP addresses, the creator's identity, and states that depend on timing (checked
against the service's enum values instead). Operation polling is compared by shape: the recording's polls of one
URL (n x InProgress/202, then the terminal answer) against the fake's polls of its URL until it is terminal.

Not replayed, on purpose (see SKIPPED): Log Analytics workspace calls (another resource provider); the CLI's
resource-provider metadata GET /subscriptions/{sub}/providers/Microsoft.App (the SDK never calls it); the managed
environment lifecycle (PUT, DELETE and their operation polls: environments are set up with
add_managed_environment, only their GET is in scope); replicas (not in FACTS.md, not implemented).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from fakes.arm import FakeArm
from testkit import EXTRA_RECORDINGS, RECORDINGS

# The recordings kept in this repository, then any others of the optional corpus beside the clone.
FILES = sorted(RECORDINGS.glob("*.yaml")) + sorted(
    path
    for path in (EXTRA_RECORDINGS.glob("*.yaml") if EXTRA_RECORDINGS.is_dir() else [])
    if not (RECORDINGS / path.name).exists()
)
LIVE = "https://management.azure.com"
TOKEN = "contract-replay-token"
NOTABLE_HEADERS = ("azure-asyncoperation", "location", "x-ms-async-operation-timeout", "retry-after")

SKIPPED = [  # (reason, methods or None for all, path pattern)
    (
        "log analytics (Microsoft.OperationalInsights): another resource provider",
        None,
        re.compile(r"/providers/Microsoft\.OperationalInsights/", re.IGNORECASE),
    ),
    (
        "resource-provider metadata: used by the CLI to pick API versions, never by the SDK",
        None,
        re.compile(r"^/subscriptions/[^/]+/providers/Microsoft\.App$", re.IGNORECASE),
    ),
    (
        "managed environment lifecycle: environments come from add_managed_environment, only GET is in scope",
        {"PUT", "DELETE"},
        re.compile(r"/managedEnvironments/[^/]+$", re.IGNORECASE),
    ),
    (
        "managed environment operation polls: same reason",
        None,
        re.compile(r"/managedEnvironmentOperation(Statuses|Results)/", re.IGNORECASE),
    ),
    ("replicas: not in FACTS.md, not implemented", None, re.compile(r"/revisions/[^/]+/replicas", re.IGNORECASE)),
]

# Values that depend on timing: the fake must answer one of the service's words, in the service's casing.
ENUMS = {
    "provisioningState": {"InProgress", "Succeeded", "Failed", "Canceled", "Deleting"},
    "revisionProvisioningState": {"Provisioning", "Provisioned", "Failed", "Deprovisioning", "Deprovisioned"},
    "runningState": {"Running", "Processing", "Stopped", "Degraded", "Failed", "Unknown"},
    "healthState": {"Healthy", "Unhealthy", "None"},
}
STREAM_HOST = re.compile(r"^https://[a-z0-9]+\.azurecontainerapps\.dev/subscriptions/")


def _stream_path(url: str) -> str:
    """An eventStreamEndpoint without its scheme and host (from /subscriptions/ on)."""
    return url[url.find("/subscriptions/") :] if "/subscriptions/" in url else url


TICKS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,7}Z?$")
CREATED_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
ENVIRONMENT = re.compile(
    r"^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.App/managedEnvironments/([^/]+)$"
)
OPERATION_URL = re.compile(
    r"^https://[^/]+/subscriptions/[^/]+/providers/Microsoft\.App/locations/eastus/"
    r"(containerappOperationStatuses|containerappOperationResults)/[0-9a-f-]{36}\?(.*)$"
)


def skip_reason(interaction: dict[str, Any]) -> str | None:
    method, path = interaction["request"]["method"], interaction["request"]["uri"].removeprefix(LIVE).split("?")[0]
    for reason, methods, pattern in SKIPPED:
        if (methods is None or method in methods) and pattern.search(path):
            return reason
    return None


def header(headers: dict[str, Any], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value[0] if isinstance(value, list) else str(value)
    return None


@dataclass
class Replay:
    arm: FakeArm
    session: requests.Session
    urls: dict[str, str] = field(default_factory=dict)  # recorded operation URL -> the fake's
    names: dict[str, str] = field(default_factory=dict)  # recorded revision name -> the fake's
    problems: list[str] = field(default_factory=list)
    replayed: int = 0

    # -- translation -------------------------------------------------------------------------------------------

    def rename(self, text: str) -> str:
        for recorded, fake in sorted(self.names.items(), key=lambda item: -len(item[0])):
            text = text.replace(recorded, fake)
        return text

    def send(self, request: dict[str, Any]) -> requests.Response:
        uri = request["uri"]
        url = self.urls.get(uri) or self.rename(uri.replace(LIVE, self.arm.base_url))
        data = request["body"]
        headers = {}
        if data:
            data = self.rename(data if isinstance(data, str) else data.decode())
            headers["Content-Type"] = "application/json"
        return self.session.request(request["method"], url, data=data, headers=headers, timeout=10)

    def learn(self, recorded: Any, fake: Any) -> None:
        """Map generated revision names, from the bodies of the same interaction."""
        if isinstance(recorded, dict) and isinstance(fake, dict):
            props, fake_props = recorded.get("properties") or {}, fake.get("properties") or {}
            name, fake_name = props.get("latestRevisionName"), fake_props.get("latestRevisionName")
            if name and fake_name and name not in self.names:
                self.names[name] = fake_name
            if isinstance(recorded.get("value"), list) and isinstance(fake.get("value"), list):
                for one, other in zip(recorded["value"], fake["value"], strict=False):
                    if one.get("name") and other.get("name"):
                        self.names.setdefault(one["name"], other["name"])

    # -- comparison --------------------------------------------------------------------------------------------

    def problem(self, number: int, text: str) -> None:
        self.problems.append(f"#{number}: {text}")

    def compare(self, number: int, recorded: dict[str, Any], answer: requests.Response) -> None:
        status = recorded["status"]["code"]
        if answer.status_code != status:
            self.problem(number, f"status {answer.status_code}, recorded {status}: {answer.text[:300]}")
            return
        for name in NOTABLE_HEADERS:
            was, now = header(recorded["headers"], name), answer.headers.get(name)
            if (was is None) != (now is None):
                self.problem(number, f"header {name}: recorded {was!r}, fake {now!r}")
            elif was and now and name in ("azure-asyncoperation", "location"):
                self.compare_operation_url(number, was, now)
            elif was and now and was != now:
                self.problem(number, f"header {name}: recorded {was!r}, fake {now!r}")
        text = recorded["body"]["string"]
        if not text:
            if answer.content:
                self.problem(number, f"recorded an empty body, fake sent {answer.text[:200]}")
            return
        if not answer.headers.get("Content-Type", "").startswith("application/json"):
            self.problem(number, f"content type {answer.headers.get('Content-Type')!r}")
        was, now = json.loads(text), answer.json()
        self.learn(was, now)
        self.compare_body(number, json.loads(self.rename(text)), now)

    def compare_operation_url(self, number: int, recorded: str, fake: str) -> None:
        was, now = OPERATION_URL.match(recorded), OPERATION_URL.match(fake)
        if not was or not now or was.group(1) != now.group(1) or was.group(2) != now.group(2):
            self.problem(number, f"operation URL shape: recorded {recorded}, fake {fake}")
        else:
            self.urls[recorded] = fake

    def compare_body(self, number: int, was: Any, now: Any) -> None:
        if isinstance(was, str) or not isinstance(was, dict):
            if was != now:
                self.problem(number, f"body {now!r}, recorded {was!r}")
            return
        kind = was.get("type", "")
        if "value" in was:
            if not isinstance(now, dict) or len(now.get("value", [])) != len(was["value"]):
                self.problem(number, f"list of {len(was['value'])} recorded, fake {now}")
                return
            for one, other in zip(was["value"], now["value"], strict=True):
                self.compare_body(number, one, other)
        elif kind == "Microsoft.App/containerApps":
            self.compare_app(number, was, now)
        elif kind == "Microsoft.App/containerapps/revisions":
            self.compare_revision(number, was, now)
        elif kind == "Microsoft.App/managedEnvironments":
            self.compare_environment(number, was, now)
        elif "status" in was:
            self.compare_status(number, was, now)
        else:
            self.problem(number, f"a body this replay does not know: {was}")

    def same(self, number: int, what: str, was: Any, now: Any) -> None:
        if was != now:
            self.problem(
                number,
                f"{what}:\n  recorded {json.dumps(was, sort_keys=True)}\n  fake     {json.dumps(now, sort_keys=True)}",
            )

    def keys(self, number: int, what: str, was: dict[str, Any], now: dict[str, Any]) -> None:
        if set(was) != set(now):
            self.problem(number, f"keys of {what}: missing {set(was) - set(now)}, extra {set(now) - set(was)}")

    def compare_app(self, number: int, was: dict[str, Any], now: dict[str, Any]) -> None:
        self.keys(number, "app", was, now)
        for part in ("properties", "systemData", "identity"):
            self.keys(number, f"app.{part}", was[part], now.get(part, {}))
        props, fake = was["properties"], now.get("properties", {})
        for part in ("configuration", "template"):
            self.keys(number, f"properties.{part}", props[part], fake.get(part, {}))
        if props["configuration"]["ingress"]:
            self.keys(
                number, "configuration.ingress", props["configuration"]["ingress"], fake["configuration"]["ingress"]
            )
        for key in ("createdAt", "lastModifiedAt"):
            if not TICKS.match(str(now["systemData"].get(key))):
                self.problem(number, f"systemData.{key} {now['systemData'].get(key)!r}")
            if was["systemData"][key].endswith("Z") != now["systemData"][key].endswith("Z"):
                self.problem(
                    number, f"systemData.{key}: recorded {was['systemData'][key]}, fake {now['systemData'][key]}"
                )
        # Timing: latestReadyRevisionName is the latest, or the one recorded (both are states the service shows).
        ready = fake.get("latestReadyRevisionName")
        if ready not in (props["latestReadyRevisionName"], fake.get("latestRevisionName")):
            self.problem(number, f"latestReadyRevisionName {ready!r}")
        if fake.get("provisioningState") not in ENUMS["provisioningState"]:
            self.problem(number, f"provisioningState {fake.get('provisioningState')!r}")
        # The stream's host: the service names its own (https://<region>.azurecontainerapps.dev), the fake names its
        # own address (it serves the stream, fakes/logstream.py), as ARM's host is the fake's. The path must agree.
        was_stream, now_stream = str(props.get("eventStreamEndpoint", "")), str(fake.get("eventStreamEndpoint", ""))
        if was_stream and not STREAM_HOST.match(was_stream):
            self.problem(number, f"recorded eventStreamEndpoint {was_stream!r} is not on a region's stream host")
        self.same(number, "eventStreamEndpoint path", _stream_path(was_stream), _stream_path(now_stream))
        volatile = (
            "outboundIpAddresses",
            "customDomainVerificationId",
            "latestReadyRevisionName",
            "eventStreamEndpoint",
        )
        self.same(
            number,
            "app (but for systemData, IPs, verification id, latest ready, stream host)",
            {**was, "systemData": None, "properties": {k: v for k, v in props.items() if k not in volatile}},
            {**now, "systemData": None, "properties": {k: v for k, v in fake.items() if k not in volatile}},
        )

    def compare_revision(self, number: int, was: dict[str, Any], now: dict[str, Any]) -> None:
        self.keys(number, "revision", was, now)
        props, fake = was["properties"], now.get("properties", {})
        self.keys(number, "revision.properties", props, fake)
        self.keys(number, "revision.template", props["template"], fake["template"])
        for one, other in zip(props["template"]["containers"], fake["template"]["containers"], strict=True):
            self.same(number, "revision container", one, other)
        if not CREATED_TIME.match(str(fake.get("createdTime"))):
            self.problem(number, f"createdTime {fake.get('createdTime')!r}")
        for key, enum in (
            ("provisioningState", "revisionProvisioningState"),
            ("runningState", "runningState"),
            ("healthState", "healthState"),
        ):
            if fake.get(key) not in ENUMS[enum]:
                self.problem(number, f"revision {key} {fake.get(key)!r}")
        if not isinstance(fake.get("replicas"), int):
            self.problem(number, f"replicas {fake.get('replicas')!r}")
        for key in ("id", "name", "type"):
            self.same(number, f"revision {key}", was[key], now[key])
        for key in ("fqdn", "active", "trafficWeight"):
            self.same(number, f"revision {key}", props[key], fake[key])
        # The recorded revision template's scale rules lost their auth and some metadata on the service's side;
        # the rule names and the replica bounds are compared.
        scale, fake_scale = props["template"]["scale"], fake["template"]["scale"]
        self.same(
            number,
            "revision scale bounds",
            [scale["minReplicas"], scale["maxReplicas"]],
            [fake_scale["minReplicas"], fake_scale["maxReplicas"]],
        )
        self.same(
            number,
            "revision scale rule names",
            [r["name"] for r in scale["rules"] or []],
            [r["name"] for r in fake_scale["rules"] or []],
        )
        rest = ("revisionSuffix", "terminationGracePeriodSeconds", "initContainers", "volumes", "serviceBinds")
        self.same(
            number,
            "revision template",
            {k: props["template"][k] for k in rest},
            {k: fake["template"].get(k) for k in rest},
        )

    def compare_environment(self, number: int, was: dict[str, Any], now: dict[str, Any]) -> None:
        def blank(env: dict[str, Any]) -> dict[str, Any]:
            copy = json.loads(json.dumps(env))
            copy["systemData"] = {k: None for k in copy["systemData"]}
            copy["properties"]["staticIp"] = None
            copy["properties"]["appLogsConfiguration"]["logAnalyticsConfiguration"]["customerId"] = None
            copy["properties"]["customDomainConfiguration"]["customDomainVerificationId"] = None
            return copy

        self.same(number, "environment (but for ids, IPs and times)", blank(was), blank(now))

    def compare_status(self, number: int, was: dict[str, Any], now: dict[str, Any]) -> None:
        self.keys(number, "operation status", was, now)
        if now.get("status") != was["status"]:
            self.problem(number, f"operation status {now.get('status')!r}, recorded {was['status']!r}")
        if not TICKS.match(str(now.get("startTime"))) or now.get("name") != str(now.get("id", "")).rsplit("/", 1)[-1]:
            self.problem(number, f"operation status body {now}")

    # -- polling -----------------------------------------------------------------------------------------------

    def poll(self, group: list[tuple[int, dict[str, Any]]]) -> None:
        """Recorded: n answers 'in progress' then a terminal one. Fake: poll its URL until it is terminal."""
        *waiting, (terminal_number, terminal) = group
        answers = []
        for _ in range(200):
            answers.append(self.send(group[0][1]["request"]))
            if not running(answers[-1]):
                break
            time.sleep(0.1)
        *in_progress, final = answers
        if waiting and not in_progress:
            self.problem(group[0][0], "the fake never answered 'in progress' where the recording did")
        for answer in in_progress:
            self.compare(waiting[0][0], waiting[0][1]["response"], answer)
        self.compare(terminal_number, terminal["response"], final)
        self.replayed += len(group)


def running(answer: requests.Response) -> bool:
    body = answer.json() if answer.content else None
    return answer.status_code == 202 or (isinstance(body, dict) and body.get("status") == "InProgress")


def is_poll(interaction: dict[str, Any]) -> bool:
    return interaction["request"]["method"] == "GET" and "/containerappOperation" in interaction["request"]["uri"]


def load(path: Path) -> list[tuple[int, dict[str, Any]]]:
    interactions = yaml.safe_load(path.read_text())["interactions"]
    return list(enumerate(interactions, 1))


def setting(interactions: list[tuple[int, dict[str, Any]]]) -> tuple[str, str, str, str]:
    """Subscription, resource group, environment and its domain, as the recording has them."""
    for _, interaction in interactions:
        found = ENVIRONMENT.match(interaction["request"]["uri"].removeprefix(LIVE).split("?")[0])
        if found and interaction["request"]["method"] == "GET" and interaction["response"]["status"]["code"] == 200:
            domain = json.loads(interaction["response"]["body"]["string"])["properties"]["defaultDomain"]
            return found.group(1), found.group(2), found.group(3), domain
    raise AssertionError("no managed environment GET in the recording")


def in_groups(kept: list[tuple[int, dict[str, Any]]]) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    """One interaction at a time, except consecutive polls of one operation URL, which come together."""
    index = 0
    while index < len(kept):
        group = [kept[index]]
        uri = group[0][1]["request"]["uri"]
        while (
            is_poll(group[0][1])
            and index + len(group) < len(kept)
            and kept[index + len(group)][1]["request"]["uri"] == uri
        ):
            group.append(kept[index + len(group)])
        yield group
        index += len(group)


@pytest.fixture
def fake(tls_files: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeArm]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files.ca))
    with FakeArm(tls_files.cert, tls_files.key, provisioning_delay=0.3) as arm:
        # Recorded (scale_revision_copy #38, Single mode): seconds after the switch the previous revision was still
        # active with trafficWeight 0. The replay keeps it so; FakeArm's default switches it off at once.
        arm.deactivation_delay = 60
        arm.allow_token(TOKEN)
        yield arm
    assert arm.server_errors == []


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_replay_matches_the_recording(fake: FakeArm, tls_files: Any, path: Path) -> None:
    interactions = load(path)
    sub, rg, env, domain = setting(interactions)
    fake.add_resource_group(sub, rg)
    assert fake.add_managed_environment(sub, rg, env, domain=domain) == domain
    session = requests.Session()
    session.verify = str(tls_files.ca)
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    replay = Replay(fake, session)

    kept = [(number, i) for number, i in interactions if skip_reason(i) is None]
    for group in in_groups(kept):
        if is_poll(group[0][1]):
            replay.poll(group)
        else:
            [(number, interaction)] = group
            replay.compare(number, interaction["response"], replay.send(interaction["request"]))
            replay.replayed += 1

    assert replay.problems == [], "\n".join(replay.problems)
    assert replay.replayed == len(kept) and replay.replayed >= 10
    # Every recorded write was replayed once, in order, and the fake counts the same writes.
    recorded_writes = [
        (i["request"]["method"], replay.rename(i["request"]["uri"].split("?")[0].rsplit("/", 1)[-1]))
        for _, i in kept
        if i["request"]["method"] in ("PUT", "PATCH", "DELETE", "POST") and "listSecrets" not in i["request"]["uri"]
    ]
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in fake.writes()] == recorded_writes
    assert all("Retry-After" not in r.response_headers for r in fake.requests)
