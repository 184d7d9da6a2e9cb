"""SSH public keys and the raw signature algorithms behind SSHSIG, on top of `cryptography`.

A key is kept as its wire blob (what OpenSSH compares, fingerprints and embeds in a
signature) plus, for the types we can verify, the decoded `cryptography` key. The key
types are OpenSSH's: ed25519, ecdsa over nistp256/384/521, and RSA with the SHA-2
signature algorithms (RFC 8332). Other types OpenSSH knows (ssh-dss, security keys,
certificates) may sit in an allowed_signers file, so they parse as opaque keys, but a
signature made with one is refused as unsupported.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from .wire import WireError, WireReader, mpint, string

__all__ = [
    "CRYPTO_KEY_TYPES",
    "OPENSSH_KEY_TYPES",
    "CryptoPrivateKey",
    "PublicKey",
    "UnsupportedError",
    "decode_public_key",
    "public_key_of",
    "sign_raw",
    "verify_raw",
]

ED25519: Final = "ssh-ed25519"
RSA: Final = "ssh-rsa"
# key type -> (curve name inside the blob, curve, the hash ECDSA uses on that curve)
_ECDSA: Final[dict[str, tuple[str, ec.EllipticCurve, hashes.HashAlgorithm]]] = {
    "ecdsa-sha2-nistp256": ("nistp256", ec.SECP256R1(), hashes.SHA256()),
    "ecdsa-sha2-nistp384": ("nistp384", ec.SECP384R1(), hashes.SHA384()),
    "ecdsa-sha2-nistp521": ("nistp521", ec.SECP521R1(), hashes.SHA512()),
}
_RSA_SIGNATURE_HASHES: Final[dict[str, hashes.HashAlgorithm]] = {
    "rsa-sha2-512": hashes.SHA512(),
    "rsa-sha2-256": hashes.SHA256(),
}
# OpenSSH's floor for RSA moduli (SSH_RSA_MINIMUM_MODULUS_SIZE); smaller keys are refused.
_RSA_MIN_BITS: Final = 1024

CRYPTO_KEY_TYPES: Final = frozenset({ED25519, RSA, *_ECDSA})
"""The key types we can sign and verify with."""

_OTHER_PLAIN_TYPES: Final = (
    "ssh-dss",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-xmss@openssh.com",
)
OPENSSH_KEY_TYPES: Final = frozenset(
    {
        *CRYPTO_KEY_TYPES,
        *_OTHER_PLAIN_TYPES,
        *(
            name.replace("@openssh.com", "") + "-cert-v01@openssh.com"
            for name in (*CRYPTO_KEY_TYPES, *_OTHER_PLAIN_TYPES)
        ),
    }
)
"""Every key type name OpenSSH reads in a key line; an allowed_signers line may use any."""

# how ssh-keygen names each type in its messages (sshkey.c's short names)
_DISPLAY_NAMES: Final = {
    ED25519: "ED25519",
    RSA: "RSA",
    **dict.fromkeys(_ECDSA, "ECDSA"),
    "ssh-dss": "DSA",
    "sk-ssh-ed25519@openssh.com": "ED25519-SK",
    "sk-ecdsa-sha2-nistp256@openssh.com": "ECDSA-SK",
    "ssh-xmss@openssh.com": "XMSS",
}

CryptoPublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey
CryptoPrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class UnsupportedError(ValueError):
    """Well-formed, but a key type or algorithm we do not verify (the message says which)."""


@dataclass(frozen=True)
class PublicKey:
    """An SSH public key: its type name and wire blob, with what ssh-keygen shows of it."""

    key_type: str
    """OpenSSH's name for the type, e.g. `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`."""
    blob: bytes = field(repr=False)
    """The key in SSH wire encoding: what signatures embed and fingerprints hash."""
    bits: int | None
    """Key size as `ssh-keygen -l` prints it; None for types we only carry."""
    fingerprint: str = field(init=False)
    """`SHA256:...` exactly as `ssh-keygen -l` prints it."""
    crypto_key: CryptoPublicKey | None = field(default=None, compare=False, repr=False)
    """The decoded key, for the types in `CRYPTO_KEY_TYPES`."""

    def __post_init__(self) -> None:
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode("ascii")
        object.__setattr__(self, "fingerprint", "SHA256:" + digest.rstrip("="))

    @property
    def openssh(self) -> str:
        """The key as one `TYPE BASE64` line fragment (authorized_keys, allowed_signers)."""
        return f"{self.key_type} {base64.b64encode(self.blob).decode('ascii')}"

    def describe(self) -> str:
        """`ED25519 SHA256:...`, the way ssh-keygen names a key in its messages."""
        base = self.key_type.replace("-cert-v01@openssh.com", "@openssh.com")
        if base not in _DISPLAY_NAMES:
            base = self.key_type.replace("-cert-v01@openssh.com", "")
        name = _DISPLAY_NAMES.get(base, self.key_type)
        suffix = "-CERT" if self.key_type.endswith("-cert-v01@openssh.com") else ""
        return f"{name}{suffix} {self.fingerprint}"


