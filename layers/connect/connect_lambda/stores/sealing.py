"""Sealing small secrets (shared secrets, access and refresh tokens) with KMS under an encryption context.

Every sealed value is bound by its encryption context to the record it belongs to and to this app: a ciphertext
copied into another record, or read by another app's deployment, does not open. Opening tells two failures apart,
because callers must react differently: *unreadable* (this ciphertext is not this record's: tampered or copied;
never retried, the record is treated as having no secret) and *unavailable* (KMS could not be reached or refused
us: try again later). Plaintext never leaves this module except to the caller that asked for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from connect_lambda.errors import ConnectError, Reason
from connect_lambda.stores.aws import error_code, unavailable

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_kms import KMSClient

_UNREADABLE = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})


class SealedValueUnreadableError(ConnectError):
    """KMS refused to open a ciphertext under this record's context: it is not this record's (tampered or copied)."""

    default_reason = Reason.SECRET_UNREADABLE


class Sealer:
    """Seals and opens values with one KMS key; the context always names the app, plus what the caller adds."""

    def __init__(self, kms: Callable[[], KMSClient], *, key_id: str, app_key: str) -> None:
        self._kms = kms
        self._key_id = key_id
        self._app_key = app_key

    def _context(self, context: Mapping[str, str]) -> dict[str, str]:
        return {**context, "appKey": self._app_key}

    def seal(self, plaintext: bytes, context: Mapping[str, str], *, what: str) -> bytes:
        try:
            response = self._kms().encrypt(
                KeyId=self._key_id, Plaintext=plaintext, EncryptionContext=self._context(context)
            )
        except (ClientError, BotoCoreError) as exc:
            raise unavailable(f"encrypting the {what}", exc) from exc
        return response["CiphertextBlob"]

    def open(self, ciphertext: bytes, context: Mapping[str, str], *, what: str) -> bytes:
        try:
            response = self._kms().decrypt(
                KeyId=self._key_id, CiphertextBlob=ciphertext, EncryptionContext=self._context(context)
            )
        except ClientError as exc:
            if error_code(exc) in _UNREADABLE:
                raise SealedValueUnreadableError(f"the stored {what} does not open for its own record") from exc
            raise unavailable(f"decrypting the {what}", exc) from exc
        except BotoCoreError as exc:
            raise unavailable(f"decrypting the {what}", exc) from exc
        return response["Plaintext"]
