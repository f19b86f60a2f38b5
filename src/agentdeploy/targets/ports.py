"""Who holds a TCP port on this machine: asked before a build, so a busy port fails in a second with the holder's
name instead of as `Errno 98` in the log of a container started minutes later.

Linux's /proc says it without privileges for our own processes (/proc/net/tcp{,6}: listening sockets by inode;
/proc/<pid>/fd: which process has that inode); on other systems, or for another user's process, the holder is
"another program".
"""

from __future__ import annotations

import errno
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

LISTEN = "0A"  # the socket state /proc/net/tcp writes for LISTEN
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Holder:
    pid: int | None = None
    command: str = ""
    container_id: str = ""  # the container the process runs in (its cgroup names it), when it does

    def describe(self) -> str:
        if self.pid is None:
            return "another program"
        return f"process {self.pid} ({self.command})" if self.command else f"process {self.pid}"


def port_in_use(address: str, port: int) -> bool:
    """Whether a listener holds `port` on `address` (a bind there fails as it would for the agent)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no holder
        try:
            probe.bind((address.strip("[]"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def listening_inodes(table: str, port: int) -> set[str]:
    """The inodes of the sockets listening on `port` in one /proc/net/tcp(6) table (pure)."""
    found = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        local, state, inode = fields[1], fields[3], fields[9]
        if state == LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
            found.add(inode)
    return found


def container_of(cgroup: str) -> str:
    """The container id a process's /proc/<pid>/cgroup names (docker's scope or path), or "" (pure)."""
    for line in cgroup.splitlines():
        found = _CONTAINER_ID.findall(line)
        if found:
            return str(found[-1])
    return ""


def _link(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:  # closed meanwhile (the listing's own descriptor is one)
        return ""


def holder(port: int, proc: Path = Path("/proc")) -> Holder:
    """The process listening on `port`, as far as /proc lets this user see; Holder() when it does not."""
    inodes: set[str] = set()
    for table in ("net/tcp", "net/tcp6"):
        try:
            inodes |= listening_inodes((proc / table).read_text(), port)
        except OSError:
            continue
    if not inodes:
        return Holder()
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for directory in proc.iterdir():
        if not directory.name.isdigit():
            continue
        try:
            descriptors = list((directory / "fd").iterdir())
        except OSError:  # gone, or another user's
            continue
        if {_link(fd) for fd in descriptors} & wanted:
            try:
                command = (directory / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                cgroup = (directory / "cgroup").read_text()
            except OSError:
                command, cgroup = "", ""
            return Holder(int(directory.name), command[:120], container_of(cgroup))
    return Holder()
