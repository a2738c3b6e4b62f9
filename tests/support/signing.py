"""Test-only signers for provider webhooks: a P-256 key pair that signs like SendGrid does,
and Mailgun's HMAC. (outreach only verifies; signing exists here to make signed requests.)"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from outreach.mailers import p256


class SendGridKey:
    """A P-256 key pair: ``public`` is what SendGrid shows (base64 DER SubjectPublicKeyInfo)."""

    def __init__(self) -> None:
        self._d = secrets.randbelow(p256.N - 1) + 1
        x, y, z = p256._multiply(self._d, p256.G)
        z_inverse = pow(z, -1, p256.P)
        ax, ay = x * z_inverse**2 % p256.P, y * z_inverse**3 % p256.P
        spki = p256._SPKI_PREFIX + b"\x04" + ax.to_bytes(32, "big") + ay.to_bytes(32, "big")
        self.public = base64.b64encode(spki).decode("ascii")

    def sign(self, message: bytes) -> str:
        e = int.from_bytes(hashlib.sha256(message).digest(), "big")
        while True:
            k = secrets.randbelow(p256.N - 1) + 1
            x = p256._affine_x(p256._multiply(k, p256.G))
            assert x is not None
            r = x % p256.N
            s = pow(k, -1, p256.N) * (e + r * self._d) % p256.N
            if r and s:
                break

        def integer(value: int) -> bytes:
            raw = value.to_bytes(value.bit_length() // 8 + 1, "big")
            return b"\x02" + bytes([len(raw)]) + raw

        body = integer(r) + integer(s)
        return base64.b64encode(b"\x30" + bytes([len(body)]) + body).decode("ascii")

    def headers(self, body: bytes, timestamp: str = "1781946000") -> dict[str, str]:
        return {
            "X-Twilio-Email-Event-Webhook-Signature": self.sign(timestamp.encode() + body),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            "Content-Type": "application/json",
        }


def mailgun_signature(key: str, timestamp: str, token: str) -> str:
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
