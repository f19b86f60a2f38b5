"""Replay: agentdeploy's own Azure code, on the real SDK, answered from real recorded sessions.

Each test builds the real azure-mgmt-appcontainers client over RecordedTransport (tests/recorded.py: the next
recorded interaction of the same method and path answers each request, in the recorded order) and runs our
AzureRelease and our readers on what comes back, so every decision below is taken on a shape the live service
sent: which revision serves, when a revision is ready, how traffic and secrets are read, what is written again
after the service's echo, and how a refusal is reported. The recordings and what each covers:
tests/azure/recordings/README.md.

Among them, the service's normalised echo ("1.0Gi" comes back "1Gi", `env: []` comes back without `env`) must
compare equal to what was sent, or every deploy would make a new revision.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from agentdeploy.errors import DeployError
from agentdeploy.jsonvalue import JsonObject
from agentdeploy.targets.azure.access import _contains, auth_config_body, same_restrictions
from agentdeploy.targets.azure.arm import azure_errors
from agentdeploy.targets.azure.body import AppSpec, AuthSpec, _same_container, update_patch
from agentdeploy.targets.azure.release import AzureRelease
from agentdeploy.targets.azure.views import has_secrets, named_traffic, normalised, raw_traffic, serving_revision
from recorded import RecordedTransport, load_interactions, recorded_client, recorded_json
from testkit import RECORDINGS, azure_release

RG = "clitest.rg000001"
UPDATE = RECORDINGS / "extensions" / "test_containerapp_update_containers.yaml"
AUTH = RECORDINGS / "extensions" / "test_containerapp_auth_e2e.yaml"
TRAFFIC = RECORDINGS / "test_containerapp_ingress_traffic_e2e.yaml"
UPDATE_APP, AUTH_APP, TRAFFIC_APP = "containerapp-update000004", "containerapp-auth000002", "containerapp000003"
AUTH_SECRET = "microsoft-provider-authentication-secret"
AUTH_SECRET_VALUE = "c0d23eb5-ea9f-4a4d-9519-bfa0a422c491"


def no_probe(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the replay never probes a URL")


def target_at(path: Path, start: int, app: str) -> tuple[AzureRelease, RecordedTransport]:
    transport = RecordedTransport(path, start=start)
    target = azure_release(
        recorded_client(transport),
        resource_group=RG,
        app_name=app,
        probe=no_probe,
        sleep=lambda seconds: None,
        poll_interval=0,
    )
    return target, transport


def interaction(path: Path, number: int) -> dict[str, Any]:
    return load_interactions(path)[number - 1]


def spec(**changes: Any) -> AppSpec:
    values: dict[str, Any] = dict(
        name=AUTH_APP,
        location="North Central US (Stage)",
        environment_id="",
        image="mcr.microsoft.com/k8se/quickstart:latest",
        port=80,
        external=True,
        cpu=0.5,
        memory="1Gi",
        min_replicas=0,
        max_replicas=10,
        health_path="/health",
        multiple=False,
    )
    values.update(changes)
    return AppSpec(**values)


# -- long-running writes through the SDK's own pollers -----------------------------------------------------------


def test_create_polls_the_async_operation_then_reads_the_app_and_the_first_revision_serves() -> None:
    """#20 PUT 201 + Azure-AsyncOperation, #21-#24 InProgress..Succeeded, #25 the app: our create returns it."""
    target, transport = target_at(UPDATE, 20, UPDATE_APP)
    app = target.session.create({"location": "East US", "properties": {}})
    assert transport.numbers() == [20, 21, 22, 23, 24, 25]
    assert app["properties"]["provisioningState"] == "Succeeded"
    assert app["properties"]["latestReadyRevisionName"] == f"{UPDATE_APP}--4ugs1ey"
    # No ingress at all on this app: what serves is the latest ready revision.
    assert raw_traffic(app) == []
    assert serving_revision(app) == f"{UPDATE_APP}--4ugs1ey"


