"""Which keys a deploy target trusts, and checking a stack's signature against them.

`deploy --trusted-keys FILE` (an OpenSSH allowed_signers file) makes the target accept
only stacks whose `venvstacks.json` carries a valid signature from one of those keys
(`__venvstacks__/venvstacks.json.sig`, SSHSIG, namespace `venvlayers`). The check comes
before any hash in the metadata is trusted: an unsigned stack, one signed by another
key, or metadata altered after signing is refused with nothing downloaded beyond the
metadata and nothing changed in the target.

The target remembers its trust: the allowed_signers text is kept in its state, so a
later deploy without `--trusted-keys` still requires a valid signature from those keys;
passing a file again replaces them (with the next successful deploy).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import signing
from ..errors import DeployError, SignatureError

__all__ = ["SignedBy", "TrustCheck", "TrustedKeys", "check_signature"]


@dataclass(frozen=True)
class TrustedKeys:
    """An allowed_signers file as a target keeps it: its text, where it came from."""

    text: str
    source: str
    fingerprint: str  # of what the file means (see `AllowedSigners.fingerprint`)

    @classmethod
    def load(cls, path: Path) -> TrustedKeys:
        """Read and check `path`; a bad file is one line naming it and the line."""
        path = Path(path).expanduser()
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            raise DeployError(f"--trusted-keys {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DeployError(f"--trusted-keys {path}: cannot read it ({exc})") from None
        signers = signing.AllowedSigners.parse(text, str(path))
        return cls(text=text, source=str(path.absolute()), fingerprint=signers.fingerprint)

    def signers(self) -> signing.AllowedSigners:
        return signing.AllowedSigners.parse(self.text, f"the trusted keys from {self.source}")

    def describe(self) -> list[str]:
        """One line per trusted key, for `status`."""
        return [entry.describe() for entry in self.signers().entries]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "fingerprint": self.fingerprint, "text": self.text}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrustedKeys:
        text, source, fingerprint = data["text"], data["source"], data["fingerprint"]
        if not all(isinstance(x, str) for x in (text, source, fingerprint)):
            raise ValueError("trusted_keys: text, source and fingerprint must be strings")
        return cls(text=text, source=source, fingerprint=fingerprint)


@dataclass(frozen=True)
class SignedBy:
    """Who signed the metadata of what is deployed."""

    principals: tuple[str, ...]
    key_type: str
    fingerprint: str  # `SHA256:...` as `ssh-keygen -l` prints it
    comment: str = ""

    def describe(self) -> str:
        who = ", ".join(self.principals) or "(no principal)"
        return f"{who} ({self.key_type} {self.fingerprint})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "principals": list(self.principals),
            "key_type": self.key_type,
            "fingerprint": self.fingerprint,
            "comment": self.comment,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignedBy:
        return cls(
            principals=tuple(str(p) for p in data["principals"]),
            key_type=str(data["key_type"]),
            fingerprint=str(data["fingerprint"]),
            comment=str(data.get("comment", "")),
        )


@dataclass(frozen=True)
class TrustCheck:
    """The outcome of a deploy's signature check: the keys required and who signed."""

    keys: TrustedKeys | None = None
    signed_by: SignedBy | None = None


def check_signature(
    metadata: bytes,
    signature: bytes | None,
    trust: TrustedKeys,
    *,
    metadata_name: str,
    signature_name: str,
) -> SignedBy:
    """The signer of `metadata`, or `SignatureError` saying why it is not trusted."""
    if signature is None:
        raise SignatureError(
            f"{metadata_name} is not signed (no {signature_name}); this target only "
            f"accepts stacks signed by a key in {trust.source}: sign it with "
            "`venvlayers sign OUTPUT_DIR --key KEY`",
            problem=signing.SignatureProblem.UNSIGNED,
        )
    signer = signing.verify(
        metadata,
        signature,
        trust.signers(),
        signature_name=signature_name,
        data_name=metadata_name,
    )
    return SignedBy(
        principals=tuple(signer.principals),
        key_type=signer.key_type,
        fingerprint=signer.fingerprint,
        comment=signer.comment,
    )
