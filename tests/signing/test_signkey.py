"""Loading signing keys: every key type, encrypted keys, and each way a key file is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec

from venvlayers.signing import SignatureError, SignatureProblem, load_signing_key

from .conftest import KEY_KINDS, PASSPHRASE, KeyFile, SshKeygen, write_key

EXPECTED_TYPES = {
    "ed25519": ("ssh-ed25519", 256),
    "ecdsa256": ("ecdsa-sha2-nistp256", 256),
    "ecdsa384": ("ecdsa-sha2-nistp384", 384),
    "ecdsa521": ("ecdsa-sha2-nistp521", 521),
    "rsa": ("ssh-rsa", 2048),
}


def _refusal(path: Path, passphrase: str | None = None) -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        load_signing_key(path, passphrase)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path))
    return caught.value


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_ssh_keygen_keys_load_with_its_fingerprint(
    kind: str, ssh_keys: dict[str, Path], ssh_keygen: SshKeygen
) -> None:
    key = load_signing_key(ssh_keys[kind])
    assert (key.public_key.key_type, key.public_key.bits) == EXPECTED_TYPES[kind]
    # the same public key and fingerprint ssh-keygen reports for the file
    pub = ssh_keys[kind].with_name(f"{kind}.pub").read_text().split()
    assert key.public_key.openssh == f"{pub[0]} {pub[1]}"
    listing = ssh_keygen("-l", "-E", "sha256", "-f", ssh_keys[kind]).stdout.decode().split()
    assert key.fingerprint == listing[1]
    assert key.public_key.bits == int(listing[0])


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_encrypted_ssh_keygen_keys_need_their_passphrase(
    kind: str, ssh_keys: dict[str, Path]
) -> None:
    path = ssh_keys[f"{kind}-enc"]
    key = load_signing_key(path, PASSPHRASE)
    assert key.public_key.key_type == EXPECTED_TYPES[kind][0]
    missing = _refusal(path)
    assert missing.problem == SignatureProblem.PASSPHRASE_REQUIRED
    assert "passphrase" in str(missing)
    wrong = _refusal(path, "not the passphrase")
    assert wrong.problem == SignatureProblem.WRONG_PASSPHRASE
    assert str(wrong) == f"{path}: wrong passphrase for the signing key"


def test_a_passphrase_for_an_unencrypted_key_is_ignored(our_keys: dict[str, KeyFile]) -> None:
    key = load_signing_key(our_keys["ed25519"].path, "whatever")
    assert key.public_key == our_keys["ed25519"].key.public_key


def test_keys_encrypted_by_cryptography_load_too(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    path = write_key(tmp_path, "enc", private, passphrase="pw")
    assert load_signing_key(path, "pw").public_key.key_type == "ecdsa-sha2-nistp256"
    assert _refusal(path, "wrong").problem == SignatureProblem.WRONG_PASSPHRASE


def test_pem_keys_are_accepted_like_ssh_keygen_does(ssh_keygen: SshKeygen, tmp_path: Path) -> None:
    path = tmp_path / "pem"
    assert (
        ssh_keygen("-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-f", path).returncode
        == 0
    )
    assert path.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert load_signing_key(path).public_key.openssh == " ".join(
        path.with_name("pem.pub").read_text().split()[:2]
    )


def test_a_public_key_given_as_signing_key_is_one_clear_line(
    our_keys: dict[str, KeyFile],
) -> None:
    error = _refusal(our_keys["rsa"].pub)
    assert error.problem == SignatureProblem.BAD_KEY_FILE
    assert "is a public key" in str(error) and "(rsa beside it)" in str(error)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"hello world\n",
        b"\x00\xff" * 100,
        b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        b"-----BEGIN OPENSSH PRIVATE KEY-----\n!!!\n",
        b"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
    ],
    ids=["empty", "text", "binary", "empty-container", "bad-base64", "bad-pem"],
)
def test_garbage_key_files_are_one_clear_line(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(content)
    assert _refusal(path).problem == SignatureProblem.BAD_KEY_FILE


def test_a_truncated_key_file_is_one_clear_line(
    our_keys: dict[str, KeyFile], tmp_path: Path
) -> None:
    text = our_keys["ed25519"].path.read_bytes()
    path = tmp_path / "key"
    for cut in (40, len(text) // 2, len(text) - 40):
        path.write_bytes(text[:cut])
        assert _refusal(path).problem == SignatureProblem.BAD_KEY_FILE


def test_a_missing_key_file_is_one_clear_line(tmp_path: Path) -> None:
    error = _refusal(tmp_path / "nope")
    assert error.problem == SignatureProblem.BAD_KEY_FILE
    assert "cannot read the signing key" in str(error)


@pytest.mark.filterwarnings("ignore:.*DSA:cryptography.utils.CryptographyDeprecationWarning")
def test_dsa_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dsa"
    private = dsa.generate_private_key(key_size=1024)
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    error = _refusal(path)
    assert error.problem == SignatureProblem.BAD_KEY_FILE
    assert "ssh-dss keys cannot sign stacks" in str(error)


def test_allowed_signers_line_for_a_key(our_keys: dict[str, KeyFile]) -> None:
    key = our_keys["ed25519"].key
    assert key.allowed_signers_line("ci@example.com") == (
        f'ci@example.com namespaces="venvlayers" {key.public_key.openssh}'
    )
    assert key.allowed_signers_line("a", namespaces=None) == f"a {key.public_key.openssh}"
