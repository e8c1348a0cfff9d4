"""Section 2: cold start, the import of each function's module against ``import boto3, jwt``, in fresh interpreters.

Every run is a new ``python`` process that times one import with ``time.perf_counter`` around it (interpreter start
is the same for all and left out). Targets are run in a shuffled order in each round, so that the machine's load
falls on all of them alike; the figure is the median over the rounds. Bytecode caches are warm (one untimed round
first), as they are in a layer built by pip.
"""

from __future__ import annotations

import json
import random
import subprocess

from connect_lambda.testing.functions import function_env

from bench.common import INFO, PYTHON, Options, Row, SectionResult, median, ms, python_env, ratio, verdict
from bench.functions import (
    BASELINE_CODE,
    FunctionRun,
    function_names,
    function_path,
    function_runs,
    importtime_tree,
    unneeded_imports,
    walk,
)

KEY = "cold"
TITLE = "2. Cold start"
BUDGET = 1.15
METHOD = (
    "Each function's `import app` (its directory and the layer on `sys.path`, as in Lambda) timed inside a fresh "
    "`python` process, against `import boto3, jwt` timed the same way; all targets in a shuffled order per round, "
    "the median over the rounds, bytecode caches warm. What a function imports and does not need comes from one "
    "more run of each function on its sample events (section 6's harness) with a profiler hook recording which "
    "modules' code runs, joined with `-X importtime`: a subtree is listed when it is imported by this project's "
    "code and none of its Python modules runs on the function's path (nor while a needed module is imported). X-Ray "
    "patching is lazy (connect_lambda/tracing.py: once, before the first AWS client, only in Lambda with tracing on); "
    "its one-off cost is `trace_aws_calls()` timed in a fresh process after `import app` and `import boto3`."
    " Functions build their AWS clients (and so import boto3) on the first request that needs one, so for the "
    "authorizer, lifecycle, context API and refresher that import is paid by the first request of a container "
    "rather than by `import app`; the floor is what a handler importing the SDK up front pays at import."
)

TIMED = """import sys, time
sys.path[:0] = {path!r}
started = time.perf_counter()
{code}
print(time.perf_counter() - started)
"""

XRAY = """import sys, time, json
sys.path[:0] = {path!r}
import app
import boto3
started = time.perf_counter()
from connect_lambda.tracing import trace_aws_calls
traced = trace_aws_calls()
print(json.dumps({{"seconds": time.perf_counter() - started, "traced": traced}}))
"""


