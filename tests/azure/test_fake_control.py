"""The fake Azure's control routes (/_fake/..., tests/fakes/control.py) on the fake running as a process
(tests/fakes/serve.py, as the self-test workflow starts it): each route is driven over real HTTPS and its effect
is checked through what agentdeploy's own SDK client (azure-mgmt-appcontainers, credentials from the fake's
Entra and GitHub OIDC, endpoints from `<dir>/env`) then sees.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from agentdeploy.targets.azure.auth import arm_client_factory
from fakes.serve import ENVIRONMENT, RESOURCE_GROUP
from testkit import ROOT

RG = RESOURCE_GROUP
API = "2026-07-01"


@dataclass
class Fake:
    directory: Path
    env: dict[str, str]
    sdk: Any

    @property
    def url(self) -> str:
        return self.env["AGENTDEPLOY_ARM_ENDPOINT"]

    @property
    def sub(self) -> str:
        return self.env["FAKE_AZURE_SUBSCRIPTION_ID"]

    @property
    def ca(self) -> str:
        return str(self.directory / "ca.pem")

    def call(self, method: str, route: str, body: Any = None, *, data: str | None = None) -> requests.Response:
        """A control route, as curl would call it: no token, the fake's CA."""
        payload = data if data is not None else (None if body is None else json.dumps(body))
        return requests.request(method, f"{self.url}/_fake{route}", data=payload, verify=self.ca, timeout=10)

    def ok(self, method: str, route: str, body: Any = None) -> Any:
        answer = self.call(method, route, body)
        assert answer.status_code < 300, answer.text
        return answer.json()

    def app_route(self, name: str) -> str:
        return f"/apps/{self.sub}/{RG}/{name}"

    def log_since(self, index: int) -> list[dict[str, Any]]:
        return list(self.ok("GET", f"/requests?since={index}")["value"])

    def log_length(self) -> int:
        return len(self.ok("GET", "/requests")["value"])

    def app_path(self, name: str) -> str:
        return f"/subscriptions/{self.sub}/resourceGroups/{RG}/providers/Microsoft.App/containerApps/{name}"


def start_serve(directory: Path) -> subprocess.Popen[bytes]:
    serve = [sys.executable, str(ROOT / "tests" / "fakes" / "serve.py"), "--dir", str(directory)]
    server = subprocess.Popen([*serve, "--provisioning-delay", "0.3"])
    for _ in range(150):
        if (directory / "env").exists() or server.poll() is not None:
            break
        time.sleep(0.1)
    assert (directory / "env").exists(), "the fake Azure did not start"
    return server


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fake]:
    directory = tmp_path_factory.mktemp("fake-azure")
    server = start_serve(directory)
    try:
        lines = (directory / "env").read_text().splitlines()
        env = dict(line.split("=", 1) for line in lines if line)
        environ = {  # what the Action maps its inputs to, so agentdeploy's SDK path logs in through the fake
            **env,
            "AZURE_CLIENT_ID": env["FAKE_AZURE_CLIENT_ID"],
            "AZURE_TENANT_ID": env["FAKE_AZURE_TENANT_ID"],
        }
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("REQUESTS_CA_BUNDLE", env["REQUESTS_CA_BUNDLE"])  # MSAL's and the SDK's sessions
            yield Fake(directory, environ, arm_client_factory(environ)(env["FAKE_AZURE_SUBSCRIPTION_ID"]))
        server.terminate()
        server.wait(timeout=30)
        report = json.loads((directory / "report.json").read_text())
        assert report["server_errors"] == []
    finally:
        if server.poll() is None:
            server.kill()


@pytest.fixture(autouse=True)
def no_faults_left(fake: Fake) -> Iterator[None]:
    yield
    fake.ok("DELETE", "/faults")


def image(name: str, n: int = 1) -> str:
    return f"registry.example/{name}/agent@sha256:{n:064x}"


def container(img: str) -> dict[str, Any]:
    return {"name": "agent", "image": img, "resources": {"cpu": 0.5, "memory": "1Gi"}}


