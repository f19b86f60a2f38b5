"""The release lease: which run releases to an app and until when, as an ARM tag on the app (a tag starts no
revision). `Lease` reads and renders the tag (pure); `ReleaseLease` takes, checks and gives it up for one run,
through the run's AppSession."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentdeploy.errors import AgentDeployError, ConcurrentReleaseError
from agentdeploy.jsonvalue import JsonObject, object_at, text_at, to_object
from agentdeploy.targets.azure.views import raw_traffic, serving_revision

if TYPE_CHECKING:
    from agentdeploy.targets.azure.api import AppSession

LEASE_MARGIN = 300.0  # a lease outlives the gate by this much, so a live run never loses it to the clock
LEASE_TAG = "agentdeploy-lease"


@dataclass(frozen=True)
class Lease:
    """Who releases to an app, until when: `run=<run id>;until=<unix seconds>;held=1|0` in an ARM tag."""

    run: str
    until: float
    held: bool

    def holds(self, now: float) -> bool:
        return self.held and now < self.until

    def render(self) -> str:
        return f"run={self.run[:180]};until={self.until:.0f};held={int(self.held)}"


def lease_of(app: JsonObject) -> Lease | None:
    fields = dict(part.partition("=")[::2] for part in text_at(app, "tags", LEASE_TAG).split(";") if "=" in part)
    try:
        return Lease(fields["run"], float(fields["until"]), fields.get("held") == "1")
    except (KeyError, ValueError):
        return None


def utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _tags_with(app: JsonObject, lease: Lease) -> JsonObject:
    """The app's tags with `lease` in its tag; the other tags as they are."""
    tags = {key: value for key, value in object_at(app, "tags").items() if isinstance(value, str)}
    tags[LEASE_TAG] = lease.render()
    return to_object(tags)


class ReleaseLease:
    """One run's lease on one app, and the traffic as this run last left or found it."""

    def __init__(self, session: AppSession, run_id: str, wall: Callable[[], float]) -> None:
        self.session, self.run_id, self.wall = session, run_id, wall
        self.name = session.name
        self.seen_traffic: list[JsonObject] | None = None

    def lease_free(self, app: JsonObject) -> None:
        """A lease another live run holds on the app stops this run (exit 10) before it changes anything."""
        held = lease_of(app)
        if held is not None and held.run != self.run_id and held.holds(self.wall()):
            raise ConcurrentReleaseError(
                f"another agentdeploy run ({held.run}) is releasing to container app {self.name} "
                f"(its lease runs until {utc(held.until)}); nothing was changed",
                hint="wait for that run to finish and deploy again; a run that died gives its lease up when it "
                "expires, or at once when `agentdeploy status` repairs it from the same checkout",
            )

    def with_lease(self, app: JsonObject, patch: JsonObject, seconds: float) -> JsonObject:
        """`patch` carrying this run's lease (an ARM tag: no revision of its own), so the first change of a
        release also marks the app as this run's; the other tags are sent as they are."""
        self.lease_free(app)
        return {**patch, "tags": _tags_with(app, Lease(self.run_id, self.wall() + seconds, True))}

    def own_lease(self, app: JsonObject) -> None:
        """After the first write: two runs that wrote at the same moment both see the last writer's lease."""
        mine = lease_of(app)
        if mine is None or mine.run != self.run_id:
            raise ConcurrentReleaseError(
                f"another agentdeploy run ({mine.run if mine else 'unknown'}) wrote to container app {self.name} "
                "at the same moment and holds its lease; this run stops and moves no traffic",
                hint="`agentdeploy status` shows what serves; deploy again when that run has finished",
            )

    def seen(self, app: JsonObject | None) -> None:
        self.seen_traffic = raw_traffic(app or {})

    def confirm_lease(self, doing: str, app: JsonObject | None = None) -> JsonObject:
        """Before moving traffic: the lease is still this run's and the traffic is as this run left it, else stop
        (exit 10) and reverse nothing: what serves is the other run's to decide. `app`: one read a moment ago."""
        app = app or self.session.get_app() or {}
        held = lease_of(app)
        traffic = raw_traffic(app)
        if held is not None and held.run != self.run_id and held.holds(self.wall()):
            raise ConcurrentReleaseError(
                f"{held.run} took over container app {self.name} during this release; stopped before {doing}, "
                "nothing reversed",
                hint="`agentdeploy status` shows what serves now; deploy again when the other run has finished",
            )
        if self.seen_traffic is not None and traffic != self.seen_traffic:
            who = f"another agentdeploy run ({held.run})" if held and held.run != self.run_id else "someone else"
            raise ConcurrentReleaseError(
                f"the traffic of container app {self.name} was changed by {who} during this release "
                f"(now {traffic}); stopped before {doing}, nothing reversed",
                hint="`agentdeploy status` shows what serves now; deploy again when you know who changed it",
            )
        return app

    def give_up_lease(self, of: str = "", app: JsonObject | None = None) -> None:
        """End the lease (this run's, or `of` a dead run's) so the next run can start at once; best effort. `app`:
        the app as this run last saw it, a moment ago (else it is read)."""
        session = self.session
        app = app or session.get_app()
        held = lease_of(app or {})
        if app is None or held is None or not held.held or held.run != (of or self.run_id):
            return
        patch: JsonObject = {"tags": _tags_with(app, Lease(held.run, self.wall(), False))}
        suffix = text_at(app, "properties", "template", "revisionSuffix")
        requested = f"{self.name}--{suffix}"
        if suffix and requested not in session.known_revisions and session.revision(requested) is None:
            # The last requested template never became a revision (its operation failed): any write would
            # provision it now, ungated. The app gets the template of what serves back instead.
            serving = object_at(session.revision(serving_revision(app)), "properties", "template")
            if serving:
                patch["properties"] = {"template": serving}
        with contextlib.suppress(AgentDeployError):
            session.patch(patch, f"giving the release lease on container app {self.name} up")

    def released_tags(self, app: JsonObject) -> JsonObject:
        """The app's tags with this run's lease ended (held=0)."""
        return _tags_with(app, Lease(self.run_id, self.wall(), False))
