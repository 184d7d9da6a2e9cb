"""Loading a private key to sign with: OpenSSH's own format first, PEM as ssh-keygen does.

Every way a key file can be wrong ends in one `SignatureError` line naming the file:
missing, a `.pub` given instead of the private key, garbage, a passphrase needed or wrong,
or a type we cannot sign with (DSA, security keys that live in hardware).
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from .keys import (
    CRYPTO_KEY_TYPES,
    OPENSSH_KEY_TYPES,
    CryptoPrivateKey,
    PublicKey,
    UnsupportedError,
    public_key_of,
)
from .problems import SignatureProblem, fail
from .wire import WireError, WireReader

__all__ = ["SigningKey", "load_signing_key"]

_OPENSSH_BEGIN = b"-----BEGIN OPENSSH PRIVATE KEY-----"
_OPENSSH_END = b"-----END OPENSSH PRIVATE KEY-----"
_OPENSSH_MAGIC = b"openssh-key-v1\0"
# the ciphers OpenSSH encrypts private keys with (`ssh -Q cipher`)
_OPENSSH_CIPHERS = frozenset(
    {
        "3des-cbc",
        "aes128-cbc",
        "aes192-cbc",
        "aes256-cbc",
        "aes128-ctr",
        "aes192-ctr",
        "aes256-ctr",
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        "chacha20-poly1305@openssh.com",
    }
)
_SUPPORTED_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})


@dataclass(frozen=True)
class SigningKey:
    """A private key ready to sign, with its public half as OpenSSH shows it."""

    path: Path
    public_key: PublicKey
    private_key: CryptoPrivateKey = field(compare=False, repr=False)

    @property
    def fingerprint(self) -> str:
        return self.public_key.fingerprint

    def allowed_signers_line(self, principal: str, namespaces: str | None = "venvlayers") -> str:
        """A line trusting this key for `principal`, to paste into an allowed_signers file."""
        options = f' namespaces="{namespaces}"' if namespaces else ""
        return f"{principal}{options} {self.public_key.openssh}"


def _openssh_container(data: bytes) -> tuple[bool, bytes | None]:
    """(encrypted?, first public key blob) from the unencrypted header of an OpenSSH key."""
    body = data.split(_OPENSSH_BEGIN, 1)[1].split(_OPENSSH_END, 1)[0]
    try:
        raw = base64.b64decode(b"".join(body.split()), validate=True)
        if not raw.startswith(_OPENSSH_MAGIC):
            return False, None
        reader = WireReader(raw[len(_OPENSSH_MAGIC) :], "private key")
        cipher = reader.text("the cipher name")
        reader.string("the kdf name")
        reader.string("the kdf options")
        count = reader.uint32("the key count")
        public = reader.string("the public key") if count >= 1 else None
    except (binascii.Error, WireError):
        return False, None
    if cipher != "none" and cipher not in _OPENSSH_CIPHERS:
        # not a key we could decrypt whatever the passphrase: let the loader call it corrupt
        return False, public
    return cipher != "none", public


def _key_type(public_blob: bytes | None) -> str | None:
    if public_blob is None:
        return None
    try:
        return WireReader(public_blob, "public key").text("the key type")
    except WireError:
        return None


def _looks_like_public_key(data: bytes) -> bool:
    first = data.lstrip().split(maxsplit=1)
    return bool(first) and (
        first[0].decode("latin-1") in OPENSSH_KEY_TYPES
        or data.lstrip().startswith((b"-----BEGIN PUBLIC KEY", b"---- BEGIN SSH2 PUBLIC KEY"))
    )


def _check_type(path: Path, key: object) -> CryptoPrivateKey:
    if isinstance(key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _SUPPORTED_CURVES:
        return key
    kind = type(key).__name__.removeprefix("_").replace("PrivateKey", "")
    raise fail(
        SignatureProblem.BAD_KEY_FILE,
        f"{path}: {kind} keys cannot sign stacks; use an ed25519, ecdsa or rsa key "
        "(ssh-keygen -t ed25519)",
    )


def load_signing_key(path: Path | str, passphrase: str | None = None) -> SigningKey:
    """Load the private key at `path` (OpenSSH format, or PEM), decrypting with `passphrase`.

    Raises `SignatureError` with problem `PASSPHRASE_REQUIRED` when the key is encrypted
    and `passphrase` is None (a CLI can then prompt and call again), `WRONG_PASSPHRASE`,
    or `BAD_KEY_FILE`.
    """
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise fail(
            SignatureProblem.BAD_KEY_FILE,
            f"{path}: cannot read the signing key: {exc.strerror or exc}",
        ) from None
    stripped = data.lstrip()
    is_openssh = stripped.startswith(_OPENSSH_BEGIN)
    if is_openssh:
        encrypted, public_blob = _openssh_container(stripped)
        # refuse what we cannot sign with before cryptography tries (and warns about DSA)
        key_type = _key_type(public_blob)
        if key_type is not None and key_type not in CRYPTO_KEY_TYPES:
            kind = "security-key (FIDO)" if key_type.startswith("sk-") else key_type
            raise fail(
                SignatureProblem.BAD_KEY_FILE,
                f"{path}: {kind} keys cannot sign stacks; use an ed25519, ecdsa or rsa key "
                "(ssh-keygen -t ed25519)",
            )
        loader: Callable[[bytes, bytes | None], object] = serialization.load_ssh_private_key
    elif stripped.startswith(b"-----BEGIN ") and b"PRIVATE KEY-----" in stripped.split(b"\n")[0]:
        encrypted = b"ENCRYPTED" in stripped[:200]
        loader = serialization.load_pem_private_key
    elif _looks_like_public_key(data):
        raise fail(
            SignatureProblem.BAD_KEY_FILE,
            f"{path}: this is a public key; sign with the private key file "
            f"({path.name.removesuffix('.pub')} beside it)",
        )
    else:
        raise fail(
            SignatureProblem.BAD_KEY_FILE,
            f"{path}: not a private key file (expected '{_OPENSSH_BEGIN.decode()}' as "
            "ssh-keygen writes it)",
        )

    if encrypted and passphrase is None:
        raise fail(
            SignatureProblem.PASSPHRASE_REQUIRED,
            f"{path}: the signing key is protected by a passphrase, and none was given",
        )
    if encrypted and is_openssh and importlib.util.find_spec("bcrypt") is None:
        raise fail(
            SignatureProblem.BAD_KEY_FILE,
            f"{path}: decrypting an OpenSSH key needs the 'bcrypt' package "
            "(pip install bcrypt), or use a key without a passphrase",
        )
    password = passphrase.encode("utf-8") if encrypted and passphrase is not None else None
    try:
        key = loader(data, password)
    except ValueError as exc:
        if encrypted:
            raise fail(
                SignatureProblem.WRONG_PASSPHRASE,
                f"{path}: wrong passphrase for the signing key",
            ) from None
        raise fail(
            SignatureProblem.BAD_KEY_FILE, f"{path}: not a valid private key ({exc})"
        ) from None
    except UnsupportedAlgorithm as exc:
        raise fail(
            SignatureProblem.BAD_KEY_FILE, f"{path}: cannot use this private key ({exc})"
        ) from None
    except Exception as exc:
        # cryptography's parsers raise more than ValueError on damaged files (TypeError,
        # NotImplementedError "Need uncompressed point"...); all mean the same to a user
        raise fail(
            SignatureProblem.BAD_KEY_FILE, f"{path}: not a valid private key ({exc})"
        ) from None
    private = _check_type(path, key)
    try:
        public = public_key_of(private)
    except UnsupportedError as exc:
        raise fail(SignatureProblem.BAD_KEY_FILE, f"{path}: {exc}") from None
    if public.key_type == "ssh-rsa" and (public.bits or 0) < 1024:
        raise fail(
            SignatureProblem.BAD_KEY_FILE,
            f"{path}: RSA keys of {public.bits} bits are too small; use ed25519",
        )
    return SigningKey(path, public, private)