def _decode_ec_point(
    key_type: str, reader: WireReader
) -> tuple[ec.EllipticCurvePublicKey, hashes.HashAlgorithm]:
    curve_name, curve, digest = _ECDSA[key_type]
    if reader.text("the curve name") != curve_name:
        raise WireError(f"{key_type} key names another curve than {curve_name}")
    point = reader.string("the curve point")
    if point[:1] != b"\x04":
        # OpenSSH only ever writes (and reads) uncompressed points
        raise WireError(f"{key_type} key: the point is not in uncompressed form")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point), digest
    except (ValueError, NotImplementedError):
        raise WireError(f"{key_type} key: the point is not on {curve_name}") from None


def decode_public_key(blob: bytes, what: str, *, opaque_ok: bool = False) -> PublicKey:
    """Parse a public key blob; raise `WireError` if malformed, `UnsupportedError` if unknown.

    With `opaque_ok`, other OpenSSH key types (DSA, security keys, certificates) are
    accepted unexamined, since an allowed_signers file may list them.
    """
    reader = WireReader(blob, what)
    key_type = reader.text("the key type")
    crypto: CryptoPublicKey
    if key_type == ED25519:
        raw = reader.string("the ed25519 key")
        if len(raw) != 32:
            raise WireError(f"{what}: an ed25519 key is 32 bytes, not {len(raw)}")
        try:
            crypto, bits = ed25519.Ed25519PublicKey.from_public_bytes(raw), 256
        except ValueError:
            raise WireError(f"{what}: not a valid ed25519 key") from None
    elif key_type in _ECDSA:
        crypto, _ = _decode_ec_point(key_type, reader)
        bits = crypto.curve.key_size
    elif key_type == RSA:
        exponent = reader.mpint("the RSA exponent")
        modulus = reader.mpint("the RSA modulus")
        bits = modulus.bit_length()
        if bits < _RSA_MIN_BITS:
            raise UnsupportedError(f"{what}: RSA keys of {bits} bits are too small")
        try:
            crypto = rsa.RSAPublicNumbers(exponent, modulus).public_key()
        except ValueError as exc:
            raise WireError(f"{what}: not a valid RSA key ({exc})") from None
    elif opaque_ok and key_type in OPENSSH_KEY_TYPES:
        return PublicKey(key_type, blob, None)
    else:
        raise UnsupportedError(f"{what}: unsupported key type {key_type!r}")
    reader.end()
    return PublicKey(key_type, blob, bits, crypto)


