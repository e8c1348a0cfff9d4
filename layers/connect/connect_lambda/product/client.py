"""Calling a tenant's Jira or Confluence, as the app (a JWT per request) or as a user (a cached bearer token).

* A 403 becomes :class:`ProductForbiddenError`: apps must expect that a user, or the app itself, may not see
  something, and handle it rather than treat it as a crash.
* A 401 on a user token invalidates that token, gets a new one and retries once; a 401 as the app is final.
* 429 and 503 are retried a bounded number of times, honouring ``Retry-After`` up to a cap.
* Every call has timeouts; redirects are followed only on the tenant's own host (re-signed for the new path);
  GET, HEAD and DELETE never carry a body.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin

import requests

from connect_lambda.errors import ConnectError, DependencyUnavailableError, Reason
from connect_lambda.protocol.signing import AppSigner, product_url, under_tenant_base
from connect_lambda.stores.user_tokens import UserTokenCache
from connect_lambda.tenants import TenantKey, TenantKeyLookup, TenantState

logger = logging.getLogger(__name__)

RETRYABLE = frozenset({429, 503})
NO_BODY_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
MAX_REDIRECTS = 3


class ProductForbiddenError(ConnectError):
    """The product answered 403: the caller (app or user) may not do this."""

    default_reason = Reason.FORBIDDEN

    def __init__(self, message: str, response: requests.Response) -> None:
        super().__init__(message)
        self.response = response


class ProductUnauthorizedError(ConnectError):
    """The product refused our credentials (401) even after a fresh user token."""

    default_reason = Reason.PRODUCT_ERROR


class ProductRequestError(ConnectError):
    """A request the client will not make or follow (a redirect to another host, a body on GET)."""

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
    """One per container: holds the HTTP session that every call reuses."""

    def __init__(
        self,
        *,
        app_key: str,
        tenants: TenantKeyLookup,
        user_tokens: UserTokenCache | None = None,
        session: requests.Session | None = None,
        connect_timeout: float = 3.05,
        read_timeout: float = 15.0,
        deadline_seconds: float = 24.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._app_key = app_key
        self._tenants = tenants
        self._user_tokens = user_tokens
        self.session = session or requests.Session()
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._deadline = deadline_seconds
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock

    def _tenant(self, client_key: str) -> TenantKey:
        tenant = self._tenants.tenant_key(client_key)
        if tenant is None or tenant.state is TenantState.UNINSTALLED or not tenant.shared_secret or not tenant.base_url:
            raise ConnectError(f"tenant {client_key} is not installed", Reason.UNKNOWN_TENANT)
        return tenant

    def as_app(self, client_key: str) -> ProductSession:
        """Calls signed by the app itself (``Authorization: JWT``, a qsh per request)."""
        tenant = self._tenant(client_key)
        signer = AppSigner(
            app_key=self._app_key,
            client_key=tenant.client_key,
            tenant_base_url=tenant.base_url,
            shared_secret=tenant.shared_secret or b"",
        )
        return ProductSession(self, tenant, _AppAuth(signer, self._clock))

    def as_user(self, client_key: str, account_id: str, scopes: Iterable[str] = ("READ",)) -> ProductSession:
        """Calls acting as ``account_id`` (``Authorization: Bearer``, a cached impersonation token)."""
        if self._user_tokens is None:
            raise ConnectError("this client has no user-token cache", Reason.INVALID_CONFIGURATION)
        if not account_id:
            raise ConnectError("acting as a user needs an account id", Reason.MALFORMED_REQUEST)
        tenant = self._tenant(client_key)
        return ProductSession(self, tenant, _UserAuth(self._user_tokens, tenant, account_id, tuple(scopes)))

    # --- the transport, shared by both kinds of session -------------------------------------------------------
    def send(
        self,
        tenant: TenantKey,
        auth: _Auth,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | Iterable[str]] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        method = method.upper()
        if method in NO_BODY_METHODS and json is not None:
            raise ProductRequestError(f"{method} requests carry no body")
        if not path.startswith("/") or path.startswith("//"):
            raise ProductRequestError("product paths start with a single '/'")
        url = product_url(tenant.base_url, path)
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params, doseq=True)
        reauthenticated = False
        attempt = 0
        redirects = 0
        # one deadline for the whole call (token, retries, redirects), shorter than the function's own timeout,
        # so that a hung product ends in a typed 503 rather than in Lambda killing the function
        deadline = self._clock() + self._deadline
        while True:
            request_headers = {
                "Accept": "application/json",
                **(headers or {}),
                "Authorization": auth.header(method, url),
            }
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise DependencyUnavailableError(f"product at {tenant.base_url} did not answer in time")
            timeout = (min(self._connect_timeout, remaining), min(self._read_timeout, remaining))
            try:
                response = self.session.request(
                    method, url, json=json, headers=request_headers, timeout=timeout, allow_redirects=False
                )
            except requests.RequestException as exc:
                raise DependencyUnavailableError(f"product at {tenant.base_url} could not be reached") from exc
            status = response.status_code
            if status == 401 and auth.can_refresh and not reauthenticated:
                response.close()
                auth.refresh()
                reauthenticated = True
                continue
            if status == 401:
                response.close()
                raise ProductUnauthorizedError(
                    f"product refused the {auth.kind} credentials of tenant {tenant.client_key}"
                )
            if status == 403:
                raise ProductForbiddenError(f"product forbids {method} {path} for this {auth.kind}", response)
            if status in RETRYABLE:
                wait = self._retry_wait(response, attempt, deadline)
                if wait is None:
                    raise DependencyUnavailableError(f"product answered {status} after {attempt} retries")
                response.close()
                attempt += 1
                self._sleep(wait)
                continue
            if 300 <= status < 400 and "Location" in response.headers:
                url = self._same_host_redirect(tenant, url, response.headers["Location"])
                response.close()
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise ProductRequestError("too many redirects")
                if status == 303:
                    method, json = "GET", None
                continue
            return response

    def _retry_wait(self, response: requests.Response, attempt: int, deadline: float) -> float | None:
        """Seconds to wait before retrying a 429/503 (``Retry-After`` or a backoff), or ``None``: do not retry."""
        if attempt >= self._retry.max_retries:
            return None
        wait = _retry_after_seconds(response.headers.get("Retry-After"), self._clock())
        wait = self._retry.default_wait_seconds * (2**attempt) if wait is None else wait
        if wait > self._retry.max_wait_seconds or self._clock() + wait >= deadline:
            return None
        return wait

    @staticmethod
    def _same_host_redirect(tenant: TenantKey, current: str, location: str) -> str:
        target = urljoin(current, location)
        if not under_tenant_base(target, tenant.base_url):
            raise ProductRequestError("refusing to follow a redirect to another host or outside the tenant's baseUrl")
        return target


class _Auth:
    kind = "app"
    can_refresh = False

    def header(self, method: str, url: str) -> str:
        raise NotImplementedError

    def refresh(self) -> None:
        raise NotImplementedError


class _AppAuth(_Auth):
    def __init__(self, signer: AppSigner, clock: Callable[[], float]) -> None:
        self._signer = signer
        self._clock = clock

    def header(self, method: str, url: str) -> str:
        return self._signer.authorization_header(method, url, now=self._clock())


class _UserAuth(_Auth):
    kind = "user"
    can_refresh = True

    def __init__(self, cache: UserTokenCache, tenant: TenantKey, account_id: str, scopes: tuple[str, ...]) -> None:
        self._cache = cache
        self._tenant = tenant
        self._account_id = account_id
        self._scopes = scopes

    def header(self, method: str, url: str) -> str:
        return "Bearer " + self._cache.token_for(self._tenant, self._account_id, self._scopes).value

    def refresh(self) -> None:
        self._cache.invalidate(self._tenant, self._account_id, self._scopes)


class ProductSession:
    """Requests to one tenant's product with one identity. Paths are relative to the tenant's ``baseUrl``."""

    def __init__(self, client: ProductClient, tenant: TenantKey, auth: _Auth) -> None:
        self._client = client
        self._tenant = tenant
        self._auth = auth

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self._client.send(self._tenant, self._auth, method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)
