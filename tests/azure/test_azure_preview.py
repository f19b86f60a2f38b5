"""Previews on Azure through the real azure-mgmt-appcontainers SDK, against the fake ARM over HTTPS: a revision
labelled pr-<n> at 0% beside production, verified at its label URL; production's traffic never moves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from agentdeploy.errors import DeployError, UsageError
from agentdeploy.targets.azure.body import AppSpec
from agentdeploy.targets.azure.preview import AzurePreviews
from agentdeploy.targets.azure.release import AzureRelease
from agentdeploy.targets.azure.settings import NO_VERIFY, Verify
from agentdeploy.targets.health import ChatCheck
from fakes.arm import FakeArm
from testkit import StaticCredential, app_spec, arm_client, azure_release

SUB, RG, ENV, TOKEN = "0b1f6471-1bf0-4dda-aec3-111122223333", "agents-rg", "agents-env", "static-test-token"
HOUR = 3600.0
HEARD = Verify((ChatCheck(message="Are you there?"),), 10.0)


def image(n: int) -> str:
    return "127.0.0.1:5000/team/agent@sha256:" + f"{n:064x}"


SPEC: AppSpec = replace(app_spec(image=image(1)), multiple=True)  # type: ignore[type-var]


class World:
    def __init__(self, arm: FakeArm, tls_files: Any) -> None:
        self.arm, self.now, self.probed = arm, 1_900_000_000.0, []
        self.release: AzureRelease = azure_release(
            arm_client(arm.base_url, tls_files.ca, SUB, StaticCredential(TOKEN)),
            resource_group=RG,
            app_name="support-agent",
            probe=self.probe,
            post=arm.chat,
            poll_interval=0.1,
            wall=lambda: self.now,
        )
        self.previews = AzurePreviews(self.release, max_age=72 * HOUR)

    def probe(self, url: str) -> Any:
        self.probed.append(url)  # the probe log: every URL the gate asked
        return self.arm.http(url)

    def deploy(self, spec: AppSpec, tag: str, **options: Any) -> Any:
        options = {"blue_green": False, **options}
        return self.release.deploy(spec, tag=tag, environment=ENV, timeout=10, auto_rollback=True, **options)

    def preview(self, spec: AppSpec, name: str, tag: str = "sha-1", timeout: float = 10) -> Any:
        return self.previews.create(spec, name, tag=tag, timeout=timeout, verify=HEARD)

    def app(self) -> dict[str, Any]:
        found = self.arm.app(SUB, RG, "support-agent")
        assert found is not None
        return found

    def traffic(self) -> list[tuple[str, int, str | None]]:
        entries = self.app()["properties"]["configuration"]["ingress"]["traffic"]
        return [(t.get("revisionName", "latest"), t["weight"], t.get("label")) for t in entries]

    def active(self) -> dict[str, bool]:
        return {r["name"]: r["properties"]["active"] for r in self.arm.revisions(SUB, RG, "support-agent")}

    def sent_traffic(self, since: int) -> list[list[tuple[str, int, str | None]]]:
        """The traffic lists of every PATCH since request `since`, as sent."""
        lists = []
        for request in self.arm.requests[since:]:
            ingress = ((request.body or {}).get("properties") or {}).get("configuration", {}).get("ingress", {})
            if request.method == "PATCH" and "traffic" in ingress:
                lists.append(
                    [(t.get("revisionName", "latest"), t["weight"], t.get("label")) for t in ingress["traffic"]]
                )
        return lists


@pytest.fixture
def world(start_arm: Callable[..., FakeArm], tls_files: Any) -> World:
    return World(start_arm(token=TOKEN), tls_files)


def test_a_preview_is_labelled_at_zero_verified_at_its_label_url_and_production_keeps_its_weights(
    world: World,
) -> None:
    production = world.deploy(SPEC, "v1")
    assert production.status == "succeeded", production.reason
    assert world.traffic() == [("latest", 100, None)]
    start, chats = len(world.arm.requests), len(world.arm.chats)

    made = world.preview(replace(SPEC, image=image(2)), "pr-7")

    assert made.status == "succeeded", made.reason
    assert made.revision.startswith("support-agent--pr-7-sha-1-") and made.previous == ""
    label_url = production.url.replace("https://support-agent.", "https://support-agent---pr-7.")
    assert made.url == label_url
    # The new revision is made with production pinned by name at its weight (a latestRevision entry would hand
    # it the traffic), then labelled at 0%; the lease's last write sends no traffic.
    assert world.sent_traffic(start) == [
        [(production.revision, 100, None)],
        [(production.revision, 100, None), (made.revision, 0, "pr-7")],
    ]
    assert world.traffic() == [(production.revision, 100, None), (made.revision, 0, "pr-7")]
    assert f"{label_url}/health" in world.probed  # verified at its label URL
    assert world.arm.chats[chats:] == [(made.revision, "Are you there?")]  # and the chat turn answered there
    assert world.arm.http(production.url + "/health").status == 200
    assert world.arm.chat(production.url + "/agent/x/chat", {"message": "hi"}, 5).body.startswith(
        f'{{"message_id": "01M8PF0000000000000000000A", "content": "{production.revision} heard'.encode()
    )  # production still answers from its own revision
    [listed] = world.previews.previews()
    assert listed == {"name": "pr-7", "revision": made.revision, "url": label_url, "created": world.now}
    lease = world.app()["tags"]["agentdeploy-lease"]
    assert lease.endswith(";held=0")


def test_a_second_push_moves_the_label_and_stops_the_previous_preview_revision(world: World) -> None:
    blue = world.deploy(SPEC, "v1", blue_green=True)
    first = world.preview(replace(SPEC, image=image(2)), "pr-7", tag="sha-2")
    start = len(world.arm.requests)
    second = world.preview(replace(SPEC, image=image(3)), "pr-7", tag="sha-3")
    assert second.status == "succeeded", second.reason
    assert second.previous == first.revision and second.revision != first.revision
    assert world.sent_traffic(start) == [
        [(blue.revision, 100, "blue"), (first.revision, 0, "pr-7")],
        [(blue.revision, 100, "blue"), (second.revision, 0, "pr-7")],
    ]
    assert world.active() == {blue.revision: True, first.revision: False, second.revision: True}


def test_removal_takes_the_label_off_and_deactivates_the_revision(world: World) -> None:
    production = world.deploy(SPEC, "v1")
    made = world.preview(replace(SPEC, image=image(2)), "pr-7")
    start = len(world.arm.requests)
    assert world.previews.remove("pr-7") == ["label pr-7", f"revision {made.revision}"]
    assert world.sent_traffic(start) == [[(production.revision, 100, None)]]
    assert world.traffic() == [(production.revision, 100, None)]
    assert world.active() == {production.revision: True, made.revision: False}
    assert "agentdeploy-preview-pr-7" not in (world.app().get("tags") or {})
    assert world.previews.previews() == []
    writes = len(world.arm.writes())
    assert world.previews.remove("pr-7") == []  # again: nothing to remove, nothing written
    assert len(world.arm.writes()) == writes


def test_a_preview_older_than_the_configured_age_is_removed_by_the_next_preview_run(world: World) -> None:
    production = world.deploy(SPEC, "v1")
    old = world.preview(replace(SPEC, image=image(2)), "pr-1", tag="sha-a")
    world.now += 24 * HOUR
    young = world.preview(replace(SPEC, image=image(3)), "pr-2", tag="sha-b")
    world.now += 48 * HOUR + 60  # pr-1 is 72h and a minute old, pr-2 48h and a minute
    start = len(world.arm.requests)
    third = world.preview(replace(SPEC, image=image(4)), "pr-3", tag="sha-c")
    assert third.status == "succeeded", third.reason
    assert third.details["removed"] == ["pr-1"]
    assert world.sent_traffic(start) == [
        [(production.revision, 100, None), (young.revision, 0, "pr-2")],
        [(production.revision, 100, None), (young.revision, 0, "pr-2"), (third.revision, 0, "pr-3")],
    ]
    assert world.active()[old.revision] is False
    assert "agentdeploy-preview-pr-1" not in world.app()["tags"]
    assert [p["name"] for p in world.previews.previews()] == ["pr-2", "pr-3"]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("PR-7", "lower-case letters, digits and single hyphens, starting with a letter and not ending with a hyphen"),
        ("pr--7", "lower-case letters, digits and single hyphens, starting with a letter and not ending with a hyphen"),
        ("7-pr", "lower-case letters, digits and single hyphens, starting with a letter and not ending with a hyphen"),
        ("pr-7-", "lower-case letters, digits and single hyphens, starting with a letter and not ending with a hyphen"),
        ("p" * 65, "at most 64 characters (it has 65)"),
        ("green", "not blue or green (blue/green's own labels)"),
    ],
)
def test_a_name_that_cannot_be_a_label_is_refused_before_any_request(world: World, name: str, why: str) -> None:
    with pytest.raises(UsageError) as refused:
        world.preview(SPEC, name)
    assert str(refused.value) == f"preview name {name!r} cannot be a revision label: a label is {why}; nothing was " + (
        "deployed"
    )
    assert refused.value.hint == "name a pull request's preview pr-<number>, e.g. --name pr-42"
    with pytest.raises(UsageError):
        world.previews.remove(name)
    assert world.arm.requests == []


def test_a_preview_that_fails_its_gate_loses_its_label_and_production_is_untouched(world: World) -> None:
    production = world.deploy(SPEC, "v1")
    world.arm.set_image_behaviour(image(9), "mute")  # healthy, but no chat turn is answered
    failed = world.preview(replace(SPEC, image=image(9)), "pr-9")
    assert failed.status == "failed"
    assert failed.reason.startswith("verify turn 1 ('Are you there?'): the chat request got HTTP 500")
    assert world.traffic() == [(production.revision, 100, None)]
    assert world.active() == {production.revision: True, failed.revision: False}
    assert "agentdeploy-preview-pr-9" not in world.app()["tags"]


def test_an_app_in_single_mode_or_missing_is_refused_with_nothing_written(world: World) -> None:
    with pytest.raises(DeployError, match=r"^container app support-agent does not exist: a preview is a revision"):
        world.preview(SPEC, "pr-1")
    world.deploy(replace(SPEC, multiple=False), "v1")
    writes = len(world.arm.writes())
    with pytest.raises(DeployError) as refused:
        world.preview(SPEC, "pr-1")
    assert str(refused.value) == (
        "container app support-agent is in the Single revision mode: a preview's label needs the Multiple mode; "
        "nothing was deployed"
    )
    assert len(world.arm.writes()) == writes


def test_the_next_production_release_runs_its_own_container_not_the_previews(world: World) -> None:
    """After a preview the app's own template is the preview's; a production change of the scale alone must not
    carry the preview's image into production's next revision."""
    world.deploy(SPEC, "v1")
    world.preview(replace(SPEC, image=image(2)), "pr-7")
    scaled = world.deploy(replace(SPEC, max_replicas=5), "v1-scale")
    assert scaled.status == "succeeded", scaled.reason
    [revision] = [r for r in world.arm.revisions(SUB, RG, "support-agent") if r["name"] == scaled.revision]
    assert revision["properties"]["template"]["containers"][0]["image"] == image(1)


def test_no_verify_checks_the_label_health_alone(world: World) -> None:
    world.deploy(SPEC, "v1")
    made = world.previews.create(replace(SPEC, image=image(2)), "pr-3", tag="t", timeout=10, verify=NO_VERIFY)
    assert made.status == "succeeded" and made.reason.startswith(made.url + "/health: ")


def test_production_releases_keep_the_previews_label_at_zero(world: World) -> None:
    """A release, a no-op and a rollback in Multiple mode move production's traffic and leave the preview's entry
    as it was: the pull request's preview is still there, at 0%."""
    first = world.deploy(SPEC, "v1")
    made = world.preview(replace(SPEC, image=image(2)), "pr-7")
    start = len(world.arm.requests)
    second = world.deploy(replace(SPEC, image=image(3)), "v2")
    assert second.status == "succeeded", second.reason
    # The new revision is made with the traffic as it is (no traffic in that write), then given production's share.
    assert world.sent_traffic(start) == [[(second.revision, 100, None), (made.revision, 0, "pr-7")]]
    assert world.traffic() == [(second.revision, 100, None), (made.revision, 0, "pr-7")]
    writes = len(world.arm.writes())
    assert world.deploy(replace(SPEC, image=image(3)), "v2").status == "unchanged"
    assert len(world.arm.writes()) == writes  # the preview's entry is no change to production
    back = world.release.moves.shift_to(first.revision, "/health", 10, multiple=True, external=True)
    assert back.status == "succeeded", back.reason
    assert world.traffic() == [(first.revision, 100, "blue"), (made.revision, 0, "pr-7")]
    assert world.active()[made.revision] is True
    assert [p["name"] for p in world.previews.previews()] == ["pr-7"]


def test_a_blue_green_candidate_and_its_promote_keep_the_preview(world: World) -> None:
    blue = world.deploy(SPEC, "v1", blue_green=True)
    made = world.preview(replace(SPEC, image=image(2)), "pr-7")
    candidate = world.deploy(replace(SPEC, image=image(3)), "v2", blue_green=True)
    assert candidate.status == "candidate", candidate.reason
    assert world.traffic() == [
        (blue.revision, 100, "blue"),
        (candidate.revision, 0, "green"),
        (made.revision, 0, "pr-7"),
    ]
    promoted = world.release.moves.promote("/health", 10, external=True)
    assert promoted.status == "promoted", promoted.reason
    assert world.traffic() == [(candidate.revision, 100, "blue"), (blue.revision, 0, None), (made.revision, 0, "pr-7")]
    assert world.active()[made.revision] is True