def timed_import(code: str, path: list[str], env: dict[str, str]) -> float:
    completed = subprocess.run(
        [PYTHON, "-c", TIMED.format(path=path, code=code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{code} failed:\n{completed.stderr[-1500:]}")
    return float(completed.stdout.strip().splitlines()[-1])


def xray_once(env: dict[str, str]) -> float:
    xray_env = {k: v for k, v in env.items() if k not in ("POWERTOOLS_TRACE_DISABLED", "AWS_SAM_LOCAL")}
    xray_env["AWS_LAMBDA_FUNCTION_NAME"] = "connect-lambda-bench"
    completed = subprocess.run(
        [PYTHON, "-c", XRAY.format(path=function_path("authorizer"))],
        env=xray_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"X-Ray patching failed:\n{completed.stderr[-1500:]}")
    answer = json.loads(completed.stdout.strip().splitlines()[-1])
    if not answer["traced"]:
        raise RuntimeError("tracing did not switch on")
    return float(answer["seconds"])


def describe_unneeded(run: FunctionRun, baseline_modules: set[str], limit: int = 5) -> str:
    tree = importtime_tree("import app", function_path(run.name))
    items = [item for item in unneeded_imports(run, tree, baseline_modules) if item.self_us >= 500]
    if not items:
        return "nothing measurable (every subtree of 0.5 ms or more runs code on its path)"
    total = sum(item.self_us for item in items)
    parts = []
    for item in items[:limit]:
        inside = ", ".join(item.packages[:4])
        note = ", also in the baseline" if item.in_baseline else ""
        parts.append(
            f"{item.root} ({item.self_us / 1000:.0f} ms, {item.modules} module{'s' if item.modules != 1 else ''}: "
            f"{inside}; "
            f"imported by {item.imported_by}{note})"
        )
    more = f"; and {len(items) - limit} more" if len(items) > limit else ""
    return f"{total / 1000:.0f} ms in all: " + "; ".join(parts) + more


def where_the_time_goes(name: str, baseline_modules: set[str]) -> list[str]:
    """The import of ``app`` by subtree (what ``app`` imports directly) and by module (self time)."""
    tree = importtime_tree("import app", function_path(name))
    app = next((node for node in walk(tree) if node.name == "app"), None)
    if app is None:
        return []
    direct = sorted(app.children, key=lambda node: node.cumulative_us, reverse=True)[:6]
    modules = sorted(walk(app.children), key=lambda node: node.self_us, reverse=True)[:10]
    return [
        f"    {name}, import of app {app.cumulative_us / 1000:.0f} ms (this -X importtime run), by what app imports: "
        + ", ".join(f"{node.name} {node.cumulative_us / 1000:.0f} ms" for node in direct),
        f"    {name}, top modules by self time: "
        + ", ".join(
            f"{node.name} {node.self_us / 1000:.1f} ms{' (floor)' if node.name in baseline_modules else ''}"
            for node in modules
        ),
    ]


def run(options: Options) -> SectionResult:
    result = SectionResult()
    rounds = options.pick(15, 2)
    env = python_env(**function_env())
    names = function_names()
    targets: dict[str, tuple[str, list[str]]] = {"baseline": (BASELINE_CODE, [])}
    targets.update({name: ("import app", function_path(name)) for name in names})
    if not options.quick:
        for code, path in targets.values():  # bytecode caches
            timed_import(code, path, env)
    samples: dict[str, list[float]] = {name: [] for name in targets}
    shuffle = random.Random(6)
    xray: list[float] = []
    for round_number in range(rounds):
        order = list(targets)
        shuffle.shuffle(order)
        for name in order:
            code, path = targets[name]
            samples[name].append(timed_import(code, path, env))
        if round_number < options.pick(5, 1):
            xray.append(xray_once(env))
    baseline = median(samples["baseline"])
    result.rows.append(Row("2", "cold start: import boto3, jwt (the floor)", ms(baseline), "-", "-", "-", INFO))
    for name in names:
        value = median(samples[name])
        result.rows.append(
            Row(
                "2",
                f"cold start: import app ({name})",
                ms(value),
                f"floor {ms(baseline)}",
                ratio(value, baseline),
                f"<= {BUDGET:.2f}x",
                verdict(value <= BUDGET * baseline, near=value > (BUDGET - 0.05) * baseline),
            )
        )
    xray_cost = median(xray)
    result.rows.append(
        Row(
            "2",
            "X-Ray patching, once per container before the first AWS call (lazy)",
            ms(xray_cost),
            f"floor {ms(baseline)}",
            ratio(xray_cost, baseline),
            "-",
            INFO,
        )
    )
    result.details.append(
        "medians over "
        + f"{rounds} rounds; min/max: "
        + ", ".join(f"{name} {min(v) * 1000:.0f}-{max(v) * 1000:.0f} ms" for name, v in samples.items())
    )
    baseline_modules = {node.name for node in walk(importtime_tree(BASELINE_CODE, []))}
    above = [name for name in names if median(samples[name]) > baseline]
    if above:
        result.details.append(
            "Where the import time goes, for the functions above the floor ((floor): also imported by "
            "`import boto3, jwt`):"
        )
        for name in above:
            result.details.extend(where_the_time_goes(name, baseline_modules))
    runs = function_runs()
    result.details.append("Imported at cold start but not needed on the function's path (self import time):")
    for name in names:
        if name in runs:
            result.details.append(f"    {name}: {describe_unneeded(runs[name], baseline_modules)}")
        else:
            result.details.append(f"    {name}: no sample event known to the benchmark (bench/functions.py)")
    return result
