"""Fixed names, ports and test credentials of the local stack.

The credentials here are for the local stack only: a test tenant whose shared secret is public (it is in this
file), and an install key generated on first use under ``.local/``. Nothing here is ever used on AWS.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("DEVSTACK_DIR", ROOT / ".local" / "stack")).resolve()
LOGS = STATE / "logs"
REQUESTS_LOG = LOGS / "requests.log"
"""One line per request the local API answered (``make logs``), written by devstack.logpipe."""
BUILD_DIR = STATE / "build"
"""The local stack's own ``sam build`` output: never ``.aws-sam/build``, which ``sam build`` for AWS writes."""
BUILT_TEMPLATE = BUILD_DIR / "template.yaml"

API_PORT = int(os.environ.get("DEVSTACK_API_PORT", "3000"))
MOTO_PORT = int(os.environ.get("DEVSTACK_MOTO_PORT", "5001"))
SIM_PORT = int(os.environ.get("DEVSTACK_SIM_PORT", "8091"))
API_HOST = "127.0.0.1"
REGION = "us-east-1"
TENANT_CACHE_SECONDS = 3

APP_KEY = "connect-lambda-local"
APP_BASE_URL = f"http://{API_HOST}:{API_PORT}"
CONTAINER_HOST = "host.docker.internal"
"""How a function container reaches services on this machine (``--add-host host.docker.internal:host-gateway``)."""

INSTALL_KID = "local-test-install-key"
INSTALL_KEY_FILE = STATE / "install-key.pem"


@dataclass(frozen=True)
class LocalTenant:
    client_key: str
    shared_secret: str
    oauth_client_id: str
    account_id: str
    display_name: str

    @property
    def base_url(self) -> str:
        return f"http://{CONTAINER_HOST}:{SIM_PORT}"


LOCAL_TENANT = LocalTenant(
    client_key="local-test-tenant",
    shared_secret="local-test-tenant-shared-secret-not-a-real-credential-0001",  # local test tenant only
    oauth_client_id="local-test-oauth-client",
    account_id="557058:local-test-user",
    display_name="Local Test User",
)


def docker_gateway() -> str:
    """The docker0 address: services bound here are reachable from function containers and from this machine."""
    explicit = os.environ.get("LOCAL_ENV_DOCKER_GATEWAY", "").strip()
    if explicit:
        return explicit
    try:
        out = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "dev", "docker0"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "127.0.0.1"
    for word in out.split():
        if "/" in word and word.count(".") == 3:
            return word.split("/")[0]
    return "127.0.0.1"


def aws_env() -> dict[str, str]:
    """Credentials for the embedded AWS (moto accepts any); SAM passes them on to the function containers."""
    return {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }
