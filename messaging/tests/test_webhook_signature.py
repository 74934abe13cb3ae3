"""Signature verification of SendGrid's Signed Event Webhook (ECDSA P-256 over ts + body)."""

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from messaging.tests.webhook_support import signing_key_new
from messaging.webhooks.signature import (
    public_key_is_valid,
    signature_verify,
    timestamp_is_fresh,
)

# The official vector (sendgrid-python test/unit/test_eventwebhook.py); the CRLF is signed.
VECTOR_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62g"
    "w+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
VECTOR_SIGNATURE = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
VECTOR_TIMESTAMP = "1600112502"
VECTOR_BODY = (
    json.dumps(
        [
            {
                "email": "hello@world.com",
                "event": "dropped",
                "reason": "Bounced Address",
                "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
                "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
                "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
                "timestamp": 1600112492,
            }
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    + "\r\n"
).encode()


def test_the_official_sendgrid_vector_verifies():
    assert signature_verify(
        public_key_b64=VECTOR_KEY,
        signature_b64=VECTOR_SIGNATURE,
        timestamp=VECTOR_TIMESTAMP,
        body=VECTOR_BODY,
    )


@pytest.mark.parametrize(
    "change",
    [
        {"body": VECTOR_BODY.rstrip(b"\r\n")},  # the trailing CRLF is part of what was signed
        {"body": VECTOR_BODY.replace(b"Bounced", b"bounced")},
        {"timestamp": "1600112503"},
        {"timestamp": ""},
        {"signature_b64": ""},
    ],
)
def test_the_official_vector_fails_once_anything_changes(change):
    args = {
        "public_key_b64": VECTOR_KEY,
        "signature_b64": VECTOR_SIGNATURE,
        "timestamp": VECTOR_TIMESTAMP,
        "body": VECTOR_BODY,
    }
    args.update(change)
    assert not signature_verify(**args)


def test_every_single_byte_mutation_of_body_or_signature_is_refused():
    key = signing_key_new()
    body = b'[{"event":"open","sg_event_id":"abc","timestamp":1700000000}]'
    signature = key.sign("1700000000", body)
    assert signature_verify(
        public_key_b64=key.public_b64, signature_b64=signature, timestamp="1700000000", body=body
    )
    for index in range(len(body)):
        mutated = bytearray(body)
        mutated[index] ^= 0x01
        assert not signature_verify(
            public_key_b64=key.public_b64,
            signature_b64=signature,
            timestamp="1700000000",
            body=bytes(mutated),
        )
    raw_signature = base64.b64decode(signature)
    for index in range(len(raw_signature)):
        mutated = bytearray(raw_signature)
        mutated[index] ^= 0x01
        assert not signature_verify(
            public_key_b64=key.public_b64,
            signature_b64=base64.b64encode(bytes(mutated)).decode(),
            timestamp="1700000000",
            body=body,
        )


def test_a_signature_by_another_key_is_refused():
    signer, other = signing_key_new(), signing_key_new()
    body = b"[]"
    assert not signature_verify(
        public_key_b64=other.public_b64,
        signature_b64=signer.sign("1700000000", body),
        timestamp="1700000000",
        body=body,
    )


@pytest.mark.parametrize(
    ("public_key", "signature"),
    [
        ("not base64 at all!!", "MEUCIQ=="),
        (VECTOR_KEY, "%%%%"),
        (VECTOR_KEY, "AAAA"),  # valid base64, not DER
        (base64.b64encode(b"garbage DER").decode(), VECTOR_SIGNATURE),
        ("", VECTOR_SIGNATURE),
    ],
)
def test_malformed_keys_and_signatures_verify_as_false_without_raising(public_key, signature):
    assert not signature_verify(
        public_key_b64=public_key,
        signature_b64=signature,
        timestamp=VECTOR_TIMESTAMP,
        body=VECTOR_BODY,
    )


def test_a_valid_key_on_another_curve_is_not_a_sendgrid_key():
    p384 = ec.generate_private_key(ec.SECP384R1())
    der = p384.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert not public_key_is_valid(public_key_b64=base64.b64encode(der).decode())


def test_key_validity_check_accepts_sendgrid_keys_only():
    assert public_key_is_valid(public_key_b64=VECTOR_KEY)
    assert public_key_is_valid(public_key_b64=signing_key_new().public_b64)
    assert not public_key_is_valid(public_key_b64="MFkwEwYHKoZIzj0CAQ")


@pytest.mark.parametrize(
    ("timestamp", "fresh"),
    [
        ("1000000", True),
        ("999401", True),  # 599 s old
        ("999399", False),  # 601 s old
        ("1000299", True),  # 299 s ahead
        ("1000301", False),  # 301 s ahead
        ("", False),
        ("12a", False),
        ("-5", False),
        ("1e6", False),
        ("\uff11\uff10\uff10\uff10000", False),  # full-width digits are digits to Python, not to us
    ],
)
def test_timestamp_window(timestamp, fresh):
    assert (
        timestamp_is_fresh(
            timestamp=timestamp, max_age_seconds=600, max_future_seconds=300, now=1_000_000
        )
        is fresh
    )
