"""Test-only signers for provider webhooks: a P-256 key pair that signs like SendGrid does,
and Mailgun's HMAC. (outreach only verifies; signing exists here to make signed requests.)"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


class SendGridKey:
    """A P-256 key pair: ``public`` is what SendGrid shows (base64 DER SubjectPublicKeyInfo)."""

    def __init__(self) -> None:
        self._private = ec.generate_private_key(ec.SECP256R1())
        spki = self._private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public = base64.b64encode(spki).decode("ascii")

    def sign(self, message: bytes) -> str:
        signature = self._private.sign(message, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode("ascii")

    def headers(self, body: bytes, timestamp: str = "1781946000") -> dict[str, str]:
        return {
            "X-Twilio-Email-Event-Webhook-Signature": self.sign(timestamp.encode() + body),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            "Content-Type": "application/json",
        }


def mailgun_signature(key: str, timestamp: str, token: str) -> str:
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
