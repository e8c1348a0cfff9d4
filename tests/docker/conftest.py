"""The real SAM CLI against the real template, in Docker, with the local stack's embedded AWS and simulator.

These tests need a Docker engine, the SAM CLI and the stand-in Lambda image (``bash scripts/local-env.sh up``
provides all three; ``make test`` runs it first). Without them they are skipped with the reason, except under CI
(``CI`` set), where a skip would hide that the check never ran: there they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# ports of their own, so that a developer's running stack (make run) is not disturbed
PORTS = {"DEVSTACK_API_PORT": "3300", "DEVSTACK_MOTO_PORT": "5301", "DEVSTACK_SIM_PORT": "8391"}


def _missing_prerequisite() -> str | None:
    if shutil.which("sam") is None:
        return (
            'the SAM CLI is not on PATH (run: bash scripts/local-env.sh up && eval "$(bash scripts/local-env.sh env)")'
        )
    if shutil.which("docker") is None:
        return "no docker client"
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return "no Docker engine answers (bash scripts/local-env.sh up starts one)"
    arch = "arm64" if os.uname().machine in ("aarch64", "arm64") else "x86_64"
    image = f"public.ecr.aws/lambda/python:3.13-{arch}"
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode != 0:
        return f"the Lambda base image {image} is not built (bash scripts/local-env.sh up builds it)"
    return None


@pytest.fixture(scope="session")
def sam_ready() -> None:
    reason = _missing_prerequisite()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"docker tests cannot run on CI: {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass
class Stack:
    state: Path
    env: dict[str, str]
    events: Path

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{PORTS['DEVSTACK_API_PORT']}"

    def devstack(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "devstack", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def invoke(self, function: str, event: str) -> dict[str, object]:
        """``sam local invoke`` exits 0 even when the function fails: the printed payload is what counts."""
        arch = self.env.get("LOCAL_ENV_ARCH", "x86_64")
        result = subprocess.run(
            [
                "sam",
                "local",
                "invoke",
                function,
                "--event",
                str(self.events / event),
                "--env-vars",
                str(self.state / "env.json"),
                "--skip-pull-image",
                "--add-host",
                "host.docker.internal:host-gateway",
                "--parameter-overrides",
                f"Architecture={arch} AppKey=connect-lambda-local",
            ],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        payload_lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        assert payload_lines, (
            f"{function} printed no payload\nstdout:{result.stdout[-2000:]}\nstderr:{result.stderr[-3000:]}"
        )
        payload = json.loads(payload_lines[-1])
        assert "errorMessage" not in payload, f"{function} failed: {payload}\n{result.stderr[-3000:]}"
        return payload


@pytest.fixture(scope="session")
def stack(sam_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    state = tmp_path_factory.mktemp("devstack")
    env = {**os.environ, **PORTS, "DEVSTACK_DIR": str(state)}
    stack = Stack(state=state, env=env, events=state / "events")
    up = stack.devstack("up")
    assert up.returncode == 0, f"devstack up failed\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
    try:
        resign = stack.devstack("resign-events", "--out", str(stack.events))
        assert resign.returncode == 0, resign.stderr
        yield stack
    finally:
        stack.devstack("down", timeout=120)
