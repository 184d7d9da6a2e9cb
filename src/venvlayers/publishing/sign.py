"""Signing a published stack: `__venvstacks__/venvstacks.json.sig` over its exact bytes.

The signature is OpenSSH's SSHSIG with namespace `venvlayers` (what `ssh-keygen -Y sign
-n venvlayers` makes), so `ssh-keygen -Y verify` accepts it and a deploy target checks it
with `deploy --trusted-keys`. Only `venvstacks.json` is signed: it records the size
and sha256 of every archive, so a valid signature vouches for all of them.

A stack can be signed while publishing (`publish --sign-key`) or afterwards, on another
machine that holds the key (`venvlayers sign OUTPUT_DIR --key KEY`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import signing
from .._util.fs import write_atomic
from ..errors import PublishError
from ..layout import METADATA_PATH, SIGNATURE_PATH

__all__ = ["SignedStack", "sign_stack"]


@dataclass(frozen=True)
class SignedStack:
    """Where a signature was written and with which key."""

    signature: Path
    key_type: str
    fingerprint: str  # `SHA256:...` as `ssh-keygen -l` prints it
    allowed_signers_line: str  # what a target's allowed_signers file needs for this key


def sign_stack(output_dir: Path, key: signing.SigningKey) -> SignedStack:
    """Sign the published stack in `output_dir` with `key` (see `signing.load_signing_key`)."""
    manifest = output_dir / METADATA_PATH
    try:
        data = manifest.read_bytes()
    except FileNotFoundError:
        raise PublishError(
            f"{output_dir} is not a published stack: it has no {METADATA_PATH}; "
            "run `venvlayers publish` first"
        ) from None
    except OSError as exc:
        raise PublishError(f"cannot read {manifest}: {exc.strerror}") from None
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PublishError(f"{manifest}: not valid JSON ({exc}); publish again") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("layers"), dict):
        raise PublishError(f"{manifest} is not stack metadata (no 'layers' object)")
    signature = output_dir / SIGNATURE_PATH
    try:
        write_atomic(signature, signing.sign(data, key))
    except OSError as exc:
        raise PublishError(f"cannot write {signature}: {exc.strerror}") from None
    return SignedStack(
        signature=signature,
        key_type=key.public_key.key_type,
        fingerprint=key.fingerprint,
        allowed_signers_line=key.allowed_signers_line("PRINCIPAL"),
    )