def app_body(fake: Fake, img: str, **configuration: Any) -> dict[str, Any]:
    env_id = f"/subscriptions/{fake.sub}/resourceGroups/{RG}/providers/Microsoft.App/managedEnvironments/{ENVIRONMENT}"
    return {
        "location": "eastus",
        "properties": {
            "environmentId": env_id,
            "configuration": {"ingress": {"external": True, "targetPort": 8080}, **configuration},
            "template": {"containers": [container(img)]},
        },
    }


def create(fake: Fake, name: str, img: str, **configuration: Any) -> Any:
    return fake.sdk.container_apps.begin_create_or_update(RG, name, app_body(fake, img, **configuration)).result()


def revisions(fake: Fake, name: str) -> list[Any]:
    return list(fake.sdk.container_apps_revisions.list_revisions(RG, name))


# ---------------------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "running", "health"),
    [
        ("unhealthy", "Running", "Unhealthy"),
        ("activation-failed", "ActivationFailed", "Unhealthy"),
        ("max-scale", "RunningAtMaxScale", "Healthy"),
        ("scale-to-zero", "ScaledToZero", "None"),
        ("healthy", "Running", "Healthy"),
    ],
)
def test_an_image_behaviour_set_by_prefix_is_what_the_sdk_sees(
    fake: Fake, behaviour: str, running: str, health: str
) -> None:
    prefix = f"registry.example/{behaviour}/"  # a prefix: every image under it
    assert fake.ok("POST", "/images", {"image": prefix, "behaviour": behaviour})["behaviour"] == behaviour
    assert fake.ok("GET", "/images")[prefix] == {"behaviour": behaviour, "start_seconds": 0.0}
    app = create(fake, f"img-{behaviour}", image(behaviour))
    [rev] = revisions(fake, f"img-{behaviour}")
    assert (rev.properties.running_state, rev.properties.health_state) == (running, health)
    ready = behaviour in ("healthy", "max-scale", "scale-to-zero")
    assert app.properties.latest_ready_revision_name == (rev.name if ready else "")


def test_start_seconds_hold_a_revision_until_the_clock_moves(fake: Fake) -> None:
    fake.ok("POST", "/images", {"image": image("slow"), "behaviour": "slow", "start_seconds": 120})
    create(fake, "slow-agent", image("slow"))
    [rev] = revisions(fake, "slow-agent")
    assert (rev.properties.provisioning_state, rev.properties.running_state) == ("Provisioning", "Processing")
    assert fake.ok("POST", "/clock", {"advance": 121})["offset"] >= 121
    [rev] = revisions(fake, "slow-agent")
    assert (rev.properties.running_state, rev.properties.health_state) == ("Running", "Healthy")


# ---------------------------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------------------------


def test_two_429s_then_the_sdks_third_request_succeeds(fake: Fake) -> None:
    create(fake, "throttled", image("throttled"))
    fault = {"status": 429, "retry_after": 0.1, "count": 2, "method": "GET", "path": "/containerApps/throttled"}
    pending = fake.ok("POST", "/faults", fault)["pending"]
    assert pending == [{**fault, "kind": "status", "path": "/containerApps/throttled"}]
    start = fake.log_length()
    assert fake.sdk.container_apps.get(RG, "throttled").name == "throttled"
    gets = [r for r in fake.log_since(start) if r["path"] == fake.app_path("throttled")]
    assert [r["status"] for r in gets] == [429, 429, 200]
    assert gets[0]["response_headers"] == {"Retry-After": "0.1"}
    assert gets[0]["response"]["error"]["code"] == "SubscriptionRequestsThrottled"
    assert fake.ok("GET", "/faults")["pending"] == []  # used up


def test_a_status_fault_with_its_own_code_outlasts_the_sdks_retries(fake: Fake) -> None:
    create(fake, "busy", image("busy"))
    fault = {"status": 503, "retry_after": 0.01, "count": 50, "method": "GET", "path": "/containerApps/busy"}
    fake.ok("POST", "/faults", {**fault, "code": "ServerBusy", "message": "The region is busy."})
    with pytest.raises(HttpResponseError) as raised:
        fake.sdk.container_apps.get(RG, "busy")
    assert raised.value.status_code == 503 and raised.value.error.code == "ServerBusy"
    fake.ok("DELETE", "/faults")
    assert fake.sdk.container_apps.get(RG, "busy").name == "busy"