def test_patch_follows_location_polls_and_a_revision_not_ready_yet_does_not_serve() -> None:
    """#29 PATCH 202 + Location, #30 202, #31 200 with the app: the new revision exists but is not the ready one."""
    target, transport = target_at(UPDATE, 29, UPDATE_APP)
    app = target.session.patch({"properties": {"template": {"revisionSuffix": "suffix"}}}, "updating the app")
    assert transport.numbers() == [29, 30, 31]
    assert transport.answered[0].body == {"properties": {"template": {"revisionSuffix": "suffix"}}}
    props = app["properties"]
    assert props["latestRevisionName"] == f"{UPDATE_APP}--suffix"
    assert props["latestReadyRevisionName"] == f"{UPDATE_APP}--4ugs1ey"
    assert serving_revision(app) == f"{UPDATE_APP}--4ugs1ey"


# -- what the service echoes against what was sent (the comparison that decides "nothing to change") -------------


def sent_and_echoed(patch: int, final: int, name: str) -> tuple[JsonObject, JsonObject]:
    sent = recorded_json(interaction(UPDATE, patch), "request")["properties"]["template"]["containers"]
    echoed = recorded_json(interaction(UPDATE, final))["properties"]["template"]["containers"]
    return next(c for c in sent if c["name"] == name), next(c for c in echoed if c["name"] == name)


@pytest.mark.parametrize(
    ("patch", "final", "name"),
    [
        pytest.param(29, 31, UPDATE_APP, id="#29 memory 1.0Gi echoed 1Gi"),
        pytest.param(35, 38, UPDATE_APP, id="#35 unchanged container resent"),
        pytest.param(45, 47, "newcontainer", id="#45 0.75/1.5Gi, ephemeralStorage 2Gi echoed 4Gi"),
        pytest.param(51, 53, UPDATE_APP, id="#51 0.75/1.5Gi"),
    ],
)
def test_a_container_as_the_service_echoes_it_is_the_container_that_was_sent(patch: int, final: int, name: str) -> None:
    sent, echoed = sent_and_echoed(patch, final, name)
    assert _same_container(echoed, sent)


def test_an_empty_env_echoed_without_env_is_the_same_env() -> None:
    """#35 sent newcontainer with `env: []`; #38 echoes it with no `env` key at all."""
    sent, echoed = sent_and_echoed(35, 38, "newcontainer")
    assert sent["env"] == [] and "env" not in echoed
    assert normalised({"env": sent["env"]}) == normalised({"env": echoed.get("env")})


def test_a_changed_image_is_still_a_change_after_the_echo() -> None:
    """The comparison must not call everything equal: #29 changed the image, the app before it ran quickstart."""
    before = recorded_json(interaction(UPDATE, 28))["properties"]["template"]["containers"][0]
    sent, _ = sent_and_echoed(29, 31, UPDATE_APP)
    assert before["image"] == "mcr.microsoft.com/k8se/quickstart:latest" and sent["image"] == "nginx"
    assert not _same_container(before, sent)


# -- revisions, the gate and the traffic (tests/azure/recordings/test_containerapp_ingress_traffic_e2e.yaml) ------


def test_latest_revision_traffic_means_the_latest_ready_one_while_the_new_one_provisions() -> None:
    """#45: traffic 100% `latestRevision`, the latest revision --92vwxkw still provisioning (#43), the latest ready
    one --vwmx6u0: that one serves (FACTS.md: `latestRevision: true` goes to latestReadyRevisionName)."""
    target, transport = target_at(TRAFFIC, 45, TRAFFIC_APP)
    app = target.session.get_app()
    assert app is not None and transport.numbers() == [45]
    assert raw_traffic(app) == [{"weight": 100, "latestRevision": True}]
    assert app["properties"]["latestRevisionName"] == f"{TRAFFIC_APP}--92vwxkw"
    assert serving_revision(app) == f"{TRAFFIC_APP}--vwmx6u0"


def test_the_traffic_shown_to_people_names_the_revision_that_serves() -> None:
    """The same #45: what `status` and the run summary show must name --vwmx6u0, as serving_revision does, not the
    latest revision that is still provisioning."""
    target, _ = target_at(TRAFFIC, 45, TRAFFIC_APP)
    app = target.session.get_app()
    assert app is not None
    assert named_traffic(app) == [{"weight": 100, "latestRevision": True, "revisionName": f"{TRAFFIC_APP}--vwmx6u0"}]


def test_a_provisioned_running_healthy_revision_passes_the_gate() -> None:
    target, transport = target_at(TRAFFIC, 46, TRAFFIC_APP)
    ready, reason = target.gate.wait_ready(f"{TRAFFIC_APP}--vwmx6u0", 5, latest=False)
    assert transport.numbers() == [46]
    assert (ready, reason) == (True, "provisioningState Provisioned, runningState Running, healthState Healthy")


