"""The local stack's lifecycle: start it, or reuse what already runs when it agrees with itself; build; reload.

Three processes make the stack: moto (the embedded AWS), the simulated Atlassian, and ``sam local start-api``
(through the log filter). ``up`` keeps each one that runs and answers, restarts the others, and restarts
start-api whenever what it was started with (the built template, the functions' environment) changed, so the
halves can never disagree. Code changes need no restart: SAM's warm containers reload changed code, and
``reload`` waits until they did.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from devstack import ports, processes
from devstack.config import (
    API_HOST,
    API_PORT,
    APP_BASE_URL,
    APP_KEY,
    BUILD_DIR,
    BUILT_TEMPLATE,
    CONTAINER_HOST,
    LOCAL_3LO,
    LOCAL_FORGE,
    LOGS,
    MOTO_PORT,
    REQUESTS_LOG,
    ROOT,
    SIM_PORT,
    SIM_URL,
    STATE,
    TENANT_CACHE_SECONDS,
    aws_env,
    docker_gateway,
)
from devstack.processes import StackError

ENV_FILE = STATE / "env.json"
API_RECORD = STATE / "start-api.json"
BUILD_LOG = LOGS / "sam-build.log"
BUILD_STAGING = STATE / "build-staging"
VENV_BIN = Path(sys.executable).parent
START_API_TIMEOUT = 600.0  # the first start builds an image per function: minutes on a loaded machine
RELOAD_TIMEOUT = 60.0
# LAZY: start-api serves within seconds and creates a function's container at its first request (SAM rebuilds a
# small image with the layer for each container it creates, a few seconds each); EAGER would create all of them
# before serving, on every restart
WARM_CONTAINERS = "LAZY"
LOG_LIMIT = 20_000_000  # bytes: a bigger log is moved aside when start-api starts


def say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


@dataclass(frozen=True)
class Service:
    name: str
    what: str
    port: int
    port_variable: str

    def host(self, gateway: str) -> str:
        return API_HOST if self.name == "start-api" else gateway


MOTO = Service("moto", "embedded AWS (moto)", MOTO_PORT, "DEVSTACK_MOTO_PORT")
SIM = Service("sim", "simulated Atlassian", SIM_PORT, "DEVSTACK_SIM_PORT")
API = Service("start-api", "sam local start-api", API_PORT, "DEVSTACK_API_PORT")
SERVICES = (MOTO, SIM, API)


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One command at a time changes the stack (make run, reload, reset, stop, the watcher)."""
    STATE.mkdir(parents=True, exist_ok=True)
    with (STATE / ".lock").open("w") as lock:
        deadline = time.monotonic() + 900
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StackError("another make run/reload/reset/stop has held the stack for 15 minutes") from None
                time.sleep(0.5)
        yield


# --------------------------------------------------------------------------------------------------------------
# what the functions get


def function_env(resources: dict[str, str]) -> dict[str, str]:
    """What every function gets locally, on top of the template (sam local --env-vars, key "Parameters")."""
    return {
        "APP_KEY": APP_KEY,
        "APP_BASE_URL": APP_BASE_URL,
        "APP_BASE_URL_PARAMETER": "",
        "ALLOWED_TENANT_HOSTS": SIM_URL,
        "INSTALL_KEYS_URL": f"{SIM_URL}/install-keys",
        "OAUTH_SERVER_URL": SIM_URL,
        # Forge: the local app's FITs verify against the simulator's key set, and its Forge tokens go to the
        # simulator's product API (the FITs' apiBaseUrl) and nowhere else
        "FORGE_APP_ID": LOCAL_FORGE.app_id,
        "FORGE_JWKS_URL": f"{SIM_URL}/.well-known/jwks.json",
        "FORGE_API_HOSTS": SIM_URL,
        # 3LO: the local integration's client, its secret in the embedded AWS's SSM (a SecureString the functions
        # read once per container), and Atlassian's 3LO side in the simulator (the consent URL at an address a
        # browser on this machine reaches too)
        "OAUTH_CLIENT_ID": LOCAL_3LO.client_id,
        "OAUTH_CLIENT_SECRET_PARAMETER": LOCAL_3LO.secret_parameter,
        "OAUTH_SCOPES": LOCAL_3LO.scopes,
        "ATLASSIAN_AUTH_URL": LOCAL_3LO.auth_url(docker_gateway()),
        "ATLASSIAN_API_URL": LOCAL_3LO.api_url(),
        "AWS_ENDPOINT_URL": f"http://{CONTAINER_HOST}:{MOTO_PORT}",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        # short, so that the scenario sees a disable or uninstall reach the warm authorizer within seconds
        "TENANT_CACHE_SECONDS": str(TENANT_CACHE_SECONDS),
        **resources,
    }


