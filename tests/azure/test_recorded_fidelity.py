"""Fidelity: the recorded sessions of the Azure CLI extension's containerapp tests, sent to our fake ARM.

Every recorded Microsoft.App request of tests/azure/recordings/extensions/*.yaml is sent, in order, to the fake,
and its answer is compared with the recorded one exactly as tests/azure/test_fake_contracts.py compares the older
recordings (its Replay: status code, Azure-AsyncOperation / Location / operation-timeout headers, body fields and
casing, polling by shape), with two more normalisations for these 2024 sessions: the operation URLs may name any
region, and their signing parameters (t, c, s, h: a timestamp, a certificate and a signature the service adds
per request since 2024, that no client reads) are not compared.

Every difference the fake still has is listed in KNOWN_DIFFERENCES with its reason, in one place. A difference
not listed fails the test (the fake drifted from the service), and so does a listed one that no longer occurs
(the fake was fixed: remove the line, so the table stays true).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests

from fakes.arm import FakeArm
from testkit import RECORDINGS


def _contracts() -> ModuleType:
    """The older recordings' replay (test_fake_contracts.py), reused rather than copied."""
    path = Path(__file__).with_name("test_fake_contracts.py")
    spec = importlib.util.spec_from_file_location("_fake_contracts_replay", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


contracts = _contracts()
FILES = sorted((RECORDINGS / "extensions").glob("*.yaml"))
TOKEN = contracts.TOKEN

AUTH, UPDATE = "test_containerapp_auth_e2e.yaml", "test_containerapp_update_containers.yaml"
ENVIRONMENT_SETUP = (
    "the environment is the fake's own (add_managed_environment), not the one the CLI test found: canned KEDA/Dapr "
    "versions and a Log Analytics destination, a region display name only for eastus, and none of the fields "
    "2023-11-02-preview adds (appInsightsConfiguration, openTelemetryConfiguration, certificateKeyVaultProperties); "
    "agentdeploy reads only an environment's id"
)
PREVIEW_INGRESS = (
    "api-version 2023-11-02-preview adds ingress.additionalPortMappings and targetPortHttpScheme (null here): the "
    "fake answers the same shape for every api-version; and an app created without workloadProfileName in a "
    "workload-profiles environment is put on 'Consumption' by the service, the fake leaves it null"
)
NOT_WAITED = (
    "the CLI did not wait for its PUT of the app (no poll recorded) and read the app seconds later, when the service "
    "had finished; the replay reads at once, within the fake's provisioning delay (provisioningState InProgress)"
)
SECRET_ECHO = (
    "the service echoes a secret as {name} alone, dropping the empty keyVaultUrl and identity the CLI sent; the fake "
    "keeps them (agentdeploy never sends empty ones: a secret is {name, value} or a Key Vault reference)"
)
PUT_EXISTING = (
    "the service's echo of a PUT on an existing app has createdAt without the trailing Z, the fake's has it; and "
    + SECRET_ECHO
)
AUTH_ECHO = (
    "the service echoes an authConfig with the defaults it adds (azureActiveDirectory.validation and "
    "isAutoProvisioned, login.preserveUrlFragmentsForLogins, encryptionSettings on 2023-11-02-preview) and an id "
    "spelled .../containerApps/{app}/authConfigs/current; the fake echoes what was sent, with a lower-case id as in "
    "the REST spec's example"
)

EPHEMERAL = (
    "the service sets ephemeralStorage by CPU tier whatever was sent (0.75 cpu -> 4Gi here); the fake computes 4 x "
    "cpu (3Gi). agentdeploy neither sends nor compares ephemeralStorage"
)

# (recording, interaction number) -> why the fake answers differently. Polls are numbered by their first poll.
KNOWN_DIFFERENCES: dict[tuple[str, int], str] = {
    (AUTH, 2): ENVIRONMENT_SETUP,
    (AUTH, 4): ENVIRONMENT_SETUP,
    (AUTH, 6): PREVIEW_INGRESS,
    (AUTH, 10): PREVIEW_INGRESS,
    (AUTH, 12): PREVIEW_INGRESS,
    (AUTH, 15): PREVIEW_INGRESS,
    (AUTH, 17): PUT_EXISTING,
    (AUTH, 18): AUTH_ECHO,
    (AUTH, 20): NOT_WAITED + "; and " + SECRET_ECHO,
    (AUTH, 21): AUTH_ECHO,
    (AUTH, 22): AUTH_ECHO,
    (AUTH, 24): NOT_WAITED + "; and " + SECRET_ECHO,
    (AUTH, 26): PUT_EXISTING,
    (AUTH, 27): AUTH_ECHO,
    (AUTH, 29): NOT_WAITED + "; and " + SECRET_ECHO,
    (AUTH, 30): AUTH_ECHO,
    (AUTH, 31): AUTH_ECHO,
    (AUTH, 32): AUTH_ECHO,
    (AUTH, 34): NOT_WAITED + "; and " + SECRET_ECHO + "; and " + PREVIEW_INGRESS,
    (UPDATE, 47): EPHEMERAL,
    (UPDATE, 50): EPHEMERAL,
    (UPDATE, 53): EPHEMERAL,
}

OPERATION_URL = re.compile(
    r"^https://[^/]+/subscriptions/[^/]+/providers/Microsoft\.App/locations/([^/]+)/"
    r"(containerappOperationStatuses|containerappOperationResults)/[0-9a-f-]{36}\?(.*)$"
)
SIGNING = {"t", "c", "s", "h"}


def region(location: str) -> str:
    """The service's short form of a region: "North Central US (Stage)" -> northcentralusstage."""
    return re.sub(r"[^a-z0-9]", "", location.lower())


def differences(was: Any, now: Any, path: str = "") -> list[str]:
    """Where two JSON values differ, path by path (a field missing on one side is a difference)."""
    if isinstance(was, dict) and isinstance(now, dict):
        found = []
        for key in sorted(set(was) | set(now)):
            if key not in now:
                found.append(f"{path}.{key} missing (recorded {contracts.json.dumps(was[key])[:120]})")
            elif key not in was:
                found.append(f"{path}.{key} extra (fake {contracts.json.dumps(now[key])[:120]})")
            else:
                found += differences(was[key], now[key], f"{path}.{key}")
        return found
    if isinstance(was, list) and isinstance(now, list) and len(was) == len(now):
        return [
            line for i, (a, b) in enumerate(zip(was, now, strict=True)) for line in differences(a, b, f"{path}[{i}]")
        ]
    if was != now:
        return [f"{path}: recorded {contracts.json.dumps(was)[:160]}, fake {contracts.json.dumps(now)[:160]}"]
    return []


def unsigned_query(query: str) -> str:
    return urlencode([(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in SIGNING])


class Replay(contracts.Replay):  # type: ignore[misc, name-defined]
    def compare_operation_url(self, number: int, recorded: str, fake: str) -> None:
        was, now = OPERATION_URL.match(recorded), OPERATION_URL.match(fake)
        if (
            not was
            or not now
            or was.group(2) != now.group(2)
            or unsigned_query(was.group(3)) != unsigned_query(now.group(3))
            or region(was.group(1)) != region(now.group(1))
        ):
            self.problem(number, f"operation URL shape: recorded {recorded[:300]}, fake {fake}")
        else:
            self.urls[recorded] = fake

    def same(self, number: int, what: str, was: Any, now: Any) -> None:
        for line in differences(was, now):
            self.problem(number, f"{what}: {line}")

    def compare_body(self, number: int, was: Any, now: Any) -> None:
        """An ARM error body too: the same code, and a message."""
        if isinstance(was, dict) and isinstance(was.get("error"), dict):
            error = now.get("error") if isinstance(now, dict) else None
            if not isinstance(error, dict) or error.get("code") != was["error"]["code"] or not error.get("message"):
                self.problem(number, f"error body {now}, recorded {was}")
            return
        if isinstance(was, dict) and str(was.get("type", "")).lower() == "microsoft.app/containerapps/authconfigs":
            self.same(number, "authConfig", was, now)
            return
        super().compare_body(number, was, now)

    def compare_environment(self, number: int, was: dict[str, Any], now: dict[str, Any]) -> None:
        """As the older replay does, but an environment without Log Analytics (null) is compared too."""

        def blank(env: dict[str, Any]) -> dict[str, Any]:
            copy = contracts.json.loads(contracts.json.dumps(env))
            copy["systemData"] = {k: None for k in copy.get("systemData") or {}}
            props = copy.get("properties") or {}
            props["staticIp"] = None
            analytics = (props.get("appLogsConfiguration") or {}).get("logAnalyticsConfiguration")
            if analytics:
                analytics["customerId"] = None
            if props.get("customDomainConfiguration"):
                props["customDomainConfiguration"]["customDomainVerificationId"] = None
            return copy

        self.same(number, "environment (but for ids, IPs and times)", blank(was), blank(now))


@pytest.fixture
def fake(tls_files: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeArm]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files.ca))
    with FakeArm(tls_files.cert, tls_files.key, provisioning_delay=0.3) as arm:
        arm.deactivation_delay = 60
        arm.allow_token(TOKEN)
        yield arm
    assert arm.server_errors == []