def test_a_failed_operation_makes_the_sdks_poller_raise(fake: Fake) -> None:
    create(fake, "doomed", image("doomed", 1))
    failure = {"kind": "failed-operation", "code": "ContainerAppOperationError", "message": "quota exceeded"}
    assert fake.ok("POST", "/faults", failure)["pending"] == [failure]
    patch = {"properties": {"template": {"containers": [container(image("doomed", 2))]}}}
    with pytest.raises(HttpResponseError) as raised:
        fake.sdk.container_apps.begin_update(RG, "doomed", patch).result()
    assert raised.value.error.code == "ContainerAppOperationError" and "quota exceeded" in raised.value.error.message
    view = fake.ok("GET", fake.app_route("doomed"))
    assert view["app"]["properties"]["provisioningState"] == "Failed" and len(view["revisions"]) == 1


def test_a_dropped_connection_fails_at_the_socket(fake: Fake) -> None:
    create(fake, "dropped", image("dropped"))
    fake.ok("POST", "/faults", {"kind": "drop-connection", "method": "GET", "path": "/containerApps/dropped"})
    start = fake.log_length()
    with pytest.raises(requests.ConnectionError):  # no answer at all, not even an HTTP status
        requests.get(f"{fake.url}{fake.app_path('dropped')}?api-version={API}", verify=fake.ca, timeout=10)
    fake.ok(
        "POST", "/faults", {"kind": "drop-connection", "count": 1, "method": "GET", "path": "/containerApps/dropped"}
    )
    assert fake.sdk.container_apps.get(RG, "dropped").name == "dropped"  # the SDK tries again on a new connection
    statuses = [r["status"] for r in fake.log_since(start) if r["path"] == fake.app_path("dropped")]
    assert statuses == [None, None, 200]


# ---------------------------------------------------------------------------------------------------------------
# Apps and revisions
# ---------------------------------------------------------------------------------------------------------------


def test_a_purged_revision_is_gone_for_the_sdk(fake: Fake) -> None:
    create(fake, "purged", image("purged", 1))
    [old] = revisions(fake, "purged")
    patch = {"properties": {"template": {"containers": [container(image("purged", 2))]}}}
    fake.sdk.container_apps.begin_update(RG, "purged", patch).result()
    new = fake.sdk.container_apps.get(RG, "purged").properties.latest_revision_name
    assert fake.ok("GET", fake.app_route("purged"))["weights"] == {new: 100}  # the old one is now inactive

    refused = fake.call("POST", f"{fake.app_route('purged')}/revisions/{new}/purge")
    assert refused.status_code == 409 and "only inactive revisions" in refused.json()["error"]
    assert fake.ok("POST", f"{fake.app_route('purged')}/revisions/{old.name}/purge") == {"purged": old.name}
    with pytest.raises(ResourceNotFoundError):
        fake.sdk.container_apps_revisions.get_revision(RG, "purged", old.name)
    assert [r.name for r in revisions(fake, "purged")] == [new]
    again = fake.call("POST", f"{fake.app_route('purged')}/revisions/{old.name}/purge")
    assert again.status_code == 404 and old.name in again.json()["error"]


