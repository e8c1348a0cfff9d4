"""The Connect descriptor of a deployment, rendered from the app's declaration.

The protocol-fixed parts (JWT authentication, the lifecycle URLs the framework serves, both API migrations) come
from :func:`connect_lambda.protocol.descriptor.build_descriptor`; the modules and scopes come from the declaration;
the key and the base URL from the deployment's settings. One declaration, any number of deployments.
"""

from __future__ import annotations

from typing import Any

from connect_lambda.app.declaration import App
from connect_lambda.protocol.descriptor import build_descriptor
from connect_lambda.settings import Settings


def render_descriptor(app: App, settings: Settings, *, name: str | None = None) -> dict[str, Any]:
    return build_descriptor(
        settings,
        name=name or app.name,
        description=app.description,
        modules=app.descriptor_modules(),
        scopes=app.scopes,
        vendor=app.vendor or None,
    )