def app_groups(interactions: list[tuple[int, dict[str, Any]]]) -> set[tuple[str, str]]:
    """(subscription, resource group) of every container app the recording writes."""
    found = set()
    for _, interaction in interactions:
        parts = urlsplit(interaction["request"]["uri"]).path.split("/")
        if len(parts) > 4 and parts[3].lower() == "resourcegroups" and "containerApps" in parts:
            found.add((parts[2], parts[4]))
    return found


def replay(fake: FakeArm, tls_files: Any, path: Path) -> Replay:
    interactions = contracts.load(path)
    sub, env_group, env, domain = contracts.setting(interactions)
    environment = next(
        contracts.json.loads(i["response"]["body"]["string"])
        for _, i in interactions
        if contracts.ENVIRONMENT.match(urlsplit(i["request"]["uri"]).path) and i["response"]["status"]["code"] == 200
    )
    where = region(environment["location"])
    for group_sub, group in {(sub, env_group), *app_groups(interactions)}:
        fake.add_resource_group(group_sub, group, where)
    profiles = environment["properties"].get("workloadProfiles")
    assert fake.add_managed_environment(sub, env_group, env, where, domain=domain, workload_profiles=profiles) == domain
    session = requests.Session()
    session.verify = str(tls_files.ca)
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    run = Replay(fake, session)
    kept = [(number, i) for number, i in interactions if contracts.skip_reason(i) is None]
    for group in contracts.in_groups(kept):
        if contracts.is_poll(group[0][1]):
            run.poll(group)
        else:
            [(number, interaction)] = group
            run.compare(number, interaction["response"], run.send(interaction["request"]))
            run.replayed += 1
    assert run.replayed == len(kept) and run.replayed >= 10
    return run