def sam_parameters() -> list[str]:
    arch = os.environ.get("LOCAL_ENV_ARCH", "x86_64")
    return ["--parameter-overrides", f"Architecture={arch} AppKey={APP_KEY}"]


def sam_command() -> str:
    sam = shutil.which("sam")
    if sam is None:
        raise StackError(
            "the SAM CLI is not on PATH: use the make targets (make run, make reload), which set it up, "
            'or run: eval "$(bash scripts/local-env.sh env)"'
        )
    return sam


def write_env_file(resources: dict[str, str]) -> None:
    text = json.dumps({"Parameters": function_env(resources)}, indent=2) + "\n"
    if not ENV_FILE.exists() or ENV_FILE.read_text() != text:
        ENV_FILE.write_text(text)


def read_env_file() -> dict[str, str]:
    try:
        parameters = json.loads(ENV_FILE.read_text())["Parameters"]
    except (OSError, ValueError, KeyError):
        return {}
    return {str(k): str(v) for k, v in parameters.items()}


# --------------------------------------------------------------------------------------------------------------
# health of what runs


def _ours_on_port(service: Service) -> int | None:
    """The pid of our running ``service`` if it (its process group) holds its port."""
    pid = processes.running(service.name)
    if pid is not None and ports.held_by_group(service.port, pid):
        return pid
    return None


def _moto_ok(gateway: str) -> bool:
    from devstack.aws import answers

    if _ours_on_port(MOTO) is None:
        return False
    problem = answers(f"http://{gateway}:{MOTO_PORT}", read_env_file())
    if problem is not None:
        say(f"the running embedded AWS does not match {ENV_FILE.name} ({problem}): restarting it")
        return False
    return True


def _sim_ok(gateway: str) -> bool:
    from devstack.keys import forge_invocation_key, forge_oauth_key, install_private_key
    from devstack.sim import fingerprint

    if _ours_on_port(SIM) is None:
        return False
    try:
        answer = requests.get(f"http://{gateway}:{SIM_PORT}/status", timeout=30)
        running = answer.json().get("fingerprint") if answer.status_code == 200 else None
    except (requests.RequestException, ValueError, AttributeError):
        return False
    for make_key in (install_private_key, forge_invocation_key, forge_oauth_key):
        make_key()  # the keys the simulator serves: part of what it must agree on
    if running != fingerprint():
        say("the running simulated Atlassian was started from other code or keys: restarting it")
        return False
    return True


def _api_ok() -> bool:
    if _ours_on_port(API) is None:
        return False
    try:
        answer = requests.get(f"{APP_BASE_URL}/atlassian-connect.json", timeout=120)
    except requests.RequestException as exc:
        say(f"the running sam local start-api does not answer ({type(exc).__name__}): restarting it")
        return False
    if answer.status_code != 200:
        say(f"the running sam local start-api answers the descriptor with {answer.status_code}: restarting it")
        return False
    return True


def check_ports(services: list[Service], gateway: str) -> None:
    busy = [reason for s in services if (reason := ports.busy_reason(s.what, s.host(gateway), s.port)) is not None]
    if busy:
        variables = " ".join(f"{s.port_variable}={s.port + 1}" for s in services)
        raise StackError(f"{'; '.join(busy)}. Stop that program, or use other ports: {variables} make run")


# --------------------------------------------------------------------------------------------------------------
# up


def start_moto(gateway: str) -> None:
    started = time.monotonic()
    processes.start(MOTO.name, [str(VENV_BIN / "moto_server"), "-H", gateway, "-p", str(MOTO_PORT)])
    processes.wait_for(lambda: processes.port_open(gateway, MOTO_PORT), "moto server", 60, MOTO.name)
    say(f"embedded AWS (moto) on http://{gateway}:{MOTO_PORT}: started in {time.monotonic() - started:.1f} s")


