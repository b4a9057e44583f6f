"""Key material on disk: created on first use in development, provided by operators elsewhere.

Two processes may start at once and both find no key; creation is atomic (write a temporary
file, then link it into place), so exactly one key wins and both processes use it."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def load_or_create(path: Path, create: Callable[[], bytes]) -> bytes:
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.write(fd, create())
        os.close(fd)
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race; use its key
    finally:
        os.unlink(tmp)
    return path.read_bytes()


def _new_ed25519_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def signing_key(key_dir: Path, name: str) -> Ed25519PrivateKey:
    pem = load_or_create(key_dir / f"{name}.pem", _new_ed25519_pem)
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{key_dir / (name + '.pem')}: not an Ed25519 private key")
    return key


def secret(key_dir: Path, name: str) -> bytes:
    return load_or_create(key_dir / f"{name}.key", lambda: secrets.token_bytes(32))


def verification_key(key_dir: Path, name: str) -> Ed25519PublicKey:
    """The public key that checks what `name` signs. A deployment where services only verify
    ships `<name>.pub.pem` (the private key stays with the issuer); in development, where the
    private key is at hand (or made on first use), its public half serves."""
    public_file = key_dir / f"{name}.pub.pem"
    if public_file.exists():
        key = serialization.load_pem_public_key(public_file.read_bytes())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{public_file}: not an Ed25519 public key")
        return key
    return signing_key(key_dir, name).public_key()


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
