"""Field encryption for credentials (MultiFernet).

Why MultiFernet: the first key encrypts and every listed key decrypts, so an
operator rotates by prepending a new key, running `rotate_field_keys`, then
dropping the old one, without a window where stored passwords are unreadable.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class CredentialDecryptError(Exception):
    """A stored secret cannot be decrypted with the configured keys."""


def _fernet() -> MultiFernet:
    keys = settings.WHALEFALL_FIELD_KEYS
    if not keys:
        raise CredentialDecryptError("WHALEFALL_FIELD_KEYS is empty: no key to encrypt or decrypt with.")
    return MultiFernet([Fernet(k.encode()) for k in keys])


def encrypt(plaintext: str) -> str:
    """Encrypt with the newest key."""
    return _fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    """Decrypt with any configured key; never fall back to an empty secret."""
    try:
        return _fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError) as exc:
        raise CredentialDecryptError(
            "credential cannot be decrypted: key rotated? "
            "(WHALEFALL_FIELD_KEYS does not hold the key it was encrypted with)"
        ) from exc


def rotate(token: str) -> str:
    """Re-encrypt a token with the newest key."""
    try:
        return _fernet().rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken as exc:
        raise CredentialDecryptError("credential cannot be decrypted: key rotated?") from exc
