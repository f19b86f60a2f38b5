"""Which targets exist: the built-in ones, and any a package registers under the entry point group
`agentdeploy.targets` (name = the provider name, value = `module:factory`, a TargetFactory).

Factories are imported only when their target is used, so a run on the local engine never imports
the Azure SDK.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from agentdeploy.errors import UsageError
from agentdeploy.targets.base import Target, TargetContext, TargetFactory

ENTRY_POINT_GROUP = "agentdeploy.targets"
BUILTIN = {
    "docker": "agentdeploy.targets.docker:make_target",
    "azure": "agentdeploy.targets.azure.target:make_target",
}
_extra: dict[str, TargetFactory] = {}  # registered at run time (tests, embedding programs)


def register(name: str, factory: TargetFactory) -> None:
    _extra[name] = factory


def unregister(name: str) -> None:
    _extra.pop(name, None)


def _plugins() -> dict[str, str]:
    return {point.name: point.value for point in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    return sorted({*BUILTIN, *_plugins(), *_extra})


def factory_for(name: str) -> TargetFactory:
    if name in _extra:
        return _extra[name]
    spec = BUILTIN.get(name) or _plugins().get(name)
    if spec is None:
        names = ", ".join(available())
        raise UsageError(f"there is no target {name!r}", hint=f"use one of: {names}")
    module, _, attribute = spec.partition(":")
    factory: TargetFactory = getattr(importlib.import_module(module), attribute)
    return factory


def make_target(name: str, context: TargetContext) -> Target:
    return factory_for(name)(context)