def test_someone_else_patches_an_app_through_the_same_path_as_arm(fake: Fake) -> None:
    create(fake, "handmade", image("handmade", 1))
    [first] = revisions(fake, "handmade")
    start = fake.log_length()
    patch = {"properties": {"template": {"containers": [container("docker.io/someone/else:latest")]}}}
    answer = fake.call("PATCH", fake.app_route("handmade"), patch)
    assert answer.status_code == 202, answer.text
    made = answer.json()["latestRevisionName"]
    assert made.startswith("handmade--") and made != first.name
    assert "/containerappOperationResults/" in answer.json()["operation"]

    busy = fake.call("PATCH", fake.app_route("handmade"), {"tags": {"owner": "ops"}})
    assert busy.status_code == 409 and "ContainerAppLockConflict" in busy.json()["error"]  # as ARM would say
    _wait_succeeded(fake, "handmade")
    assert fake.call("PATCH", fake.app_route("handmade"), {"tags": {"owner": "ops"}}).status_code == 202
    _wait_succeeded(fake, "handmade")

    app = fake.sdk.container_apps.get(RG, "handmade")
    assert app.tags == {"owner": "ops"} and app.properties.latest_revision_name == made
    by_name = {r.name: r for r in revisions(fake, "handmade")}
    assert set(by_name) == {first.name, made}  # the tags made no revision; the image did
    assert by_name[made].properties.template.containers[0].image == "docker.io/someone/else:latest"

    writes = [w for w in fake.ok("GET", f"/writes?since={start}")["value"] if w["path"] == fake.app_path("handmade")]
    assert [(w["method"], w["status"], w["by"]) for w in writes] == [
        ("PATCH", 202, "someone else"),
        ("PATCH", 409, "someone else"),
        ("PATCH", 202, "someone else"),
    ]
    assert writes[0]["body"] == patch

    bad = {"properties": {"template": {"containers": [{**container(image("handmade")), "env": [{"name": "1X"}]}]}}}
    refused = fake.call("PATCH", fake.app_route("handmade"), bad)
    assert refused.status_code == 400 and "ContainerAppInvalidEnvVarName" in refused.json()["error"]
    missing = fake.call("PATCH", fake.app_route("nobody"), {"tags": {}})
    assert missing.status_code == 404 and "ResourceNotFound" in missing.json()["error"]


def _wait_succeeded(fake: Fake, name: str) -> None:
    for _ in range(100):
        if fake.ok("GET", fake.app_route(name))["app"]["properties"]["provisioningState"] == "Succeeded":
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} stayed in progress")


def test_the_app_view_the_app_list_and_the_request_log(fake: Fake) -> None:
    start = fake.log_length()
    secrets = [{"name": "api-key", "value": "sk-held-by-arm-42"}]
    traffic = [{"latestRevision": True, "weight": 100, "label": "blue"}]
    ingress = {"external": True, "targetPort": 8080, "traffic": traffic}
    create(fake, "viewed", image("viewed"), secrets=secrets, activeRevisionsMode="Multiple", ingress=ingress)
    [rev] = revisions(fake, "viewed")

    view = fake.ok("GET", fake.app_route("viewed"))
    assert view["app"]["properties"]["configuration"]["secrets"] == secrets  # as ARM holds them
    assert [r["name"] for r in view["revisions"]] == [rev.name]
    assert view["traffic"] == [{**traffic[0], "revision": rev.name}]
    assert (view["weights"], view["labels"]) == ({rev.name: 100}, {"blue": rev.name})
    assert fake.call("GET", fake.app_route("nobody")).status_code == 404

    listed = {a["name"]: a for a in fake.ok("GET", "/apps")["value"]}
    assert listed["viewed"]["properties"]["configuration"]["secrets"] == [{"name": "api-key"}]  # as ARM's GET

    log = fake.log_since(start)
    assert all(not r["path"].startswith("/_fake") for r in log)  # the control routes are not logged
    [put] = [r for r in log if r["method"] == "PUT"]
    assert (put["path"], put["status"], put["by"]) == (fake.app_path("viewed"), 201, "client")
    assert put["body"]["properties"]["configuration"]["secrets"] == secrets
    assert put["response_headers"]["Azure-AsyncOperation"].startswith(fake.url)
    assert put["index"] == start + log.index(put)


# ---------------------------------------------------------------------------------------------------------------
# Set-up, settings, tokens
# ---------------------------------------------------------------------------------------------------------------


def test_settings_and_the_clock_drive_long_running_operations(fake: Fake) -> None:
    assert fake.ok("POST", "/settings", {"provisioning_delay": 600})["provisioning_delay"] == 600
    try:
        poller = fake.sdk.container_apps.begin_create_or_update(RG, "patient", app_body(fake, image("patient")))
        time.sleep(1)
        assert not poller.done()
        fake.ok("POST", "/clock", {"advance": 601})
        app = poller.result(timeout=10)
        assert app.properties.provisioning_state == "Succeeded"
    finally:
        fake.ok("POST", "/settings", {"provisioning_delay": 0.3})


