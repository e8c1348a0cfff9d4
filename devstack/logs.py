"""``make logs``: the stack's request log (one line per request), or sam local's own output, followed."""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

from devstack import processes


def show(path: Path, *, follow: bool, lines: int = 20) -> int:
    if processes.running("start-api") is None:
        print(f"(the local stack is not running: make run starts it; showing {path.name} as it was left)", flush=True)
    if not path.exists():
        if not follow:
            print(f"(no {path.name} yet: it is written once sam local start-api answers requests)")
            return 0
        print(f"(waiting for {path}: it is written once sam local start-api answers requests)", flush=True)
        while not path.exists():
            time.sleep(0.5)
    with path.open("r", encoding="utf-8", errors="replace") as log:
        for line in deque(log, maxlen=max(lines, 0)):
            print(line, end="", flush=True)
        if not follow:
            return 0
        position = log.tell()
        try:
            while True:
                line = log.readline()
                if line:
                    print(line, end="", flush=True)
                    position = log.tell()
                    continue
                if path.exists() and path.stat().st_size < position:  # truncated or replaced: start over
                    log.seek(0)
                    position = 0
                time.sleep(0.25)
        except KeyboardInterrupt:
            return 0
