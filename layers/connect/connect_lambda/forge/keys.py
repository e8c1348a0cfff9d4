"""The public keys that sign Forge Invocation Tokens: JWKS documents from an allow-list, cached per URL.

Where keys may come from (FORGE.md §1.2) is decided by configuration, never by a token:

* production, ``https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json`` (DOC-ESS, ACE, ACP), by default;
* staging, only if the deployment enables it and the token's unverified ``app.apiBaseUrl`` starts with
  ``https://api.stg.atlassian.com/`` (ACE and ACP choose it this way; no Atlassian page documents it);
* Isolated Cloud, only with a configured URL template containing ``{IC_LABEL}``, and only after the token's
  ``icLabel`` matched ``^[a-z0-9_-]{1,50}$`` (DOC-ESS calls this check "security critical");
* an override URL (the local stack, tests) replaces production and staging, like ``INSTALL_KEYS_URL`` does for
  signed install.

No Atlassian page gives a TTL or a rotation schedule, ACE refetches on every request and an app that pinned a static
JWKS broke on rotation (FORGE.md §1.2). So a key set is cached per URL for a lifespan, a ``kid`` it lacks triggers
at most one refetch per cooldown (a rotated-in key is found within a cooldown, a flood of forged kids costs at most
one fetch per cooldown), and a failed refresh keeps the cached set working for a bounded time (stale while error).
pyjwt's ``PyJWKClient`` is not used: it lets ``json.JSONDecodeError`` escape and reads without a size bound; this is
a thin cache over pyjwt's JWK types instead.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import jwt
import orjson
import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from urllib3.exceptions import HTTPError as TransportError

from connect_lambda.errors import AuthenticationError, ConfigurationError, ForgeKeysUnavailableError, Reason

PRODUCTION_JWKS_URL = "https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json"
STAGING_JWKS_URL = "https://forge.cdn.stg.atlassian-dev.net/.well-known/jwks.json"
STAGING_API_BASE_URL_PREFIX = "https://api.stg.atlassian.com/"
IC_LABEL_PLACEHOLDER = "{IC_LABEL}"
IC_LABEL = re.compile(r"[a-z0-9_-]{1,50}")
"""DOC-ESS, "Isolated Cloud support": the label is checked against this before any URL is built from it."""

MAX_KID_LENGTH = 256
_KID = re.compile(rf"[\x21-\x7e]{{1,{MAX_KID_LENGTH}}}")  # printable ASCII without space; '/' is fine
MAX_JWKS_BYTES = 64 * 1024
MIN_RSA_BITS = 2048
DEFAULT_LIFESPAN_SECONDS = 600.0
DEFAULT_COOLDOWN_SECONDS = 30.0
DEFAULT_MAX_STALE_SECONDS = 24 * 3600.0
MAX_COOLDOWN_SECONDS = 60.0
MAX_ISOLATED_CLOUD_URLS = 16
_READ_SIZE = 8192

Clock = Callable[[], float]


def validate_kid(kid: object) -> str:
    """The header's ``kid``, if it can name a key at all.

    A kid is only ever matched against the key set, never put in a URL, so slashes are fine (live kids look like
    ``forge/invocation-token/wf-<uuid>``, FORGE.md §1.2); the bound and the character set only keep junk short.
    """
    if kid is None or kid == "":
        raise AuthenticationError("invocation token has no kid", Reason.MISSING_KID)
    if not isinstance(kid, str) or not _KID.fullmatch(kid):
        raise AuthenticationError("invocation token kid is invalid", Reason.INVALID_KID)
    return kid


def _configured_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.fragment
        or any(not 0x21 <= ord(char) <= 0x7E for char in value)
    ):
        raise ConfigurationError(f"{name} must be an absolute http(s) URL without credentials or fragment")
    return value


def _rsa_signing_key(entry: object) -> tuple[str, RSAPublicKey] | None:
    """The (kid, key) of a JWK usable for RS256 signatures, or None: anything else in the set is ignored."""
    if not isinstance(entry, dict):
        return None
    kid = entry.get("kid")
    if (
        entry.get("kty") != "RSA"
        or entry.get("use", "sig") != "sig"
        or entry.get("alg", "RS256") != "RS256"
        or "d" in entry  # a published private key is a broken key set, not a verification key
        or not isinstance(kid, str)
        or not _KID.fullmatch(kid)
    ):
        return None
    try:
        key = jwt.PyJWK(entry, algorithm="RS256").key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError, OverflowError):
        return None
    if not isinstance(key, RSAPublicKey) or key.key_size < MIN_RSA_BITS:
        return None
    return kid, key


def parse_key_set(body: bytes) -> Mapping[str, RSAPublicKey]:
    """The RS256 keys of a JWKS document, by kid. Anything that is not a key set with such a key is a failure.

    A kid published twice is ambiguous and dropped, so a token can never be checked against a key chosen by order.
    """
    try:
        document = orjson.loads(body)  # strict RFC 8259: no NaN, no trailing garbage
    except (orjson.JSONDecodeError, RecursionError) as exc:
        raise ForgeKeysUnavailableError("Forge JWKS answer is not JSON") from exc
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ForgeKeysUnavailableError("Forge JWKS answer is not a JWK set")
    keys: dict[str, RSAPublicKey] = {}
    ambiguous: set[str] = set()
    for entry in document["keys"]:
        usable = _rsa_signing_key(entry)
        if usable is None:
            continue
        kid, key = usable
        if kid in keys or kid in ambiguous:
            keys.pop(kid, None)
            ambiguous.add(kid)
        else:
            keys[kid] = key
    if not keys:
        raise ForgeKeysUnavailableError("Forge JWKS answer holds no usable RS256 key")
    return MappingProxyType(keys)


@dataclass(frozen=True, slots=True)
class _KeySet:
    keys: Mapping[str, RSAPublicKey]
    fetched_at: float


@dataclass(slots=True)
class _Source:
    """One JWKS URL: its key set, when it was last asked (success or not), and a lock that makes fetches single."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    key_set: _KeySet | None = None
    last_attempt: float | None = None


