"""Starting and stopping the stack's background processes, each recorded by its pid under .local/stack/.

Each process is started in a process group of its own (the recorded pid leads it), so that stopping the group
stops its children too (sam local start-api and its log filter, devstack.logpipe).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from devstack.config import LOGS, STATE


class StackError(RuntimeError):
    """The local stack cannot do what was asked; the message is one line saying why (and what to do)."""


def pid_file(name: str) -> Path:
    return STATE / f"{name}.pid"


def running(name: str) -> int | None:
    """The recorded pid of ``name`` if that process still runs and still leads its own process group."""
    path = pid_file(name)
    if not path.exists():
        return None
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
        if os.getpgid(pid) != pid:  # the pid was reused by something else
            raise ProcessLookupError(pid)
    except (ValueError, ProcessLookupError, PermissionError):
        path.unlink(missing_ok=True)
        return None
    return pid


def start(name: str, command: list[str], env: dict[str, str] | None = None, *, cwd: Path | None = None) -> int:
    """Start ``command`` detached, its output in .local/stack/logs/<name>.log; returns its pid."""
    LOGS.mkdir(parents=True, exist_ok=True)
    with (LOGS / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group: stopping it stops its children too
        )
    pid_file(name).write_text(str(process.pid))
    return process.pid


def start_filtered(
    name: str, command: list[str], env: dict[str, str] | None = None, *, cwd: Path | None = None, requests: bool = False
) -> int:
    """Like :func:`start`, with the output passed through the redaction filter (devstack.logpipe) on its way to
    .local/stack/logs/<name>.log; with ``requests``, one summary line per request also goes to requests.log."""
    from devstack.config import BUILT_TEMPLATE, REQUESTS_LOG, ROOT

    pipe = [sys.executable, "-m", "devstack.logpipe", "--log", str(LOGS / f"{name}.log")]
    if requests:
        pipe += ["--requests", str(REQUESTS_LOG), "--template", str(BUILT_TEMPLATE)]
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return start(name, [*pipe, "--", *command], {**(env or {}), "PYTHONPATH": pythonpath}, cwd=cwd)


def stop(name: str, timeout: float = 60.0) -> bool:
    """SIGTERM the recorded process group, then SIGKILL after ``timeout``. True if something was stopped."""
    pid = running(name)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _group_alive(pid):
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    pid_file(name).unlink(missing_ok=True)
    return True


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie leader (not yet reaped by its parent) counts as gone
    try:
        state = Path(f"/proc/{group}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z" or _other_members(group)


def _other_members(group: int) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(group):
            with contextlib.suppress(OSError, ValueError):
                if os.getpgid(int(entry.name)) == group:
                    return True
    return False


def log_tail(name: str, lines: int = 15) -> str:
    path = LOGS / f"{name}.log"
    if not path.exists():
        return ""
    return "\n".join("    " + line for line in path.read_text(errors="replace").splitlines()[-lines:])


def wait_for(check: Callable[[], bool], what: str, timeout: float, name: str | None = None) -> None:
    """Wait until ``check()``; fail at once if the process ``name`` exits, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if name is not None and running(name) is None:
            raise StackError(f"{what} exited while starting; the end of logs/{name}.log:\n{log_tail(name)}")
        time.sleep(0.25)
    tail = log_tail(name) if name else ""
    raise StackError(f"{what} did not come up within {timeout:.0f} s; the end of logs/{name}.log:\n{tail}")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
