"""Property tests: whatever a signature, allowed_signers or key file holds, only
`SignatureError` comes out, and no damaged signature ever verifies."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from venvlayers.signing import (
    AllowedSigners,
    SignatureError,
    SignatureProblem,
    load_signing_key,
    sign,
    verify,
)
from venvlayers.signing.wire import string, uint32

from .conftest import KEY_KINDS, KeyFile

DATA = b'{"layers": [{"name": "cpython-3.11"}]}\n'
PRINCIPAL = "release@example.com"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def signed(our_keys: dict[str, KeyFile]) -> dict[str, tuple[bytes, AllowedSigners]]:
    """A valid signature of DATA by each kind of key, with the file that trusts it."""
    return {
        kind: (
            sign(DATA, key.key),
            AllowedSigners.parse(key.allowed_line(PRINCIPAL), "allowed_signers"),
        )
        for kind, key in our_keys.items()
    }


def _refused(signature: bytes | str, signers: AllowedSigners) -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        verify(DATA, signature, signers)
    assert "\n" not in str(caught.value)
    return caught.value


def _armor(blob: bytes) -> bytes:
    return b"-----BEGIN SSH SIGNATURE-----\n%s\n-----END SSH SIGNATURE-----\n" % (
        base64.b64encode(blob)
    )


def _blob(signature: bytes) -> bytes:
    return base64.b64decode(b"".join(signature.splitlines()[1:-1]))


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(signed: dict[str, tuple[bytes, AllowedSigners]], junk: bytes) -> None:
    _refused(junk, signed["ed25519"][1])


@FUZZ
@given(st.binary(max_size=600))
def test_random_blobs_inside_valid_armor(
    signed: dict[str, tuple[bytes, AllowedSigners]], blob: bytes
) -> None:
    _refused(_armor(b"SSHSIG\0\0\0\1" + blob), signed["ed25519"][1])
    _refused(_armor(blob), signed["ed25519"][1])


_KEY_TYPES = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "rsa-sha2-512",
    "ssh-dss",
    "ssh-ed25519-cert-v01@openssh.com",
]
_WIRE_STRINGS = st.one_of(
    st.sampled_from(
        [*_KEY_TYPES, "nistp256", "nistp384", "nistp521", "venvlayers", "sha512", "sha256"]
    ).map(str.encode),
    st.binary(max_size=70),
    st.sampled_from([b"\x01\x00\x01", b"\x00" + b"\xff" * 256, b"\x04" + b"\x01" * 64]),
)


def _strings(parts: list[bytes]) -> bytes:
    return b"".join(string(part) for part in parts)


@FUZZ
@given(
    key_type=st.sampled_from(_KEY_TYPES),
    key_parts=st.lists(_WIRE_STRINGS, max_size=3),
    fields=st.lists(_WIRE_STRINGS, min_size=3, max_size=3),
    algorithm=st.sampled_from(_KEY_TYPES),
    signature_parts=st.lists(_WIRE_STRINGS, max_size=3),
)
def test_well_framed_blobs_with_random_fields(
    signed: dict[str, tuple[bytes, AllowedSigners]],
    key_type: str,
    key_parts: list[bytes],
    fields: list[bytes],
    algorithm: str,
    signature_parts: list[bytes],
) -> None:
    # every length is right, so the decoders behind the framing get random contents
    key_blob = string(key_type) + _strings(key_parts)
    signature = string(algorithm) + string(_strings(signature_parts))
    namespace, _, hash_algorithm = fields
    blob = b"SSHSIG" + uint32(1) + _strings([key_blob, b"venvlayers", b"", hash_algorithm])
    _refused(_armor(blob + string(signature)), signed["ed25519"][1])
    blob = b"SSHSIG" + uint32(1) + _strings([key_blob, namespace, b"", b"sha512", signature])
    _refused(_armor(blob), signed["ed25519"][1])


@FUZZ
@given(kind=st.sampled_from(sorted(KEY_KINDS)), data=st.data())
def test_truncated_signatures(
    signed: dict[str, tuple[bytes, AllowedSigners]], kind: str, data: st.DataObject
) -> None:
    signature, signers = signed[kind]
    blob = _blob(signature)
    cut = data.draw(st.integers(0, len(blob) - 1))
    assert _refused(_armor(blob[:cut]), signers).problem == SignatureProblem.MALFORMED
    text_cut = data.draw(st.integers(0, len(signature) - 2))
    assert _refused(signature[:text_cut], signers).problem == SignatureProblem.MALFORMED


@FUZZ
@given(kind=st.sampled_from(sorted(KEY_KINDS)), data=st.data())
def test_bit_flips_in_the_blob_never_verify(
    signed: dict[str, tuple[bytes, AllowedSigners]], kind: str, data: st.DataObject
) -> None:
    signature, signers = signed[kind]
    blob = bytearray(_blob(signature))
    for _ in range(data.draw(st.integers(1, 3))):
        blob[data.draw(st.integers(0, len(blob) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    if bytes(blob) != _blob(signature):
        _refused(_armor(bytes(blob)), signers)


@FUZZ
@given(kind=st.sampled_from(sorted(KEY_KINDS)), data=st.data())
def test_bit_flips_in_the_armored_text_never_verify(
    signed: dict[str, tuple[bytes, AllowedSigners]], kind: str, data: st.DataObject
) -> None:
    signature, signers = signed[kind]
    text = bytearray(signature)
    text[data.draw(st.integers(0, len(text) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    # no flipped bit turns a character into the whitespace the armor ignores, and the
    # base64 must be canonical, so every flip changes what is read
    _refused(bytes(text), signers)


@FUZZ
@given(st.text(max_size=300))
def test_random_signature_text(signed: dict[str, tuple[bytes, AllowedSigners]], text: str) -> None:
    _refused(
        "-----BEGIN SSH SIGNATURE-----\n" + text + "\n-----END SSH SIGNATURE-----\n",
        signed["rsa"][1],
    )
    _refused(text, signed["rsa"][1])


_LINE_PARTS = st.sampled_from(
    [
        "alice@example.com",
        "*@example.com,!bob@example.com",
        '"a b"',
        "cert-authority",
        'namespaces="venvlayers"',
        'valid-after="20240101Z"',
        'valid-before="2024010112"',
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ssh-rsa",
        "AAAAC3NzaC1lZDI1NTE5AAAAIA",
        "AAAAB3NzaC1yc2EAAAADAQABAAABAQ",
        ",",
        '"',
        "=",
        "#",
        "\\",
        " ",
        "\t",
        "\r",
    ]
)


@FUZZ
@given(
    st.lists(st.one_of(_LINE_PARTS, st.text(max_size=8)).map(str), max_size=12).map("".join),
    st.lists(st.integers(0, 3), max_size=3),
)
def test_random_allowed_signers_files(
    our_keys: dict[str, KeyFile], line: str, where: list[int]
) -> None:
    good = our_keys["ed25519"].allowed_line(PRINCIPAL)
    lines = [good, good, good, good]
    for index in where:
        lines[index] = line
    try:
        AllowedSigners.parse("\n".join(lines), "allowed_signers")
    except SignatureError as exc:
        assert exc.problem == SignatureProblem.BAD_ALLOWED_SIGNERS
        assert all(problem.startswith("allowed_signers:") for problem in str(exc).split("\n"))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([b"", b"-----BEGIN OPENSSH PRIVATE KEY-----\n"]))
def test_random_key_files(
    tmp_path_factory: pytest.TempPathFactory, junk: bytes, prefix: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz-key") / "key"
    path.write_bytes(prefix + junk)
    with pytest.raises(SignatureError):
        load_signing_key(path)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_damaged_key_files(
    our_keys: dict[str, KeyFile], tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    original = our_keys[data.draw(st.sampled_from(sorted(KEY_KINDS)))].path.read_bytes()
    text = bytearray(original)
    text[data.draw(st.integers(0, len(text) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    path: Path = tmp_path_factory.mktemp("damaged-key") / "key"
    path.write_bytes(bytes(text))
    try:
        load_signing_key(path)
    except SignatureError as exc:
        assert exc.problem == SignatureProblem.BAD_KEY_FILE