def test_a_50_50_split_by_name_and_latest_is_read_and_reported_right() -> None:
    """#47 PATCH the split, #48 202, #49 the app; then #51 the app and #52 the revisions for `status`."""
    target, transport = target_at(TRAFFIC, 47, TRAFFIC_APP)
    old = f"{TRAFFIC_APP}--vwmx6u0"
    app = target.session.patch({"properties": {"configuration": {"ingress": {}}}}, "moving traffic")
    assert transport.numbers() == [47, 48, 49]
    assert raw_traffic(app) == [{"weight": 50, "latestRevision": True}, {"revisionName": old, "weight": 50}]
    # A tie: the first entry with the largest share, the latest revision, now the latest ready one.
    assert serving_revision(app) == f"{TRAFFIC_APP}--92vwxkw"
    status = target.status()
    assert transport.numbers() == [47, 48, 49, 51, 52]
    assert status["latest_ready_revision"] == f"{TRAFFIC_APP}--92vwxkw"
    assert [(r["name"], r["traffic"], r["provisioning"], r["running"], r["health"]) for r in status["revisions"]] == [
        (old, 50, "Provisioned", "Running", "Healthy"),
        (f"{TRAFFIC_APP}--92vwxkw", 50, "Provisioned", "Running", "Healthy"),
    ]


def test_revisions_list_while_one_provisions_reads_its_states() -> None:
    target, transport = target_at(TRAFFIC, 43, TRAFFIC_APP)
    states = {
        r["name"]: (r["properties"]["provisioningState"], r["properties"]["runningState"], r["properties"]["active"])
        for r in target.session.revisions()
    }
    assert transport.numbers() == [43]
    assert states == {
        f"{TRAFFIC_APP}--vwmx6u0": ("Provisioned", "Running", True),
        f"{TRAFFIC_APP}--92vwxkw": ("Provisioning", "Processing", True),
    }


# -- secrets (test_containerapp_auth_e2e.yaml) ------------------------------------------------------------------


def test_secrets_are_read_from_list_secrets_and_the_app_names_them_without_values() -> None:
    target, transport = target_at(AUTH, 16, AUTH_APP)
    assert target.session.secrets() == ({}, {})
    target, transport = target_at(AUTH, 24, AUTH_APP)
    app = target.session.get_app()
    assert app is not None and app["properties"]["configuration"]["secrets"] == [{"name": AUTH_SECRET}]
    assert target.session.secrets() == ({AUTH_SECRET: AUTH_SECRET_VALUE}, {})
    assert transport.numbers() == [24, 25]
    assert has_secrets(app)
    assert not has_secrets(recorded_json(interaction(AUTH, 12)))  # secrets: null before auth was set


def test_an_unchanged_secret_is_not_written_again_and_a_changed_one_resends_every_live_secret() -> None:
    target, _ = target_at(AUTH, 24, AUTH_APP)
    app = target.session.get_app()
    assert app is not None
    values, references = target.session.secrets()
    same = spec(secret_env={"MICROSOFT_PROVIDER_AUTHENTICATION_SECRET": AUTH_SECRET_VALUE})
    plan = update_patch(same, app, values, "s1", secret_references=references)
    assert "secrets" not in plan.changes
    changed = spec(secret_env={"API_KEY": "new-value"})
    plan = update_patch(changed, app, values, "s1", secret_references=references)
    assert "secrets" in plan.changes and plan.patch is not None
    assert plan.patch["properties"]["configuration"]["secrets"] == [  # type: ignore[index]
        {"name": "api-key", "value": "new-value"},
        {"name": AUTH_SECRET, "value": AUTH_SECRET_VALUE},
    ]


# -- built-in authentication (authConfigs/current) --------------------------------------------------------------


def test_a_missing_auth_config_is_reported_with_the_service_code_and_message() -> None:
    """#13: GET authConfigs/current before any was set: 404 AuthConfigNotFound."""
    transport = RecordedTransport(AUTH, start=13)
    client = recorded_client(transport)
    with pytest.raises(DeployError) as raised, azure_errors("reading the authentication settings"):
        client.container_apps_auth_configs.get(RG, AUTH_APP, "current")
    assert transport.numbers() == [13]
    assert str(raised.value).splitlines()[0] == (
        "not found while reading the authentication settings: AuthConfigNotFound: "
        "AuthConfig current was not found under container app containerapp-auth000002."
    )


