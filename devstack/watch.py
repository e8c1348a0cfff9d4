"""``make watch``: reload the running stack whenever the app's sources change (what ``make reload`` does).

It polls the project's files once a second (no inotify dependency; the tree is small), waits until they have
been quiet for a moment, runs the ``make template`` generator hook, then reloads. Ctrl-C stops it.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from devstack import stack
from devstack.config import ROOT
from devstack.processes import StackError
from devstack.stack import say

IGNORED_DIRS = frozenset(
    {".git", ".local", ".aws-sam", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache",
     ".pytest_cache", ".hypothesis", "tests", "bench", "tools", "events", "devstack", "scripts", ".ci"}
)  # fmt: skip
IGNORED_SUFFIXES = (".md", ".pyc", ".swp", "~", ".tmp")
QUIET = 0.7


def snapshot(root: Path = ROOT) -> dict[str, tuple[int, int]]:
    """``{relative path: (mtime_ns, size)}`` of the files whose change can change the running app."""
    found: dict[str, tuple[int, int]] = {}
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in IGNORED_DIRS and not d.startswith(".")]
        for name in files:
            if name.endswith(IGNORED_SUFFIXES) or name.startswith("."):
                continue
            path = Path(directory, name)
            try:
                info = path.stat()
            except OSError:
                continue
            found[str(path.relative_to(root))] = (info.st_mtime_ns, info.st_size)
    return found


def changes(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))


def watch() -> int:
    say(f"watching {ROOT} (functions, layers, template.yaml, the app); Ctrl-C stops")
    seen = snapshot()
    try:
        while True:
            time.sleep(1.0)
            current = snapshot()
            changed = changes(seen, current)
            if not changed:
                continue
            while True:  # an editor or the generator may still be writing: wait until the files are quiet
                time.sleep(QUIET)
                settled = snapshot()
                if settled == current:
                    break
                current = settled
            shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
            say(f"changed: {shown}")
            subprocess.run(["make", "--no-print-directory", "template"], cwd=ROOT, check=False)
            try:
                with stack.locked():
                    stack.reload()
            except StackError as exc:
                say(f"FAILED: {exc}")
            seen = snapshot()  # what the generator rewrote is part of this reload
    except KeyboardInterrupt:
        return 0
