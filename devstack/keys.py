"""The local stack's signed-install key pair, generated once and kept under .local/ (never committed)."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.config import INSTALL_KEY_FILE


def install_private_key() -> rsa.RSAPrivateKey:
    if not INSTALL_KEY_FILE.exists():
        INSTALL_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(INSTALL_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
    loaded = serialization.load_pem_private_key(INSTALL_KEY_FILE.read_bytes(), password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise TypeError(f"{INSTALL_KEY_FILE} is not an RSA key")
    return loaded


def install_public_pem() -> bytes:
    return (
        install_private_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
