"""Runs a command and writes its output to the stack's logs through the redaction filter.

``python -m devstack.logpipe --log start-api.log [--requests requests.log --template build/template.yaml] -- cmd...``

The command's stdout and stderr never reach a file directly: each line is redacted (devstack.redact) and then
appended to ``--log``; with ``--requests``, each request sam local answered also becomes one summary line
(devstack.requestlog). This process and the command share a process group: stopping the group stops both, and
this process keeps reading until the command has written its last line, then exits with the command's code.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

from devstack.redact import redact_line
from devstack.requestlog import RequestLog, routes_of
from devstack.template import load_template


def pump(source: IO[bytes], log: IO[str], requests: IO[str] | None, request_log: RequestLog | None) -> None:
    for raw in source:
        line = redact_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
        log.write(line + "\n")
        log.flush()
        if request_log is not None and requests is not None:
            summary = request_log.feed(line)
            if summary is not None:
                requests.write(redact_line(summary.line()) + "\n")
                requests.flush()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.logpipe", description=__doc__)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--requests", type=Path)
    parser.add_argument("--template", type=Path)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    # SIGTERM reaches the whole group: the command shuts down and we drain its last lines (a handler, not SIG_IGN,
    # so that the command does not inherit an ignored SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    request_log = RequestLog(routes_of(load_template(args.template))) if args.requests and args.template else None
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with args.log.open("a", encoding="utf-8") as log:
        requests = args.requests.open("a", encoding="utf-8") if args.requests else None
        try:
            child = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            if child.stdout is None:
                raise RuntimeError("no pipe from the command")
            pump(child.stdout, log, requests, request_log)
            code = child.wait()
            log.write(f"[logpipe] {Path(command[0]).name} exited with code {code}\n")
        finally:
            if requests is not None:
                requests.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