def test_a_token_and_an_environment_staged_through_the_routes(fake: Fake) -> None:
    url = f"{fake.url}/subscriptions/{fake.sub}/resourceGroups/{RG}?api-version={API}"
    headers = {"Authorization": "Bearer hand-made-token"}
    assert requests.get(url, headers=headers, verify=fake.ca, timeout=10).status_code == 401
    assert fake.ok("POST", "/tokens", {"token": "hand-made-token"}) == {"allowed": True}
    assert requests.get(url, headers=headers, verify=fake.ca, timeout=10).status_code == 200

    made = fake.call(
        "POST", "/environments", {"subscription": fake.sub, "resource_group": "other-rg", "name": "second-env"}
    )
    assert made.status_code == 201, made.text
    env = fake.sdk.managed_environments.get("other-rg", "second-env")
    assert env.id == made.json()["id"] and env.properties.default_domain == made.json()["defaultDomain"]


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "route", "data", "status", "says"),
    [
        ("GET", "/nothing-here", None, 404, "no control route GET /_fake/nothing-here"),
        ("GET", "/apps/a/b", None, 404, "no control route"),
        ("DELETE", "/images", None, 405, "takes GET or POST"),
        ("POST", "/images", "", 400, "it is empty"),
        ("POST", "/images", "image=x", 400, "not JSON"),
        ("POST", "/images", "[1]", 400, "must be a JSON object"),
        ("POST", "/images", '{"image": "x", "behaviour": "sick"}', 400, "'sick' is not one of healthy"),
        ("POST", "/images", '{"image": "x"}', 400, "missing field(s): behaviour"),
        ("POST", "/images", '{"image": "x", "behaviour": "slow", "start_seconds": "5"}', 400, "expected a number"),
        ("POST", "/faults", '{"status": "429"}', 400, "status: expected an integer"),
        ("POST", "/faults", '{"status": 200}', 400, "not an error status"),
        ("POST", "/faults", '{"status": 429, "retry-after": 1}', 400, "unknown field(s) retry-after"),
        ("POST", "/faults", '{"kind": "explode"}', 400, "'explode' is not one of"),
        ("POST", "/faults", '{"kind": "drop-connection", "count": 0}', 400, "count: must be >= 1"),
        ("POST", "/faults", '{"status": 503, "method": "FETCH"}', 400, "not an HTTP method"),
        ("POST", "/clock", '{"advance": -1}', 400, "only moves forward"),
        ("POST", "/settings", '{"provisioning_delay": true}', 400, "expected a number"),
    ],
)
def test_bad_requests_say_what_is_wrong(
    fake: Fake, method: str, route: str, data: str | None, status: int, says: str
) -> None:
    answer = fake.call(method, route, data=data)
    assert answer.status_code == status and says in answer.json()["error"], answer.text
    assert fake.ok("GET", "/faults")["pending"] == []  # nothing was staged by a refused request


def test_the_route_list_and_arm_still_asking_for_a_token(fake: Fake) -> None:
    routes = fake.ok("GET", "")["routes"]
    assert any(line.startswith("POST  /_fake/images") for line in routes)
    assert any("/revisions/{revision}/purge" in line for line in routes)
    unauthenticated = requests.get(f"{fake.url}{fake.app_path('viewed')}?api-version={API}", verify=fake.ca, timeout=10)
    assert unauthenticated.status_code == 401  # the ARM side is as it was


# ---------------------------------------------------------------------------------------------------------------
# The CLI against the fake process (deploy needs a built image, so Docker: tests/action covers it)
# ---------------------------------------------------------------------------------------------------------------


def test_the_cli_sees_what_the_routes_staged(fake: Fake, tmp_path: Path) -> None:
    fake.ok("POST", "/images", {"image": "registry.example/cli/", "behaviour": "unhealthy"})
    create(fake, "selftest-agent", image("cli"))  # as if deployed: the agent tests/action deploys, unhealthy
    project = tmp_path / "agent"
    shutil.copytree(ROOT / "tests" / "action" / "azure-agent", project)
    environ = {**fake.env, "AZURE_SUBSCRIPTION_ID": fake.sub, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    command = [sys.executable, "-m", "agentdeploy", "status", "agent.yaml", "--json"]
    result = subprocess.run(command, cwd=project, env=environ, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    live = json.loads(result.stdout)["live"]
    [rev] = revisions(fake, "selftest-agent")
    assert live["latest_ready_revision"] == ""
    assert f"  {rev.name}: traffic 100%, active, Provisioned, Running, Unhealthy" in live["summary"]
