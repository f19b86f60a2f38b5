"""Where agents run. One protocol (base.Target, with optional capabilities), one module per target
(docker: the local engine; azure: Container Apps), and a registry that finds them by provider name,
built in or installed under the `agentdeploy.targets` entry point group. Nothing outside this package
asks which provider it deals with."""

from agentdeploy.targets.registry import available, make_target, register, unregister

__all__ = ["available", "make_target", "register", "unregister"]
