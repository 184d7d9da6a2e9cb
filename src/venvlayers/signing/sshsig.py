"""The SSHSIG format (OpenSSH PROTOCOL.sshsig): armor, blob, signed data; sign and check.

What goes into a signature, in SSH wire encoding:

    blob   = "SSHSIG" uint32(1) string(public key) string(namespace) string(reserved)
             string(hash algorithm) string(signature)
    signed = "SSHSIG" string(namespace) string(reserved) string(hash algorithm)
             string(H(data))

and the armor is the blob in base64, 70 characters a line (what ssh-keygen writes, the
spec's "SHOULD 76" notwithstanding) between `-----BEGIN SSH SIGNATURE-----` and
`-----END SSH SIGNATURE-----`. The signature covers the namespace, so a signature made
for another purpose (git commits sign with namespace `git`) can never pass for ours.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from typing import Final

from .keys import PublicKey, UnsupportedError, decode_public_key, sign_raw, verify_raw
from .problems import SignatureProblem, fail
from .signkey import SigningKey
from .wire import WireError, WireReader, string, uint32

__all__ = [
    "DEFAULT_NAMESPACE",
    "HASH_ALGORITHMS",
    "SignatureInfo",
    "check_data",
    "read_signature",
    "sign",
]

DEFAULT_NAMESPACE: Final = "venvlayers"
HASH_ALGORITHMS: Final = ("sha512", "sha256")
"""The hashes PROTOCOL.sshsig allows; sha512 is what ssh-keygen and `sign` use."""
_BEGIN: Final = b"-----BEGIN SSH SIGNATURE-----"
_END: Final = b"-----END SSH SIGNATURE-----"
_MAGIC: Final = b"SSHSIG"
_VERSION: Final = 1
_LINE_LENGTH: Final = 70
_WHITESPACE: Final = b" \t\r\n"


@dataclass(frozen=True)
class SignatureInfo:
    """What a signature says about itself, before anything is verified."""

    public_key: PublicKey
    """The key that (claims to have) made it."""
    namespace: str
    hash_algorithm: str
    """`sha512` or `sha256`: how the data was hashed before signing."""
    signature: bytes = field(repr=False)
    """The raw SSH signature blob (`string algorithm, string bytes`)."""


def _signed_message(namespace: str, hash_algorithm: str, data: bytes) -> bytes:
    digest = hashlib.new(hash_algorithm, data).digest()
    # the reserved field is signed empty: OpenSSH ignores whatever a blob carries there
    return _MAGIC + string(namespace) + string(b"") + string(hash_algorithm) + string(digest)


def _armor(blob: bytes) -> bytes:
    text = base64.b64encode(blob)
    lines = [text[i : i + _LINE_LENGTH] for i in range(0, len(text), _LINE_LENGTH)]
    return b"\n".join([_BEGIN, *lines, _END]) + b"\n"


def sign(
    data: bytes,
    key: SigningKey,
    namespace: str = DEFAULT_NAMESPACE,
    *,
    hash_algorithm: str = "sha512",
) -> bytes:
    """The armored SSH signature of `data`, byte for byte as `ssh-keygen -Y sign` writes it.

    `ssh-keygen -Y verify -n NAMESPACE` accepts it; RSA keys sign with rsa-sha2-512
    (rsa-sha2-256 when `hash_algorithm` is sha256).
    """
    if not namespace:
        raise fail(SignatureProblem.UNSUPPORTED, "a signature namespace must not be empty")
    if hash_algorithm not in HASH_ALGORITHMS:
        raise fail(
            SignatureProblem.UNSUPPORTED,
            f"unsupported hash algorithm {hash_algorithm!r} (use sha512 or sha256)",
        )
    signature = sign_raw(
        key.private_key, _signed_message(namespace, hash_algorithm, data), hash_algorithm
    )
    blob = (
        _MAGIC
        + uint32(_VERSION)
        + string(key.public_key.blob)
        + string(namespace)
        + string(b"")
        + string(hash_algorithm)
        + string(signature)
    )
    return _armor(blob)


def _malformed(name: str, detail: str) -> Exception:
    return fail(SignatureProblem.MALFORMED, f"{name}: not a valid SSH signature: {detail}")


def _dearmor(text: bytes | str, name: str) -> bytes:
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if not raw.strip():
        raise _malformed(name, "the file is empty")
    if not raw.startswith(_BEGIN):
        where = "text before" if _BEGIN in raw else "no"
        raise _malformed(name, f"{where} '{_BEGIN.decode()}' line")
    rest = raw[len(_BEGIN) :]
    if rest.startswith(b"\r\n"):
        rest = rest[2:]
    elif rest.startswith(b"\n"):
        rest = rest[1:]
    else:
        raise _malformed(name, "text after the BEGIN line")
    # the footer follows a newline; a CR before it (CRLF files) is whitespace
    body, found, after = (b"\n" + rest).partition(b"\n" + _END)
    if not found:
        raise _malformed(name, f"truncated: no '{_END.decode()}' line")
    if after.strip(_WHITESPACE):
        raise _malformed(name, "text after the END line")
    encoded = bytes(byte for byte in body if byte not in _WHITESPACE)
    if not encoded:
        raise _malformed(name, "nothing between the BEGIN and END lines")
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(name, "the text between BEGIN and END is not base64") from None
    # only the canonical encoding: no second spelling of the same signature
    if base64.b64encode(blob) != encoded:
        raise _malformed(name, "the base64 text is not canonical")
    return blob


def read_signature(text: bytes | str, name: str = "signature") -> SignatureInfo:
    """Parse an armored SSH signature without verifying it; `name` (its file) leads errors.

    Raises `SignatureError` (MALFORMED or UNSUPPORTED) for anything but a well-formed
    version-1 signature with a sha256/sha512 hash by a key type we verify.
    """
    blob = _dearmor(text, name)
    reader = WireReader(blob, "the decoded signature")
    try:
        if reader.fixed(len(_MAGIC), "the SSHSIG preamble") != _MAGIC:
            raise _malformed(name, "the decoded data does not start with 'SSHSIG'")
        version = reader.uint32("the version")
        if version != _VERSION:
            raise fail(
                SignatureProblem.UNSUPPORTED,
                f"{name}: SSH signature version {version} is not supported (only 1)",
            )
        key_blob = reader.string("the public key")
        namespace = reader.text("the namespace")
        reader.string("the reserved field")
        hash_algorithm = reader.text("the hash algorithm")
        signature = reader.string("the signature")
        reader.end()
        key_type = WireReader(key_blob, "the signer's key").text("the key type")
    except WireError as exc:
        raise _malformed(name, str(exc)) from None
    if not namespace:
        raise _malformed(name, "the namespace is empty")
    if hash_algorithm not in HASH_ALGORITHMS:
        raise fail(
            SignatureProblem.UNSUPPORTED,
            f"{name}: unsupported hash algorithm {hash_algorithm!r} (only sha512, sha256)",
        )
    if key_type.endswith("-cert-v01@openssh.com"):
        raise fail(
            SignatureProblem.UNSUPPORTED,
            f"{name}: made with an OpenSSH certificate ({key_type}); certificate "
            "signatures are not supported: sign with a plain key listed in allowed_signers",
        )
    if key_type.startswith("sk-"):
        raise fail(
            SignatureProblem.UNSUPPORTED,
            f"{name}: made with a security key ({key_type}); these are not supported",
        )
    try:
        public_key = decode_public_key(key_blob, "the signer's key")
    except WireError as exc:
        raise _malformed(name, str(exc)) from None
    except UnsupportedError as exc:
        raise fail(SignatureProblem.UNSUPPORTED, f"{name}: {exc}") from None
    return SignatureInfo(public_key, namespace, hash_algorithm, signature)


def _line_ending_twin(data: bytes) -> tuple[bytes, str, str] | None:
    """The same data with the other line endings, if it has any: (data, have, would be)."""
    if b"\r\n" in data:
        return data.replace(b"\r\n", b"\n"), "CRLF", "LF"
    if b"\n" in data:
        return data.replace(b"\n", b"\r\n"), "LF", "CRLF"
    return None


def check_data(info: SignatureInfo, data: bytes, name: str, data_name: str) -> None:
    """Raise `SignatureError` (MISMATCH, or MALFORMED for a broken value) unless `info`
    is a valid signature over exactly `data` by its own key; ends with a hint when only
    line endings differ, since that is how a checkout or a copy most often breaks it.
    """

    def valid(candidate: bytes) -> bool:
        message = _signed_message(info.namespace, info.hash_algorithm, candidate)
        try:
            return verify_raw(info.public_key, info.signature, message)
        except WireError as exc:
            raise _malformed(name, str(exc)) from None
        except UnsupportedError as exc:
            raise fail(SignatureProblem.UNSUPPORTED, f"{name}: {exc}") from None

    if valid(data):
        return
    twin = _line_ending_twin(data)
    if twin is not None and valid(twin[0]):
        raise fail(
            SignatureProblem.MISMATCH,
            f"{name}: the signature does not match {data_name}: it was signed with "
            f"{twin[2]} line endings and {data_name} now has {twin[1]} (converted by a "
            "checkout or copy, e.g. git core.autocrlf?); restore the published bytes",
        )
    raise fail(
        SignatureProblem.MISMATCH,
        f"{name}: the signature does not match {data_name}: {data_name} was changed "
        "after it was signed, or the signature belongs to other data",
    )
