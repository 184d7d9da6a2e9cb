"""Verifying a signature against an allowed_signers file: the one decision a deploy trusts.

The order of checks is what makes the one-line message precise: the signature must parse
(MALFORMED, UNSUPPORTED), be made for our namespace (WRONG_NAMESPACE) and match the data
under its own key (MISMATCH); only then is the key looked up (UNKNOWN_KEY,
WRONG_PRINCIPAL) and the matching lines' restrictions applied (NAMESPACE_NOT_ALLOWED,
NOT_YET_VALID, EXPIRED). That is ssh-keygen's order, so both tools refuse the same
signatures. A signature carries no time, so `valid-after`/`valid-before` are checked
against the time of verification, as ssh-keygen does by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from .allowed import AllowedSigner, AllowedSigners
from .problems import SignatureProblem, fail
from .sshsig import DEFAULT_NAMESPACE, check_data, read_signature

__all__ = ["Signer", "verify"]


@dataclass(frozen=True)
class Signer:
    """Who made a signature that verified, as the allowed_signers file names them."""

    principals: tuple[str, ...]
    """The principal patterns of the admitting line, as written."""
    key_type: str
    """e.g. `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`."""
    fingerprint: str
    """`SHA256:...` as `ssh-keygen -l` prints it."""
    comment: str
    """The comment after the key on the admitting line."""
    namespace: str
    hash_algorithm: str
    entry: AllowedSigner
    """The allowed_signers line that admitted the key (`entry.location` is `file:line`)."""

    def describe(self) -> str:
        """`alice@example.com (ED25519 SHA256:..., allowed_signers:3)`."""
        return f"{','.join(self.principals)} ({self.entry.key.describe()}, {self.entry.location})"


def _timing_problem(entry: AllowedSigner, now: datetime) -> tuple[SignatureProblem, str] | None:
    # whole seconds, compared as ssh-keygen compares them
    moment = int(now.timestamp())
    shown = now.strftime("%Y-%m-%d %H:%M:%S UTC")
    if entry.valid_after is not None and moment < int(entry.valid_after.timestamp()):
        return SignatureProblem.NOT_YET_VALID, (
            f"{entry.location} makes it valid only from "
            f"{entry.valid_after:%Y-%m-%d %H:%M:%S} UTC "
            f'(valid-after="{entry.raw_valid_after}"), and it is now {shown}'
        )
    if entry.valid_before is not None and moment > int(entry.valid_before.timestamp()):
        return SignatureProblem.EXPIRED, (
            f"{entry.location} says it expired at "
            f"{entry.valid_before:%Y-%m-%d %H:%M:%S} UTC "
            f'(valid-before="{entry.raw_valid_before}"), and it is now {shown}'
        )
    return None


def verify(
    data: bytes,
    signature: bytes | str,
    signers: AllowedSigners,
    namespace: str = DEFAULT_NAMESPACE,
    *,
    principal: str | None = None,
    now: datetime | None = None,
    signature_name: str = "signature",
    data_name: str = "the signed data",
) -> Signer:
    """Check that `signature` (armored SSHSIG) is a valid `namespace` signature over exactly
    `data` by a key `signers` allows at `now` (default: the current time; a naive
    datetime is local time); return who.

    With `principal`, the key must be listed for that principal (ssh-keygen's `-I`);
    without, any line listing the key will do (ssh-keygen's find-principals, then
    verify). `signature_name` and `data_name` name the two in the message of the
    `SignatureError` raised for any failure; its `problem` says which failure it was.
    """
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    info = read_signature(signature, signature_name)
    if info.namespace != namespace:
        hint = " (a git commit signature?)" if info.namespace == "git" else ""
        raise fail(
            SignatureProblem.WRONG_NAMESPACE,
            f"{signature_name}: made for namespace {info.namespace!r}{hint}, not {namespace!r}; "
            f"sign with namespace {namespace!r} (ssh-keygen -Y sign -n {namespace})",
        )
    check_data(info, data, signature_name, data_name)

    key = info.public_key
    who = f"{signature_name}: signed by {key.describe()}"
    listed = signers.for_key(key)
    if not listed:
        raise fail(
            SignatureProblem.UNKNOWN_KEY,
            f"{who}, which {signers.source} does not list; if you trust that key, add the "
            f"line 'PRINCIPAL {key.openssh}' to it",
        )
    plain = [entry for entry in listed if not entry.cert_authority]
    if not plain:
        where = ", ".join(entry.location for entry in listed)
        raise fail(
            SignatureProblem.UNKNOWN_KEY,
            f"{who}, which {signers.source} lists only as a cert-authority ({where}); a "
            "certificate authority key vouches for certificates and does not sign itself",
        )
    candidates = plain
    if principal is not None:
        candidates = [entry for entry in plain if entry.matches_principal(principal)]
        if not candidates:
            listed_for = "; ".join(
                f"{entry.location} for {','.join(entry.principals)}" for entry in plain
            )
            raise fail(
                SignatureProblem.WRONG_PRINCIPAL,
                f"{who}, listed {listed_for}, not for principal {principal!r}",
            )

    refusals: list[tuple[SignatureProblem, str]] = []
    for entry in candidates:
        if not entry.allows_namespace(namespace):
            refusals.append(
                (
                    SignatureProblem.NAMESPACE_NOT_ALLOWED,
                    f'{entry.location} allows it only for namespaces="{entry.namespaces}", '
                    f"not {namespace!r}",
                )
            )
            continue
        timing = _timing_problem(entry, moment)
        if timing is not None:
            refusals.append(timing)
            continue
        return Signer(
            principals=entry.principals,
            key_type=key.key_type,
            fingerprint=key.fingerprint,
            comment=entry.comment,
            namespace=info.namespace,
            hash_algorithm=info.hash_algorithm,
            entry=entry,
        )
    raise fail(refusals[0][0], f"{who}, but " + "; ".join(reason for _, reason in refusals))
