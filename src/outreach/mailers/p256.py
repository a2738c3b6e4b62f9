"""ECDSA signature checks on the NIST P-256 curve with SHA-256, for SendGrid's signed events.

Only verification, with public inputs (the public key SendGrid shows, the signature and the
signed bytes), so no secret is handled here and timing reveals nothing. The ``cryptography``
package would do the same; this module exists because outreach does not depend on it.

    key = public_key("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE...")   # base64 DER, or PEM
    verify(key, signature_der, timestamp + body)                    # True or False
"""

from __future__ import annotations

import base64
import binascii
import hashlib

# curve parameters (SEC 2, secp256r1)
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
A = P - 3
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)
Point = tuple[int, int]
_Jacobian = tuple[int, int, int]
# DER prefix of a SubjectPublicKeyInfo for id-ecPublicKey on prime256v1, uncompressed point
_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")


class BadPublicKey(ValueError):
    """The configured public key is not a P-256 key."""


def public_key(text: str) -> Point:
    """The point of a base64 DER (or PEM) SubjectPublicKeyInfo for P-256."""
    body = "".join(line for line in text.strip().splitlines() if not line.startswith("-----"))
    try:
        der = base64.b64decode(body, validate=True)
    except binascii.Error:
        raise BadPublicKey("the public key is not base64") from None
    if len(der) != len(_SPKI_PREFIX) + 65 or not der.startswith(_SPKI_PREFIX):
        raise BadPublicKey("the public key is not an uncompressed P-256 key")
    point = der[len(_SPKI_PREFIX) :]
    if point[0] != 4:
        raise BadPublicKey("the public key is not an uncompressed P-256 key")
    x, y = int.from_bytes(point[1:33], "big"), int.from_bytes(point[33:], "big")
    if not (x < P and y < P and (y * y - (x * x * x + A * x + B)) % P == 0):
        raise BadPublicKey("the public key is not a point of P-256")
    return (x, y)


def _der_integer(data: bytes, at: int) -> tuple[int, int]:
    if at + 2 > len(data) or data[at] != 0x02:
        raise ValueError("not an INTEGER")
    length = data[at + 1]
    if length == 0 or length > 33 or at + 2 + length > len(data):
        raise ValueError("bad INTEGER length")
    return int.from_bytes(data[at + 2 : at + 2 + length], "big"), at + 2 + length


def signature_numbers(der: bytes) -> tuple[int, int]:
    """(r, s) of a DER ``SEQUENCE { INTEGER r, INTEGER s }``."""
    if len(der) < 8 or der[0] != 0x30 or der[1] != len(der) - 2:
        raise ValueError("not a DER ECDSA signature")
    r, at = _der_integer(der, 2)
    s, at = _der_integer(der, at)
    if at != len(der):
        raise ValueError("trailing bytes after the signature")
    return r, s


def _double(p: _Jacobian) -> _Jacobian:
    x, y, z = p
    if y == 0 or z == 0:
        return (0, 1, 0)
    yy = y * y % P
    s = 4 * x * yy % P
    zz = z * z % P
    m = 3 * (x - zz) * (x + zz) % P  # a = -3
    x3 = (m * m - 2 * s) % P
    return (x3, (m * (s - x3) - 8 * yy * yy) % P, 2 * y * z % P)


def _add(p: _Jacobian, q: _Jacobian) -> _Jacobian:
    if p[2] == 0:
        return q
    if q[2] == 0:
        return p
    x1, y1, z1 = p
    x2, y2, z2 = q
    z1z1, z2z2 = z1 * z1 % P, z2 * z2 % P
    u1, u2 = x1 * z2z2 % P, x2 * z1z1 % P
    s1, s2 = y1 * z2 * z2z2 % P, y2 * z1 * z1z1 % P
    if u1 == u2:
        return _double(p) if s1 == s2 else (0, 1, 0)
    h, r = (u2 - u1) % P, (s2 - s1) % P
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    return (x3, (r * (v - x3) - s1 * hhh) % P, h * z1 * z2 % P)


def _multiply(k: int, point: Point) -> _Jacobian:
    result: _Jacobian = (0, 1, 0)
    addend: _Jacobian = (point[0], point[1], 1)
    while k:
        if k & 1:
            result = _add(result, addend)
        addend = _double(addend)
        k >>= 1
    return result


def _affine_x(p: _Jacobian) -> int | None:
    if p[2] == 0:
        return None
    z_inverse = pow(p[2], -1, P)
    return p[0] * z_inverse * z_inverse % P


def verify(key: Point, signature_der: bytes, message: bytes) -> bool:
    """True when ``signature_der`` is the key's ECDSA-SHA256 signature of ``message``."""
    try:
        r, s = signature_numbers(signature_der)
    except ValueError:
        return False
    if not (0 < r < N and 0 < s < N):
        return False
    e = int.from_bytes(hashlib.sha256(message).digest(), "big")
    w = pow(s, -1, N)
    total = _add(_multiply(e * w % N, G), _multiply(r * w % N, key))
    x = _affine_x(total)
    return x is not None and x % N == r
