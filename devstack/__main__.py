"""``python -m devstack <command>``: the local stack (README.md, "The local loop"; the make targets call these)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from devstack import stack
from devstack.config import APP_BASE_URL, LOGS
from devstack.processes import StackError
from devstack.stack import say


def run(*, once: bool) -> int:
    """``make run``: the stack up (reusing what runs), the scenario, then the local test tenant ready to use."""
    from devstack.scenario import play, setup_tenant

    started = time.monotonic()
    try:
        with stack.locked():
            stack.up()
    except StackError:
        if once:
            with stack.locked():
                stack.down()
        raise
    played = play()
    if once:
        with stack.locked():
            stack.down()
        say(f"ONCE=1: the scenario {'passed' if played else 'FAILED'}; everything it started is stopped")
        return 0 if played else 1
    ready = setup_tenant()
    seconds = time.monotonic() - started
    if played and ready:
        say(f"ready in {seconds:.0f} s: API {APP_BASE_URL}, the local test tenant installed and answering")
        say("next: make call GET /pages/hello | make logs | make reload (after an edit) | make stop")
        return 0
    failed = " and ".join(
        what for what, ok in (("the scenario", played), ("the local test tenant's setup", ready)) if not ok
    )
    say(f"FAILED: {failed} (each failed step says why above); the stack is left running for you to look: make logs")
    return 1


def main() -> int:
    try:
        return run_command()
    except StackError as exc:
        say(f"FAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `make logs | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def parser() -> argparse.ArgumentParser:
    from devstack.call import add_arguments

    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    once = sub.add_parser("run", help="make run: the stack (reused if it runs), the scenario, the test tenant ready")
    once.add_argument("--once", action="store_true", help="stop everything after the scenario")
    sub.add_parser("up", help="start or reuse moto, the simulated Atlassian, sam build, sam local start-api")
    sub.add_parser("aws", help="start only moto and the simulator (what `sam local invoke` with events/ needs)")
    play = sub.add_parser("scenario", help="play the Connect protocol against the running stack")
    play.add_argument("--keep-tenant", action="store_true", help="then leave the local test tenant installed")
    sub.add_parser("tenant", help="install the local test tenant and wait until it answers")
    sub.add_parser("reload", help="build again; restart start-api only if its routes or settings changed")
    sub.add_parser("reset", help="empty the local tables, then install the local test tenant again")
    sub.add_parser("down", help="stop everything `up` started, by pid")
    sub.add_parser("status", help="what is running")
    logs = sub.add_parser("logs", help="one line per request the stack answered, followed")
    logs.add_argument("--no-follow", action="store_true", help="print what is there and exit")
    logs.add_argument("--raw", action="store_true", help="sam local's own output (redacted) instead")
    logs.add_argument("-n", "--lines", type=int, default=20, help="how many past lines to show first")
    add_arguments(sub.add_parser("call", help="sign and send a request to the running stack as the local test tenant"))
    sub.add_parser("watch", help="reload whenever a function, the library, the template or the app changes")
    invoke = sub.add_parser("invoke", help="sam local invoke a function of the local build with an event")
    invoke.add_argument("function")
    invoke.add_argument("event", type=Path)
    resign = sub.add_parser("resign-events", help="rewrite events/*.json for now, signed for the local test tenant")
    resign.add_argument("--out", type=Path, default=None, help="write them here instead of events/")
    return parser


def _locked(action: Callable[[], object]) -> int:
    with stack.locked():
        action()
    return 0


def _scenario(args: argparse.Namespace) -> int:
    from devstack.scenario import play, setup_tenant

    return 0 if play() and (not args.keep_tenant or setup_tenant()) else 1


def _tenant(args: argparse.Namespace) -> int:
    from devstack.scenario import setup_tenant

    return 0 if setup_tenant() else 1


def _reset(args: argparse.Namespace) -> int:
    _locked(stack.reset)
    return _tenant(args)


def _logs(args: argparse.Namespace) -> int:
    from devstack.logs import show

    path = LOGS / ("start-api.log" if args.raw else "requests.log")
    return show(path, follow=not args.no_follow, lines=args.lines)


def _call(args: argparse.Namespace) -> int:
    from devstack.call import call

    return call(args)


def _watch(args: argparse.Namespace) -> int:
    from devstack.watch import watch

    return watch()


def _invoke(args: argparse.Namespace) -> int:
    from devstack.invoke import invoke

    return invoke(args.function, args.event)


def _resign(args: argparse.Namespace) -> int:
    from devstack.events import EVENTS, write_events

    for path in write_events(args.out or EVENTS):
        say(f"wrote {path}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": lambda args: run(once=args.once),
    "up": lambda args: _locked(stack.up),
    "aws": lambda args: _locked(lambda: stack.up(with_api=False)),
    "scenario": _scenario,
    "tenant": _tenant,
    "reload": lambda args: _locked(stack.reload),
    "reset": _reset,
    "down": lambda args: _locked(stack.down),
    "status": lambda args: stack.status(),
    "logs": _logs,
    "call": _call,
    "watch": _watch,
    "invoke": _invoke,
    "resign-events": _resign,
}


def run_command() -> int:
    args = parser().parse_args()
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
