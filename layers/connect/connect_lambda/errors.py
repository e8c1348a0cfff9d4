"""Typed errors of the library.

Every error carries a machine-readable ``reason`` so that handlers can count failures by cause (metrics) and map
them to an HTTP answer in one place, without parsing messages. Messages are written for operators and never
contain a secret, a token or an assertion: callers may log them as they are.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a request, a token or a payload was refused. Stable values: dashboards and alarms key on them."""

    # request shape
    MALFORMED_REQUEST = "malformed_request"
    # token transport and structure
    MISSING_TOKEN = "missing_token"
    MULTIPLE_TOKENS = "multiple_tokens"
    MALFORMED_TOKEN = "malformed_token"
    TOKEN_TOO_LARGE = "token_too_large"
    WRONG_ALGORITHM = "wrong_algorithm"
    CRITICAL_HEADER = "critical_header"
    # tenant
    MISSING_ISSUER = "missing_issuer"
    UNKNOWN_TENANT = "unknown_tenant"
    TENANT_UNINSTALLED = "tenant_uninstalled"
    TENANT_DISABLED = "tenant_disabled"
    # signature and time
    BAD_SIGNATURE = "bad_signature"
    MISSING_EXPIRY = "missing_exp"
    MISSING_ISSUED_AT = "missing_iat"
    BAD_TIME_CLAIM = "bad_time_claim"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    LIFETIME_TOO_LONG = "lifetime_too_long"
    ISSUED_IN_FUTURE = "issued_in_future"
    # qsh
    MISSING_QSH = "missing_qsh"
    QSH_MISMATCH = "qsh_mismatch"
    CONTEXT_QSH_NOT_ALLOWED = "context_qsh_not_allowed"
    CONTEXT_TOKEN_REQUIRED = "context_token_required"
    # signed install
    MISSING_KID = "missing_kid"
    INVALID_KID = "invalid_kid"
    UNKNOWN_KID = "unknown_kid"
    INSTALL_KEY_UNAVAILABLE = "install_key_unavailable"
    WRONG_AUDIENCE = "wrong_audience"
    ISSUER_MISMATCH = "issuer_mismatch"
    REPLAYED_TOKEN = "replayed_token"
    DELIVERY_IN_PROGRESS = "delivery_in_progress"
    # installed payload
    INVALID_PAYLOAD = "invalid_payload"
    TENANT_HOST_NOT_ALLOWED = "tenant_host_not_allowed"
    WRONG_APP_KEY = "wrong_app_key"
    # Forge invocation token (FIT)
    WRONG_ISSUER = "wrong_issuer"
    MISSING_NOT_BEFORE = "missing_nbf"
    INVALID_IC_LABEL = "invalid_ic_label"
    ISOLATED_CLOUD_NOT_CONFIGURED = "isolated_cloud_not_configured"
    APP_ID_MISMATCH = "app_id_mismatch"
    INVALID_INSTALLATION = "invalid_installation"
    INSTALLATION_MISMATCH = "installation_mismatch"
    INVALID_API_BASE_URL = "invalid_api_base_url"
    API_BASE_URL_NOT_ALLOWED = "api_base_url_not_allowed"
    INVALID_PRINCIPAL = "invalid_principal"
    FORGE_KEYS_UNAVAILABLE = "forge_keys_unavailable"
    # OAuth 2.0 (3LO) grants
    INVALID_STATE = "invalid_state"
    CONSENT_DECLINED = "consent_declined"
    INVALID_CODE = "invalid_code"
    GRANT_MISSING = "grant_missing"
    GRANT_REVOKED = "grant_revoked"
    SITE_NOT_GRANTED = "site_not_granted"
    # configuration
    INVALID_CONFIGURATION = "invalid_configuration"
    # outbound calls (product, authorization server) and storage
    DEPENDENCY_UNAVAILABLE = "dependency_unavailable"
    GRANT_REJECTED = "grant_rejected"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    PRODUCT_ERROR = "product_error"
    SECRET_UNREADABLE = "secret_unreadable"


class ConnectError(Exception):
    """Base of every error the library raises on purpose. Its class alone decides the HTTP answer (one table, in
    the adapter); its ``reason`` says why, for logs and metrics."""

    default_reason: Reason = Reason.MALFORMED_REQUEST

    def __init__(self, message: str, reason: Reason | None = None) -> None:
        super().__init__(message)
        self.reason: Reason = reason or self.default_reason

    def __str__(self) -> str:
        return f"{self.args[0]} ({self.reason})"


class MalformedRequestError(ConnectError):
    """The request itself cannot be canonicalised (e.g. a bad percent-escape): a client error, 400."""

    default_reason = Reason.MALFORMED_REQUEST


class UnsupportedMediaTypeError(MalformedRequestError):
    """The body is not of the content type the route takes: 415."""


class PayloadTooLargeError(MalformedRequestError):
    """The body exceeds the route's bound: 413."""


class AuthenticationError(ConnectError):
    """A token was missing, malformed, or failed a check: 401. Fail closed: never caught to allow."""

    default_reason = Reason.BAD_SIGNATURE


class TenantStateError(AuthenticationError):
    """The token is for a tenant that is disabled or uninstalled."""

    default_reason = Reason.TENANT_DISABLED


class InvalidPayloadError(ConnectError):
    """A lifecycle payload failed validation (missing fields, wrong types, bounds, hosts): 400."""

    default_reason = Reason.INVALID_PAYLOAD


class ForbiddenError(ConnectError):
    """The caller is who it says, and may not do this: 403."""

    default_reason = Reason.FORBIDDEN


class NotFoundError(ConnectError):
    """No such route or resource: 404."""

    default_reason = Reason.NOT_FOUND


class ConflictError(ConnectError):
    """The same work is in progress elsewhere: 409, retry shortly."""

    default_reason = Reason.DELIVERY_IN_PROGRESS


class ConfigurationError(ConnectError):
    """The deployment is misconfigured. Raised at start-up so that nothing runs half-configured."""

    default_reason = Reason.INVALID_CONFIGURATION


class DependencyUnavailableError(ConnectError):
    """A service we depend on (install-key CDN, DynamoDB, KMS, authorization server) failed: 5xx, retry later."""

    default_reason = Reason.DEPENDENCY_UNAVAILABLE


class InstallKeyUnavailableError(DependencyUnavailableError):
    """No install-key CDN answered with a usable key. Signed install fails closed (503, Atlassian retries)."""

    default_reason = Reason.INSTALL_KEY_UNAVAILABLE


class UpstreamError(ConnectError):
    """An Atlassian service answered in a way we cannot use (a refused grant, a refused credential, an answer too
    large): 502, the fault is not the caller's."""

    default_reason = Reason.PRODUCT_ERROR


class ForgeKeysUnavailableError(DependencyUnavailableError):
    """No usable Forge JWKS: the fetch failed and no cached key set is young enough to trust.

    The FIT verifier turns it into an :class:`AuthenticationError` with the same reason (the request is denied like
    any unverifiable token); this class stays on the error's ``__cause__`` so that logs and metrics can tell an
    outage of Atlassian's key CDN from a bad token.
    """

    default_reason = Reason.FORGE_KEYS_UNAVAILABLE
