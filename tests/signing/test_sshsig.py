"""The SSHSIG format itself: armor exactly as ssh-keygen writes it, and every malformed shape."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from venvlayers.signing import (
    AllowedSigners,
    SignatureError,
    SignatureProblem,
    load_signing_key,
    read_signature,
    sign,
    verify,
)
from venvlayers.signing.wire import mpint, string, uint32

from .conftest import KEY_KINDS, KeyFile, SshKeygen

DATA = b"the exact bytes of venvstacks.json\n"


def _ssh_keygen_sign(
    ssh_keygen: SshKeygen, key: Path, data: bytes, namespace: str, tmp_path: Path
) -> bytes:
    path = tmp_path / "data"
    path.write_bytes(data)
    done = ssh_keygen("-Y", "sign", "-f", key, "-n", namespace, path)
    assert done.returncode == 0, done.stderr
    signature = path.with_name("data.sig").read_bytes()
    path.with_name("data.sig").unlink()
    return signature


@pytest.mark.parametrize("namespace", ["venvlayers", "n" * 39, "file"])
def test_ed25519_signatures_are_byte_identical_to_ssh_keygen(
    namespace: str, ssh_keys: dict[str, Path], ssh_keygen: SshKeygen, tmp_path: Path
) -> None:
    # ed25519 is deterministic, so the whole file can be compared; a 39-character
    # namespace makes the base64 exactly 4 lines of 70 (no empty line before END)
    key = ssh_keys["ed25519"]
    theirs = _ssh_keygen_sign(ssh_keygen, key, DATA, namespace, tmp_path)
    ours = sign(DATA, load_signing_key(key), namespace)
    assert ours == theirs


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_armor_layout(kind: str, our_keys: dict[str, KeyFile]) -> None:
    lines = sign(DATA, our_keys[kind].key).decode("ascii").split("\n")
    assert lines[0] == "-----BEGIN SSH SIGNATURE-----"
    assert lines[-2:] == ["-----END SSH SIGNATURE-----", ""]
    body = lines[1:-2]
    assert all(len(line) == 70 for line in body[:-1]) and 0 < len(body[-1]) <= 70
    blob = base64.b64decode("".join(body))
    assert blob.startswith(b"SSHSIG\x00\x00\x00\x01")


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_read_signature_reports_what_it_claims(kind: str, our_keys: dict[str, KeyFile]) -> None:
    key = our_keys[kind].key
    info = read_signature(sign(DATA, key, "file", hash_algorithm="sha256"))
    assert (info.public_key, info.namespace, info.hash_algorithm) == (
        key.public_key,
        "file",
        "sha256",
    )
    algorithm = info.signature[4 : 4 + int.from_bytes(info.signature[:4], "big")].decode()
    expected = {"ssh-rsa": "rsa-sha2-256"}.get(key.public_key.key_type, key.public_key.key_type)
    assert algorithm == expected
    assert read_signature(sign(DATA, key)).hash_algorithm == "sha512"


def test_rsa_signs_with_rsa_sha2_512(our_keys: dict[str, KeyFile]) -> None:
    info = read_signature(sign(DATA, our_keys["rsa"].key))
    assert info.signature[4:16] == b"rsa-sha2-512"


def test_sign_refuses_an_empty_namespace_and_unknown_hashes(our_keys: dict[str, KeyFile]) -> None:
    with pytest.raises(SignatureError, match="namespace must not be empty"):
        sign(DATA, our_keys["ed25519"].key, "")
    with pytest.raises(SignatureError, match="unsupported hash algorithm 'md5'"):
        sign(DATA, our_keys["ed25519"].key, hash_algorithm="md5")


def _armor(blob: bytes) -> bytes:
    text = base64.b64encode(blob)
    return b"-----BEGIN SSH SIGNATURE-----\n" + text + b"\n-----END SSH SIGNATURE-----\n"


def _blob(
    key_blob: bytes,
    *,
    magic: bytes = b"SSHSIG",
    version: int = 1,
    namespace: bytes = b"venvlayers",
    hash_algorithm: bytes = b"sha512",
    signature: bytes = b"\0\0\0\x0bssh-ed25519\0\0\0\x40" + b"\0" * 64,
    trailing: bytes = b"",
) -> bytes:
    return (
        magic
        + uint32(version)
        + string(key_blob)
        + string(namespace)
        + string(b"")
        + string(hash_algorithm)
        + string(signature)
        + trailing
    )


def test_malformed_blobs_each_get_their_reason(our_keys: dict[str, KeyFile]) -> None:
    key_blob = our_keys["ed25519"].key.public_key.blob
    cases: list[tuple[bytes, SignatureProblem, str]] = [
        (
            _blob(key_blob, magic=b"SSHSIH"),
            SignatureProblem.MALFORMED,
            "does not start with 'SSHSIG'",
        ),
        (_blob(key_blob, version=2), SignatureProblem.UNSUPPORTED, "version 2 is not supported"),
        (_blob(key_blob, namespace=b""), SignatureProblem.MALFORMED, "the namespace is empty"),
        (_blob(key_blob, namespace=b"ven\nvl"), SignatureProblem.MALFORMED, "not printable ASCII"),
        (
            _blob(key_blob, hash_algorithm=b"sha1"),
            SignatureProblem.UNSUPPORTED,
            "hash algorithm 'sha1'",
        ),
        (_blob(key_blob, trailing=b"x"), SignatureProblem.MALFORMED, "1 unexpected trailing bytes"),
        (_blob(key_blob)[:-10], SignatureProblem.MALFORMED, "truncated: the signature runs past"),
        (
            _blob(string("ssh-ed25519") + string(b"k" * 31)),
            SignatureProblem.MALFORMED,
            "an ed25519 key is 32 bytes",
        ),
        (
            _blob(string("ssh-ed448") + string(b"k" * 57)),
            SignatureProblem.UNSUPPORTED,
            "'ssh-ed448'",
        ),
        (
            _blob(string("sk-ssh-ed25519@openssh.com") + string(b"k" * 32)),
            SignatureProblem.UNSUPPORTED,
            "made with a security key",
        ),
        (
            _blob(
                string("ecdsa-sha2-nistp256") + string("nistp256") + string(b"\x04" + b"\x01" * 64)
            ),
            SignatureProblem.MALFORMED,
            "the point is not on nistp256",
        ),
        (
            _blob(string("ecdsa-sha2-nistp256") + string("nistp384") + string(b"\x04")),
            SignatureProblem.MALFORMED,
            "names another curve",
        ),
        (
            _blob(string("ssh-rsa") + string(b"\x01\x00\x01") + string(b"\x00" + b"\xff" * 64)),
            SignatureProblem.UNSUPPORTED,
            "RSA keys of 512 bits are too small",
        ),
        (
            _blob(string("ssh-rsa") + string(b"\x81") + string(b"\x00" + b"\xff" * 256)),
            SignatureProblem.MALFORMED,
            "the RSA exponent is negative",
        ),
    ]
    for blob, problem, detail in cases:
        with pytest.raises(SignatureError) as caught:
            read_signature(_armor(blob), "x.sig")
        assert caught.value.problem == problem, (detail, str(caught.value))
        assert detail in str(caught.value)
        assert str(caught.value).startswith("x.sig: ")


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        (b"", "the file is empty"),
        (b" \n", "the file is empty"),
        (b"junk\n-----BEGIN SSH SIGNATURE-----\n", "text before '-----BEGIN SSH SIGNATURE-----'"),
        (
            b"-----BEGIN SSH SIGNATURE----- x\nAAAA\n-----END SSH SIGNATURE-----\n",
            "text after the BEGIN",
        ),
        (b"-----BEGIN SSH SIGNATURE-----\nAAAA\n", "truncated: no '-----END SSH SIGNATURE-----'"),
        (
            b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\nmore",
            "text after the END",
        ),
        (b"-----BEGIN SSH SIGNATURE-----\n\n-----END SSH SIGNATURE-----\n", "nothing between"),
        (b"-----BEGIN SSH SIGNATURE-----\nAA*A\n-----END SSH SIGNATURE-----\n", "is not base64"),
        (b"-----BEGIN SSH SIGNATURE-----\nAAB=\n-----END SSH SIGNATURE-----\n", "not canonical"),
        (
            b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n",
            "truncated: the SSHSIG preamble runs past its end",
        ),
        ("-----BEGIN SSH SIGNATURE-----\nAAé\n-----END SSH SIGNATURE-----\n", "is not base64"),
    ],
)
def test_malformed_armor(text: bytes | str, detail: str) -> None:
    with pytest.raises(SignatureError) as caught:
        read_signature(text, "x.sig")
    assert caught.value.problem == SignatureProblem.MALFORMED
    assert str(caught.value).startswith("x.sig: not a valid SSH signature: ")
    assert detail in str(caught.value)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("ecdsa256", string(mpint(0) + mpint(0))),
        ("ecdsa256", string(mpint(1) + mpint(2**256 + 5))),
        ("ecdsa384", string(mpint(2**2000) + mpint(1))),
        ("ecdsa521", string(mpint(1))),
        ("ed25519", string(b"\xff" * 64)),
        ("ed25519", string(b"\0" * 63)),
        ("rsa", string(b"\xff" * 257)),
        ("rsa", string(b"")),
    ],
)
def test_out_of_range_signature_values_do_not_verify(
    kind: str, value: bytes, our_keys: dict[str, KeyFile]
) -> None:
    key = our_keys[kind]
    info = read_signature(sign(DATA, key.key))
    algorithm = info.signature[: 4 + int.from_bytes(info.signature[:4], "big")]
    blob = _blob(key.key.public_key.blob, namespace=b"venvlayers", signature=algorithm + value)
    signers = AllowedSigners.parse(key.allowed_line("a"), "f")
    with pytest.raises(SignatureError) as caught:
        verify(DATA, _armor(blob), signers)
    assert caught.value.problem in {SignatureProblem.MISMATCH, SignatureProblem.MALFORMED}


def test_rsa_sha1_signatures_are_refused(our_keys: dict[str, KeyFile]) -> None:
    key = our_keys["rsa"]
    info = read_signature(sign(DATA, key.key))
    raw = info.signature[4 + len("rsa-sha2-512") :]
    blob = _blob(key.key.public_key.blob, signature=string("ssh-rsa") + raw)
    with pytest.raises(SignatureError, match=r"RSA with SHA-1 \(ssh-rsa\) is refused") as caught:
        verify(DATA, _armor(blob), AllowedSigners.parse(key.allowed_line("a"), "f"))
    assert caught.value.problem == SignatureProblem.UNSUPPORTED
