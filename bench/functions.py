"""Every function in a fresh interpreter on its sample event: the shared harness of sections 2 and 6.

The AWS side is a moto server (``ThreadedMotoServer`` on loopback) provisioned from template.yaml by
``devstack.aws.provision`` (the KMS key and every table); Atlassian is devstack's simulator (install-key CDN,
OAuth server, product API) on loopback. Events are ``events/*.json`` as ``devstack.events.build_events`` signs them
for now, for the local test tenant; the only changes point them at the loopback simulator: the installed callback's
``baseUrl`` (so that the context API reaches the tenant's product; the body is not covered by the install token)
and the Forge FITs' ``apiBaseUrl`` (so that the Forge function reads the issue and the user from it).
Each function runs in its own process (bench/child_run.py), so its peak memory is its own.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.common import BENCH, FUNCTIONS, LAYER, PYTHON, python_env

BASELINE_CODE = "import boto3, jwt"
# the events each function handles, in the order a real stack would see them (the lifecycle installs the tenant)
FUNCTION_EVENTS: dict[str, tuple[str, ...]] = {
    "lifecycle": ("lifecycle-installed.json", "lifecycle-enabled.json"),
    "descriptor": ("descriptor.json",),
    "authorizer": (
        "authorizer-page.json",
        "authorizer-webhook.json",
        "authorizer-context-api.json",
        "authorizer-enabled.json",
        "authorizer-forge-hello.json",
        "forged:authorizer-page.json",  # a refusal too, so that the denial path counts as used
    ),
    "page": ("page.json",),
    # a resolver call as the user, an issue created (read back as the app) and Forge's retry of that delivery
    # (answered from its record), the hourly trigger (its system token kept)
    "forge": ("forge-hello.json", "forge-events.json", "forge-events.json", "forge-scheduled.json"),
    # the consent's start (302 to Atlassian, a state stored) and a callback with a state never issued (400 page)
    "oauth": ("oauth-authorize.json", "oauth-callback.json"),
    # the sample integration for a user who never granted (403 grant_missing), and that user's revoke (nothing to)
    "integration": ("integration-myself.json", "integration-grant.json"),
    "webhook": ("webhook.json",),
    "context_api": ("context-api.json",),
    "token_refresher": ("token-refresher.json",),
}
EXPECTED = {
    "lifecycle": [204, 204],
    "descriptor": [200],
    "authorizer": ["allowed", "allowed", "allowed", "allowed", "allowed", "denied"],
    "forge": [200, 200, 200, 200],
    "oauth": [302, 400],
    "integration": [403, 200],
    "page": [200],
    "webhook": [200],
    "context_api": [200],
}


def function_names() -> list[str]:
    return sorted(path.parent.name for path in FUNCTIONS.glob("*/app.py"))


# --- the world the functions run against ---------------------------------------------------------------------------


@dataclass
class LocalWorld:
    endpoint: str
    sim_url: str
    resources: dict[str, str]
    events: dict[str, dict[str, Any]]

    def env(self) -> dict[str, str]:
        from devstack.config import ACCOUNTS_PATH, APP_BASE_URL, APP_KEY, LOCAL_3LO, LOCAL_FORGE  # noqa: PLC0415

        sim_port = self.sim_url.rsplit(":", 1)[1]

        return python_env(
            APP_KEY=APP_KEY,
            APP_BASE_URL=APP_BASE_URL,
            APP_BASE_URL_PARAMETER="",
            ALLOWED_TENANT_HOSTS=self.sim_url,  # http://127.0.0.1:<port>: a loopback pattern names its port
            INSTALL_KEYS_URL=f"{self.sim_url}/install-keys",
            OAUTH_SERVER_URL=self.sim_url,
            AWS_ENDPOINT_URL=self.endpoint,
            JWT_LEEWAY_SECONDS="30",
            TENANT_CACHE_SECONDS="60",
            POWERTOOLS_TRACE_DISABLED="true",
            POWERTOOLS_METRICS_NAMESPACE="ConnectLambda",
            POWERTOOLS_LOG_LEVEL="INFO",
            FORGE_APP_ID=LOCAL_FORGE.app_id,
            FORGE_JWKS_URL=f"{self.sim_url}/.well-known/jwks.json",
            FORGE_API_HOSTS=self.sim_url,
            OAUTH_CLIENT_ID=LOCAL_3LO.client_id,
            OAUTH_CLIENT_SECRET_PARAMETER=LOCAL_3LO.secret_parameter,
            OAUTH_SCOPES=LOCAL_3LO.scopes,
            ATLASSIAN_AUTH_URL=self.sim_url + ACCOUNTS_PATH,
            # by name: the product client sends 3LO tokens to no IP literal
            ATLASSIAN_API_URL=f"http://localhost:{sim_port}{ACCOUNTS_PATH}",
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
            **self.resources,
        )

    def make_tokens_due(self) -> None:
        """Every cached user token expires in five minutes and was just used: hot and due for the refresher."""
        import boto3  # noqa: PLC0415
        from connect_lambda.stores.user_tokens import due_bucket  # noqa: PLC0415

        dynamodb = boto3.client("dynamodb", endpoint_url=self.endpoint, region_name="us-east-1")
        table = self.resources["TOKEN_CACHE_TABLE"]
        now = int(time.time())
        for item in dynamodb.scan(TableName=table)["Items"]:
            dynamodb.update_item(
                TableName=table,
                Key={"tokenKey": item["tokenKey"]},
                UpdateExpression="SET expiresAt = :expires, dueBucket = :bucket, lastUsedAt = :now",
                ExpressionAttributeValues={
                    ":expires": {"N": str(now + 300)},
                    ":bucket": {"N": str(due_bucket(now + 300))},
                    ":now": {"N": str(now)},
                },
            )


def _forged(event: dict[str, Any]) -> dict[str, Any]:
    """The same request with the token's signature altered."""
    forged = copy.deepcopy(event)
    query = forged["rawQueryString"]
    head, _, token = query.rpartition("jwt=")
    signature_start = token.rindex(".") + 1
    altered = token[:signature_start] + ("A" if token[signature_start] != "A" else "B") + token[signature_start + 1 :]
    forged["rawQueryString"] = f"{head}jwt={altered}"
    forged["queryStringParameters"]["jwt"] = altered
    return forged


