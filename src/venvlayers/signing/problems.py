"""What went wrong, as a value: the `problem` of every `SignatureError` this package raises."""

from __future__ import annotations

from enum import StrEnum

from ..errors import SignatureError

__all__ = ["SignatureProblem", "fail"]


class SignatureProblem(StrEnum):
    """Why a signature, key or allowed_signers file was refused."""

    # the signature file itself
    UNSIGNED = "unsigned"
    """There is no signature where one is required."""
    MALFORMED = "malformed"
    """No signature, garbage, or a truncated armor or wire structure."""
    UNSUPPORTED = "unsupported"
    """Well-formed, but a version, hash, key type or certificate we do not verify."""
    WRONG_NAMESPACE = "wrong-namespace"
    """Made for another purpose (e.g. a git commit signature, namespace `git`)."""
    MISMATCH = "mismatch"
    """The signature does not match the data: the data changed after signing."""
    # the signer against the allowed_signers file
    UNKNOWN_KEY = "unknown-key"
    """Made by a key the allowed_signers file does not list."""
    WRONG_PRINCIPAL = "wrong-principal"
    """The key is listed, but not for the principal the caller asked for."""
    NAMESPACE_NOT_ALLOWED = "namespace-not-allowed"
    """The key is listed with `namespaces=` that exclude this namespace."""
    NOT_YET_VALID = "not-yet-valid"
    """The key is listed with a `valid-after` still in the future."""
    EXPIRED = "expired"
    """The key is listed with a `valid-before` in the past."""
    # inputs given to sign or to verify with
    BAD_ALLOWED_SIGNERS = "bad-allowed-signers"
    """The allowed_signers file cannot be read or has a malformed line."""
    BAD_KEY_FILE = "bad-key-file"
    """The signing key file is missing, a public key, garbage or an unusable type."""
    PASSPHRASE_REQUIRED = "passphrase-required"
    """The signing key is encrypted and no passphrase was given (a CLI may prompt)."""
    WRONG_PASSPHRASE = "wrong-passphrase"
    """The passphrase does not decrypt the signing key."""


def fail(problem: SignatureProblem, message: str) -> SignatureError:
    """The error to raise: `raise fail(SignatureProblem.X, "file: what and the fix")`."""
    return SignatureError(message, problem)
