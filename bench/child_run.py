"""Run one function as a Lambda container would: import ``app``, then call ``handler`` on each of its events.

``python bench/child_run.py SPEC.json OUT.json`` (started by bench/functions.py in a fresh interpreter). It
records, without changing what runs:

* which modules the import of ``app`` brought in (the cold start), and for each module whose code ran during
  that import, in which module's import it ran (so that what a needed module needs at import counts as needed);
* which modules' code ran while the handler served the events;
* the process's peak resident memory after the last event: ``VmHWM``, the high-water mark of this process's
  memory. (``ru_maxrss`` would do on a freshly exec'd process started from a shell, but Linux carries it over
  from the parent through fork and exec, so a child of the benchmark would report the benchmark's own peak.)

It imports nothing of the project or of the test kit itself, so the memory is the function's and the interpreter's.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

if __name__ == "__main__":
    sys.path.pop(0)  # bench/ itself: only the function and the layer are on the path, as in Lambda


class Context:
    function_name = "connect-lambda-bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:connect-lambda-bench"
    log_group_name = "/aws/lambda/connect-lambda-bench"
    log_stream_name = "2026/01/01/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


class Recorder:
    def __init__(self) -> None:
        self.importing = True
        self.stack: list[str] = []
        self.edges: dict[str, set[str]] = {}
        self.used: set[str] = set()

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            name = frame.f_globals.get("__name__", "?")
            if frame.f_code.co_name == "<module>":
                if self.importing:
                    self.stack.append(name)
                return
            if self.importing:
                if self.stack:
                    self.edges.setdefault(self.stack[-1], set()).add(name)
            else:
                self.used.add(name)
        elif event == "return" and self.importing and frame.f_code.co_name == "<module>" and self.stack:
            self.stack.pop()


def peak_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    import resource  # noqa: PLC0415 - not Linux: the closest there is

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def summary(answer: Any) -> Any:
    if isinstance(answer, dict):
        if "statusCode" in answer:
            return answer["statusCode"]
        if "isAuthorized" in answer:
            return "allowed" if answer["isAuthorized"] else "denied"
        return {k: v for k, v in answer.items() if isinstance(v, int | str)}
    return repr(answer)[:80]


def main() -> None:
    with open(sys.argv[1]) as source:
        spec = json.load(source)
    sys.path[:0] = [spec["function_dir"], spec["layer"]]
    before = set(sys.modules)
    recorder = Recorder()
    sys.setprofile(recorder)
    started = time.perf_counter()
    import app  # noqa: PLC0415 - the function, as Lambda imports it

    imported_in = time.perf_counter() - started
    recorder.importing = False
    cold = {
        name: str(getattr(module, "__file__", "") or "").endswith(".py")
        for name, module in list(sys.modules.items())
        if name not in before
    }
    answers = []
    started = time.perf_counter()
    for event in spec["events"]:
        answers.append(summary(app.handler(event, Context())))
    handled_in = time.perf_counter() - started
    sys.setprofile(None)
    peak = peak_kb()
    with open(sys.argv[2], "w") as out:
        json.dump(
            {
                "answers": answers,
                "peak_kb": peak,
                "cold": cold,
                "edges": {k: sorted(v) for k, v in recorder.edges.items()},
                "used": sorted(recorder.used),
                "import_seconds": imported_in,
                "handler_seconds": handled_in,
            },
            out,
        )


if __name__ == "__main__":
    main()
