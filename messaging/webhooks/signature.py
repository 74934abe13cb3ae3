"""SendGrid Signed Event Webhook: ECDSA P-256 / SHA-256 over ``timestamp + raw body``.

The tenant's verification key is SendGrid's base64 DER SubjectPublicKeyInfo (no PEM armour).
Everything here works on bytes exactly as received: re-serialising the JSON, or decoding and
re-encoding the body, would break the signature. Any malformed input (bad base64, bad DER,
a key that is not P-256) verifies as False; this module never raises on attacker input.
"""

import base64
import binascii
import time
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def _b64decode(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


@lru_cache(maxsize=1024)
def _public_key(public_key_b64: str) -> ec.EllipticCurvePublicKey | None:
    """Parse once per distinct key: loading DER costs more than verifying a signature."""
    der = _b64decode(public_key_b64)
    if not der:
        return None
    try:
        key = load_der_public_key(der)
    except (ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        return None
    return key


def public_key_is_valid(*, public_key_b64: str) -> bool:
    """True when the text is a usable SendGrid verification key (base64 DER P-256 SPKI)."""
    return _public_key(public_key_b64.strip()) is not None


def signature_verify(
    *, public_key_b64: str, signature_b64: str, timestamp: str, body: bytes
) -> bool:
    """Does ``signature_b64`` sign ``timestamp`` bytes followed directly by ``body``?"""
    key = _public_key(public_key_b64.strip())
    if key is None or not signature_b64 or not timestamp:
        return False
    signature = _b64decode(signature_b64)
    if not signature:
        return False
    try:
        key.verify(signature, timestamp.encode("utf-8") + body, _ECDSA_SHA256)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def timestamp_is_fresh(
    *, timestamp: str, max_age_seconds: int, max_future_seconds: int, now: float | None = None
) -> bool:
    """Is the signed timestamp (unix seconds, digits only) inside the tolerance window?"""
    value = timestamp.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        return False
    now = time.time() if now is None else now
    age = now - int(value)
    return -max_future_seconds <= age <= max_age_seconds