@pytest.mark.parametrize("put", [18, 27, 32], ids=["#18", "#27", "#32"])
def test_an_auth_config_as_the_service_echoes_it_holds_what_was_sent(put: int) -> None:
    """The service adds defaults and reorders: what was sent is still all there, so reading it back asks for no
    second write."""
    sent = recorded_json(interaction(AUTH, put), "request")["properties"]
    echoed = recorded_json(interaction(AUTH, put))["properties"]
    assert _contains(echoed, sent)


def test_the_first_auth_config_echo_adds_defaults_that_were_not_sent() -> None:
    sent = recorded_json(interaction(AUTH, 18), "request")["properties"]
    echoed = recorded_json(interaction(AUTH, 18))["properties"]
    entra = echoed["identityProviders"]["azureActiveDirectory"]
    assert "validation" not in sent["identityProviders"]["azureActiveDirectory"]
    assert entra["validation"] == {"defaultAuthorizationPolicy": {"allowedApplications": []}}
    assert entra["isAutoProvisioned"] is False
    assert (sent["login"], echoed["login"]) == ({}, {"preserveUrlFragmentsForLogins": False})
    # A value that differs is not contained: the comparison does not call everything equal.
    assert not _contains(echoed, {**sent, "platform": {"enabled": False}})


def test_our_auth_settings_laid_over_a_real_config_keep_everything_else() -> None:
    """#30: the config with a token store, Entra registration and login settings someone else set."""
    live = recorded_json(interaction(AUTH, 30))
    ours = spec(auth=AuthSpec(client_id=AUTH_SECRET_VALUE, tenant_id="54826b22-38d6-4fb2-bad9-b7983a3e9c5a"))
    body = auth_config_body(ours, live)
    assert body is not None
    props = body["properties"]
    assert props["login"] == live["properties"]["login"]  # type: ignore[index]
    assert props["encryptionSettings"] == {}  # type: ignore[index]
    entra = props["identityProviders"]["azureActiveDirectory"]  # type: ignore[index]
    assert entra["registration"] == {  # type: ignore[index]
        "openIdIssuer": "https://login.microsoftonline.com/54826b22-38d6-4fb2-bad9-b7983a3e9c5a/v2.0",
        "clientId": AUTH_SECRET_VALUE,
        "clientSecretSettingName": AUTH_SECRET,
    }
    assert entra["validation"] == {"defaultAuthorizationPolicy": {"allowedApplications": []}}  # type: ignore[index]
    assert props["globalValidation"] == {  # type: ignore[index]
        "unauthenticatedClientAction": "Return401",
        "excludedPaths": ["/health"],
    }
    # Once the service holds exactly that, there is nothing more to write.
    written = copy.deepcopy(live)
    written["properties"] = props
    assert auth_config_body(ours, written) is None


# -- ingress rules ------------------------------------------------------------------------------------------------


def test_no_ip_rules_read_back_as_null_is_no_rules() -> None:
    """Every recorded app answers `ipSecurityRestrictions: null` where no rule was set."""
    app = recorded_json(interaction(AUTH, 34))
    assert app["properties"]["configuration"]["ingress"]["ipSecurityRestrictions"] is None
    assert same_restrictions(app["properties"]["configuration"]["ingress"]["ipSecurityRestrictions"], [])


def test_a_request_the_recording_cannot_answer_fails_and_names_it() -> None:
    """The replay invents nothing: #46 answers --vwmx6u0 only; a read of --92vwxkw after it has no answer."""
    target, transport = target_at(TRAFFIC, 46, TRAFFIC_APP)
    assert target.session.revision(f"{TRAFFIC_APP}--vwmx6u0") is not None
    with pytest.raises(AssertionError) as raised:
        target.session.revision(f"{TRAFFIC_APP}--92vwxkw")
    assert str(raised.value) == (
        "the recording has no answer for GET /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/"
        f"{RG}/providers/Microsoft.App/containerApps/{TRAFFIC_APP}/revisions/{TRAFFIC_APP}--92vwxkw"
        " after interaction #46"
    )
    assert transport.numbers() == [46]
