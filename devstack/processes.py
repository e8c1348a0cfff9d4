"""Starting and stopping the stack's background processes, each recorded by its pid under .local/stack/."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from devstack.config import LOGS, STATE


def pid_file(name: str) -> Path:
    return STATE / f"{name}.pid"


def running(name: str) -> int | None:
    path = pid_file(name)
    if not path.exists():
        return None
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, PermissionError):
        path.unlink(missing_ok=True)
        return None
    return pid


def start(name: str, command: list[str], env: dict[str, str] | None = None) -> int:
    """Start ``command`` detached, its output in .local/stack/logs/<name>.log; returns its pid."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log = (LOGS / f"{name}.log").open("ab")
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # its own process group: stopping it stops its children too
    )
    pid_file(name).write_text(str(process.pid))
    return process.pid


def stop(name: str, timeout: float = 30.0) -> bool:
    """SIGTERM the recorded process group, then SIGKILL after ``timeout``. True if something was stopped."""
    pid = running(name)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    pid_file(name).unlink(missing_ok=True)
    return True


def wait_for(check: Callable[[], bool], what: str, timeout: float, log: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    tail = ""
    if log and (LOGS / f"{log}.log").exists():
        tail = "\n".join((LOGS / f"{log}.log").read_text(errors="replace").splitlines()[-25:])
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s\n{tail}")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
