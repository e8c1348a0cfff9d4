"""``make invoke FUNCTION=AuthorizerFunction EVENT=events/authorizer-page.json``: ``sam local invoke`` of a function
of the local build (never what ``sam build`` for AWS left in .aws-sam/build), with the local stack's settings.

``sam local invoke`` exits 0 even when the function fails; this exits 1 then, and when no payload was printed.
What it prints passes through the log filter first: a payload may carry a secret of the flow it starts (the consent
flow's state in its ``Location``, the browser's state cookie), and none is ever printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from devstack import processes
from devstack.config import BUILT_TEMPLATE, CONTAINER_HOST, STATE, aws_env
from devstack.processes import StackError
from devstack.redact import redact_line
from devstack.stack import ENV_FILE, sam_command, sam_parameters


def invoke(function: str, event: Path) -> int:
    if not BUILT_TEMPLATE.exists() or not ENV_FILE.exists():
        raise StackError("the local stack has not been built and started: run make run first")
    if processes.running("moto") is None or processes.running("sim") is None:
        raise StackError("the embedded AWS and the simulated Atlassian are not running: make run starts them")
    if not event.exists():
        raise StackError(f"no event file {event} (make events writes events/*.json, signed for now)")
    result = subprocess.run(
        [
            sam_command(),
            "local",
            "invoke",
            function,
            "--template",
            str(BUILT_TEMPLATE),
            "--event",
            str(event.resolve()),
            "--env-vars",
            str(ENV_FILE),
            "--skip-pull-image",
            "--add-host",
            f"{CONTAINER_HOST}:host-gateway",
            *sam_parameters(),
        ],
        cwd=STATE,
        env={**os.environ, **aws_env()},
        capture_output=True,
        text=True,
        check=False,
    )
    for stream, text in ((sys.stderr, result.stderr), (sys.stdout, result.stdout)):
        for line in text.splitlines():
            print(redact_line(line), file=stream, flush=True)
    payloads = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not payloads:
        print(f"[invoke] FAILED: sam local invoke exited {result.returncode} and printed no payload")
        return 1
    try:
        payload = json.loads(payloads[-1])
    except ValueError:
        payload = {}
    if isinstance(payload, dict) and "errorMessage" in payload:
        print(f"[invoke] FAILED: {function} raised {payload.get('errorType')}: {payload.get('errorMessage')}")
        return 1
    return 0
