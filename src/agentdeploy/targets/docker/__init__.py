"""The local Docker engine as a deployment target, with the same health gate and rollback as Azure.

`target.py` puts it behind the Target protocol; `engine.py` runs a release on the engine (start, gate, roll back);
`hardening.py` says how the container is confined; `gate.py` reads a crash loop and the last lines it printed.
"""

from agentdeploy.targets.docker.engine import LocalDockerTarget, Release
from agentdeploy.targets.docker.gate import CRASH_CODE_WAIT
from agentdeploy.targets.docker.hardening import Hardening, hardening, probe_address
from agentdeploy.targets.docker.target import DockerTarget, container_name_for, make_target

__all__ = [
    "CRASH_CODE_WAIT",
    "DockerTarget",
    "Hardening",
    "LocalDockerTarget",
    "Release",
    "container_name_for",
    "hardening",
    "make_target",
    "probe_address",
]
