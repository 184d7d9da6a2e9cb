"""Signed stacks: OpenSSH SSHSIG signatures, verified against an allowed_signers file.

A published stack is signed over the exact bytes of `__venvstacks__/venvstacks.json`
(the signature sits beside it as `venvstacks.json.sig`), in the format `ssh-keygen -Y
sign` writes and git's SSH commit signing uses, with namespace `venvlayers`; a deploy
target verifies it against an OpenSSH `allowed_signers` file before trusting any hash in
the metadata. Everything is done with `cryptography` (no ssh-keygen needed), and
interoperates with ssh-keygen both ways:

    key = load_signing_key("~/.ssh/id_ed25519", passphrase=None)
    signature = sign(metadata_bytes, key)                      # armored, as ssh-keygen
    signers = AllowedSigners.load("allowed_signers")
    signer = verify(metadata_bytes, signature, signers)        # or SignatureError

Every failure is a `SignatureError` with one line naming the file and what to do, and a
`problem` (`SignatureProblem`) telling the cases apart.
"""

from __future__ import annotations

from ..errors import SignatureError
from ._allowed import AllowedSigner, AllowedSigners, match_pattern_list
from ._keys import PublicKey
from ._problems import SignatureProblem
from ._signkey import SigningKey, load_signing_key
from ._sshsig import DEFAULT_NAMESPACE, HASH_ALGORITHMS, SignatureInfo, read_signature, sign
from ._verify import Signer, verify

__all__ = [
    "DEFAULT_NAMESPACE",
    "HASH_ALGORITHMS",
    "AllowedSigner",
    "AllowedSigners",
    "PublicKey",
    "SignatureError",
    "SignatureInfo",
    "SignatureProblem",
    "Signer",
    "SigningKey",
    "load_signing_key",
    "match_pattern_list",
    "read_signature",
    "sign",
    "verify",
]
