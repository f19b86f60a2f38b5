"""The calls to Azure for one container app, behind `AppApi` (a Protocol: the SDK here, an in-memory double in
the tests), and `AppSession`, what a release reads and writes through it: reads reused while the app is
unchanged (ARM throttles per subscription and principal, FACTS.md) and writes that wait out a busy app."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

from agentdeploy.errors import DeployError
from agentdeploy.jsonvalue import JsonObject, objects_at, text_at, value_at
from agentdeploy.retry import backoff
from agentdeploy.targets.azure.arm import azure_errors, code_of, envelope, plain
from agentdeploy.targets.azure.settings import Adapters
from agentdeploy.targets.azure.views import secrets_in, serving_revision, stamp

if TYPE_CHECKING:
    from azure.core.polling import LROPoller
    from azure.mgmt.appcontainers import ContainerAppsAPIClient
    from azure.mgmt.appcontainers.models import ContainerApp
    from azure.mgmt.appcontainers.types import AuthConfig as AuthConfigEnvelope

LOCK_CONFLICT_WAIT = 90.0
# Two refusals of a write while another is in flight: 409 ContainerAppLockConflict (a change to this app), and
# ContainerAppOperationInProgress (Container Apps serialises writes within a managed environment: another app's
# change there; microsoft/aspire#18682). Keyed on the code, whatever the status.
BUSY_CODES = ("ContainerAppLockConflict", "ContainerAppOperationInProgress")


class AppBusy(Exception):
    """A write refused because another change to the app (or its environment) is in flight; the code says which."""


class AppApi(Protocol):
    """One container app's ARM calls, in ARM JSON. Errors are the error tree's (DeployError...); a write refused
    as busy raises AppBusy."""

    def get_app(self) -> JsonObject | None: ...
    def list_revisions(self) -> list[JsonObject]: ...
    def get_revision(self, name: str) -> JsonObject | None: ...
    def list_replicas(self, revision: str) -> list[JsonObject]: ...  # {name, properties: {containers: [...]}}
    def list_secrets(self) -> list[JsonObject]: ...  # as listed: {name, value} or {name, keyVaultUrl, identity}
    def create(self, body: JsonObject, action: str) -> JsonObject: ...  # PUT, waited for: the app
    def update(self, patch: JsonObject, action: str) -> JsonObject: ...  # PATCH (merge), waited for: the app
    def set_active(self, revision: str, active: bool) -> None: ...
    def delete(self) -> None: ...
    def environment_id(self, group: str, name: str) -> str: ...
    def auth_configs(self) -> list[JsonObject]: ...
    def put_auth_config(self, body: JsonObject) -> None: ...


class SdkAppApi:
    """AppApi over azure-mgmt-appcontainers."""

    def __init__(self, client: ContainerAppsAPIClient, resource_group: str, app: str, poll_interval: float) -> None:
        self.client, self.rg, self.name, self.poll_interval = client, resource_group, app, poll_interval

    def get_app(self) -> JsonObject | None:
        from azure.core.exceptions import ResourceNotFoundError

        with azure_errors(f"reading container app {self.name}"):
            try:
                return plain(self.client.container_apps.get(self.rg, self.name))
            except ResourceNotFoundError:
                return None

    def list_revisions(self) -> list[JsonObject]:
        with azure_errors("listing revisions"):
            return [plain(r) for r in self.client.container_apps_revisions.list_revisions(self.rg, self.name)]

    def get_revision(self, name: str) -> JsonObject | None:
        from azure.core.exceptions import ResourceNotFoundError

        with azure_errors(f"reading revision {name}"):
            try:
                return plain(self.client.container_apps_revisions.get_revision(self.rg, self.name, name))
            except ResourceNotFoundError:
                return None

    def list_replicas(self, revision: str) -> list[JsonObject]:
        operations = self.client.container_apps_revision_replicas
        with azure_errors(f"reading the replicas of revision {revision}"):
            return objects_at(plain(operations.list_replicas(self.rg, self.name, revision)), "value")

    def list_secrets(self) -> list[JsonObject]:
        with azure_errors("reading the app's secrets"):
            listed = plain(self.client.container_apps.list_secrets(self.rg, self.name))
        return secrets_in(listed)

    def _lro(self, action: str, start: Callable[[], LROPoller[ContainerApp]]) -> JsonObject:
        from azure.core.exceptions import HttpResponseError

        with azure_errors(action):
            try:
                return plain(start().result())
            except HttpResponseError as exc:
                if code_of(exc) in BUSY_CODES:
                    raise AppBusy(code_of(exc)) from None
                raise

    def create(self, body: JsonObject, action: str) -> JsonObject:
        operations = self.client.container_apps
        return self._lro(
            action,
            lambda: operations.begin_create_or_update(
                self.rg, self.name, envelope(body), polling_interval=self.poll_interval
            ),
        )

    def update(self, patch: JsonObject, action: str) -> JsonObject:
        operations = self.client.container_apps
        return self._lro(
            action,
            lambda: operations.begin_update(self.rg, self.name, envelope(patch), polling_interval=self.poll_interval),
        )

    def set_active(self, revision: str, active: bool) -> None:
        operations = self.client.container_apps_revisions
        with azure_errors(f"{'activating' if active else 'deactivating'} revision {revision}"):
            if active:
                operations.activate_revision(self.rg, self.name, revision)
            else:
                operations.deactivate_revision(self.rg, self.name, revision)

    def delete(self) -> None:
        with azure_errors(f"deleting container app {self.name}"):
            self.client.container_apps.begin_delete(self.rg, self.name, polling_interval=self.poll_interval).result()

    def environment_id(self, group: str, name: str) -> str:
        with azure_errors(f"reading Container Apps environment {name} in resource group {group}"):
            return str(plain(self.client.managed_environments.get(group, name))["id"])

    def auth_configs(self) -> list[JsonObject]:
        operations = self.client.container_apps_auth_configs
        with azure_errors(f"reading the authentication settings of container app {self.name}"):
            return [plain(config) for config in operations.list_by_container_app(self.rg, self.name)]

    def put_auth_config(self, body: JsonObject) -> None:
        operations = self.client.container_apps_auth_configs
        with azure_errors(f"setting the authentication of container app {self.name}"):
            operations.create_or_update(self.rg, self.name, "current", cast("AuthConfigEnvelope", body))


class AppSession:
    """The app as one run reads and writes it. Reads are reused while the app they were read with is unchanged
    (same lastModifiedAt and revisions); every write waits out a busy app."""

    def __init__(self, api: AppApi, name: str, adapters: Adapters) -> None:
        self.api, self.name, self.adapters = api, name, adapters
        self.last_app: JsonObject | None = None  # the app as this run last read or wrote it
        self.known_revisions: set[str] = set()  # revisions this run has seen exist
        self.observed: JsonObject | None = None  # the app live() read for the plan, for the release to start from
        self._listed: tuple[tuple[str, ...], list[JsonObject]] | None = None
        self._secrets: tuple[tuple[str, ...], tuple[dict[str, str], dict[str, JsonObject]]] | None = None

    # -- reads ---------------------------------------------------------------------------------
    def get_app(self) -> JsonObject | None:
        app = self.api.get_app()
        if app is not None:
            self.last_app = app
        return app

    def revisions(self) -> list[JsonObject]:
        listed = self.api.list_revisions()
        self.known_revisions.update(text_at(r, "name") for r in listed)
        return listed

    def revision(self, name: str) -> JsonObject | None:
        found = self.api.get_revision(name)
        if found is None:
            self.known_revisions.discard(name)
        else:
            self.known_revisions.add(name)
        return found

    def revisions_of(self, app: JsonObject) -> list[JsonObject]:
        """The app's revisions, listed once for this state of the app."""
        now = stamp(app)
        if self._listed is None or self._listed[0] != now or not now[0]:
            self._listed = (now, self.revisions())
        return self._listed[1]

    def secrets(self) -> tuple[dict[str, str], dict[str, JsonObject]]:
        """(name -> value, name -> Key Vault reference) of the app's secrets. A reference has no value to read:
        it is kept as the service lists it ({name, keyVaultUrl, identity}), to be resent as it is."""
        values: dict[str, str] = {}
        references: dict[str, JsonObject] = {}
        for secret in self.api.list_secrets():
            name = str(secret["name"])
            vault = secret.get("keyVaultUrl") or secret.get("key_vault_url")
            if vault:
                references[name] = {"name": name, "keyVaultUrl": vault}
                if secret.get("identity"):
                    references[name]["identity"] = secret["identity"]
            else:
                values[name] = text_at(secret, "value")
        return values, references

    def secrets_of(self, app: JsonObject) -> tuple[dict[str, str], dict[str, JsonObject]]:
        now = stamp(app)
        if self._secrets is None or self._secrets[0] != now or not now[0]:
            self._secrets = (now, self.secrets())
        return self._secrets[1]

    def secret_values(self) -> dict[str, str]:
        app = self.last_app
        return self.secrets_of(app)[0] if app is not None else self.secrets()[0]

    def serving_view(self, app: JsonObject) -> JsonObject:
        """The app with the template of the revision that serves in place of the last requested one."""
        name = serving_revision(app)
        listed = next((r for r in self.revisions_of(app) if text_at(r, "name") == name), None) if name else None
        template = value_at(listed, "properties", "template")
        if not template:
            return app
        view = copy.deepcopy(app)
        properties = view.get("properties")
        if not isinstance(properties, dict):
            properties = view["properties"] = {}
        properties["template"] = template
        return view

    # -- writes --------------------------------------------------------------------------------
    def create(self, body: JsonObject) -> JsonObject:
        self.adapters.say(f"creating container app {self.name}")
        action = f"creating container app {self.name}"
        return self._written(self._when_free(lambda: self.api.create(body, action)))

    def patch(self, body: JsonObject, what: str, recheck: Callable[[], None] = lambda: None) -> JsonObject:
        return self._written(self._when_free(lambda: self.api.update(body, what), recheck))

    def set_active(self, revision: str, active: bool) -> None:
        self.api.set_active(revision, active)

    def _written(self, app: JsonObject) -> JsonObject:
        self.last_app = app or self.last_app
        return app

    def _when_free(self, write: Callable[[], JsonObject], recheck: Callable[[], None] = lambda: None) -> JsonObject:
        """Run a write; wait out a write refused because another is in flight, calling `recheck` before each new
        try (the change in flight may be another run's release). The waits grow with jitter, so runs that
        collided once do not collide again in step."""
        clock, deadline = self.adapters.clock, self.adapters.clock() + LOCK_CONFLICT_WAIT
        waits = backoff(1.0, jitter=True)
        while True:
            try:
                return write()
            except AppBusy as busy:
                delay = round(next(waits), 1)
                elsewhere = str(busy) == "ContainerAppOperationInProgress"
                holder = f"another app's change in its environment ({busy})" if elsewhere else "another operation"
                if clock() + delay > deadline:
                    raise DeployError(
                        f"container app {self.name} stayed locked by {holder} for {LOCK_CONFLICT_WAIT:g}s",
                        hint="wait for the other deployment to finish, then run again",
                    ) from None
                self.adapters.say(f"{holder} holds {self.name}; retrying in {delay:g}s")
                self.adapters.sleep(delay)
                recheck()
