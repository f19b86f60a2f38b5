"""The names `deployment.target.provider` may take, and the sections of plugin targets.

A target other than the built-in ones comes from a package that registers a factory under the entry point group
`agentdeploy.targets` (name = the provider name, value = `module:factory`), or from a program that registers one at
run time (targets.register). Such a target is named in agent.yaml like a built-in one, and its settings sit in a
section of its own name beside `provider:`:

    deployment:
      target:
        provider: process
        process: {port: 9000}

The factory declares what that section may hold with a `settings_model` attribute, a pydantic model: the section is
validated with it, and its errors point at file:line:column like ours. A factory without one takes no section.
The config layer reads the registrations itself (it sits below the targets), and imports a plugin's module only when
a config names it.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points

from pydantic import BaseModel, ValidationError

from agentdeploy.config.models import TargetConfig
from agentdeploy.config.pydantic_errors import violation_from_pydantic
from agentdeploy.config.violation import Violation
from agentdeploy.config.yamlsource import KeyPath

ENTRY_POINT_GROUP = "agentdeploy.targets"
BUILTIN = ("azure", "docker")
UPSTREAM_ONLY = ("aws", "gcp")  # upstream's schema names them; agentdeploy does not deploy there
SETTINGS_ATTRIBUTE = "settings_model"
TARGET_KEYS: KeyPath = ("deployment", "target")
_registered: dict[str, object] = {}  # factories registered at run time (tests, programs that embed agentdeploy)


def register(name: str, factory: object) -> None:
    _registered[name] = factory


def unregister(name: str) -> None:
    _registered.pop(name, None)


def registered(name: str) -> object | None:
    return _registered.get(name)


def installed() -> dict[str, str]:
    """Entry points of installed packages: provider name -> `module:factory`."""
    return {point.name: point.value for point in entry_points(group=ENTRY_POINT_GROUP)}


def plugins() -> list[str]:
    """Targets beyond the built-in ones, installed or registered."""
    return sorted({*installed(), *_registered} - set(BUILTIN))


def deployable() -> list[str]:
    return [*BUILTIN, *plugins()]


def load_factory(spec: str) -> object:
    module, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module), attribute)


def settings_model(name: str) -> type[BaseModel] | None:
    """The model a plugin target's section is validated with (None: the target takes no section)."""
    factory = _registered.get(name)
    if factory is None and name in installed() and name not in BUILTIN:
        factory = load_factory(installed()[name])
    model = getattr(factory, SETTINGS_ATTRIBUTE, None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def settings(target: TargetConfig, name: str) -> BaseModel | None:
    """A plugin target's validated section (None when the config has none or the target takes none)."""
    model = settings_model(name)
    section = (target.model_extra or {}).get(name)
    return model.model_validate(section) if model is not None and section is not None else None


def describe_targets() -> str:
    names = plugins()
    return f"built-in: {', '.join(BUILTIN)}; installed: " + (
        ", ".join(names) if names else f"none (a package adds one under the entry point group {ENTRY_POINT_GROUP})"
    )


def check_target(data: Mapping[str, object]) -> list[Violation]:
    """In the YAML data, before any model reads it: an unknown provider, sections no target owns, and each plugin
    target's section checked by its own model."""
    deployment = data.get("deployment")
    target = deployment.get("target") if isinstance(deployment, dict) else None
    return list(_target_rules(target)) if isinstance(target, dict) else []


def _target_rules(target: Mapping[str, object]) -> Iterator[Violation]:
    known = [*deployable(), *UPSTREAM_ONLY]
    provider = target.get("provider", "docker")
    if isinstance(provider, str) and provider not in known:  # not text: TargetConfig says so
        close = difflib.get_close_matches(provider, known, n=1, cutoff=0.6)
        hint = (f"did you mean {close[0]!r}? " if close else "") + f"targets here: {describe_targets()}"
        yield Violation((*TARGET_KEYS, "provider"), f"{provider!r} is not a target", hint)
    allowed = [*TargetConfig.model_fields, *plugins()]
    for name, section in target.items():
        keys: KeyPath = (*TARGET_KEYS, name)
        if name in TargetConfig.model_fields:
            continue
        if name not in plugins():
            close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else "allowed keys here: " + ", ".join(allowed)
            yield Violation(keys, f"unknown key {name!r}", hint, at_key=True)
            continue
        yield from _section_rules(name, section, keys)


def _section_rules(name: str, section: object, keys: KeyPath) -> Iterator[Violation]:
    model = settings_model(name)
    if model is None:
        yield Violation(keys, f"the {name} target takes no settings", f"remove `{name}:`", at_key=True)
        return
    try:
        model.model_validate(section)
    except ValidationError as exc:
        for error in exc.errors():
            yield violation_from_pydantic(error, model, keys)
