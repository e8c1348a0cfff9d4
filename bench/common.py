"""What every benchmark section shares: the table row, timing and statistics helpers, paths, Node, the machine.

A section is a module with ``KEY`` (what ``--only`` takes), ``TITLE``, ``METHOD`` (the note written to RESULTS.md)
and ``run(options) -> SectionResult``. Figures are compared with a baseline measured in the same run (interleaved
where time is measured), so that the ratio holds on a busy machine even when the absolute figures move.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LAYER = ROOT / "layers" / "connect"
FUNCTIONS = ROOT / "functions"
NODE_TOOLS = ROOT / "tools" / "node"
PYTHON = sys.executable

WITHIN = "within budget"
OVER = "OVER BUDGET"
INFO = "info"
FAILED = "FAILED"


@dataclass(frozen=True)
class Options:
    quick: bool = False

    def pick(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def pick_float(self, full: float, quick: float) -> float:
        return quick if self.quick else full


@dataclass
class Row:
    section: str
    measure: str
    figure: str
    baseline: str = "-"
    ratio: str = "-"
    budget: str = "-"
    verdict: str = INFO


@dataclass
class SectionResult:
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    """Lines printed under the table and written to RESULTS.md (what the rows cannot show)."""


NEAR = "within budget (near the limit)"


def verdict(ok: bool, near: bool = False) -> str:
    """``near``: within, but by less than the run-to-run spread of a timed ratio on a shared machine (5 %)."""
    if not ok:
        return OVER
    return NEAR if near else WITHIN


# --- numbers ------------------------------------------------------------------------------------------------------


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline else "-"


def ops(value: float) -> str:
    return f"{value:,.0f} ops/s"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def us(seconds: float) -> str:
    """Microseconds, or milliseconds from one upwards."""
    return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f} us"


def median(values: list[float]) -> float:
    return statistics.median(values)


# --- processes ----------------------------------------------------------------------------------------------------


def python_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python: this one, with fake AWS credentials and nothing pointing at AWS."""
    from connect_lambda.testing.aws import AWS_ENV, AWS_ENV_REMOVED  # noqa: PLC0415

    env = {k: v for k, v in os.environ.items() if k not in AWS_ENV_REMOVED and not k.startswith("PYTHON")}
    env.update(AWS_ENV)
    env.update(extra)
    return env


class _Discard(io.TextIOBase):
    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)


DISCARD = _Discard()


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Discard what functions print (Powertools writes metrics and logs to stdout) while they are measured.

    A Powertools logger keeps the ``sys.stdout`` of the moment it was created: load functions inside this too.
    """
    with contextlib.redirect_stdout(DISCARD):
        yield


# --- Node ---------------------------------------------------------------------------------------------------------


def node_dependencies() -> list[str]:
    """What tools/node/package.json pins (atlassian-jwt for the qsh and section 1, jose for section 7)."""
    return sorted(json.loads((NODE_TOOLS / "package.json").read_text())["dependencies"])


def node_binary() -> tuple[str | None, str]:
    """Node, with tools/node's pinned packages installed (``npm ci`` once, under the suite's lock, when one is
    missing). Returns the node path, or ``None`` and why not.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None, "node or npm is not on PATH"
    lock_path = Path(tempfile.gettempdir()) / "connect-lambda-tools-node-npm-ci.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all((NODE_TOOLS / "node_modules" / name).is_dir() for name in node_dependencies()):
            result = subprocess.run(
                [npm, "ci", "--prefix", str(NODE_TOOLS), "--no-audit", "--no-fund", "--loglevel=error"],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if result.returncode != 0:
                return None, f"npm ci in {NODE_TOOLS} failed: {result.stderr.strip()[-300:]}"
    return node, ""


def node_version() -> str:
    node = shutil.which("node")
    if node is None:
        return "not installed"
    try:
        return subprocess.run(
            [node, "--version"], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def node_package_version(name: str) -> str:
    package = NODE_TOOLS / "node_modules" / name / "package.json"
    try:
        return str(json.loads(package.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def atlassian_jwt_version() -> str:
    return node_package_version("atlassian-jwt")


class NodeSide:
    """One long-lived node process running a bench/node script; Python asks it for timed batches (JSON lines over
    its stdin/stdout, tools/node/jsonlines.js)."""

    def __init__(self, node: str, script: Path, data_file: Path) -> None:
        self._process = subprocess.Popen(
            [node, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.info = self.call({"cmd": "load", "file": str(data_file)})

    def call(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the node side exited")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"node side: {answer['error']}")
        return answer

    def timer(self, mode: str) -> Callable[[int], float]:
        """Seconds for ``n`` requests of ``mode``; every one must have been verified."""

        def run(n: int) -> float:
            answer = self.call({"cmd": "run", "mode": mode, "n": n})
            if answer["ok"] != n:
                raise RuntimeError(f"node verified {answer['ok']} of {n} requests")
            return float(answer["ns"]) / 1e9

        return run

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


# --- the machine --------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def machine() -> dict[str, str]:
    return {
        "architecture": platform.machine(),
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "node": node_version(),
        "atlassian-jwt": atlassian_jwt_version(),
        "jose": node_package_version("jose"),
        "kernel": platform.release(),
    }
