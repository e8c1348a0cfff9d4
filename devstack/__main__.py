"""``python -m devstack up|scenario|down|status|resign-events|env-file`` (see README.md, "Local stack")."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from devstack import processes
from devstack.config import (
    API_PORT,
    APP_BASE_URL,
    APP_KEY,
    CONTAINER_HOST,
    LOGS,
    MOTO_PORT,
    ROOT,
    SIM_PORT,
    STATE,
    TENANT_CACHE_SECONDS,
    aws_env,
    docker_gateway,
)

ENV_FILE = STATE / "env.json"
VENV_BIN = Path(sys.executable).parent


def say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


class Timer:
    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> Timer:
        self.started = time.monotonic()
        say(f"{self.what} ...")
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            say(f"{self.what}: done in {time.monotonic() - self.started:.1f} s")


def function_env(resources: dict[str, str]) -> dict[str, str]:
    """What every function gets locally, on top of the template (sam local --env-vars, key "Parameters")."""
    return {
        "APP_KEY": APP_KEY,
        "APP_BASE_URL": APP_BASE_URL,
        "APP_BASE_URL_PARAMETER": "",
        "ALLOWED_TENANT_HOSTS": f"http://{CONTAINER_HOST}:{SIM_PORT}",
        "INSTALL_KEYS_URL": f"http://{CONTAINER_HOST}:{SIM_PORT}/install-keys",
        "OAUTH_SERVER_URL": f"http://{CONTAINER_HOST}:{SIM_PORT}",
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
        raise SystemExit('sam is not on PATH: run `eval "$(bash scripts/local-env.sh env)"` (make run does this)')
    return sam


def start_aws(gateway: str) -> dict[str, str]:
    from devstack.aws import provision

    endpoint = f"http://{gateway}:{MOTO_PORT}"
    if processes.running("moto") is None:
        with Timer(f"embedded AWS (moto server) on {endpoint}"):
            processes.start("moto", [str(VENV_BIN / "moto_server"), "-H", gateway, "-p", str(MOTO_PORT)])
            processes.wait_for(lambda: processes.port_open(gateway, MOTO_PORT), "moto server", 30, "moto")
    with Timer("KMS key and tables from template.yaml"):
        return provision(endpoint)


def start_sim(gateway: str) -> None:
    if processes.running("sim") is None:
        with Timer(f"simulated Atlassian on http://{gateway}:{SIM_PORT}"):
            processes.start("sim", [sys.executable, "-m", "devstack.sim", "--host", gateway, "--port", str(SIM_PORT)])
            processes.wait_for(lambda: processes.port_open(gateway, SIM_PORT), "Atlassian simulator", 30, "sim")


def sam_build() -> None:
    with Timer("sam build"):
        log = LOGS / "sam-build.log"
        with log.open("wb") as out:
            result = subprocess.run(
                [sam_command(), "build", *sam_parameters()], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False
            )
        if result.returncode != 0:
            print(log.read_text(errors="replace")[-3000:])
            raise SystemExit("sam build failed (log above): fix the template or the code, then run `make run` again")


def start_api() -> None:
    if processes.running("start-api") is not None:
        say(f"sam local start-api already running on {APP_BASE_URL}")
        return
    with Timer(f"sam local start-api on {APP_BASE_URL} (warm containers)"):
        processes.start(
            "start-api",
            [
                sam_command(),
                "local",
                "start-api",
                "--host",
                "127.0.0.1",
                "--port",
                str(API_PORT),
                "--warm-containers",
                "EAGER",
                "--skip-pull-image",
                "--env-vars",
                str(ENV_FILE),
                "--add-host",
                f"{CONTAINER_HOST}:host-gateway",
                *sam_parameters(),
            ],
            env=aws_env(),
        )
        processes.wait_for(lambda: processes.port_open("127.0.0.1", API_PORT), "sam local start-api", 240, "start-api")


def write_env_file(resources: dict[str, str]) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    ENV_FILE.write_text(json.dumps({"Parameters": function_env(resources)}, indent=2))


def up(*, with_api: bool = True) -> None:
    started = time.monotonic()
    STATE.mkdir(parents=True, exist_ok=True)
    gateway = docker_gateway()
    resources = start_aws(gateway)
    start_sim(gateway)
    write_env_file(resources)
    if with_api:
        sam_build()
        start_api()
    say(f"stack up in {time.monotonic() - started:.1f} s: API {APP_BASE_URL}")
    say(f"descriptor {APP_BASE_URL}/atlassian-connect.json; logs in {LOGS}")


def down() -> None:
    for name in ("start-api", "sim", "moto"):
        if processes.stop(name):
            say(f"stopped {name}")


def status() -> int:
    code = 0
    for name in ("moto", "sim", "start-api"):
        pid = processes.running(name)
        say(f"{name:<10} {'running, pid ' + str(pid) if pid else 'not running'}")
        code |= pid is None
    return code


def main() -> int:
    try:
        return run_command()
    except RuntimeError as exc:
        say(f"FAILED: {exc}")
        say(f"the logs are in {LOGS}; `make stop` stops what was started, then `make run` tries again")
        return 1


def run_command() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start moto, the simulated Atlassian, sam build and sam local start-api")
    sub.add_parser("aws", help="start only moto and the simulator (what `sam local invoke` with events/ needs)")
    play = sub.add_parser("scenario", help="play the Connect protocol against the running stack")
    play.add_argument("--keep-tenant", action="store_true", help="reinstall the local tenant afterwards")
    sub.add_parser("down", help="stop everything `up` started, by pid")
    sub.add_parser("status", help="what is running")
    resign = sub.add_parser("resign-events", help="rewrite events/*.json for now, signed for the local test tenant")
    resign.add_argument("--out", type=Path, default=None, help="write them here instead of events/")
    args = parser.parse_args()
    if args.command == "up":
        up()
    elif args.command == "aws":
        up(with_api=False)
    elif args.command == "scenario":
        from devstack.scenario import play as play_scenario
        from devstack.scenario import reinstall

        ok = play_scenario()
        if args.keep_tenant and ok:
            say("reinstalling the local test tenant so that you can try things" if reinstall() else "reinstall failed")
        return 0 if ok else 1
    elif args.command == "down":
        down()
    elif args.command == "status":
        return status()
    elif args.command == "resign-events":
        from devstack.events import EVENTS, write_events

        for path in write_events(args.out or EVENTS):
            say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