def start_sim(gateway: str) -> None:
    started = time.monotonic()
    command = [sys.executable, "-m", "devstack.sim", "--host", gateway, "--port", str(SIM_PORT)]
    processes.start(SIM.name, command, {"PYTHONPATH": str(ROOT)})
    processes.wait_for(lambda: processes.port_open(gateway, SIM_PORT), "Atlassian simulator", 60, SIM.name)
    say(f"simulated Atlassian on http://{gateway}:{SIM_PORT}: started in {time.monotonic() - started:.1f} s")


def up(*, with_api: bool = True) -> None:
    """Bring the stack to a state where its three parts run and agree, reusing what already does."""
    from devstack.aws import provision

    started = time.monotonic()
    STATE.mkdir(parents=True, exist_ok=True)
    gateway = docker_gateway()
    keep_moto = _moto_ok(gateway)
    keep_sim = _sim_ok(gateway)
    keep_api = keep_moto and _api_ok()  # a new embedded AWS means a new key: start-api must restart with it
    for service, keep in ((MOTO, keep_moto), (SIM, keep_sim), (API, keep_api)):
        if not keep and processes.stop(service.name):
            say(f"stopped {service.name}: it did not answer, or no longer agreed with the rest of the stack")
    starting = [MOTO] * (not keep_moto) + [SIM] * (not keep_sim) + [API] * (with_api and not keep_api)
    check_ports(starting, gateway)  # before anything starts

    if not keep_moto:
        ENV_FILE.unlink(missing_ok=True)
        start_moto(gateway)
    resources = provision(f"http://{gateway}:{MOTO_PORT}")
    write_env_file(resources)
    if not keep_sim:
        start_sim(gateway)
    if keep_moto and keep_sim:
        say("embedded AWS and simulated Atlassian: already running, reused (data kept; make reset empties it)")
    if with_api:
        build_and_serve(api_running=keep_api)
    say(f"stack ready in {time.monotonic() - started:.1f} s: API {APP_BASE_URL}")


# --------------------------------------------------------------------------------------------------------------
# build, serve, reload


