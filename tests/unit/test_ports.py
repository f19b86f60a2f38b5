"""Reading who holds a port from /proc's own formats (lines as Linux writes them)."""

from __future__ import annotations

from agentdeploy.targets.ports import container_of, listening_inodes

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 908712 1 0000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 908799 1 0000 20 4 30 10 -1
   2: 00000000:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000 100 0 0 10 0
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000 100 0 0 10 0
"""  # noqa: E501


def test_only_the_listening_sockets_on_that_port_count() -> None:
    assert listening_inodes(TCP, 8080) == {"908712"}  # not the established connection to it
    assert listening_inodes(TCP, 5000) == {"12345"}
    assert listening_inodes(TCP6, 8080) == {"777"}
    assert listening_inodes(TCP, 9090) == set()


ID = "4f1c" * 16


def test_the_container_a_process_runs_in_is_read_from_its_cgroup() -> None:
    assert container_of(f"0::/system.slice/docker-{ID}.scope\n") == ID  # cgroup v2, systemd driver
    assert container_of(f"12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n") == ID  # cgroup v1
    assert container_of("0::/user.slice/user-1000.slice/session-2.scope\n") == ""
