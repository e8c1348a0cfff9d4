"""Is a TCP port free, and if not, which program listens on it (read from /proc, no external tool)."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

PROC = Path("/proc")
_LISTEN = "0A"


def can_bind(host: str, port: int) -> bool:
    """True if a server could listen on ``host:port`` now (SO_REUSEADDR, as the stack's servers set it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def listening_inodes(port: int, proc: Path = PROC) -> set[str]:
    """Socket inodes of the TCP listeners on ``port``, any address, IPv4 and IPv6."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def listeners(port: int, proc: Path = PROC) -> dict[int, str]:
    """``{pid: command line}`` of the processes holding a listening socket on ``port`` (those /proc lets us see)."""
    wanted = {f"socket:[{inode}]" for inode in listening_inodes(port, proc)}
    found: dict[int, str] = {}
    if not wanted:
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in wanted:
                        found[int(entry.name)] = command_line(int(entry.name), proc)
                        break
    return found


def command_line(pid: int, proc: Path = PROC) -> str:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "?"
    text = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return text if len(text) <= 100 else text[:97] + "..."


def held_by_group(port: int, group: int) -> bool:
    """True if a process of process group ``group`` (one the stack started) listens on ``port``."""
    for pid in listeners(port):
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == group:
                return True
    return False


def busy_reason(what: str, host: str, port: int) -> str | None:
    """None if ``host:port`` is free, else one line saying which program holds it."""
    if can_bind(host, port):
        return None
    holders = listeners(port)
    if holders:
        who = "; ".join(f"pid {pid} ({cmd})" for pid, cmd in sorted(holders.items()))
    else:
        who = "a program this user cannot see (try: ss -ltnp)"
    return f"port {port} ({what}, {host}) is in use by {who}"
