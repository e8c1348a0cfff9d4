"""The real SAM CLI against the real template, in Docker, with the local stack's embedded AWS and simulator.

These tests need a Docker engine, the SAM CLI and the stand-in Lambda image (``bash scripts/local-env.sh up``
provides all three; ``make test`` runs it first). Without them they are skipped with the reason, except under CI
(``CI`` set), where a skip would hide that the check never ran: there they fail.

They drive the stack the way a developer does, through the make targets README shows, in a copy of the project
(so that a test can edit a handler or add a route) with its own state directory and its own ports, so that a
developer's running stack (make run) is not disturbed. The copy shares this checkout's venv and its local
environment (SAM CLI, Docker daemon, Lambda image).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from devstack.product_side import tenant_token

ROOT = Path(__file__).resolve().parents[2]
# ports of their own, so that a developer's running stack (make run) is not disturbed
PORTS = {"DEVSTACK_API_PORT": "3300", "DEVSTACK_MOTO_PORT": "5301", "DEVSTACK_SIM_PORT": "8391"}
PAGE = "/pages/hello?lic=none&cv=1001.0.0"
RUN_TIMEOUT = 1800  # a first make run on a loaded 2-core machine builds images for minutes; never the pass condition


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


def copy_project(target: Path) -> Path:
    """The project's files (what git tracks, and new files it does not ignore) under ``target``, with this
    checkout's venv; the modification times are kept, so that make finds the venv up to date."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: everything but state and caches
        skipped = {".git", ".venv", ".local", ".aws-sam", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache"}
        listed = "\0".join(
            str(path.relative_to(ROOT))
            for path in ROOT.rglob("*")
            if not skipped & set(path.relative_to(ROOT).parts) and ".pytest_cache" not in path.parts
        )
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(ROOT / ".venv")
    return target


@dataclass
class Stack:
    """The local stack of a copy of the project, driven through its make targets."""

    root: Path
    state: Path
    env: dict[str, str]
    events: Path
    events_signed_at: float = float("-inf")

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.env['DEVSTACK_API_PORT']}"

    def make(self, *args: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """``make <args>`` in the copy, as a developer types it (stderr folded into stdout, as on a terminal)."""
        return subprocess.run(
            ["make", "--no-print-directory", "-o", ".venv/.installed", *args],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )

    def devstack(self, *args: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "devstack", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def get_page(self, path: str = PAGE, *, secret: str | None = None, context: bool = False) -> requests.Response:
        """A signed GET as the product sends it (token in ?jwt=), for the local test tenant."""
        jwt = tenant_token("GET", path, secret=secret, context=context)
        return requests.get(f"{self.api}{path}{'&' if '?' in path else '?'}jwt={jwt}", timeout=120)

    def ensure_tenant(self) -> None:
        """Tests that play lifecycles leave the test tenant uninstalled: install it again."""
        result = self.devstack("tenant")
        assert result.returncode == 0, result.stdout + result.stderr

    def fresh_events(self, max_age: float = 60.0) -> None:
        """events/ signed for now (their tokens live 3 minutes): re-signed when older than ``max_age`` seconds."""
        if time.monotonic() - self.events_signed_at > max_age:
            resign = self.devstack("resign-events", "--out", str(self.events))
            assert resign.returncode == 0, resign.stderr
            self.events_signed_at = time.monotonic()

    def invoke(self, function: str, event: str) -> dict[str, object]:
        """``make invoke`` (sam local invoke of the local build); it fails when the function fails."""
        self.fresh_events()
        result = self.make("invoke", f"FUNCTION={function}", f"EVENT={self.events / event}", timeout=600)
        payload_lines = [line for line in result.stdout.splitlines() if line.startswith('{"')]
        assert result.returncode == 0, f"{function} failed\n{result.stdout[-4000:]}"
        assert payload_lines, f"{function} printed no payload\n{result.stdout[-4000:]}"
        payload = json.loads(payload_lines[-1])
        assert "errorMessage" not in payload, f"{function} failed: {payload}"
        return payload


def stack_env(state: Path, ports: dict[str, str], root: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MAKE", "MFLAGS"))}
    # the copy's own library and app come first (the shared venv's editable install names this checkout's), so
    # that what a test edits in the copy is what its make targets read (make template reads the declaration)
    own = os.pathsep.join(str(root / part) for part in ("layers/connect", "layers/app"))
    # the copy uses this checkout's SAM CLI, Docker daemon and Lambda image (never a second daemon)
    return {**env, **ports, "DEVSTACK_DIR": str(state), "LOCAL_ENV_DIR": str(ROOT / ".local"), "PYTHONPATH": own}


@pytest.fixture(scope="session")
def first_run(sam_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str, int]]:
    """A copy of the project whose stack ``make run`` started; the output of that first run and a signed
    request's status right after it."""
    root = copy_project(tmp_path_factory.mktemp("project"))
    state = tmp_path_factory.mktemp("devstack")
    stack = Stack(root=root, state=state, env=stack_env(state, PORTS, root), events=state / "events")
    try:
        run = stack.make("run")
        status = stack.get_page().status_code if run.returncode == 0 else 0
        assert run.returncode == 0, f"the first make run failed\n{run.stdout[-6000:]}"
        yield stack, run.stdout, status
    finally:
        stack.devstack("down", timeout=300)


@pytest.fixture
def stack(first_run: tuple[Stack, str, int]) -> Stack:
    return first_run[0]
