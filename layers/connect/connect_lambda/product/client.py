"""Calling the product with any credential: one client, one session per identity, the same rules for all.

A call is a loop of single attempts (:mod:`connect_lambda.product.transport`) under three policies, each in its
own method of :class:`ProductSession`:

* **authentication**: a 401 on a credential that can refresh (a user token) refreshes it and retries once; a 401
  after a redirect never does (a refresh there would mint a new token for a URL we were sent to, not chose), and a
  401 as the app is final;
* **rate limits**: 429 and 503 are retried a bounded number of times, honouring ``Retry-After`` up to a cap;
* **redirects**: followed only to a target whose scheme, host and port - as urllib3, the transport, parses them -
  are the session's own, under its base path, and re-authenticated for the new URL.

A 403 becomes :class:`ProductForbiddenError`: apps must expect that a user, or the app itself, may not see
something, and handle it rather than treat it as a crash. Every call has one deadline, shorter than the function's
own timeout, so that a hung product ends in a typed 503 rather than in Lambda killing the function.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin

import requests

from connect_lambda.errors import (
    ConfigurationError,
    DependencyUnavailableError,
    ForbiddenError,
    InvalidPayloadError,
    MalformedRequestError,
    Reason,
    TenantStateError,
    UpstreamError,
)
from connect_lambda.product.credentials import (
    ApiTokenCredential,
    BearerCredential,
    ConnectAppCredential,
    ConnectUserCredential,
    Credential,
    OAuthUserCredential,
)
from connect_lambda.product.transport import (
    DEFAULT_MAX_ANSWER_BYTES,
    Attempt,
    ProductRequestError,
    ProductResponse,
    Transport,
)
from connect_lambda.protocol.hosts import HostPattern
from connect_lambda.protocol.signing import AppSigner, product_url
from connect_lambda.protocol.urls import OutboundUrlError, check_under_base, tenant_base_url
from connect_lambda.tenancy.directory import TenantLookup
from connect_lambda.tenancy.tenant import Tenant

if TYPE_CHECKING:
    from connect_lambda.grants.store import GrantStore
    from connect_lambda.secrets import Secret
    from connect_lambda.stores.user_tokens import UserTokenCache

RETRYABLE = frozenset({429, 503})
OAUTH_PRODUCTS = frozenset({"jira", "confluence"})
NO_BODY_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
MAX_REDIRECTS = 3


class ProductForbiddenError(ForbiddenError):
    """The product answered 403: the caller (app or user) may not do this."""

    default_reason = Reason.FORBIDDEN

    def __init__(self, message: str, response: ProductResponse) -> None:
        super().__init__(message)
        self.response = response


class ProductUnauthorizedError(UpstreamError):
    """The product refused our credentials (401) even after a fresh token."""

    default_reason = Reason.PRODUCT_ERROR


def _retry_after_seconds(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - now)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 2
    max_wait_seconds: float = 5.0
    default_wait_seconds: float = 1.0


class ProductClient:
    """One per container: holds the HTTP session every call reuses, and builds sessions for each identity."""

    def __init__(
        self,
        *,
        app_key: str,
        tenants: TenantLookup,
        allowed_tenant_hosts: tuple[HostPattern, ...],
        forge_api_hosts: tuple[HostPattern, ...] = (),
        user_tokens: UserTokenCache | None = None,
        grants: Callable[[], GrantStore] | None = None,
        oauth_api_url: str | None = None,
        oauth_api_hosts: tuple[HostPattern, ...] = (),
        api_token: Callable[[], tuple[str, Secret]] | None = None,
        session: requests.Session | None = None,
        connect_timeout: float = 3.05,
        read_timeout: float = 15.0,
        deadline_seconds: float = 24.0,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._app_key = app_key
        self._tenants = tenants
        self._allowed_hosts = allowed_tenant_hosts
        self._forge_api_hosts = forge_api_hosts
        self._user_tokens = user_tokens
        self._grants = grants
        self._oauth_api_url = oauth_api_url
        self._oauth_api_hosts = oauth_api_hosts
        self._api_token = api_token
        self.transport = Transport(
            session,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_answer_bytes=max_answer_bytes,
            clock=clock,
        )
        self.deadline_seconds = deadline_seconds
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.clock = clock

    @property
    def session(self) -> requests.Session:
        return self.transport.session

    def _tenant(self, tenant: Tenant | str) -> Tenant:
        """The tenant to call, installed, with a base URL that is still on the allow-list (a tampered or stale
        record must not send the app's credentials anywhere else)."""
        found = self._tenants.get(tenant) if isinstance(tenant, str) else tenant
        if found is None or not found.installed:
            key = tenant if isinstance(tenant, str) else tenant.client_key
            raise TenantStateError(f"tenant {key} is not installed", Reason.TENANT_UNINSTALLED)
        try:
            tenant_base_url(found.base_url, self._allowed_hosts)
        except InvalidPayloadError as exc:
            message = f"tenant {found.client_key} has a base URL the URL rule or the allow-list refuses"
            raise ProductRequestError(message) from exc
        return found

    def as_app(self, tenant: Tenant | str) -> ProductSession:
        """Calls signed by the app itself (``Authorization: JWT``, a qsh per request)."""
        found = self._tenant(tenant)
        signer = AppSigner(
            app_key=self._app_key,
            client_key=found.client_key,
            tenant_base_url=found.base_url,
            shared_secret=found.shared_secret or b"",
        )
        return ProductSession(self, found.base_url, ConnectAppCredential(signer, self.clock), found.client_key)

    def as_user(self, tenant: Tenant | str, account_id: str, scopes: Iterable[str] = ("READ",)) -> ProductSession:
        """Calls acting as ``account_id`` (``Authorization: Bearer``, a cached impersonation token)."""
        if self._user_tokens is None:
            raise ConfigurationError("this client has no user-token cache")
        if not account_id:
            raise MalformedRequestError("acting as a user needs an account id")
        found = self._tenant(tenant)
        credential = ConnectUserCredential(self._user_tokens, found, account_id, tuple(scopes))
        return ProductSession(self, found.base_url, credential, found.client_key)

    def with_bearer(
        self, base_url: str, token: str, *, kind: str, label: str, hosts: tuple[HostPattern, ...]
    ) -> ProductSession:
        """Calls with an OAuth access token to ``base_url`` (checked by the URL rule against ``hosts`` first)."""
        try:
            checked = tenant_base_url(base_url, hosts, field="API base URL")
        except InvalidPayloadError as exc:
            raise ProductRequestError(f"refusing to send a {kind} token to {label}'s API base URL") from exc
        return ProductSession(self, checked, BearerCredential(token, kind), label)

    def as_forge(self, api_base_url: str, token: str, *, kind: str, installation_id: str) -> ProductSession:
        """Calls with a Forge token (``forge-app``: the system token; ``forge-user``: the invoking user's) against
        the installation's ``apiBaseUrl``, which must be on ``FORGE_API_HOSTS``."""
        return self.with_bearer(api_base_url, token, kind=kind, label=installation_id, hosts=self._forge_api_hosts)

    def as_oauth_user(self, account_id: str, site: str, product: str = "jira") -> ProductSession:
        """Calls as a 3LO user who granted this app access to ``site`` (a granted cloud id or site URL), through
        Atlassian's API gateway: ``{ATLASSIAN_API_URL}/ex/{product}/{cloudId}`` + path, ``Authorization: Bearer``.

        The token comes from the account's grant, refreshed in its single flight; a 401 refreshes once. Raises
        :class:`~connect_lambda.grants.store.GrantMissingError` / ``GrantRevokedError`` when the user must consent
        (again), ``SiteNotGrantedError`` for a site outside the grant."""
        if self._grants is None or self._oauth_api_url is None:
            raise ConfigurationError("this function has no OAuth 2.0 grants (declare Capability.GRANTS)")
        if product not in OAUTH_PRODUCTS:
            raise ProductRequestError(f"3LO calls go to one of {sorted(OAUTH_PRODUCTS)}, not {product!r}")
        grants = self._grants()
        grant = grants.get(account_id)
        if grant is None:
            from connect_lambda.grants.store import GrantMissingError  # noqa: PLC0415

            raise GrantMissingError("this account has not granted the app access: the user must authorize first")
        granted = grant.site(site)
        base_url = f"{self._oauth_api_url}/ex/{product}/{granted.cloud_id}"
        try:
            checked = tenant_base_url(base_url, self._oauth_api_hosts, field="3LO API URL")
        except InvalidPayloadError as exc:
            raise ConfigurationError("ATLASSIAN_API_URL is not a URL the product client may call") from exc
        return ProductSession(self, checked, OAuthUserCredential(grants, account_id), f"site {granted.cloud_id}")

    def with_api_token(self, site: str) -> ProductSession:
        """Calls to ``site`` (a product base URL on ``ALLOWED_TENANT_HOSTS``) as the account of the configured API
        token (``API_TOKEN_EMAIL``, the token read from ``API_TOKEN_PARAMETER`` once per container)."""
        if self._api_token is None:
            raise ConfigurationError("this function has no API token (API_TOKEN_EMAIL and API_TOKEN_PARAMETER)")
        try:
            checked = tenant_base_url(site, self._allowed_hosts, field="site")
        except InvalidPayloadError as exc:
            raise ProductRequestError("refusing to send the API token to a site off ALLOWED_TENANT_HOSTS") from exc
        email, token = self._api_token()
        return ProductSession(self, checked, ApiTokenCredential(email, token.value), checked)


class ProductSession:
    """Requests with one identity to one product base URL. Paths are relative to it (``/wiki`` on Confluence is
    on the wire and out of the qsh)."""

    def __init__(self, client: ProductClient, base_url: str, credential: Credential, label: str) -> None:
        self._client = client
        self._base_url = base_url
        self._credential = credential
        self._label = label

    @property
    def what(self) -> str:
        return f"product of {self._label}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | Iterable[str]] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> ProductResponse:
        method = method.upper()
        if method in NO_BODY_METHODS and json is not None:
            raise ProductRequestError(f"{method} requests carry no body")
        if not path.startswith("/") or path.startswith("//"):
            raise ProductRequestError("product paths start with a single '/'")
        url = product_url(self._base_url, path)
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params, doseq=True)
        request_headers = {"Accept": "application/json", **(headers or {})}
        attempt = Attempt.prepare(self._client.session, method, url, json=json, headers=request_headers)
        self._check_target(attempt.url)
        deadline = self._client.clock() + self._client.deadline_seconds
        refreshed = False
        retries = 0
        redirects = 0
        while True:
            authorization = self._credential.authorization(attempt.method, attempt.url)
            response = self._client.transport.send(attempt, authorization, deadline=deadline, what=self.what)
            status = response.status_code
            if status == 401:
                if self._may_refresh(refreshed, redirects):
                    self._credential.refresh()
                    refreshed = True
                    continue
                raise ProductUnauthorizedError(f"{self.what} refused the {self._credential.kind} credentials")
            if status == 403:
                raise ProductForbiddenError(
                    f"{self.what} forbids {method} {path} for this {self._credential.kind}", response
                )
            if status in RETRYABLE:
                wait = self._retry_wait(response, retries, deadline)
                if wait is None:
                    raise DependencyUnavailableError(f"{self.what} answered {status} after {retries} retries")
                retries += 1
                self._client.sleep(wait)
                continue
            if 300 <= status < 400 and "Location" in response.headers:
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise ProductRequestError("too many redirects")
                attempt = self._redirected(attempt, status, response.headers["Location"], json, request_headers)
                continue
            return response

    # --- the policies -----------------------------------------------------------------------------------------
    def _may_refresh(self, refreshed: bool, redirects: int) -> bool:
        return self._credential.can_refresh and not refreshed and redirects == 0

    def _retry_wait(self, response: ProductResponse, retries: int, deadline: float) -> float | None:
        """Seconds to wait before retrying a 429/503 (``Retry-After`` or a backoff), or ``None``: do not retry."""
        policy = self._client.retry
        if retries >= policy.max_retries:
            return None
        now = self._client.clock()
        wait = _retry_after_seconds(response.headers.get("Retry-After"), now)
        wait = policy.default_wait_seconds * (2**retries) if wait is None else wait
        if wait > policy.max_wait_seconds or now + wait >= deadline:
            return None
        return wait

    def _redirected(
        self, attempt: Attempt, status: int, location: str, json: Any, headers: Mapping[str, str]
    ) -> Attempt:
        if "\\" in location or not location.isprintable() or " " in location:
            # parsers disagree on these (a browser reads "/\\host" as another host): never followed
            raise ProductRequestError("refusing to follow a redirect that parsers could read differently")
        method = attempt.method
        if status == 303 or (status in (301, 302) and method == "POST"):
            method, json = "GET", None
        try:
            target = Attempt.prepare(
                self._client.session, method, urljoin(attempt.url, location), json=json, headers=headers
            )
        except (ValueError, requests.RequestException) as exc:
            # urljoin ('Invalid IPv6 URL') or requests ('No host supplied') cannot read it: never followed
            raise ProductRequestError("refusing to follow a redirect to a URL that does not parse") from exc
        self._check_target(target.url)
        return target

    def _check_target(self, wire_url: str) -> None:
        try:
            check_under_base(wire_url, self._base_url)
        except OutboundUrlError as exc:
            raise ProductRequestError(f"refusing to send credentials outside the {self.what}: {exc}") from exc

    # --- verbs ------------------------------------------------------------------------------------------------
    def get(self, path: str, **kwargs: Any) -> ProductResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> ProductResponse:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> ProductResponse:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> ProductResponse:
        return self.request("DELETE", path, **kwargs)
