"""The local stack's key pairs (the signed-install key, the Forge keys), each generated once and kept under .local/
(never committed): the simulator publishes the public halves, the commands that sign (make call, make events, the
scenario) load the same files."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.config import FORGE_INVOCATION_KEY_FILE, FORGE_OAUTH_KEY_FILE, INSTALL_KEY_FILE

_KID_NAMESPACE = uuid.UUID("8f3b9a52-5d0e-4c1f-9b7a-2e6d4c8a1f03")


def private_key(path: Path) -> rsa.RSAPrivateKey:
    """The key in ``path``, generated there first if there is none. The file appears whole or not at all (written
    aside, then linked into place), so that two processes starting at once agree on one key."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
            with contextlib.suppress(FileExistsError):  # another process was first: its key is the key
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise TypeError(f"{path} is not an RSA key")
    return loaded


def install_private_key() -> rsa.RSAPrivateKey:
    return private_key(INSTALL_KEY_FILE)


def forge_invocation_key() -> rsa.RSAPrivateKey:
    return private_key(FORGE_INVOCATION_KEY_FILE)


def forge_oauth_key() -> rsa.RSAPrivateKey:
    return private_key(FORGE_OAUTH_KEY_FILE)


def forge_kid(key: rsa.RSAPrivateKey) -> str:
    """The key's ``kid``, shaped like Forge's live ones (``forge/invocation-token/wf-<uuid>``) and derived from the
    key: stable while the key is, new with a new key (a warm authorizer then fetches the key set again instead of
    trusting the key it cached under the old kid)."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1))
    return f"forge/invocation-token/wf-{uuid.uuid5(_KID_NAMESPACE, digest.finalize().hex())}"