def public_key_of(private: CryptoPrivateKey) -> PublicKey:
    """The public half of a private key, encoded the way OpenSSH encodes it."""
    if isinstance(private, ed25519.Ed25519PrivateKey):
        raw = private.public_key().public_bytes_raw()
        return PublicKey(ED25519, string(ED25519) + string(raw), 256, private.public_key())
    if isinstance(private, ec.EllipticCurvePrivateKey):
        public = private.public_key()
        for key_type, (curve_name, curve, _) in _ECDSA.items():
            if curve.name == public.curve.name:
                point = public.public_bytes(
                    encoding=serialization.Encoding.X962,
                    format=serialization.PublicFormat.UncompressedPoint,
                )
                blob = string(key_type) + string(curve_name) + string(point)
                return PublicKey(key_type, blob, curve.key_size, public)
        raise UnsupportedError(f"ECDSA keys on curve {public.curve.name} are not SSH keys")
    numbers = private.public_key().public_numbers()
    blob = string(RSA) + mpint(numbers.e) + mpint(numbers.n)
    return PublicKey(RSA, blob, numbers.n.bit_length(), private.public_key())


def sign_raw(private: CryptoPrivateKey, message: bytes, hash_algorithm: str) -> bytes:
    """The SSH signature blob (`string algorithm, string signature`) over `message`.

    RSA signs with the SHA-2 algorithm matching the SSHSIG hash, as ssh-keygen does.
    """
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return string(ED25519) + string(private.sign(message))
    if isinstance(private, ec.EllipticCurvePrivateKey):
        key_type = public_key_of(private).key_type
        r, s = decode_dss_signature(private.sign(message, ec.ECDSA(_ECDSA[key_type][2])))
        return string(key_type) + string(mpint(r) + mpint(s))
    algorithm = f"rsa-sha2-{hash_algorithm.removeprefix('sha')}"
    signature = private.sign(message, padding.PKCS1v15(), _RSA_SIGNATURE_HASHES[algorithm])
    return string(algorithm) + string(signature)


def verify_raw(key: PublicKey, signature_blob: bytes, message: bytes) -> bool:
    """Whether `signature_blob` is `key`'s signature over `message`.

    Raises `WireError` when the blob is not a signature of the key's type and
    `UnsupportedError` for algorithms we refuse (RSA with SHA-1, as OpenSSH does).
    """
    what = "the signature value"
    reader = WireReader(signature_blob, what)
    algorithm = reader.text("the signature algorithm")
    raw = reader.string("the signature bytes")
    reader.end()
    crypto = key.crypto_key
    try:
        if isinstance(crypto, ed25519.Ed25519PublicKey):
            if algorithm != ED25519:
                raise WireError(f"{what}: algorithm {algorithm!r} for an ed25519 key")
            crypto.verify(raw, message)
        elif isinstance(crypto, ec.EllipticCurvePublicKey):
            if algorithm != key.key_type:
                raise WireError(f"{what}: algorithm {algorithm!r} for a {key.key_type} key")
            inner = WireReader(raw, what)
            r, s = inner.mpint("r"), inner.mpint("s")
            inner.end()
            crypto.verify(encode_dss_signature(r, s), message, ec.ECDSA(_ECDSA[algorithm][2]))
        elif isinstance(crypto, rsa.RSAPublicKey):
            if algorithm == RSA:
                raise UnsupportedError(f"{what}: RSA with SHA-1 ({RSA}) is refused")
            if algorithm not in _RSA_SIGNATURE_HASHES:
                raise WireError(f"{what}: algorithm {algorithm!r} for an RSA key")
            size = (crypto.key_size + 7) // 8
            if len(raw) > size:
                return False
            # OpenSSH accepts signatures whose leading zero bytes were dropped
            crypto.verify(
                raw.rjust(size, b"\0"),
                message,
                padding.PKCS1v15(),
                _RSA_SIGNATURE_HASHES[algorithm],
            )
        else:
            raise UnsupportedError(f"{key.key_type} signatures are not supported")
    except InvalidSignature:
        return False
    return True
