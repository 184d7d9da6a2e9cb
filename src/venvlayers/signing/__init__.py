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

from typing import TYPE_CHECKING

from .._util.lazy import lazy_exports

if TYPE_CHECKING:
    from ..errors import SignatureError as SignatureError
    from .allowed import (
        AllowedSigner as AllowedSigner,
        AllowedSigners as AllowedSigners,
        match_pattern_list as match_pattern_list,
    )
    from .keys import PublicKey as PublicKey
    from .problems import SignatureProblem as SignatureProblem
    from .signkey import SigningKey as SigningKey, load_signing_key as load_signing_key
    from .sshsig import (
        DEFAULT_NAMESPACE as DEFAULT_NAMESPACE,
        HASH_ALGORITHMS as HASH_ALGORITHMS,
        SignatureInfo as SignatureInfo,
        read_signature as read_signature,
        sign as sign,
    )
    from .verification import Signer as Signer, verify as verify

# cryptography costs ~90 ms to import: only what is used is loaded
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "..errors": "SignatureError",
        "allowed": "AllowedSigner AllowedSigners match_pattern_list",
        "keys": "PublicKey",
        "problems": "SignatureProblem",
        "signkey": "SigningKey load_signing_key",
        "sshsig": "DEFAULT_NAMESPACE HASH_ALGORITHMS SignatureInfo read_signature sign",
        "verification": "Signer verify",
    },
)
