"""Planning (pure): desired vs recorded vs live -> CREATE / UPDATE / NO_CHANGE / DRIFT."""

from __future__ import annotations

from agentdeploy.release.planner import (
    CREATE,
    DRIFT,
    NO_CHANGE,
    UPDATE,
    Desired,
    Live,
    Recorded,
    changed_fields,
    plan_release,
    render_table,
)

DEPLOYMENT = {"port": 8080, "environment": {"LOG_LEVEL": "info"}, "target": {"azure": {"cpu": 1.0}}}
DESIRED = Desired("sha256:c1", "sha256:i1", DEPLOYMENT)
RECORDED = Recorded("sha256:c1", "sha256:i1", DEPLOYMENT, "reg/app@sha256:d1")
LIVE = Live(exists=True, image="reg/app@sha256:d1")


def test_create_and_no_change() -> None:
    assert plan_release("app", DESIRED, None, Live(exists=False)).action == CREATE
    assert plan_release("app", DESIRED, RECORDED, LIVE).action == NO_CHANGE


def test_update_lists_the_fields_that_change() -> None:
    changed = {**DEPLOYMENT, "environment": {"LOG_LEVEL": "debug", "NEW": "1"}, "target": {"azure": {"cpu": 0.5}}}
    item = plan_release("app", Desired("sha256:c2", "sha256:i1", changed), RECORDED, LIVE)
    assert item.action == UPDATE
    assert item.changes == [
        "deployment.environment.LOG_LEVEL",
        "deployment.environment.NEW",
        "deployment.target.azure.cpu",
    ]
    item = plan_release("app", Desired("sha256:c3", "sha256:i2", DEPLOYMENT), RECORDED, LIVE)
    assert item.changes == [
        "agent config outside deployment:",
        "image content (agent files, Dockerfile, platform or build args)",
    ]


def test_drift() -> None:
    assert plan_release("app", DESIRED, RECORDED, Live(exists=False)).drift == [
        "recorded as deployed, but it does not exist"
    ]
    item = plan_release("app", DESIRED, RECORDED, Live(exists=True, image="other@sha256:x"))
    assert item.action == DRIFT and item.drift == ["runs other@sha256:x, recorded reg/app@sha256:d1"]
    assert plan_release("app", DESIRED, RECORDED, Live(exists=True, image=LIVE.image, serving=False)).action == DRIFT
    assert plan_release("app", DESIRED, None, LIVE).action == DRIFT  # exists, but never deployed by us


def test_changed_fields_and_table() -> None:
    assert changed_fields({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}, "d": 3}) == ["deployment.a.c", "deployment.d"]
    table = render_table([plan_release("containerapp app", DESIRED, None, Live(exists=False))])
    assert table.splitlines() == [
        "RESOURCE                             ACTION     DETAILS",
        "containerapp app                     CREATE     change: everything",
    ]
