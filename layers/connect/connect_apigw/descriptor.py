"""``GET /atlassian-connect.json``: the deployment's descriptor, with an ETag so products revalidate cheaply; and
``GET /manifest.yml``: its Forge manifest, from the same declaration.

Rendered from the app's declaration (:mod:`connect_lambda.app.descriptor`) with the deployment's key and base URL;
``APP_NAME`` (the template's ``AppName``) overrides the declared name.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from connect_lambda import deployment as deployments
from connect_lambda.app.declaration import App
from connect_lambda.app.descriptor import render_descriptor
from connect_lambda.app.manifest import render_manifest
from connect_lambda.errors import NotFoundError

from connect_apigw.observability import make_logger
from connect_apigw.requests import lower_headers
from connect_apigw.responses import answers_errors

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from connect_lambda.deployment import Deployment


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: ``*`` or a list of entity tags, compared weakly (``W/`` ignored)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


class DescriptorFunction:
    def __init__(self, app: App, *, deployment: Deployment | Callable[[], Deployment] = deployments.current) -> None:
        self.app = app
        self._deployment = deployment
        self.logger = make_logger("connect-descriptor")
        self.handle = answers_errors(self.logger, "descriptor")(self._handle)
        self.handler: Callable[[dict[str, Any], LambdaContext], dict[str, Any]] = self.logger.inject_lambda_context(
            clear_state=True
        )(self._lambda)

    @property
    def deployment(self) -> Deployment:
        return self._deployment if not callable(self._deployment) else self._deployment()

    def render(self) -> tuple[str, str]:
        descriptor = render_descriptor(self.app, self.deployment.settings, name=os.environ.get("APP_NAME") or None)
        body = json.dumps(descriptor, indent=2, sort_keys=True)
        return body, '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'

    def _handle(self, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("routeKey") == "GET /manifest.yml":
            return self._manifest()
        body, etag = self.render()
        headers = {
            "Content-Type": "application/json",
            "Cache-Control": "public, max-age=60, must-revalidate",
            "ETag": etag,
        }
        if etag_matches(lower_headers(event.get("headers")).get("if-none-match"), etag):
            return {"statusCode": 304, "headers": headers, "body": ""}
        return {"statusCode": 200, "headers": headers, "body": body}

    def _manifest(self) -> dict[str, Any]:
        """The Forge manifest for this deployment (its key, base URL and Forge app id), for ``forge deploy``."""
        settings = self.deployment.settings
        if not settings.forge_app_id:
            raise NotFoundError("this deployment has no Forge app (FORGE_APP_ID is empty)")
        body = render_manifest(self.app, settings)
        headers = {"Content-Type": "application/yaml; charset=utf-8", "Cache-Control": "no-store"}
        return {"statusCode": 200, "headers": headers, "body": body}

    def _lambda(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return self.handle(event)
