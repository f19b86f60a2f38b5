"""The release lease (pure): which run releases to an app and until when, as an ARM tag on the app (a tag
starts no revision), read and rendered here; taking, checking and giving it up are ARM calls, on
AzureTarget in client.py."""

from __future__ import annotations

import time
from dataclasses import dataclass

from agentdeploy.jsonvalue import JsonObject, text_at

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