class ForgeKeySets:
    """The Forge JWKS key sets a container trusts, one per allow-listed URL. One per container; thread-safe."""

    def __init__(
        self,
        *,
        override_url: str | None = None,
        allow_staging: bool = False,
        isolated_cloud_url_template: str | None = None,
        session: requests.Session | None = None,
        connect_timeout: float = 2.0,
        read_timeout: float = 3.0,
        lifespan_seconds: float = DEFAULT_LIFESPAN_SECONDS,
        cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS,
        max_stale_seconds: float = DEFAULT_MAX_STALE_SECONDS,
        clock: Clock = time.monotonic,
    ) -> None:
        if not 0 < cooldown_seconds <= MAX_COOLDOWN_SECONDS:
            raise ConfigurationError(f"JWKS cooldown must be more than 0 and at most {MAX_COOLDOWN_SECONDS} seconds")
        if not cooldown_seconds <= lifespan_seconds <= DEFAULT_MAX_STALE_SECONDS:
            raise ConfigurationError("JWKS lifespan must be between the cooldown and 24 hours")
        if not lifespan_seconds <= max_stale_seconds <= 7 * DEFAULT_MAX_STALE_SECONDS:
            raise ConfigurationError("JWKS stale bound must be between the lifespan and 7 days")
        if not (0 < connect_timeout <= 10 and 0 < read_timeout <= 10):
            raise ConfigurationError("JWKS timeouts must be more than 0 and at most 10 seconds")
        self._production = _configured_url("FORGE_JWKS_URL", override_url) if override_url else PRODUCTION_JWKS_URL
        self._staging = self._production if override_url else STAGING_JWKS_URL
        self._allow_staging = allow_staging
        self._template: re.Pattern[str] | None = None
        self._template_text = isolated_cloud_url_template
        if isolated_cloud_url_template is not None:
            if IC_LABEL_PLACEHOLDER not in isolated_cloud_url_template:
                raise ConfigurationError(f"the Isolated Cloud JWKS URL template must contain {IC_LABEL_PLACEHOLDER}")
            _configured_url("the Isolated Cloud JWKS URL template", isolated_cloud_url_template)
            pieces = isolated_cloud_url_template.split(IC_LABEL_PLACEHOLDER)
            self._template = re.compile(f"(?:{IC_LABEL.pattern})".join(re.escape(piece) for piece in pieces))
        self._session = session or requests.Session()
        self._timeout = (connect_timeout, read_timeout)
        self._deadline = connect_timeout + read_timeout
        self._lifespan = lifespan_seconds
        self._cooldown = cooldown_seconds
        self._max_stale = max_stale_seconds
        self._clock = clock
        self._lock = threading.Lock()
        fixed = {self._production, self._staging} if allow_staging else {self._production}
        self._fixed: dict[str, _Source] = {url: _Source() for url in fixed}
        self._isolated: OrderedDict[str, _Source] = OrderedDict()

    # which URL ---------------------------------------------------------------------------------------------------

    def jwks_url(self, claims: Mapping[str, Any]) -> str:
        """The one JWKS URL allowed for a token, chosen from its *unverified* claims (FORGE.md §1.3, step 2).

        The claims can only choose among URLs the configuration allows: ``icLabel`` is checked against its pattern
        before it is put in the template, and ``app.apiBaseUrl`` can only select staging where it is enabled.
        """
        if "icLabel" in claims:
            label = claims["icLabel"]
            if not isinstance(label, str) or not IC_LABEL.fullmatch(label):
                raise AuthenticationError("invocation token icLabel is invalid", Reason.INVALID_IC_LABEL)
            if self._template_text is None:
                raise AuthenticationError(
                    "Isolated Cloud request but no Isolated Cloud JWKS is configured",
                    Reason.ISOLATED_CLOUD_NOT_CONFIGURED,
                )
            return self._template_text.replace(IC_LABEL_PLACEHOLDER, label)
        if self._allow_staging:
            app = claims.get("app")
            api_base_url = app.get("apiBaseUrl") if isinstance(app, dict) else None
            if isinstance(api_base_url, str) and api_base_url.startswith(STAGING_API_BASE_URL_PREFIX):
                return self._staging
        return self._production

    def _source(self, url: str) -> _Source:
        fixed = self._fixed.get(url)
        if fixed is not None:
            return fixed
        if self._template is None or not self._template.fullmatch(url):
            raise ConfigurationError("JWKS URL is not on the allow-list")
        with self._lock:  # a bounded LRU: labels come from tokens, so their number must not grow without end
            source = self._isolated.get(url)
            if source is None:
                source = self._isolated[url] = _Source()
                if len(self._isolated) > MAX_ISOLATED_CLOUD_URLS:
                    self._isolated.popitem(last=False)
            else:
                self._isolated.move_to_end(url)
            return source

    # which key ---------------------------------------------------------------------------------------------------

    def key(self, url: str, kid: str) -> RSAPublicKey:
        """The RS256 key published under ``kid`` at ``url`` (a URL from :meth:`jwks_url`).

        Raises ``AuthenticationError`` (``UNKNOWN_KID``) when the key set lacks the kid, and
        ``ForgeKeysUnavailableError`` when there is no key set young enough to trust.
        """
        kid = validate_kid(kid)
        source = self._source(url)
        with source.lock:
            now = self._clock()
            held = source.key_set
            if held is not None and now - held.fetched_at < self._lifespan and kid in held.keys:
                return held.keys[kid]
            # the set is missing, due for refresh, or lacks the kid: fetch, but at most once per cooldown
            if source.last_attempt is None or now - source.last_attempt >= self._cooldown:
                source.last_attempt = now
                try:
                    held = source.key_set = _KeySet(self._fetch(url), now)
                except ForgeKeysUnavailableError:
                    if not self._trusted(held, now):
                        raise
            if held is None or not self._trusted(held, now):
                raise ForgeKeysUnavailableError("no Forge key set is available")
            found = held.keys.get(kid)
        if found is None:
            raise AuthenticationError("no Forge key is published under this kid", Reason.UNKNOWN_KID)
        return found

    def _trusted(self, held: _KeySet | None, now: float) -> bool:
        """Stale while error, within bounds: a set older than ``max_stale_seconds`` is no longer trusted."""
        return held is not None and now - held.fetched_at < self._max_stale

    def _fetch(self, url: str) -> Mapping[str, RSAPublicKey]:
        """One GET, no redirects, bounded in time (per read and overall) and in size, then strict parsing."""
        started = time.monotonic()  # the real clock: the deadline bounds real waiting, whatever the injected one says
        try:
            with self._session.get(
                url,
                timeout=self._timeout,
                allow_redirects=False,
                stream=True,
                headers={"Accept": "application/json"},
            ) as response:
                if response.status_code != 200:
                    raise ForgeKeysUnavailableError(f"Forge JWKS answered {response.status_code}")
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > MAX_JWKS_BYTES:
                    raise ForgeKeysUnavailableError("Forge JWKS answer is too large")
                body = bytearray()
                while True:
                    # read1 returns what one read of the socket gives (and decompresses at most _READ_SIZE), so
                    # every wait is bounded by the read timeout and the deadline is checked between them
                    chunk = response.raw.read1(_READ_SIZE, decode_content=True)
                    if not chunk:
                        break
                    body.extend(chunk)
                    if len(body) > MAX_JWKS_BYTES:
                        raise ForgeKeysUnavailableError("Forge JWKS answer is too large")
                    if time.monotonic() - started > self._deadline:
                        raise ForgeKeysUnavailableError("Forge JWKS answer is too slow")
        except (requests.RequestException, TransportError, OSError) as exc:
            raise ForgeKeysUnavailableError("Forge JWKS could not be fetched") from exc
        return parse_key_set(bytes(body))
