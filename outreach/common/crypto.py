"""Secrets at rest (tenant SendGrid API keys), encrypted with MultiFernet.

``settings.ENCRYPTION_KEYS`` lists Fernet keys newest first: the first encrypts, every key
decrypts, and ``secret_rotate`` re-encrypts a token under the newest key.
"""

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class SecretDecryptError(Exception):
    """The token was not made by any configured key (or was tampered with)."""


@lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("OUTREACH_ENCRYPTION_KEYS is empty")
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(f"OUTREACH_ENCRYPTION_KEYS holds an invalid key: {exc}") from exc


def _current() -> MultiFernet:
    return _fernet(tuple(settings.ENCRYPTION_KEYS))


def secret_encrypt(*, plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode()


def secret_decrypt(*, token: str) -> str:
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretDecryptError("secret cannot be decrypted with the configured keys") from exc


def secret_rotate(*, token: str) -> str:
    try:
        return _current().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretDecryptError("secret cannot be decrypted with the configured keys") from exc
