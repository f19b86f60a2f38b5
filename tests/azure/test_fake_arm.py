"""The fake ARM (tests/fakes) driven by the real azure-mgmt-appcontainers SDK and azure-identity, over HTTPS.

Each test states a behaviour of the live service (../shared/FACTS.md, ../shared/contracts/azure-cli/) and checks
that the fake shows it: status codes, bodies and headers in the fake's request log, and what the SDK makes of them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from fakes.arm import FakeArm, RecordedRequest
from fakes.arm_state import ArmState, Clock, merge_patch

SUB = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
RG = "agents-rg"
ENV = "agents-env"
ENV_ID = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.App/managedEnvironments/{ENV}"
TOKEN = "static-token-for-fake-arm"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "0c5a1e7d-1111-4222-8333-944455556666"
ARM_SCOPE = "https://management.azure.com/.default"
SDK_API_VERSION = "2026-07-01"  # the installed SDK's default (FACTS.md)


def image(n: int) -> str:
    return f"registry.example/team/agent@sha256:{n:064x}"


class StaticCredential:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture
def arm(start_arm: Callable[..., FakeArm]) -> FakeArm:
    return start_arm(subscription=SUB, token=TOKEN)


def make_client(arm: FakeArm, tls_files: Any, credential: Any = None) -> Any:
    from azure.mgmt.appcontainers import ContainerAppsAPIClient

    return ContainerAppsAPIClient(
        credential or StaticCredential(),
        SUB,
        base_url=arm.base_url,
        polling_interval=0.2,
        connection_verify=str(tls_files.ca),
    )


@pytest.fixture
def sdk(arm: FakeArm, tls_files: Any) -> Any:
    return make_client(arm, tls_files)


def container(img: str, **extra: Any) -> dict[str, Any]:
    return {"name": "agent", "image": img, **extra}


def body(
    img: str = image(1),
    *,
    mode: str = "single",
    suffix: str | None = None,
    secrets: list[dict[str, Any]] | None = None,
    env: list[dict[str, Any]] | None = None,
    traffic: list[dict[str, Any]] | None = None,
    external: bool = True,
    resources: dict[str, Any] | None = None,
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if env is not None:
        extra["env"] = env
    if resources is not None:
        extra["resources"] = resources
    ingress: dict[str, Any] = {"external": external, "targetPort": 8080, "transport": "auto"}
    if traffic is not None:
        ingress["traffic"] = traffic
    return {
        "location": "eastus",
        "properties": {
            "environmentId": ENV_ID,
            "configuration": {"activeRevisionsMode": mode, "ingress": ingress, "secrets": secrets},
            "template": {"revisionSuffix": suffix, "containers": [container(img, **extra)]},
        },
    }


def create(sdk: Any, name: str = "agent", payload: dict[str, Any] | None = None) -> Any:
    return sdk.container_apps.begin_create_or_update(RG, name, payload or body()).result()


def update(sdk: Any, patch: dict[str, Any], name: str = "agent") -> Any:
    return sdk.container_apps.begin_update(RG, name, patch).result()


def new_image(img: str, **extra: Any) -> dict[str, Any]:
    return {"properties": {"template": {"containers": [container(img, **extra)]}}}


def revisions(arm: FakeArm, name: str = "agent") -> dict[str, dict[str, Any]]:
    return {r["name"]: r["properties"] for r in arm.revisions(SUB, RG, name)}


def states(props: dict[str, Any]) -> tuple[str, str, str]:
    return props["provisioningState"], props["runningState"], props["healthState"]


def last(arm: FakeArm, method: str, pattern: str = "") -> RecordedRequest:
    return [r for r in arm.requests if r.method == method and re.search(pattern, r.path)][-1]


def wait_until(check: Callable[[], bool], seconds: float = 6.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def raw(arm: FakeArm, method: str, path: str, token: str | None = TOKEN, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    separator = "&" if "?" in path else "?"
    url = f"{arm.base_url}{path}{separator}api-version={SDK_API_VERSION}"
    return requests.request(method, url, headers=headers, timeout=10, **kwargs)


APP_PATH = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.App/containerApps/agent"


# ---------------------------------------------------------------------------------------------------------------
# Long-running operations and the recorded shapes
# ---------------------------------------------------------------------------------------------------------------


def test_create_is_put_201_async_operation_status_polls_then_get(arm: FakeArm, sdk: Any) -> None:
    app = create(sdk)

    put = last(arm, "PUT")
    assert put.status == 201 and put.query["api-version"] == SDK_API_VERSION
    status_url = put.response_headers["Azure-AsyncOperation"]
    assert status_url.startswith(
        f"{arm.base_url}/subscriptions/{SUB}/providers/Microsoft.App/locations/eastus/containerappOperationStatuses/"
    )
    assert f"api-version={SDK_API_VERSION}" in status_url and "Location" not in put.response_headers
    assert put.response_headers["x-ms-async-operation-timeout"] == "PT15M"
    answered = put.response_body["properties"]
    assert answered["provisioningState"] == "InProgress"
    assert (answered["latestRevisionName"], answered["latestReadyRevisionName"], answered["latestRevisionFqdn"]) == (
        "",
        "",
        "",
    )

    polls = [r for r in arm.requests if "/containerappOperationStatuses/" in r.path]
    seen = [p.response_body["status"] for p in polls]
    assert len(seen) >= 2 and seen[-1] == "Succeeded" and set(seen[:-1]) == {"InProgress"}
    assert set(polls[0].response_body) == {"id", "name", "status", "startTime"}
    final = arm.requests[-1]
    assert (final.method, final.path, final.status) == ("GET", APP_PATH, 200)
    assert not any("Retry-After" in r.response_headers for r in arm.requests)  # the real service sends none

    got = final.response_body
    props = got["properties"]
    assert got["id"] == f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.App/containerapps/agent"
    assert (got["type"], got["location"], got["identity"]) == (
        "Microsoft.App/containerApps",
        "East US",
        {"type": "None"},
    )
    assert (props["provisioningState"], props["runningStatus"]) == ("Succeeded", "Running")
    assert re.fullmatch(r"agent--[a-z0-9]{7}", props["latestRevisionName"])
    assert props["latestReadyRevisionName"] == props["latestRevisionName"]
    domain = arm.env_domain
    assert props["latestRevisionFqdn"] == f"{props['latestRevisionName']}.{domain}"
    config = props["configuration"]
    assert config["activeRevisionsMode"] == "Single"  # sent "single"
    assert config["ingress"]["fqdn"] == f"agent.{domain}"
    assert config["ingress"]["transport"] == "Auto"  # sent "auto"
    assert config["ingress"]["traffic"] == [{"weight": 100, "latestRevision": True}]  # omitted traffic
    assert props["template"]["revisionSuffix"] == ""
    assert props["template"]["containers"][0]["resources"] == {"cpu": 0.5, "memory": "1Gi", "ephemeralStorage": "2Gi"}
    assert props["template"]["scale"] == {"minReplicas": None, "maxReplicas": 10, "rules": None}
    # ... and the SDK reads it: enum values are the service's words.
    assert app.properties.provisioning_state == "Succeeded"
    assert app.properties.latest_ready_revision_name == props["latestRevisionName"]


def test_update_is_patch_202_location_polls_202_then_200_with_the_app(arm: FakeArm, sdk: Any) -> None:
    create(sdk)
    updated = update(sdk, new_image(image(2)))

    patch = last(arm, "PATCH")
    assert (patch.status, patch.response_body) == (202, None)
    location = patch.response_headers["Location"]
    assert "/locations/eastus/containerappOperationResults/" in location
    assert "Azure-AsyncOperation" not in patch.response_headers
    results = [r for r in arm.requests if "/containerappOperationResults/" in r.path]
    assert [r.status for r in results][-1] == 200 and {r.status for r in results[:-1]} == {202}
    assert all(r.response_headers["Location"] == location for r in results[:-1])
    assert all(r.response_body is None for r in results[:-1])
    assert results[-1].response_body["properties"]["template"]["containers"][0]["image"] == image(2)
    assert updated.properties.template.containers[0].image == image(2)
    assert arm.requests[-1] is results[-1]  # the 200 carries the app: no extra GET


def test_only_a_revision_scope_change_makes_a_revision(arm: FakeArm, sdk: Any) -> None:
    secret = [{"name": "api-key", "value": "one"}]
    variables = [{"name": "API_KEY", "secretRef": "api-key"}]
    create(sdk, payload=body(secrets=secret, env=variables))
    [first] = revisions(arm)

    # Configuration only: secrets, traffic, registries, revision mode. No new revision.
    update(sdk, {"properties": {"configuration": {"secrets": [{"name": "api-key", "value": "two"}]}}})
    update(sdk, {"properties": {"configuration": {"ingress": {"traffic": [{"latestRevision": True, "weight": 100}]}}}})
    update(
        sdk, {"properties": {"configuration": {"registries": [{"server": "registry.example", "identity": "system"}]}}}
    )
    update(sdk, {"properties": {"configuration": {"activeRevisionsMode": "Multiple"}}})
    assert list(revisions(arm)) == [first]

    # The identical template again, by PUT (201 again, as recorded for an existing app): no new revision either.
    same = body(mode="multiple", secrets=[{"name": "api-key", "value": "two"}], env=variables)
    create(sdk, payload=same)
    assert [r.status for r in arm.requests if r.method == "PUT"] == [201, 201]
    assert list(revisions(arm)) == [first]

    # Template changes: image, env, resources, scale, suffix. One revision each.
    update(sdk, new_image(image(2), env=variables))
    update(sdk, new_image(image(2), env=[*variables, {"name": "LOG_LEVEL", "value": "debug"}]))
    update(sdk, new_image(image(2), resources={"cpu": 1.0, "memory": "2Gi"}))
    update(sdk, {"properties": {"template": {"scale": {"minReplicas": 1, "maxReplicas": 3}}}})
    update(sdk, {"properties": {"template": {"revisionSuffix": "named"}}})
    names = list(revisions(arm))
    assert len(names) == 6 and names[0] == first and names[-1] == "agent--named"
    latest = arm.app(SUB, RG, "agent")["properties"]
    assert latest["latestRevisionName"] == "agent--named"
    assert latest["template"]["containers"][0]["resources"]["ephemeralStorage"] == "4Gi"  # derived, as recorded


def test_merge_patch_semantics_objects_merge_arrays_replace_null_deletes(arm: FakeArm, sdk: Any) -> None:
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch(["a", "b"], {"a": "b", "c": None}) == {"a": "b"}

    payload = body(env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
    payload["properties"]["configuration"]["dapr"] = {"enabled": True, "appId": "agent"}
    create(sdk, payload=payload)
    update(sdk, {"properties": {"configuration": {"dapr": None}, "template": {"revisionSuffix": None}}})
    update(sdk, new_image(image(1), env=[{"name": "C", "value": "3"}]))
    app = arm.app(SUB, RG, "agent")
    assert app["properties"]["configuration"]["dapr"] is None
    assert app["properties"]["configuration"]["ingress"]["targetPort"] == 8080  # merged, not replaced
    assert app["properties"]["template"]["containers"][0]["env"] == [{"name": "C", "value": "3"}]  # replaced


def test_delete_is_202_location_polls_then_204_and_the_app_is_gone(arm: FakeArm, sdk: Any) -> None:
    create(sdk)
    sdk.container_apps.begin_delete(RG, "agent").result()

    delete = last(arm, "DELETE")
    assert (delete.status, delete.response_body) == (202, None)
    assert "/containerappOperationResults/" in delete.response_headers["Location"]
    polls = [r for r in arm.requests if "/containerappOperationResults/" in r.path]
    assert [p.status for p in polls][-1] == 204 and {p.status for p in polls[:-1]} == {202}
    with pytest.raises(ResourceNotFoundError) as exc:
        sdk.container_apps.get(RG, "agent")
    assert exc.value.error.code == "ResourceNotFound"
    assert arm.app(SUB, RG, "agent") is None
    sdk.container_apps.begin_delete(RG, "agent").result()  # deleting what is not there: 204
    assert last(arm, "DELETE").status == 204


# ---------------------------------------------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------------------------------------------


def test_secret_values_come_back_only_from_list_secrets(arm: FakeArm, sdk: Any) -> None:
    secret = [{"name": "api-key", "value": "sk-sentinel-42"}]
    create(sdk, payload=body(secrets=secret, env=[{"name": "API_KEY", "secretRef": "api-key"}]))
    app = sdk.container_apps.get(RG, "agent")
    assert [s.as_dict() for s in app.properties.configuration.secrets] == [{"name": "api-key"}]
    gets = [r for r in arm.requests if r.method == "GET" or r.method == "PUT"]
    assert all("sk-sentinel-42" not in json.dumps(r.response_body) for r in gets)

    listed = sdk.container_apps.list_secrets(RG, "agent")
    assert [(s.name, s.value) for s in listed.value] == [("api-key", "sk-sentinel-42")]
    assert last(arm, "POST", "listSecrets$").response_body == {"value": secret}
    assert arm.app(SUB, RG, "agent")["properties"]["configuration"]["secrets"] == secret


def test_resending_secrets_without_values_fails_secret_null_without_wrapper(arm: FakeArm, sdk: Any) -> None:
    create(sdk, payload=body(secrets=[{"name": "api-key", "value": "kept"}]))
    shown = raw(arm, "GET", APP_PATH).json()  # what GET shows, sent back as a plain dict: nothing is stripped

    with pytest.raises(HttpResponseError) as exc:
        sdk.container_apps.begin_create_or_update(RG, "agent", shown)
    assert exc.value.status_code == 400 and exc.value.error.code == "ContainerAppSecretNull"
    assert last(arm, "PUT").response_body == {
        "code": "ContainerAppSecretNull",
        "message": "Invalid Request: Container app secret(s) with name(s) 'api-key' cannot have a value of null.",
    }
    with pytest.raises(HttpResponseError) as exc:
        sdk.container_apps.begin_update(RG, "agent", {"properties": {"configuration": {"secrets": [{"name": "x"}]}}})
    assert exc.value.error.code == "ContainerAppSecretNull"
    assert arm.app(SUB, RG, "agent")["properties"]["configuration"]["secrets"] == [{"name": "api-key", "value": "kept"}]


def test_a_secret_ref_to_a_missing_secret_is_refused(arm: FakeArm, sdk: Any) -> None:
    with pytest.raises(HttpResponseError) as exc:
        create(sdk, payload=body(env=[{"name": "API_KEY", "secretRef": "nope"}]))
    assert exc.value.status_code == 400 and exc.value.error.code == "ContainerAppSecretRefNotFound"
    assert exc.value.error.message == "SecretRef 'nope' defined for container 'agent' not found."
    assert arm.app(SUB, RG, "agent") is None


# ---------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------


INVALID = [
    pytest.param("Agent", body(), 400, "ContainerAppInvalidName", id="upper-case-name"),
    pytest.param("a", body(), 400, "ContainerAppInvalidName", id="one-char-name"),
    pytest.param("a" * 33, body(), 400, "ContainerAppInvalidName", id="33-char-name"),
    pytest.param("my--agent", body(), 400, "ContainerAppInvalidName", id="double-dash-name"),
    pytest.param("1agent", body(), 400, "ContainerAppInvalidName", id="digit-first-name"),
    pytest.param("agent-", body(), 400, "ContainerAppInvalidName", id="dash-last-name"),
    pytest.param("agent", body(env=[{"name": "1BAD", "value": "x"}]), 400, "ContainerAppInvalidEnvVarName", id="env-1"),
    pytest.param("agent", body(env=[{"name": "A B", "value": "x"}]), 400, "ContainerAppInvalidEnvVarName", id="env-sp"),
    pytest.param("agent", body(env=[{"name": "a:b", "value": "x"}]), 400, "ContainerAppInvalidEnvVarName", id="env-:"),
    pytest.param(
        "agent", body(resources={"cpu": 1.0, "memory": "1Gi"}), 400, "ContainerAppInvalidResourceTotal", id="1cpu-1gi"
    ),
    pytest.param(
        "agent", body(resources={"cpu": 4.0, "memory": "8Gi"}), 400, "ContainerAppInvalidResourceTotal", id="4cpu-8gi"
    ),
    pytest.param("agent", body(suffix="Blue"), 400, "ContainerAppInvalidRevisionName", id="suffix-upper"),
    pytest.param("agent", body(suffix="1abc"), 400, "ContainerAppInvalidRevisionName", id="suffix-digit"),
    pytest.param("agent", body(suffix="a--b"), 400, "ContainerAppInvalidRevisionName", id="suffix-dashes"),
    pytest.param("agent", body(suffix="s" * 48), 400, "ContainerAppInvalidRevisionName", id="suffix-over-54"),
]


@pytest.mark.parametrize(("name", "payload", "status", "code"), INVALID)
def test_invalid_requests_are_refused_at_once_and_change_nothing(
    arm: FakeArm, sdk: Any, name: str, payload: dict[str, Any], status: int, code: str
) -> None:
    with pytest.raises(HttpResponseError) as exc:
        create(sdk, name, payload)
    assert (exc.value.status_code, exc.value.error.code) == (status, code)
    assert last(arm, "PUT").response_body["error"]["code"] == code  # the {"error": {...}} wrapper
    assert arm.app(SUB, RG, name) is None
    assert not any("Operation" in r.path for r in arm.requests)


def test_the_boundaries_of_the_rules_are_accepted(arm: FakeArm, sdk: Any) -> None:
    arm.provisioning_delay = 0
    create(sdk, "ab", body(env=[{"name": "-._a", "value": "1"}, {"name": "A_1.b-c", "value": "2"}]))
    longest = "a" * 32
    create(sdk, longest, body(resources={"cpu": 2.0, "memory": "4Gi"}, suffix="s" * 20))  # 32 + 2 + 20 = 54
    assert list(revisions(arm, longest)) == [f"{longest}--{'s' * 20}"]
    two = body()
    sidecar = {"name": "sidecar", "image": image(9), "resources": {"cpu": 0.25, "memory": "0.5Gi"}}
    two["properties"]["template"]["containers"].append(sidecar)
    two["properties"]["template"]["containers"][0]["resources"] = {"cpu": 0.75, "memory": "1.5Gi"}  # 1.0 / 2Gi in all
    create(sdk, "two-containers", two)


def test_missing_resource_group_and_environment_are_404(arm: FakeArm, sdk: Any) -> None:
    with pytest.raises(ResourceNotFoundError) as exc:
        sdk.container_apps.begin_create_or_update("nope-rg", "agent", body())
    assert exc.value.error.code == "ResourceGroupNotFound"
    assert exc.value.error.message == "Resource group 'nope-rg' could not be found."
    elsewhere = body()
    elsewhere["properties"]["environmentId"] = ENV_ID.replace(ENV, "no-such-env")
    with pytest.raises(ResourceNotFoundError) as exc:
        sdk.container_apps.begin_create_or_update(RG, "agent", elsewhere)
    assert exc.value.error.code == "ManagedEnvironmentNotFound"
    env = raw(arm, "GET", f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.App/managedEnvironments/{ENV}")
    assert env.status_code == 200 and env.json()["properties"]["defaultDomain"] == arm.env_domain
    group = raw(arm, "GET", f"/subscriptions/{SUB}/resourcegroups/{RG}")
    assert group.json()["properties"]["provisioningState"] == "Succeeded"
    assert (
        raw(arm, "GET", f"/subscriptions/{SUB}/resourcegroups/other").json()["error"]["code"] == "ResourceGroupNotFound"
    )


def test_reusing_a_revision_suffix_is_accepted_then_the_operation_fails(arm: FakeArm, sdk: Any) -> None:
    create(sdk, payload=body(suffix="v1"))
    [first] = revisions(arm)
    assert first == "agent--v1"

    # The suffix stays in the app's template: a PATCH that changes only the image reuses it.
    poller = sdk.container_apps.begin_update(RG, "agent", new_image(image(2)))
    assert last(arm, "PATCH").status == 202  # accepted...
    with pytest.raises(HttpResponseError) as exc:
        poller.result()  # ...and it fails late
    assert exc.value.error.code == "ContainerAppOperationError"
    assert "revision with suffix v1 already exists" in exc.value.error.message
    failed = last(arm, "GET", "containerappOperationResults")
    assert failed.status == 400 and failed.response_body["error"]["code"] == "ContainerAppOperationError"
    app = arm.app(SUB, RG, "agent")["properties"]
    assert app["provisioningState"] == "Failed"
    assert list(revisions(arm)) == [first] and app["latestRevisionName"] == first

    # The same through PUT: 201 (also for an existing app) + Azure-AsyncOperation, and the status resource ends
    # Failed with the error.
    with pytest.raises(HttpResponseError) as exc:
        create(sdk, payload=body(image(3), suffix="v1"))
    assert last(arm, "PUT").status == 201
    status = last(arm, "GET", "containerappOperationStatuses").response_body
    assert status["status"] == "Failed" and status["error"]["code"] == "ContainerAppOperationError"

    update(sdk, {"properties": {"template": {"revisionSuffix": "v2", "containers": [container(image(3))]}}})
    assert arm.app(SUB, RG, "agent")["properties"]["provisioningState"] == "Succeeded"
    assert list(revisions(arm)) == [first, "agent--v2"]


def test_writes_during_an_operation_get_409_lock_conflict(arm: FakeArm, sdk: Any) -> None:
    create(sdk)
    [first] = revisions(arm)
    arm.provisioning_delay = 1.5
    poller = sdk.container_apps.begin_update(RG, "agent", new_image(image(2)))

    with pytest.raises(HttpResponseError) as exc:
        sdk.container_apps.begin_update(RG, "agent", new_image(image(3)))
    assert (exc.value.status_code, exc.value.error.code) == (409, "ContainerAppLockConflict")
    assert last(arm, "PATCH").response_body == {
        "code": "ContainerAppLockConflict",
        "message": "Cannot modify container App 'agent' because another modification is in progress. Please retry "
        "the operation.",
    }
    for attempt in (
        lambda: sdk.container_apps.begin_create_or_update(RG, "agent", body(image(3))),
        lambda: sdk.container_apps.begin_delete(RG, "agent"),
        lambda: sdk.container_apps_revisions.deactivate_revision(RG, "agent", first),
    ):
        with pytest.raises(HttpResponseError) as exc:
            attempt()
        assert exc.value.status_code == 409
    assert sdk.container_apps.get(RG, "agent").properties.provisioning_state == "InProgress"  # reads are fine
    poller.result()
    update(sdk, new_image(image(3)))
    assert arm.app(SUB, RG, "agent")["properties"]["template"]["containers"][0]["image"] == image(3)


# ---------------------------------------------------------------------------------------------------------------
# Revisions, readiness and traffic
# ---------------------------------------------------------------------------------------------------------------


def test_single_mode_moves_traffic_only_once_the_new_revision_is_ready(arm: FakeArm, sdk: Any) -> None:
    create(sdk)
    [first] = revisions(arm)
    arm.set_image_behaviour(image(2), "slow", start_seconds=1.0)
    done = update(sdk, new_image(image(2)))
    new = done.properties.latest_revision_name

    # The operation Succeeded, but the new revision is not serving yet (FACTS.md).
    assert done.properties.provisioning_state == "Succeeded"
    assert done.properties.latest_ready_revision_name == first
    now = revisions(arm)
    assert states(now[new]) == ("Provisioning", "Processing", "None") and now[new]["trafficWeight"] == 0
    assert now[first]["active"] and now[first]["trafficWeight"] == 100
    domain = arm.env_domain
    assert arm.probe(f"https://agent.{domain}/health") == 200  # the old one still answers
    assert arm.probe(f"https://{new}.{domain}/health") == 503

    wait_until(lambda: arm.app(SUB, RG, "agent")["properties"]["latestReadyRevisionName"] == new)
    now = revisions(arm)
    assert states(now[new]) == ("Provisioned", "Running", "Healthy")
    assert (now[new]["trafficWeight"], now[new]["replicas"]) == (100, 1)
    assert (now[first]["active"], now[first]["trafficWeight"], now[first]["runningState"]) == (False, 0, "Stopped")
    assert arm.probe(f"https://{first}.{domain}/health") == 404
    assert arm.probe(f"https://{new}.{domain}/health") == 200


@pytest.mark.parametrize(
    ("behaviour", "final"),
    [("unhealthy", ("Provisioned", "Running", "Unhealthy")), ("crashloop", ("Failed", "Failed", "Unhealthy"))],
)
def test_a_bad_image_never_becomes_latest_ready_and_the_old_revision_keeps_serving(
    arm: FakeArm, sdk: Any, behaviour: str, final: tuple[str, str, str]
) -> None:
    create(sdk)
    [first] = revisions(arm)
    arm.set_image_behaviour("registry.example/team/bad", behaviour)  # a prefix of the image below
    done = update(sdk, new_image("registry.example/team/bad@sha256:" + "e" * 64))
    assert done.properties.provisioning_state == "Succeeded"  # the operation does not wait for health
    new = done.properties.latest_revision_name

    time.sleep(0.7)  # well past provisioning_delay (twice it for a crash loop)
    now = revisions(arm)
    assert states(now[new]) == final
    assert ("provisioningError" in now[new]) is (behaviour == "crashloop")
    app = arm.app(SUB, RG, "agent")["properties"]
    assert (app["latestRevisionName"], app["latestReadyRevisionName"]) == (new, first)
    assert now[first]["active"] and now[first]["trafficWeight"] == 100 and now[new]["trafficWeight"] == 0
    assert arm.probe(f"https://agent.{arm.env_domain}/") == 200
    assert arm.probe(f"https://{new}.{arm.env_domain}/") == 503


def test_single_mode_refuses_traffic_by_revision_name_and_a_copy_of_the_old_template_rolls_back(
    arm: FakeArm, sdk: Any
) -> None:
    """ "Revision weights can not be used in this mode" (the REST spec on Single mode; `az containerapp` refuses it):
    the old version comes back as a new revision made from its template."""
    create(sdk)
    [first] = revisions(arm)
    second = update(sdk, new_image(image(2))).properties.latest_revision_name
    wait_until(lambda: not revisions(arm)[first]["active"])  # Single mode deactivated the previous one

    sdk.container_apps_revisions.activate_revision(RG, "agent", first)
    pin = {"properties": {"configuration": {"ingress": {"traffic": [{"revisionName": first, "weight": 100}]}}}}
    with pytest.raises(HttpResponseError) as exc:
        sdk.container_apps.begin_update(RG, "agent", pin)
    assert exc.value.status_code == 400
    assert exc.value.error.message.startswith("Revision weights can not be used in this mode")

    template = arm.revisions(SUB, RG, "agent")[0]["properties"]["template"]
    update(sdk, {"properties": {"template": {**template, "revisionSuffix": "back"}}})
    wait_until(lambda: revisions(arm)["agent--back"]["trafficWeight"] == 100)
    now = revisions(arm)
    assert now["agent--back"]["template"]["containers"][0]["image"] == image(1)
    wait_until(lambda: not revisions(arm)[second]["active"])
    assert arm.app(SUB, RG, "agent")["properties"]["configuration"]["ingress"]["traffic"] == [
        {"weight": 100, "latestRevision": True}
    ]
    assert arm.probe(f"https://agent.{arm.env_domain}/") == 200
    assert arm.probe(f"https://{second}.{arm.env_domain}/") == 404


def test_multiple_mode_latest_revision_gets_its_weight_at_once_as_recorded(arm: FakeArm, sdk: Any) -> None:
    create(sdk, payload=body(mode="multiple"))
    [first] = revisions(arm)
    arm.set_image_behaviour(image(2), "slow", start_seconds=1.0)
    new = update(sdk, new_image(image(2))).properties.latest_revision_name
    now = revisions(arm)
    # Recorded (ingress_traffic #43): the still-Provisioning revision lists trafficWeight 100, the old one 0 and
    # stays active.
    assert states(now[new])[0] == "Provisioning" and now[new]["trafficWeight"] == 100
    assert now[first]["active"] and now[first]["trafficWeight"] == 0
    assert arm.probe(f"https://agent.{arm.env_domain}/") == 503  # so the app URL is not served yet


def test_blue_green_with_labels_in_multiple_mode(arm: FakeArm, sdk: Any) -> None:
    blue, green = "agent--blue", "agent--green"
    create(
        sdk,
        payload=body(mode="multiple", suffix="blue", traffic=[{"revisionName": blue, "weight": 100, "label": "blue"}]),
    )
    candidate = {
        "properties": {
            "configuration": {
                "ingress": {
                    "traffic": [
                        {"revisionName": blue, "weight": 100, "label": "blue"},
                        {"revisionName": green, "weight": 0, "label": "green"},  # named in the write that makes it
                    ]
                }
            },
            "template": {"revisionSuffix": "green", "containers": [container(image(2))]},
        }
    }
    update(sdk, candidate)
    wait_until(lambda: revisions(arm)[green]["runningState"] == "Running")
    now = revisions(arm)
    assert (now[blue]["trafficWeight"], now[green]["trafficWeight"]) == (100, 0)
    assert now[blue]["active"] and now[green]["active"]  # Multiple mode keeps both
    domain = arm.env_domain
    assert arm.probe(f"https://agent---green.{domain}/health") == 200
    assert arm.probe(f"https://agent---blue.{domain}/health") == 200
    assert arm.probe(f"https://agent---purple.{domain}/health") == 404

    def weights(blue_weight: Any, green_weight: Any) -> dict[str, Any]:
        traffic = [
            {"revisionName": blue, "weight": blue_weight, "label": "blue"},
            {"revisionName": green, "weight": green_weight, "label": "green"},
        ]
        return {"properties": {"configuration": {"ingress": {"traffic": traffic}}}}

    update(sdk, weights(0, 100))  # promote
    assert (revisions(arm)[blue]["trafficWeight"], revisions(arm)[green]["trafficWeight"]) == (0, 100)
    update(sdk, weights("50", "50"))  # the recorded CLI sent weights as strings; the service took them
    traffic = arm.app(SUB, RG, "agent")["properties"]["configuration"]["ingress"]["traffic"]
    assert [t["weight"] for t in traffic] == [50, 50]
    update(sdk, weights(100, 0))  # roll back
    assert (revisions(arm)[blue]["trafficWeight"], revisions(arm)[green]["trafficWeight"]) == (100, 0)


@pytest.mark.parametrize(
    ("traffic", "needle"),
    [
        ([{"revisionName": "agent--blue", "weight": 60}, {"latestRevision": True, "weight": 30}], "must be 100"),
        (
            [
                {"revisionName": "agent--blue", "weight": 50, "label": "x"},
                {"latestRevision": True, "weight": 50, "label": "x"},
            ],
            "more than one",
        ),
        ([{"revisionName": "agent--nope", "weight": 100}], "agent--nope"),
        ([{"revisionName": "agent--blue", "weight": 100, "label": "Bad_Label"}], "traffic.label"),
        ([{"revisionName": "agent--blue", "latestRevision": True, "weight": 100}], "both"),
    ],
)
def test_invalid_traffic_is_refused(arm: FakeArm, sdk: Any, traffic: list[dict[str, Any]], needle: str) -> None:
    arm.provisioning_delay = 0
    create(sdk, payload=body(mode="multiple", suffix="blue"))
    with pytest.raises(HttpResponseError) as exc:
        update(sdk, {"properties": {"configuration": {"ingress": {"traffic": traffic}}}})
    assert exc.value.status_code == 400 and needle in exc.value.error.message
    assert arm.app(SUB, RG, "agent")["properties"]["configuration"]["ingress"]["traffic"] == [
        {"weight": 100, "latestRevision": True}
    ]


def test_single_mode_does_not_split_traffic(arm: FakeArm, sdk: Any) -> None:
    create(sdk)
    [first] = revisions(arm)
    split = [{"revisionName": first, "weight": 50}, {"latestRevision": True, "weight": 50}]
    with pytest.raises(HttpResponseError) as exc:
        update(sdk, {"properties": {"configuration": {"ingress": {"traffic": split}}}})
    assert exc.value.status_code == 400 and "Multiple" in exc.value.error.message


def test_revision_actions_answer_200_with_a_json_string(arm: FakeArm, sdk: Any) -> None:
    create(sdk, payload=body(mode="multiple"))
    [first] = revisions(arm)
    update(sdk, new_image(image(2)))

    assert sdk.container_apps_revisions.deactivate_revision(RG, "agent", first) is None
    answer = last(arm, "POST", "/deactivate$")
    assert (answer.status, answer.response_body) == (200, "Deactivate succeeded")
    assert revisions(arm)[first]["active"] is False
    assert (revisions(arm)[first]["replicas"], revisions(arm)[first]["runningState"]) == (0, "Stopped")

    with pytest.raises(HttpResponseError) as exc:
        sdk.container_apps_revisions.restart_revision(RG, "agent", first)  # not while inactive
    assert exc.value.status_code == 400

    sdk.container_apps_revisions.activate_revision(RG, "agent", first)
    sdk.container_apps_revisions.restart_revision(RG, "agent", first)
    assert [r.response_body for r in arm.requests if r.method == "POST" and r.status == 200][-2:] == [
        "Activate succeeded",
        "Restart succeeded",
    ]
    text = raw(arm, "POST", f"{APP_PATH}/revisions/{first}/restart")
    assert (text.status_code, text.text, text.headers["Content-Type"]) == (
        200,
        '"Restart succeeded"',
        "application/json; charset=utf-8",
    )
    with pytest.raises(ResourceNotFoundError):
        sdk.container_apps_revisions.activate_revision(RG, "agent", "agent--missing")

    revision = sdk.container_apps_revisions.get_revision(RG, "agent", first)
    assert revision.properties.active is True and revision.properties.template.containers[0].image == image(1)
    listed = list(sdk.container_apps_revisions.list_revisions(RG, "agent"))
    assert [r.name for r in listed] == list(revisions(arm))
    kinds = [(r.method, r.path.rsplit("/", 1)[-1]) for r in arm.writes()]
    assert kinds == [
        ("PUT", "agent"),
        ("PATCH", "agent"),
        ("POST", "deactivate"),
        ("POST", "restart"),  # refused (400), but attempted
        ("POST", "activate"),
        ("POST", "restart"),
        ("POST", "restart"),
        ("POST", "activate"),  # 404
    ]


def test_probe_resolves_app_revision_and_label_hosts(arm: FakeArm, sdk: Any) -> None:
    arm.set_image_behaviour(image(6), "unhealthy")
    create(
        sdk,
        payload=body(
            mode="multiple", suffix="good", traffic=[{"revisionName": "agent--good", "weight": 100, "label": "stable"}]
        ),
    )
    traffic = [
        {"revisionName": "agent--good", "weight": 100, "label": "stable"},
        {"revisionName": "agent--bad", "weight": 0, "label": "next"},
    ]
    update(
        sdk,
        {
            "properties": {
                "configuration": {"ingress": {"traffic": traffic}},
                "template": {"revisionSuffix": "bad", "containers": [container(image(6))]},
            }
        },
    )
    time.sleep(0.4)
    domain = arm.env_domain
    assert arm.probe(f"https://agent.{domain}/health") == 200  # largest weight: good
    assert arm.probe(f"https://agent---stable.{domain}/") == 200
    assert arm.probe(f"https://agent---next.{domain}/") == 503
    assert arm.probe(f"https://agent--bad.{domain}/") == 503
    assert arm.probe(f"https://other-app.{domain}/") == 404
    assert arm.probe("https://example.com/") is None

    traffic[0]["weight"], traffic[1]["weight"] = 10, 90
    update(sdk, {"properties": {"configuration": {"ingress": {"traffic": traffic}}}})
    assert arm.probe(f"https://agent.{domain}/health") == 503  # now the bad one has the most

    # Internal ingress: <app>.internal.<domain>, reachable only from inside the environment.
    internal = create(sdk, "inside", body(external=False)).properties
    assert internal.configuration.ingress.fqdn == f"inside.internal.{domain}"
    assert arm.probe(f"https://inside.internal.{domain}/") is None
    assert arm.probe(f"https://inside.internal.{domain}/", from_environment=True) == 200


# ---------------------------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------------------------


def test_bursts_of_429_and_503_with_retry_after_are_survived_by_the_sdk(arm: FakeArm, sdk: Any) -> None:
    arm.inject(status=503, count=2, retry_after=0.1, method="PUT")
    create(sdk)
    assert [r.status for r in arm.requests if r.method == "PUT"] == [503, 503, 201]
    refused = next(r for r in arm.requests if r.status == 503)
    assert refused.response_headers["Retry-After"] == "0.1"
    assert refused.response_body["error"]["code"] == "ServiceUnavailable"

    arm.inject(status=429, count=3, retry_after=0.1, method="GET", path_regex=r"/containerApps/agent$")
    assert sdk.container_apps.get(RG, "agent").name == "agent"
    gets = [r.status for r in arm.requests if r.method == "GET" and r.path == APP_PATH]
    assert gets[-4:] == [429, 429, 429, 200]
    assert (
        next(r for r in arm.requests if r.status == 429).response_body["error"]["code"]
        == "SubscriptionRequestsThrottled"
    )


def test_a_connection_reset_is_retried_by_the_sdk(arm: FakeArm, sdk: Any) -> None:
    create(sdk)
    arm.inject(reset=True, method="GET", path_regex=r"/containerApps/agent$")
    assert sdk.container_apps.get(RG, "agent").name == "agent"
    gets = [r.status for r in arm.requests if r.method == "GET" and r.path == APP_PATH]
    assert gets[-2:] == [None, 200]  # dropped without an answer, then retried


def test_unauthenticated_calls_get_401_with_a_bearer_challenge(arm: FakeArm, tls_files: Any) -> None:
    stranger = make_client(arm, tls_files, StaticCredential("never-issued"))
    with pytest.raises(ClientAuthenticationError) as exc:
        stranger.container_apps.get(RG, "agent")
    assert exc.value.status_code == 401 and exc.value.error.code == "InvalidAuthenticationToken"
    challenge = arm.requests[-1].response_headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer authorization_uri=") and 'error="invalid_token"' in challenge

    missing = raw(arm, "GET", APP_PATH, token=None)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "AuthenticationFailed"

    arm.inject(status=401, method="GET")
    with pytest.raises(ClientAuthenticationError):
        make_client(arm, tls_files).container_apps.get(RG, "agent")


def test_a_failed_operation_surfaces_as_http_response_error(arm: FakeArm, sdk: Any) -> None:
    create(sdk)
    arm.fail_next_operation("ContainerAppOperationError", "Failed to provision revision: quota exceeded")
    with pytest.raises(HttpResponseError) as exc:
        update(sdk, new_image(image(2)))
    assert exc.value.error.code == "ContainerAppOperationError" and "quota exceeded" in exc.value.error.message
    app = arm.app(SUB, RG, "agent")["properties"]
    assert app["provisioningState"] == "Failed" and len(revisions(arm)) == 1  # no revision was made

    arm.fail_next_operation()
    with pytest.raises(HttpResponseError) as exc:
        create(sdk, payload=body(image(3)))
    status = last(arm, "GET", "containerappOperationStatuses").response_body
    assert status["status"] == "Failed" and status["error"]["code"] == "ContainerAppOperationError"
    assert "Operation expired" in status["error"]["message"]
    update(sdk, new_image(image(4)))  # the next operation is fine again
    assert arm.app(SUB, RG, "agent")["properties"]["provisioningState"] == "Succeeded"


# ---------------------------------------------------------------------------------------------------------------
# Credentials: Entra and GitHub Actions OIDC
# ---------------------------------------------------------------------------------------------------------------


def github_token_fetcher(arm: FakeArm, tls_files: Any) -> Callable[[], str]:
    """What FACTS.md recommends: a fresh GitHub OIDC token on every call."""

    def fetch() -> str:
        answer = requests.get(
            arm.oidc_request_url,
            params={"audience": "api://AzureADTokenExchange"},
            headers={"Authorization": f"bearer {arm.oidc_request_token}"},
            timeout=10,
            verify=str(tls_files.ca),
        )
        answer.raise_for_status()
        return str(answer.json()["value"])

    return fetch


def test_client_assertion_credential_with_github_oidc_reaches_arm(arm: FakeArm, tls_files: Any) -> None:
    from azure.identity import ClientAssertionCredential

    fetch = github_token_fetcher(arm, tls_files)
    credential = ClientAssertionCredential(TENANT, CLIENT, fetch, authority=arm.base_url)
    sdk = make_client(arm, tls_files, credential)
    create(sdk)

    assert arm.github_tokens_issued == 1 and len(arm.issued_tokens) == 1
    oidc = next(r for r in arm.requests if r.path == "/github/oidc/token")
    assert oidc.query["audience"] == "api://AzureADTokenExchange" and oidc.status == 200
    exchange = next(r for r in arm.requests if r.path == f"/{TENANT}/oauth2/v2.0/token")
    assert exchange.body["grant_type"] == "client_credentials" and exchange.body["client_id"] == CLIENT
    assert exchange.body["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert exchange.body["client_assertion"] == oidc.response_body["value"]
    assert exchange.body["scope"] == ARM_SCOPE
    assert set(exchange.response_body) >= {"token_type", "expires_in", "access_token"}
    arm_calls = [r for r in arm.requests if r.path.startswith("/subscriptions/")]
    assert {r.headers["Authorization"] for r in arm_calls} == {f"Bearer {arm.issued_tokens[0]}"}

    refused = requests.get(arm.oidc_request_url, params={"audience": "x"}, timeout=10, verify=str(tls_files.ca))
    assert refused.status_code == 401  # no request token, no OIDC token


def test_a_stale_github_token_is_refused_with_aadsts700024(arm: FakeArm, tls_files: Any) -> None:
    from azure.identity import ClientAssertionCredential

    arm.github_token_lifetime = 300
    stale = github_token_fetcher(arm, tls_files)()  # fetched once, the way `azure/login` does
    arm.advance(301)  # the fake's clock: a long build later
    once = ClientAssertionCredential(TENANT, CLIENT, lambda: stale, authority=arm.base_url)
    with pytest.raises(ClientAuthenticationError) as exc:
        once.get_token(ARM_SCOPE)
    assert "AADSTS700024" in str(exc.value)
    answer = arm.requests[-1]
    assert answer.status == 401 and answer.response_body["error"] == "invalid_client"
    assert answer.response_body["error_codes"] == [700024]
    assert answer.response_body["error_description"].startswith("AADSTS700024: Client assertion is not within")
    assert arm.issued_tokens == []

    fresh = ClientAssertionCredential(TENANT, CLIENT, github_token_fetcher(arm, tls_files), authority=arm.base_url)
    assert fresh.get_token(ARM_SCOPE).token == arm.issued_tokens[0]


def test_client_secret_credential_through_msal_and_expired_access_tokens(arm: FakeArm, tls_files: Any) -> None:
    from azure.identity import ClientSecretCredential

    arm.entra_token_lifetime = 600
    arm.identity.client_secrets[CLIENT] = "right-secret"
    credential = ClientSecretCredential(
        TENANT, CLIENT, "right-secret", authority=arm.base_url, disable_instance_discovery=True
    )
    token = credential.get_token(ARM_SCOPE).token
    assert token == arm.issued_tokens[0]
    paths = [r.path for r in arm.requests]
    assert f"/{TENANT}/v2.0/.well-known/openid-configuration" in paths  # MSAL's tenant discovery
    assert raw(arm, "GET", f"/subscriptions/{SUB}/resourcegroups/{RG}", token=token).status_code == 200

    arm.advance(601)
    expired = raw(arm, "GET", f"/subscriptions/{SUB}/resourcegroups/{RG}", token=token)
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "ExpiredAuthenticationToken"
    assert "Bearer" in expired.headers["WWW-Authenticate"]

    wrong = ClientSecretCredential(TENANT, CLIENT, "wrong", authority=arm.base_url, disable_instance_discovery=True)
    with pytest.raises(ClientAuthenticationError) as exc:
        wrong.get_token(ARM_SCOPE)
    assert "AADSTS7000215" in str(exc.value)

    discovery = requests.get(
        f"{arm.base_url}/common/discovery/instance",
        params={"api-version": "1.1", "authorization_endpoint": f"{arm.base_url}/{TENANT}/oauth2/v2.0/authorize"},
        timeout=10,
    )
    assert (
        discovery.json()["tenant_discovery_endpoint"]
        == f"{arm.base_url}/{TENANT}/v2.0/.well-known/openid-configuration"
    )


# ---------------------------------------------------------------------------------------------------------------
# The rules without HTTP
# ---------------------------------------------------------------------------------------------------------------


def test_state_rules_follow_the_clock_without_http() -> None:
    clock = Clock()
    state = ArmState(provisioning_delay=10, env_domain="quietfield-0a1b2c3d.eastus.azurecontainerapps.io", clock=clock)
    state.add_environment(SUB, RG, ENV, "eastus", None)
    state.set_image_behaviour("registry.example/crash", "crashloop", 0)

    def tick(seconds: float) -> None:
        clock.offset += seconds
        state.settle()

    created = state.put_app(SUB, RG, "agent", body(), SDK_API_VERSION)
    assert created.status == 201 and created.body["properties"]["latestRevisionName"] == ""
    op_id = created.headers["Azure-AsyncOperation"].split("/")[-1].split("?")[0]
    assert state.operation_status(SUB, "eastus", op_id).body["status"] == "InProgress"
    tick(10)
    assert state.operation_status(SUB, "eastus", op_id).body["status"] == "Succeeded"
    app = state.find_app(SUB, RG, "agent")
    assert app is not None
    first = app.latest_revision

    state.patch_app(SUB, RG, "agent", new_image("registry.example/crash:1"), SDK_API_VERSION)
    crash = app.revisions[-1]

    def now() -> tuple[str, str, str]:
        return states(state.render_revision(app, crash)["properties"])

    assert now() == ("Provisioning", "Processing", "None")
    tick(10)
    assert now() == ("Provisioning", "Degraded", "Unhealthy")
    tick(10)
    assert now() == ("Failed", "Failed", "Unhealthy")
    assert state.render_app(app)["properties"]["latestReadyRevisionName"] == first
    assert state.probe(f"https://agent.{state.env_domain}/") == 200


def test_purged_revisions_are_gone_and_beyond_100_inactive_the_oldest_go(arm: FakeArm, sdk: Any) -> None:
    arm.provisioning_delay = 0
    create(sdk, payload=body(mode="multiple"))
    [first] = revisions(arm)
    latest = update(sdk, new_image(image(2))).properties.latest_revision_name
    with pytest.raises(ValueError):
        arm.forget_revision(SUB, RG, "agent", first)  # active revisions are kept
    sdk.container_apps_revisions.deactivate_revision(RG, "agent", first)
    arm.forget_revision(SUB, RG, "agent", first)
    assert list(revisions(arm)) == [latest]
    with pytest.raises(ResourceNotFoundError):
        sdk.container_apps_revisions.get_revision(RG, "agent", first)

    update(sdk, {"properties": {"configuration": {"maxInactiveRevisions": 2}}})
    made = [update(sdk, new_image(image(n))).properties.latest_revision_name for n in range(3, 7)]
    for name in [latest, *made[:-1]]:
        sdk.container_apps_revisions.deactivate_revision(RG, "agent", name)
    assert list(revisions(arm)) == [made[-3], made[-2], made[-1]]  # two inactive kept, and the active one
