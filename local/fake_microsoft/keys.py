"""Signing keys of the fake Entra ID: RSA keys with self-signed certificates, a JWKS, and a minter.

Like Entra ID, `kid` equals `x5t` (base64url SHA-1 thumbprint of the certificate), and every key
published at `/common/discovery/v2.0/keys` carries an `issuer` template `{base}/{tenantid}/v2.0`.
Rotation adds a key that signs from then on; the old one stays published until retired.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
HMAC_ALGORITHMS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64url(data: bytes) -> str:
    """base64url without padding (JOSE), the one helper for the fakes and the tests."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_b64(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey
    cert_der: bytes

    @classmethod
    def generate(cls) -> SigningKey:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "accounts.accesscontrol.windows.net")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(private_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365 * 2))
            .sign(private_key, hashes.SHA256())
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        return cls(kid=b64url(hashlib.sha1(der).digest()), private_key=private_key, cert_der=der)

    @property
    def x5t(self) -> str:
        return self.kid

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def jwk(self, issuer_template: str | None) -> dict[str, Any]:
        numbers = self.private_key.public_key().public_numbers()
        key = {
            "kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.x5t,
            "n": _int_b64(numbers.n), "e": _int_b64(numbers.e),
            "x5c": [base64.b64encode(self.cert_der).decode("ascii")],
        }
        if issuer_template is not None:
            key["cloud_instance_name"] = "microsoftonline.com"
            key["issuer"] = issuer_template
        return key


class KeySet:
    """The published keys, the current signing key, and a key that is never published."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        first = SigningKey.generate()
        self._published: list[SigningKey] = [first]
        self._current = first
        self._retired: dict[str, SigningKey] = {}
        self.outside = SigningKey.generate()  # signs "valid-looking" tokens no JWKS vouches for

    @property
    def current(self) -> SigningKey:
        return self._current

    def published(self) -> list[SigningKey]:
        with self._lock:
            return list(self._published)

    def find(self, kid: str) -> SigningKey | None:
        """A published key by kid (what a verifier may use)."""
        with self._lock:
            for key in self._published:
                if key.kid == kid:
                    return key
        return None

    def any_key(self, kid: str) -> SigningKey | None:
        """Published, retired or the outside key: for minting tokens signed by old keys."""
        key = self.find(kid)
        if key is not None:
            return key
        with self._lock:
            if kid in self._retired:
                return self._retired[kid]
        return self.outside if kid == self.outside.kid else None

    def rotate(self, retire_old: bool = False, publish_only: bool = False) -> SigningKey:
        """Publish a new key. It signs from now on unless `publish_only` (pre-publication)."""
        new = SigningKey.generate()
        with self._lock:
            if retire_old:
                for key in self._published:
                    self._retired[key.kid] = key
                self._published = []
            self._published.insert(0, new)
            if not publish_only or retire_old:
                self._current = new
        return new

    def retire(self, kid: str | None = None) -> list[str]:
        """Unpublish `kid`, or every key except the current signing key; returns retired kids."""
        with self._lock:
            victims = [k for k in self._published
                       if (k.kid == kid if kid else k.kid != self._current.kid)]
            if kid and kid == self._current.kid:
                raise ValueError("cannot retire the current signing key; rotate first")
            for key in victims:
                self._published.remove(key)
                self._retired[key.kid] = key
            return [k.kid for k in victims]

    def use(self, kid: str) -> None:
        """Make a published key the signing key."""
        key = self.find(kid)
        if key is None:
            raise KeyError(kid)
        with self._lock:
            self._current = key

    def jwks(self, issuer_template: str | None) -> dict[str, Any]:
        return {"keys": [k.jwk(issuer_template) for k in self.published()]}

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {"current_kid": self._current.kid, "published_kids": [k.kid for k in self._published],
                    "retired_kids": list(self._retired), "outside_kid": self.outside.kid}

    # ---- signing ---------------------------------------------------------------------------------
    def sign(self, claims: dict[str, Any], header: dict[str, Any] | None = None,
             key: str = "current", alg: str = "RS256") -> str:
        """Sign `claims` with `header` (its "alg" is set here; None values are dropped).

        `key`: "current", "outside" (never published), a kid (published or retired), "none"
        (alg none, empty signature) or "hs256-public" (HMAC keyed with the current public key's
        PEM: the classic algorithm-confusion token)."""
        if key == "none":
            alg = "none"
            signer = self.current
        elif key in ("hs256-public", "hmac-public"):
            alg = alg if alg in HMAC_ALGORITHMS else "HS256"
            signer = self.current
        else:
            if alg not in RSA_ALGORITHMS:
                raise ValueError(f"alg must be one of {RSA_ALGORITHMS} for an RSA key")
            found = {"current": self.current, "outside": self.outside}.get(key) or self.any_key(key)
            if found is None:
                raise KeyError(f"unknown key {key!r}")
            signer = found
        if header is None:
            header = {"typ": "JWT", "kid": signer.kid}
        full: dict[str, Any] = {}
        if header.get("typ") is not None:
            full["typ"] = header["typ"]
        full["alg"] = alg
        full.update((k, v) for k, v in header.items() if v is not None and k not in ("typ", "alg"))
        signing_input = f"{_segment(full)}.{_segment(claims)}".encode("ascii")
        if alg == "none":
            return signing_input.decode() + "."
        if alg in HMAC_ALGORITHMS:
            mac = hmac.new(signer.public_pem(), signing_input, HMAC_ALGORITHMS[alg]).digest()
            return f"{signing_input.decode()}.{b64url(mac)}"
        digest = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}[alg[2:]]()
        if alg.startswith("PS"):
            pad: padding.AsymmetricPadding = padding.PSS(mgf=padding.MGF1(digest),
                                                         salt_length=padding.PSS.DIGEST_LENGTH)
        else:
            pad = padding.PKCS1v15()
        signature = signer.private_key.sign(signing_input, pad, digest)
        return f"{signing_input.decode()}.{b64url(signature)}"

    def verify(self, token: str, audience: list[str] | str, issuer: str | None = None,
               leeway: int = 0) -> dict[str, Any]:
        """Verify an RS256 token against the published keys (what Graph does with its own tokens)."""
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        key = self.find(kid) if isinstance(kid, str) else None
        if key is None:
            raise jwt.InvalidSignatureError("signing key not found")
        return jwt.decode(token, key.private_key.public_key(), algorithms=["RS256"], audience=audience,
                          issuer=issuer, leeway=leeway,
                          options={"require": ["exp", "nbf", "iat", "aud", "iss"]})


def _segment(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def random_uti() -> str:
    return b64url(uuid.uuid4().bytes)[:22]
