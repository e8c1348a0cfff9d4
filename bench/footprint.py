"""Section 6: the layer's size, and each function's peak memory on its sample events."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from connect_lambda.testing.aws import load_template

from bench.common import INFO, LAYER, PYTHON, Options, Row, SectionResult, ratio, verdict
from bench.functions import baseline_peak_kb, function_names, function_runs

KEY = "size"
TITLE = "6. Size and memory"
ZIP_LIMIT_MB = 50  # Lambda: a zip uploaded directly
UNZIPPED_LIMIT_MB = 250  # Lambda: a function and all its layers, unzipped
METHOD = (
    "Layer: `pip install --target` of layers/connect/requirements.txt for the template's default architecture "
    "(manylinux wheels, CPython 3.13, what `sam build` installs), plus connect_lambda and connect_apigw, zipped "
    "under `python/` with deflate; quick mode copies the same distributions from the venv instead (this machine's "
    "wheels, no download). Memory: each function in a fresh interpreter (bench/child_run.py) on its sample events "
    "(events/*.json re-signed by devstack.events.build_events) against a moto server provisioned from "
    "template.yaml and devstack's simulated Atlassian on loopback; the figure is the process's peak resident set "
    "(VmHWM; ru_maxrss is carried over from the parent through fork and exec on Linux), against `import boto3, jwt` "
    "measured the same way. Lambda's own runtime adds its bootstrap on top of both."
)


def mb(size: float) -> str:
    return f"{size / 1e6:.1f} MB"


def requirement_closure(requirements: Path) -> list[str]:
    """Names of the distributions ``pip install -r requirements`` would install (from the venv's metadata)."""
    from packaging.requirements import Requirement  # noqa: PLC0415 - present in the venv (pip's own dependency)

    lines = [line.split("#", 1)[0].strip() for line in requirements.read_text().splitlines()]
    pending = [Requirement(line) for line in lines if line]
    seen: dict[str, None] = {}
    while pending:
        requirement = pending.pop()
        name = requirement.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen[name] = None
        for text in importlib.metadata.requires(requirement.name) or []:
            dependency = Requirement(text)
            if dependency.marker is None or dependency.marker.evaluate({"extra": ""}):
                pending.append(dependency)
    return list(seen)


def copy_from_venv(target: Path) -> None:
    for name in requirement_closure(LAYER / "requirements.txt"):
        distribution = importlib.metadata.distribution(name)
        for file in distribution.files or []:
            if file.parts and file.parts[0] == "..":
                continue  # scripts outside site-packages
            source = Path(str(distribution.locate_file(file)))
            if source.is_file():
                destination = target / file
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination)


def pip_install(target: Path, architecture: str) -> str | None:
    machine = "aarch64" if architecture == "arm64" else "x86_64"
    completed = subprocess.run(
        [
            PYTHON,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--target",
            str(target),
            "--platform",
            f"manylinux2014_{machine}",
            "--implementation",
            "cp",
            "--python-version",
            f"{sys.version_info.major}.{sys.version_info.minor}",
            "--only-binary=:all:",
            "-r",
            str(LAYER / "requirements.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return None if completed.returncode == 0 else completed.stderr.strip()[-500:]


def build_layer(root: Path, quick: bool) -> tuple[Path, str]:
    python = root / "python"
    architecture = str(load_template()["Parameters"]["Architecture"]["Default"])
    method = ""
    if not quick:
        failure = pip_install(python, architecture)
        if failure is None:
            method = f"pip install --target, {architecture} wheels"
        else:
            shutil.rmtree(python, ignore_errors=True)
            method = f"copied from the venv (pip install failed: {failure.splitlines()[-1] if failure else '?'})"
    if not method:
        copy_from_venv(python)
        method = "copied from the venv (this machine's wheels)"
    for package in ("connect_lambda", "connect_apigw"):
        shutil.copytree(LAYER / package, python / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    archive = root / "layer.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for path in sorted(python.rglob("*")):
            if path.is_file():
                out.write(path, path.relative_to(root))
    return archive, method


def tree_size(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def run(options: Options) -> SectionResult:
    result = SectionResult()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        archive, method = build_layer(root, options.quick)
        zipped = archive.stat().st_size
        python = root / "python"
        unzipped = tree_size(python)
        biggest = sorted(
            ((tree_size(p) if p.is_dir() else p.stat().st_size, p.name) for p in python.iterdir()), reverse=True
        )
    result.rows.append(
        Row(
            "6",
            f"layer zip size ({method})",
            mb(zipped),
            f"unzipped {mb(unzipped)}",
            "-",
            f"<= {ZIP_LIMIT_MB} MB zipped, {UNZIPPED_LIMIT_MB} MB unzipped (Lambda)",
            verdict(zipped <= ZIP_LIMIT_MB * 1e6 and unzipped <= UNZIPPED_LIMIT_MB * 1e6),
        )
    )
    result.details.append(
        "Largest entries of the layer (unzipped): " + ", ".join(f"{name} {mb(size)}" for size, name in biggest[:8])
    )
    shipped = {name: size for size, name in biggest}
    if "botocore" in shipped:
        result.details.append(
            f"The layer ships boto3 and botocore ({mb(shipped['botocore'])} unzipped for botocore) as one pinned pair: "
            "aws-xray-sdk requires botocore, and /opt/python comes before the runtime's own packages on sys.path, "
            "so the layer carries a consistent SDK rather than a botocore of its own beside the runtime's boto3."
        )
    memory_limit = int(load_template()["Globals"]["Function"]["MemorySize"])
    baseline_kb = baseline_peak_kb()
    result.rows.append(
        Row("6", "peak memory: import boto3, jwt (the floor)", f"{baseline_kb / 1024:.1f} MB", "-", "-", "-", INFO)
    )
    runs = function_runs()
    for name in function_names():
        run_ = runs.get(name)
        if run_ is None:
            result.rows.append(Row("6", f"peak memory: {name}", "no sample event", "-", "-", "-", INFO))
            continue
        result.rows.append(
            Row(
                "6",
                f"peak memory: {name} ({len(run_.answers)} sample event{'s' if len(run_.answers) > 1 else ''})",
                f"{run_.peak_kb / 1024:.1f} MB",
                f"floor {baseline_kb / 1024:.1f} MB",
                ratio(run_.peak_kb, baseline_kb),
                f"<= {memory_limit} MB (MemorySize)",
                verdict(run_.ok and run_.peak_kb <= memory_limit * 1024),
            )
        )
        result.details.append(
            f"{name}: answered {run_.answers}{'' if run_.ok else ' (NOT as expected)'}; "
            f"import {run_.import_seconds:.2f} s, events {run_.handler_seconds:.2f} s "
            "(with the module-recording profiler hook on)"
        )
    result.details.append(f"Child processes ran with {os.cpu_count()} CPUs; peak memory is VmHWM of each process.")
    return result
