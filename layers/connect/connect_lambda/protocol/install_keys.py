"""Public keys for signed install (RS256), fetched by ``kid`` from Atlassian's install-key CDNs only.

The ``kid`` comes from an unauthenticated token and becomes part of a URL path, so it is validated before anything
is fetched. Keys come only from the CDN chain of the tenant's Atlassian environment (primary, then fallback, each
as ``<base>/<kid>``) or from ``INSTALL_KEYS_URL``. Atlassian never reuses a kid for another key, so good keys are
cached by kid for the life of the container; failures are cached briefly, and the fetches a container makes are
bounded per interval (each kid a caller invents would otherwise cost one or two CDN requests before any
signature check), so that a burst of forged kids cannot turn the app into a request amplifier against the CDN.
Past the bound a new kid is answered "unavailable" (503: Atlassian retries a genuine install) without a fetch.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from connect_lambda.errors import AuthenticationError, InstallKeyUnavailableError, Reason
from connect_lambda.http import AnswerTooLargeError, AnswerTooSlowError, read_bounded
from connect_lambda.protocol.hosts import AtlassianEnvironment, environment_of

CDN_CHAINS: dict[AtlassianEnvironment, tuple[str, ...]] = {
    AtlassianEnvironment.PRODUCTION: (
        "https://asap-distribution.us-west-2.prod.atl-asap.net",
        "https://connect-install-keys.atlassian.com",
    ),
    AtlassianEnvironment.STAGING: (
        "https://asap-distribution.us-west-2.staging.atl-asap.net",
        "https://cs-migrations--cdn.us-east-1.staging.public.atl-paas.net",
    ),
    # No separate chain is published for FedRAMP staging; it shares the FedRAMP one (override if needed).
    AtlassianEnvironment.FEDRAMP: (
        "https://asap-distribution.us-west-2.prod.atl-auth-us-gov-mod.net",
        "https://cs-migrations--fedrampcdn.us-east-1.prod.cdn.atlassian-us-gov-mod.com",
    ),
    AtlassianEnvironment.FEDRAMP_STAGING: (
        "https://asap-distribution.us-west-2.prod.atl-auth-us-gov-mod.net",
        "https://cs-migrations--fedrampcdn.us-east-1.prod.cdn.atlassian-us-gov-mod.com",
    ),
}

MAX_KID_LENGTH = 128
MAX_KEY_BYTES = 16 * 1024
MIN_RSA_BITS = 2048
_KID_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+")
_PEM_HEADER = b"-----BEGIN PUBLIC KEY-----"
_PEM_FOOTER = b"-----END PUBLIC KEY-----"


def validate_kid(kid: object) -> str:
    """Refuse a kid that could leave the CDN path: only ``[A-Za-z0-9_.-]`` segments, no ``.``/``..``."""
    if kid is None or kid == "":
        raise AuthenticationError("install token has no kid", Reason.MISSING_KID)
    if not isinstance(kid, str) or len(kid) > MAX_KID_LENGTH:
        raise AuthenticationError("install token kid is invalid", Reason.INVALID_KID)
    for segment in kid.split("/"):
        if not _KID_SEGMENT.fullmatch(segment) or segment in (".", ".."):
            raise AuthenticationError("install token kid is invalid", Reason.INVALID_KID)
    return kid


class _KeyNotFoundError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Failure:
    until: float
    not_found: bool


class InstallKeyProvider:
    """Fetches and caches signed-install public keys. One per container."""

    def __init__(
        self,
        *,
        override_url: str | None = None,
        session: requests.Session | None = None,
        connect_timeout: float = 2.0,
        read_timeout: float = 3.0,
        negative_ttl: float = 30.0,
        max_cached: int = 128,
        max_fetches: int = 20,
        fetch_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._override = override_url.rstrip("/") if override_url else None
        self._session = session or requests.Session()
        self._timeout = (connect_timeout, read_timeout)
        self._deadline = connect_timeout + read_timeout
        self._negative_ttl = negative_ttl
        self._max_cached = max_cached
        self._clock = clock
        self._keys: OrderedDict[tuple[tuple[str, ...], str], RSAPublicKey] = OrderedDict()
        self._failures: dict[tuple[tuple[str, ...], str], _Failure] = {}
        self._max_fetches = max_fetches
        self._fetch_interval = fetch_interval
        self._fetches: deque[float] = deque()
        self._budget_lock = threading.Lock()

    def chain_for(self, tenant_base_url: str) -> tuple[str, ...]:
        if self._override:
            return (self._override,)
        return CDN_CHAINS[environment_of(tenant_base_url)]

    def public_key(self, kid: str, tenant_base_url: str) -> RSAPublicKey:
        kid = validate_kid(kid)
        chain = self.chain_for(tenant_base_url)
        cache_key = (chain, kid)
        cached = self._keys.get(cache_key)
        if cached is not None:
            self._keys.move_to_end(cache_key)
            return cached
        failure = self._failures.get(cache_key)
        if failure is not None:
            if failure.until > self._clock():
                self._raise(failure.not_found)
            del self._failures[cache_key]
        if not self._take_fetch():
            raise InstallKeyUnavailableError("install-key fetches are over this container's bound; retry later")
        try:
            key = self._fetch_from_chain(chain, kid)
        except _KeyNotFoundError:
            self._remember_failure(cache_key, not_found=True)
            self._raise(not_found=True)
        except InstallKeyUnavailableError:
            self._remember_failure(cache_key, not_found=False)
            raise
        self._keys[cache_key] = key
        if len(self._keys) > self._max_cached:
            self._keys.popitem(last=False)
        return key

    def _take_fetch(self) -> bool:
        """Whether one more key lookup (one walk of the chain) fits the bound of this interval."""
        now = self._clock()
        with self._budget_lock:
            while self._fetches and now - self._fetches[0] >= self._fetch_interval:
                self._fetches.popleft()
            if len(self._fetches) >= self._max_fetches:
                return False
            self._fetches.append(now)
            return True

    @staticmethod
    def _raise(not_found: bool) -> None:
        if not_found:
            raise AuthenticationError("no install key is published under this kid", Reason.UNKNOWN_KID)
        raise InstallKeyUnavailableError("the install-key CDN did not provide a usable key")

    def _remember_failure(self, cache_key: tuple[tuple[str, ...], str], *, not_found: bool) -> None:
        if len(self._failures) >= self._max_cached:
            self._failures.clear()
        self._failures[cache_key] = _Failure(self._clock() + self._negative_ttl, not_found)

    def _fetch_from_chain(self, chain: tuple[str, ...], kid: str) -> RSAPublicKey:
        """First usable key along the chain. Only 404s everywhere mean 'unknown kid'; anything else is transient."""
        all_not_found = True
        for base in chain:
            try:
                return self._fetch(f"{base}/{kid}")
            except _KeyNotFoundError:
                continue
            except InstallKeyUnavailableError:
                all_not_found = False
        if all_not_found:
            raise _KeyNotFoundError
        raise InstallKeyUnavailableError("the install-key CDN did not provide a usable key")

    def _fetch(self, url: str) -> RSAPublicKey:
        deadline = time.monotonic() + self._deadline
        try:
            with self._session.get(url, timeout=self._timeout, allow_redirects=False, stream=True) as response:
                if response.status_code == 404:
                    raise _KeyNotFoundError
                if response.status_code != 200:
                    raise InstallKeyUnavailableError(f"install-key CDN answered {response.status_code}")
                body = read_bounded(response, max_bytes=MAX_KEY_BYTES, deadline=deadline, clock=time.monotonic)
        except AnswerTooLargeError as exc:
            raise InstallKeyUnavailableError("install-key CDN answer is too large") from exc
        except AnswerTooSlowError as exc:
            raise InstallKeyUnavailableError("install-key CDN answer is too slow") from exc
        except requests.RequestException as exc:
            raise InstallKeyUnavailableError("install-key CDN could not be reached") from exc
        return _parse_rsa_pem(body)


def _parse_rsa_pem(body: bytes) -> RSAPublicKey:
    text = body.strip()
    if not (text.startswith(_PEM_HEADER) and text.endswith(_PEM_FOOTER)):
        raise InstallKeyUnavailableError("install-key CDN answer is not a PEM public key")
    try:
        key = load_pem_public_key(text)
    except (ValueError, TypeError) as exc:
        raise InstallKeyUnavailableError("install-key CDN answer is not a valid public key") from exc
    if not isinstance(key, RSAPublicKey) or key.key_size < MIN_RSA_BITS:
        raise InstallKeyUnavailableError("install-key CDN answer is not an RSA key of at least 2048 bits")
    return key
