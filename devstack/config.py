"""Fixed names, ports and test credentials of the local stack.

The credentials here are for the local stack only: a test tenant whose shared secret is public (it is in this
file), a 3LO client whose secret is public too, and the keys of the simulated Atlassian (the install key, the
Forge invocation-token key, the Forge OAuth token key) generated on first use under ``.local/``. Nothing here is
ever used on AWS.
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
FORGE_INVOCATION_KEY_FILE = STATE / "forge-invocation-key.pem"
"""Signs the local FITs; the simulator publishes its public half as the Forge JWKS."""
FORGE_OAUTH_KEY_FILE = STATE / "forge-oauth-key.pem"
"""Signs the local Forge system and user tokens; the simulated product API accepts what it signed."""

SIM_URL = f"http://{CONTAINER_HOST}:{SIM_PORT}"
"""The simulated Atlassian as the function containers reach it: the tenant's site, the install-key CDN, the OAuth
server, the Forge JWKS and the Forge product API (``/ex/jira/<cloudId>``), and the 3LO side under
:data:`ACCOUNTS_PATH`."""
ACCOUNTS_PATH = "/3lo"
"""Where the simulator serves Atlassian's 3LO side, ``auth.atlassian.com`` and ``api.atlassian.com`` in one (the
kit's ``FakeAtlassianAccounts``): under a prefix of its own, because ``/ex/jira/<cloudId>`` at the root is already
the Forge installation's product API."""


@dataclass(frozen=True)
class LocalTenant:
    client_key: str
    shared_secret: str
    oauth_client_id: str
    account_id: str
    site: str = ""
    """Where the tenant's site is, when not where the function containers reach the simulator (a test's loopback
    simulator: ``dataclasses.replace(LOCAL_TENANT, site=url)``)."""

    @property
    def base_url(self) -> str:
        return self.site or SIM_URL


LOCAL_TENANT = LocalTenant(
    client_key="local-test-tenant",
    shared_secret="local-test-tenant-shared-secret-not-a-real-credential-0001",  # local test tenant only
    oauth_client_id="local-test-oauth-client",
    account_id="557058:local-test-user",
)


@dataclass(frozen=True)
class LocalForge:
    """The local stack's Forge app and its one installation, on the local test tenant's site (Connect-on-Forge: the
    tenant's Connect install carries this installation)."""

    app_id: str
    installation_id: str
    cloud_id: str
    app_account_id: str
    """Whom the system token acts as (the app's bot user); the user token acts as the invoking user."""

    @property
    def api_base_url(self) -> str:
        """``app.apiBaseUrl`` of the FITs: the simulator's product API, as ``https://api.atlassian.com/ex/jira/<cloudId>``
        is in production."""
        return f"{SIM_URL}/ex/jira/{self.cloud_id}"


LOCAL_FORGE = LocalForge(
    app_id="ari:cloud:ecosystem::app/6f0c2a8e-1b4d-4c3a-9e5f-7a8b9c0d1e2f",
    installation_id="ari:cloud:ecosystem::installation/3c2b1a09-8f7e-4d6c-a5b4-c3d2e1f0a9b8",
    cloud_id="0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    app_account_id="557058:local-forge-app-bot",
)


@dataclass(frozen=True)
class LocalIntegration:
    """The local stack's OAuth 2.0 (3LO) integration: its client, where the functions read its secret (the embedded
    AWS's SSM, a SecureString), the scopes it asks for, and the one user the simulator lets consent (the local test
    tenant's user) with one site (the local test tenant's, under the local Forge installation's cloudId)."""

    client_id: str
    client_secret: str
    secret_parameter: str
    scopes: str
    user_name: str
    site_name: str

    @staticmethod
    def api_url() -> str:
        """``ATLASSIAN_API_URL`` of the functions: the simulator as the containers reach it, by name (the product
        client sends 3LO tokens only to a DNS name, never to an IP literal)."""
        return SIM_URL + ACCOUNTS_PATH

    @staticmethod
    def auth_url(gateway: str) -> str:
        """``ATLASSIAN_AUTH_URL`` of the functions: the simulator at the docker gateway's address, which the containers
        reach (``/oauth/token``) and so does a browser on this machine (``/authorize``, where ``/oauth/authorize``
        sends it), which cannot resolve ``host.docker.internal``."""
        return f"http://{gateway}:{SIM_PORT}{ACCOUNTS_PATH}"


LOCAL_3LO = LocalIntegration(
    client_id="connect-lambda-local-3lo-client",
    client_secret="local-3lo-client-secret-not-a-real-credential-0001",  # local stack only
    secret_parameter="/connect-lambda-local/oauth-client-secret",
    scopes="read:me read:jira-user read:jira-work",
    user_name="Local Test User",
    site_name="Local test site",
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