_SCANS = [0]


@contextlib.contextmanager
def counting_scans() -> Iterator[None]:
    """Count the Scan requests moto's DynamoDB answers (the moto server runs in this process)."""
    from moto.dynamodb.models import DynamoDBBackend  # noqa: PLC0415

    original = DynamoDBBackend.scan

    def scan(self: Any, *args: Any, **kwargs: Any) -> Any:
        _SCANS[0] += 1
        return original(self, *args, **kwargs)

    DynamoDBBackend.scan = scan  # type: ignore[method-assign]
    try:
        yield
    finally:
        DynamoDBBackend.scan = original  # type: ignore[method-assign]


@contextlib.contextmanager
def local_world() -> Iterator[LocalWorld]:
    from dataclasses import dataclass as _dataclass  # noqa: PLC0415

    from connect_lambda.testing.aws import atomic_item_writes, aws_environment  # noqa: PLC0415
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    from devstack.aws import provision  # noqa: PLC0415
    from devstack.config import LOCAL_FORGE, LOCAL_TENANT, LocalTenant  # noqa: PLC0415
    from devstack.events import build_events  # noqa: PLC0415
    from devstack.sim import Simulator, make_handler  # noqa: PLC0415

    @_dataclass(frozen=True)
    class LoopbackTenant(LocalTenant):
        url: str = ""

        @property
        def base_url(self) -> str:
            return self.url

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
    with aws_environment(), atomic_item_writes(), counting_scans():
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        sim = Simulator((), oauth_audience="")
        server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(sim))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            host, port = moto.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            sim_url = f"http://127.0.0.1:{server.server_address[1]}"
            tenant = LoopbackTenant(
                **{k: getattr(LOCAL_TENANT, k) for k in LOCAL_TENANT.__dataclass_fields__}, url=sim_url
            )
            sim.tenants = {tenant.client_key: tenant}
            sim.by_oauth_client = {tenant.oauth_client_id: tenant}
            sim.oauth_audience = sim_url
            # the Forge events as the local stack's, their installation's product API the loopback simulator
            events = build_events(forge_api_base_url=f"{sim_url}/ex/jira/{LOCAL_FORGE.cloud_id}")
            for name, event in events.items():
                if name.startswith("lifecycle-"):  # the tenant's site is the simulator
                    body = json.loads(event["body"])
                    body["baseUrl"] = body["displayUrl"] = sim_url
                    event["body"] = json.dumps(body)
                    event["headers"]["content-length"] = str(len(event["body"].encode()))
            for name in ("enabled", "disabled"):  # the integration receives the request's headers, token included
                authorization = events[f"authorizer-{name}.json"]["headers"]["authorization"]
                events[f"lifecycle-{name}.json"]["headers"].setdefault("authorization", authorization)
            events["forged:authorizer-page.json"] = _forged(events["authorizer-page.json"])
            yield LocalWorld(endpoint=endpoint, sim_url=sim_url, resources=provision(endpoint), events=events)
        finally:
            server.shutdown()
            server.server_close()
            moto.stop()


