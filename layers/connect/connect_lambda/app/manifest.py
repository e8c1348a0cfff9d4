"""The Forge ``manifest.yml`` of a deployment, from the same declaration as the Connect descriptor.

Connect-on-Forge (FORGE.md 3.3, 6, 7): ``app.connect.key`` is the Connect app key and ``app.connect.remote`` names
the one remote that serves both the Connect modules (kept under ``connectModules``, with the lifecycle callbacks so
that ``installed`` keeps arriving with its ``installationId``) and the Forge Remote endpoints. Each Forge route of
the declaration becomes an ``endpoint`` on that remote, with the ``auth`` tokens it asked for; event and scheduled
routes become ``trigger`` and ``scheduledTrigger`` modules on their endpoints. The Connect scopes are listed in
their Forge spelling (``read:connect-jira``...), the token scopes the endpoints need are added, and the
``connectToForgeMigration`` module says where the app stands on the end of Connect. ``operations: [compute]`` is
declared because ``invokeRemote`` requires it; the remote keeps app data, so ``storage.inScopeEUD`` is true.

Rendered as YAML by hand (a small, fixed structure of strings, lists and maps) rather than with a YAML library the
layer does not otherwise need.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from typing import Any

from connect_lambda.app.declaration import FORGE_ENDPOINT, FORGE_SCHEDULED, FORGE_TRIGGER, App
from connect_lambda.errors import ConfigurationError
from connect_lambda.protocol.descriptor import LIFECYCLE_PATHS
from connect_lambda.settings import Settings

REMOTE_KEY = "connect"
_PLAIN = re.compile(r"[A-Za-z0-9_./:@-]+")


def _connect_scope(scope: str, product: str) -> str:
    return f"{scope.lower().replace('_', '-')}:connect-{product}"


def manifest(app: App, settings: Settings, *, base_url: str | None = None) -> dict[str, Any]:
    """The manifest as data. ``base_url`` defaults to the deployment's (the remote's and the Connect modules')."""
    if not settings.forge_app_id:
        raise ConfigurationError("FORGE_APP_ID is needed to render a Forge manifest")
    remote_url = (base_url or settings.app_base_url).rstrip("/")
    endpoints: list[dict[str, Any]] = []
    modules: dict[str, list[dict[str, Any]]] = {}
    user_token = system_token = False
    for route in app.routes:
        if route.module_type not in (FORGE_ENDPOINT, FORGE_TRIGGER, FORGE_SCHEDULED):
            continue
        auth = route.module["auth"]
        system_token |= bool(auth["appSystemToken"]["enabled"])
        user_token |= bool(auth["appUserToken"]["enabled"])
        endpoints.append({"key": route.name, "remote": REMOTE_KEY, "route": {"path": route.path}, "auth": auth})
        if route.module_type == FORGE_TRIGGER:
            modules.setdefault("trigger", []).append(
                {"key": route.name, "endpoint": route.name, "events": list(route.module["events"])}
            )
        elif route.module_type == FORGE_SCHEDULED:
            modules.setdefault("scheduledTrigger", []).append(
                {"key": route.name, "endpoint": route.name, "interval": route.module["interval"]}
            )
    if app.migration:
        modules["connectToForgeMigration"] = [{"key": "connect-to-forge-migration", **app.migration}]
    connect_modules = {f"{app.product}:{kind}": entries for kind, entries in app.descriptor_modules().items()}
    connect_modules[f"{app.product}:lifecycle"] = [{"key": "lifecycle-events", **LIFECYCLE_PATHS}]
    scopes = [_connect_scope(scope, app.product) for scope in app.scopes]
    scopes += list(app.forge_scopes)
    scopes += ["read:app-system-token"] if system_token else []
    scopes += ["read:app-user-token"] if user_token else []
    document: dict[str, Any] = {
        "app": {
            "id": settings.forge_app_id,
            "connect": {"key": settings.app_key, "remote": REMOTE_KEY},
        },
        "remotes": [
            {
                "key": REMOTE_KEY,
                "baseUrl": remote_url,
                "operations": ["compute", "storage"],
                "storage": {"inScopeEUD": True},
            }
        ],
        "permissions": {"scopes": list(dict.fromkeys(scopes))},
        "connectModules": connect_modules,
    }
    if endpoints:
        document["endpoint"] = endpoints
    if modules:
        document["modules"] = modules
    return document


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    return text if _PLAIN.fullmatch(text) and text not in ("true", "false", "null", "yes", "no") else json.dumps(text)


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML for maps, lists and scalars (strings quoted with JSON escapes when not plain)."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, Mapping | list) and item:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(item, indent + 1))
            else:
                lines.append(f"{pad}{key}: {_scalar(item) if not isinstance(item, Mapping | list) else '[]'}")
        return "\n".join(lines)
    if isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping) and item:
                nested = to_yaml(item, indent + 1).split("\n")
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
        return "\n".join(lines)
    return pad + _scalar(value)


def render_manifest(app: App, settings: Settings, *, base_url: str | None = None) -> str:
    header = "# Generated by connect-lambda from the app's declaration (make manifest); edit the declaration.\n"
    return header + to_yaml(manifest(app, settings, base_url=base_url)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m connect_lambda.app.manifest", description=__doc__)
    parser.add_argument("--base-url", required=True, help="the deployed app's base URL (the stack's AppBaseUrl)")
    parser.add_argument("--app-key", required=True, help="the Connect app key (the stack's AppKey)")
    parser.add_argument("--forge-app-id", required=True, help="the Forge app id (its ARI or UUID)")
    args = parser.parse_args(argv)
    from connect_app import app  # noqa: PLC0415 - the app's package

    settings = Settings.from_env(
        {"APP_KEY": args.app_key, "APP_BASE_URL": args.base_url, "FORGE_APP_ID": args.forge_app_id}
    )
    sys.stdout.write(render_manifest(app, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