def _same_file(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as left, b.open("rb") as right:
        while True:
            chunk = left.read(1 << 20)
            if chunk != right.read(1 << 20):
                return False
            if not chunk:
                return True


def sync_tree(source: Path, target: Path) -> set[str]:
    """Make ``target`` a copy of ``source``, touching only the files that differ; returns the top-level entries
    (the functions and layers of a build) in which something changed.

    SAM's warm containers watch their code directories and drop a container on any change: copying only what
    changed means that only the functions whose code changed are reloaded, not all of them after every build.
    """
    changed: set[str] = set()
    target.mkdir(parents=True, exist_ok=True)
    wanted = {path.relative_to(source) for path in source.rglob("*")}
    for relative in sorted(wanted):
        origin, copy = source / relative, target / relative
        if origin.is_dir():
            if not copy.is_dir():
                if copy.exists():
                    copy.unlink()
                copy.mkdir()
                changed.add(relative.parts[0])
        elif not copy.is_file() or not _same_file(origin, copy):
            if copy.is_dir():
                shutil.rmtree(copy)
            temporary = copy.with_name(copy.name + ".devstack-tmp")
            shutil.copy2(origin, temporary)
            os.replace(temporary, copy)
            changed.add(relative.parts[0])
    for path in sorted(target.rglob("*"), reverse=True):  # deepest first
        relative = path.relative_to(target)
        if relative not in wanted:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            changed.add(relative.parts[0])
    return changed


def sam_build() -> tuple[float, set[str]]:
    """``sam build`` with the local parameters, for the stack's own build dir; returns the seconds it took and the
    functions and layers whose built code changed.

    SAM builds into a staging dir (in .local/stack, where SAM's own files, build.toml and .aws-sam/deps, go too),
    with its cache: unchanged functions and the layer's dependencies are reused, so a rebuild needs no network.
    Only what changed is then copied into the dir start-api serves; a failed build leaves that dir as it was.
    """
    started = time.monotonic()
    LOGS.mkdir(parents=True, exist_ok=True)
    command = [
        sam_command(),
        "build",
        "--template-file",
        str(ROOT / "template.yaml"),
        "--build-dir",
        str(BUILD_STAGING),
        "--cache-dir",
        str(STATE / "build-cache"),
        "--cached",
        *sam_parameters(),
    ]
    with BUILD_LOG.open("w") as out:
        result = subprocess.run(command, cwd=STATE, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        lines = BUILD_LOG.read_text(errors="replace").splitlines()
        errors = [line for line in lines if re.search(r"error|exception|failed", line, re.IGNORECASE)] or lines
        for line in errors[-8:]:
            say(f"  {line.strip()[:200]}")
        raise StackError(
            f"sam build failed (above; all of it in {BUILD_LOG}); the stack still runs the last good build. "
            "Fix it, then run the same again"
        )
    changed = sync_tree(BUILD_STAGING, BUILD_DIR)
    return time.monotonic() - started, changed


def _fingerprint() -> str:
    """What start-api reads once when it starts: a change of any of it needs a restart."""
    digest = hashlib.sha256()
    for part in (BUILT_TEMPLATE.read_bytes(), ENV_FILE.read_bytes(), " ".join(sam_parameters()).encode()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def _route_keys() -> list[str]:
    from devstack.requestlog import routes_of
    from devstack.template import load_template

    return [f"{route.key} -> {route.function}" for route in routes_of(load_template(BUILT_TEMPLATE))]


def _api_record() -> dict[str, object]:
    try:
        record = json.loads(API_RECORD.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def start_api() -> float:
    from devstack.redact import scrub_file

    started = time.monotonic()
    log = LOGS / f"{API.name}.log"
    for path in (log, REQUESTS_LOG):
        if path.exists() and path.stat().st_size > LOG_LIMIT:
            os.replace(path, path.with_name(path.name + ".1"))  # the one before is dropped
        scrub_file(path)  # written before the filter existed, or by hand: no token stays in a local log
    offset = log.stat().st_size if log.exists() else 0
    processes.start_filtered(
        API.name,
        [
            sam_command(),
            "local",
            "start-api",
            "--template",
            str(BUILT_TEMPLATE),
            "--host",
            API_HOST,
            "--port",
            str(API_PORT),
            "--warm-containers",
            WARM_CONTAINERS,
            "--skip-pull-image",
            "--env-vars",
            str(ENV_FILE),
            "--add-host",
            f"{CONTAINER_HOST}:host-gateway",
            *sam_parameters(),
        ],
        aws_env(),
        cwd=STATE,
        requests=True,
    )
    API_RECORD.write_text(
        json.dumps({"fingerprint": _fingerprint(), "routes": _route_keys(), "log_offset": offset}, indent=2)
    )
    pid = processes.running(API.name)
    processes.wait_for(
        lambda: pid is not None and ports.held_by_group(API_PORT, pid),
        "sam local start-api",
        START_API_TIMEOUT,
        API.name,
    )
    return time.monotonic() - started


_CHANGED = re.compile(r"Lambda Function '([^']+)' .* has been changed")


def _warm_functions(since: int, until: int) -> set[str]:
    """Functions whose warm container watched its code at log offset ``until``, read from start-api's log from
    ``since`` (where it started): each SAM mounted, and has not dropped since."""
    warm: set[str] = set()
    log = LOGS / f"{API.name}.log"
    if not log.exists():
        return warm
    with log.open("rb") as file:
        file.seek(since)
        for raw in file.read(max(0, until - since)).splitlines():
            line = raw.decode(errors="replace")
            if (mounted := re.match(r"Mounting (\S+) as /var/task", line)) is not None:
                warm.add(Path(mounted[1]).name)
            elif (changed := _CHANGED.match(line)) is not None:
                warm.discard(changed[1].rsplit("/", 1)[-1])
    return warm


def _wait_for_code_reload(functions: set[str], since: int) -> bool:
    """True once SAM has dropped the warm container of each of ``functions`` (after the log offset ``since``)."""
    log = LOGS / f"{API.name}.log"
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while True:
        seen: set[str] = set()
        with log.open("rb") as file:
            file.seek(since)
            for raw in file:
                if (changed := _CHANGED.match(raw.decode(errors="replace"))) is not None:
                    seen.add(changed[1].rsplit("/", 1)[-1])
        if functions <= seen:
            return True
        if time.monotonic() > deadline or processes.running(API.name) is None:
            return False
        time.sleep(0.2)


def _layer_users() -> dict[str, set[str]]:
    """Which functions use each local layer (a layer's change reloads each of them)."""
    from devstack.template import load_template, resources_of_type

    template = load_template(BUILT_TEMPLATE)
    layers = set(resources_of_type(template, "AWS::Serverless::LayerVersion"))
    global_layers = template.get("Globals", {}).get("Function", {}).get("Layers", [])
    users: dict[str, set[str]] = {layer: set() for layer in layers}
    for name, function in resources_of_type(template, "AWS::Serverless::Function").items():
        for ref in [*global_layers, *function.get("Properties", {}).get("Layers", [])]:
            if isinstance(ref, dict) and ref.get("Ref") in users:
                users[ref["Ref"]].add(name)
    return users


def build_and_serve(*, api_running: bool) -> None:
    """Build; then restart start-api if what it serves changed, else let SAM reload the changed code."""
    record = _api_record()
    log = LOGS / f"{API.name}.log"
    offset = log.stat().st_size if log.exists() else 0
    build_seconds, changed = sam_build()
    for layer, users in _layer_users().items():
        if layer in changed:
            changed |= users
    why = "not running"
    if api_running and record.get("fingerprint") != _fingerprint():
        why = _restart_reason(record)
    elif api_running:
        since = record.get("log_offset")
        warm = _warm_functions(since if isinstance(since, int) else 0, offset)
        functions = changed & warm
        if not functions:
            note = "no code changed" if not changed else "changed functions load the new code on their next request"
            say(f"built in {build_seconds:.1f} s; start-api kept running ({note})")
            return
        if _wait_for_code_reload(functions, offset):
            say(
                f"built in {build_seconds:.1f} s; code reloaded without a restart: {', '.join(sorted(functions))} "
                "(each loads the new code on its next request)"
            )
            return
        why = f"SAM did not reload {', '.join(sorted(functions))} within {RELOAD_TIMEOUT:.0f} s"
    if processes.stop(API.name):
        say(f"stopped sam local start-api ({why})")
    check_ports([API], docker_gateway())
    say(f"built in {build_seconds:.1f} s; starting sam local start-api on {APP_BASE_URL} ({why}) ...")
    say(f"sam local start-api: serving in {start_api():.1f} s")


def _restart_reason(record: dict[str, object]) -> str:
    old = record.get("routes")
    new = _route_keys()
    if isinstance(old, list) and old != new:
        added = [route for route in new if route not in old]
        removed = [route for route in old if route not in new]
        changes = [f"+{route}" for route in added] + [f"-{route}" for route in removed]
        return "routes changed: " + ", ".join(str(change) for change in changes)
    return "the template or the functions' environment changed"


def reload() -> None:
    """What ``make reload`` does: the stack must be running; build, and restart start-api only if needed."""
    started = time.monotonic()
    gateway = docker_gateway()
    missing = [s.name for s in SERVICES if _ours_on_port(s) is None]
    if missing:
        raise StackError(f"the local stack is not running ({', '.join(missing)} not up): start it with make run")
    if not _moto_ok(gateway):
        raise StackError("the embedded AWS no longer matches the stack: make run restarts what is needed")
    build_and_serve(api_running=True)
    say(f"reload done in {time.monotonic() - started:.1f} s")


# --------------------------------------------------------------------------------------------------------------
# down, reset, status


def down() -> None:
    for service in reversed(SERVICES):
        if processes.stop(service.name):
            say(f"stopped {service.name}")
    API_RECORD.unlink(missing_ok=True)


def reset() -> None:
    """Empty the tables (same names, same key: the running functions keep working)."""
    from devstack.aws import provision

    gateway = docker_gateway()
    if not _moto_ok(gateway):
        raise StackError("the local stack is not running: make run starts it (with empty tables)")
    resources = provision(f"http://{gateway}:{MOTO_PORT}", empty_tables=True)
    if read_env_file() != function_env(resources):
        raise StackError("the tables were recreated under other names than the running functions use: run make run")
    say("local data reset: every table emptied (the KMS key and the running functions are kept)")


def status() -> int:
    code = 0
    for service in SERVICES:
        pid = processes.running(service.name)
        if pid is None:
            state = "not running"
        elif ports.held_by_group(service.port, pid):
            state = f"running, pid {pid}, port {service.port}"
        else:
            state = f"pid {pid} runs but does not hold port {service.port}"
        say(f"{service.name:<10} {state}")
        code |= pid is None
    return code