# --- one run of each function ----------------------------------------------------------------------------------------


@dataclass
class FunctionRun:
    name: str
    answers: list[Any]
    peak_kb: int
    cold: dict[str, bool]  # module -> has Python source
    edges: dict[str, list[str]]
    used: set[str]
    import_seconds: float
    handler_seconds: float
    scans: int = 0
    """DynamoDB Scan requests the moto server received while this function ran (none is the budget)."""

    @property
    def ok(self) -> bool:
        expected = EXPECTED.get(self.name)
        if expected is None:  # the refresher answers a summary: it refreshed the token the context API cached
            return all(isinstance(answer, dict) and answer.get("refreshed") == 1 for answer in self.answers)
        return self.answers == expected

    @cached_property
    def needed(self) -> set[str]:
        """Modules whose code runs while handling the events, what they need at import, and their packages."""
        needed = set(self.used) | {"app"}
        pending = list(needed)
        while pending:
            module = pending.pop()
            more = set(self.edges.get(module, ()))
            parts = module.split(".")
            more.update(".".join(parts[:i]) for i in range(1, len(parts)))
            for name in more - needed:
                needed.add(name)
                pending.append(name)
        return needed


def run_function(world: LocalWorld, name: str, scratch: Path) -> FunctionRun:
    spec = {
        "function_dir": str(FUNCTIONS / name),
        "layer": str(LAYER),
        "events": [world.events[event] for event in FUNCTION_EVENTS[name]],
    }
    spec_file, out_file = scratch / f"{name}-spec.json", scratch / f"{name}-out.json"
    spec_file.write_text(json.dumps(spec))
    env = world.env()
    env["POWERTOOLS_SERVICE_NAME"] = f"bench-{name}"
    scans_before = _SCANS[0]
    completed = subprocess.run(
        [PYTHON, str(BENCH / "child_run.py"), str(spec_file), str(out_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{name} failed in its child process:\n{completed.stderr[-2000:]}")
    data = json.loads(out_file.read_text())
    return FunctionRun(
        name=name,
        answers=data["answers"],
        peak_kb=int(data["peak_kb"]),
        cold=data["cold"],
        edges=data["edges"],
        used=set(data["used"]),
        import_seconds=float(data["import_seconds"]),
        handler_seconds=float(data["handler_seconds"]),
        scans=_SCANS[0] - scans_before,
    )


def baseline_peak_kb() -> int:
    code = f"{BASELINE_CODE}\nimport sys\nsys.path.insert(0, {str(BENCH)!r})\n"
    code += "from child_run import peak_kb\nprint(peak_kb())"
    completed = subprocess.run(
        [PYTHON, "-c", code], env=python_env(), capture_output=True, text=True, timeout=120, check=True
    )
    return int(completed.stdout.strip())


_RUNS: dict[str, FunctionRun] = {}
_RUNS_LOCK = threading.Lock()


def function_runs() -> dict[str, FunctionRun]:
    """Each function once, in a fresh interpreter, against one local world (computed once per bench command)."""
    with _RUNS_LOCK:
        if not _RUNS:
            present = set(function_names())
            with local_world() as world, tempfile.TemporaryDirectory() as scratch:
                for name in FUNCTION_EVENTS:
                    if name not in present:
                        continue
                    if name == "token_refresher":
                        world.make_tokens_due()  # so that the run refreshes one (the context API cached it)
                    _RUNS[name] = run_function(world, name, Path(scratch))
        return dict(_RUNS)


# --- -X importtime --------------------------------------------------------------------------------------------------

_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)$")


@dataclass
class ImportNode:
    name: str
    self_us: int
    cumulative_us: int
    children: list[ImportNode] = field(default_factory=list)
    parent: ImportNode | None = None


def parse_importtime(stderr: str) -> list[ImportNode]:
    """The import tree ``-X importtime`` prints (children before their parent, nested by indentation)."""
    pending: dict[int, list[ImportNode]] = {}
    roots: list[ImportNode] = []
    for line in stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if not match:
            continue
        level = (len(match.group(3)) - 1) // 2
        node = ImportNode(match.group(4), int(match.group(1)), int(match.group(2)))
        node.children = pending.pop(level + 1, [])
        for child in node.children:
            child.parent = node
        if level == 0:
            roots.append(node)
        else:
            pending.setdefault(level, []).append(node)
    return roots


def walk(nodes: list[ImportNode]) -> Iterator[ImportNode]:
    for node in nodes:
        yield node
        yield from walk(node.children)


def importtime_tree(code: str, path: list[str]) -> list[ImportNode]:
    prefix = f"import sys; sys.path[:0] = {path!r}; " if path else ""
    completed = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", prefix + code],
        env=python_env(POWERTOOLS_TRACE_DISABLED="true"),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return parse_importtime(completed.stderr)


def function_path(name: str) -> list[str]:
    return [str(FUNCTIONS / name), str(LAYER)]


def _packages(members: list[ImportNode]) -> list[str]:
    """The top-level packages in a subtree, costliest first."""
    cost: dict[str, int] = {}
    for member in members:
        top = member.name.split(".", 1)[0]
        cost[top] = cost.get(top, 0) + member.self_us
    return sorted(cost, key=lambda name: cost[name], reverse=True)


OWN_PACKAGES = ("app", "connect_lambda", "connect_apigw")


def own(name: str, function: str) -> bool:
    """Code of this project: the function's own modules and the layer's packages (whose imports we choose)."""
    top = name.split(".", 1)[0]
    return top in OWN_PACKAGES or (FUNCTIONS / function / f"{top}.py").is_file()


@dataclass
class Unneeded:
    root: str
    imported_by: str
    modules: int
    self_us: int
    in_baseline: bool
    packages: list[str]


def unneeded_imports(run: FunctionRun, tree: list[ImportNode], baseline: set[str]) -> list[Unneeded]:
    """What the function's cold start imports and never uses: subtrees of the import tree, by their cost.

    A module is needed when its code runs while the events are handled, or while a needed module is imported,
    or when it is a package of a needed module. What a needed third-party module imports is needed too (we cannot
    change its imports); what our own modules import is judged on its own, except the standard library (mostly C
    functions, which a profiler does not see run). So each subtree reported is an import in this project's code
    (or below one) whose Python modules run nothing on the function's path: a candidate for a lazy import. Modules
    without Python source are judged by their importer. Data-only modules (constants, a route table) show up too,
    at their small cost.
    """
    app = next((node for node in walk(tree) if node.name == "app"), None)
    if app is None:
        return []

    def needed(node: ImportNode, importer: ImportNode, importer_needed: bool) -> bool:
        if node.name in run.needed or not run.cold.get(node.name, False):
            return True
        if own(importer.name, run.name):
            # the standard library's functions are mostly C, which a profiler does not see running
            return node.name.split(".", 1)[0] in sys.stdlib_module_names
        return importer_needed

    def unneeded_members(node: ImportNode) -> Iterator[ImportNode]:
        yield node
        for child in node.children:
            if child.name not in run.needed:
                yield from unneeded_members(child)

    found: list[Unneeded] = []

    def visit(node: ImportNode, node_needed: bool) -> None:
        for child in node.children:
            if needed(child, node, node_needed):
                visit(child, True)
                continue
            members = list(unneeded_members(child))
            found.append(
                Unneeded(
                    root=child.name,
                    imported_by=node.name,
                    modules=len(members),
                    self_us=sum(member.self_us for member in members),
                    in_baseline=child.name in baseline,
                    packages=_packages(members),
                )
            )

    visit(app, True)
    return sorted(found, key=lambda item: item.self_us, reverse=True)