def by_number(problems: list[str]) -> dict[int, list[str]]:
    grouped: dict[int, list[str]] = {}
    for problem in problems:
        number = int(problem.split(":", 1)[0].lstrip("#"))
        grouped.setdefault(number, []).append(problem)
    return grouped


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_the_fake_answers_the_recorded_requests_as_the_service_did(fake: FakeArm, tls_files: Any, path: Path) -> None:
    found = by_number(replay(fake, tls_files, path).problems)
    known = {number: reason for (name, number), reason in KNOWN_DIFFERENCES.items() if name == path.name}
    new = {number: found[number] for number in sorted(set(found) - set(known))}
    gone = {number: known[number] for number in sorted(set(known) - set(found))}
    report = [f"NEW difference {line}" for lines in new.values() for line in lines]
    report += [
        f"LISTED difference #{number} no longer occurs (remove it from KNOWN_DIFFERENCES): {why}"
        for number, why in gone.items()
    ]
    assert not report, "\n".join(report)


def test_every_listed_difference_names_a_kept_recording_and_says_why() -> None:
    names = {path.name for path in FILES}
    for (name, number), reason in KNOWN_DIFFERENCES.items():
        assert name in names, f"{name} is not in tests/azure/recordings/extensions"
        assert number >= 1 and len(reason) > 20, (name, number, reason)
