"""Which targets exist: the built-in ones, and any a package registers under the entry point group
`agentdeploy.targets` (name = the provider name, value = `module:factory`, a TargetFactory). config/providers.py
keeps the registrations, so that agent.yaml can name a plugin target and have its section checked.

Factories are imported only when their target is used, so a run on the local engine never imports
the Azure SDK.
"""

from __future__ import annotations

from typing import cast

from agentdeploy.config import providers
from agentdeploy.config.providers import ENTRY_POINT_GROUP
from agentdeploy.errors import UsageError
from agentdeploy.targets.base import Target, TargetContext, TargetFactory

__all__ = ["ENTRY_POINT_GROUP", "available", "factory_for", "make_target", "register", "unregister"]

BUILTIN = {
    "docker": "agentdeploy.targets.docker:make_target",
    "azure": "agentdeploy.targets.azure.target:make_target",
}


def register(name: str, factory: TargetFactory) -> None:
    """A target made by `factory`, named `name` (its `settings_model`, if any, checks `deployment.target.<name>`)."""
    providers.register(name, factory)


def unregister(name: str) -> None:
    providers.unregister(name)


def available() -> list[str]:
    return sorted({*BUILTIN, *providers.plugins()})


def factory_for(name: str) -> TargetFactory:
    registered = providers.registered(name)
    if registered is not None:
        return cast(TargetFactory, registered)
    spec = BUILTIN.get(name) or providers.installed().get(name)
    if spec is None:
        raise UsageError(f"there is no target {name!r}", hint=f"use one of: {', '.join(available())}")
    return cast(TargetFactory, providers.load_factory(spec))


def make_target(name: str, context: TargetContext) -> Target:
    return factory_for(name)(context)
