"""`verify`: interop with ssh-keygen both ways, and one precise refusal for each failure."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from venvlayers.signing import (
    AllowedSigners,
    SignatureError,
    SignatureProblem,
    Signer,
    load_signing_key,
    sign,
    verify,
)

from .conftest import KEY_KINDS, PASSPHRASE, KeyFile, SshKeygen

DATA = b'{\n  "layers": [\n    {"name": "cpython-3.11", "sha256": "abc"}\n  ]\n}\n'
PRINCIPAL = "release@example.com"


def _pub_line(pub: Path) -> str:
    return " ".join(pub.read_text().split()[:2])


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _refusal(
    data: bytes, signature: bytes, signers: AllowedSigners, **kwargs: object
) -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        verify(data, signature, signers, **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)
    return caught.value


def _ssh_keygen_verifies(
    ssh_keygen: SshKeygen,
    allowed: Path,
    signature: bytes,
    data: bytes,
    tmp_path: Path,
    principal: str = PRINCIPAL,
    *extra: str,
) -> bool:
    sig = _write(tmp_path, "check.sig", signature)
    done = ssh_keygen(
        "-Y",
        "verify",
        "-f",
        allowed,
        "-I",
        principal,
        "-n",
        "venvlayers",
        "-s",
        sig,
        *extra,
        stdin=data,
    )
    return done.returncode == 0


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_ssh_keygen_signatures_verify_with_ours(
    kind: str, ssh_keys: dict[str, Path], ssh_keygen: SshKeygen, tmp_path: Path
) -> None:
    key = ssh_keys[kind]
    data = _write(tmp_path, "venvstacks.json", DATA)
    done = ssh_keygen("-Y", "sign", "-f", key, "-n", "venvlayers", data)
    assert done.returncode == 0, done.stderr
    allowed = _write(
        tmp_path,
        "allowed_signers",
        f"{PRINCIPAL} {_pub_line(key.with_name(kind + '.pub'))} ci key\n",
    )
    signer = verify(
        DATA, data.with_name("venvstacks.json.sig").read_bytes(), AllowedSigners.load(allowed)
    )
    fingerprint = ssh_keygen("-l", "-E", "sha256", "-f", key).stdout.split()[1].decode()
    assert signer == Signer(
        principals=(PRINCIPAL,),
        key_type=load_signing_key(key).public_key.key_type,
        fingerprint=fingerprint,
        comment="ci key",
        namespace="venvlayers",
        hash_algorithm="sha512",
        entry=AllowedSigners.load(allowed).entries[0],
    )
    assert signer.describe() == (f"{PRINCIPAL} ({signer.entry.key.describe()}, {allowed}:1)")


@pytest.mark.parametrize("kind", [*KEY_KINDS, *(f"{kind}-enc" for kind in KEY_KINDS)])
def test_our_signatures_verify_with_ssh_keygen(
    kind: str, ssh_keys: dict[str, Path], ssh_keygen: SshKeygen, tmp_path: Path
) -> None:
    key = load_signing_key(ssh_keys[kind], PASSPHRASE if kind.endswith("-enc") else None)
    signature = sign(DATA, key)
    allowed = _write(tmp_path, "allowed_signers", key.allowed_signers_line(PRINCIPAL) + "\n")
    sig = _write(tmp_path, "venvstacks.json.sig", signature)
    done = ssh_keygen(
        "-Y", "verify", "-f", allowed, "-I", PRINCIPAL, "-n", "venvlayers", "-s", sig, stdin=DATA
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().startswith(f'Good "venvlayers" signature for {PRINCIPAL} with')
    assert key.fingerprint in done.stdout.decode()
    # and the same check fails there once a byte changes: the interop test can fail
    assert not _ssh_keygen_verifies(ssh_keygen, allowed, signature, DATA + b" ", tmp_path)
    assert verify(DATA, signature, AllowedSigners.load(allowed)).fingerprint == key.fingerprint


def test_sha256_signatures_from_ssh_keygen_are_accepted(
    ssh_keys: dict[str, Path], ssh_keygen: SshKeygen, tmp_path: Path
) -> None:
    for kind in ("rsa", "ecdsa256"):
        data = _write(tmp_path, "data", DATA)
        done = ssh_keygen(
            "-Y", "sign", "-f", ssh_keys[kind], "-n", "venvlayers", "-O", "hashalg=sha256", data
        )
        assert done.returncode == 0, done.stderr
        signature = data.with_name("data.sig").read_bytes()
        data.with_name("data.sig").unlink()
        signers = AllowedSigners.parse(
            f"{PRINCIPAL} {_pub_line(ssh_keys[kind].with_name(kind + '.pub'))}", "allowed"
        )
        assert verify(DATA, signature, signers).hash_algorithm == "sha256"
        assert _refusal(DATA[:-1], signature, signers).problem == SignatureProblem.MISMATCH


def test_our_sha256_signatures_verify_with_ssh_keygen(
    our_keys: dict[str, KeyFile], ssh_keygen: SshKeygen, tmp_path: Path
) -> None:
    key = our_keys["rsa"]
    signature = sign(DATA, key.key, hash_algorithm="sha256")
    allowed = _write(tmp_path, "allowed", key.allowed_line(PRINCIPAL))
    assert _ssh_keygen_verifies(ssh_keygen, allowed, signature, DATA, tmp_path)
    assert verify(DATA, signature, AllowedSigners.load(allowed)).hash_algorithm == "sha256"


def test_data_differing_only_in_whitespace_fails(
    our_keys: dict[str, KeyFile], ssh_keygen: SshKeygen, tmp_path: Path
) -> None:
    key = our_keys["ed25519"]
    signature = sign(DATA, key.key)
    allowed = _write(tmp_path, "allowed", key.allowed_line(PRINCIPAL))
    signers = AllowedSigners.load(allowed)
    for altered in (
        DATA + b"\n",
        DATA.rstrip(b"\n"),
        DATA.replace(b'"name": ', b'"name":'),
        DATA.replace(b"  ", b"\t", 1),
        b" " + DATA,
    ):
        error = _refusal(
            altered,
            signature,
            signers,
            signature_name="venvstacks.json.sig",
            data_name="venvstacks.json",
        )
        assert error.problem == SignatureProblem.MISMATCH
        assert str(error) == (
            "venvstacks.json.sig: the signature does not match venvstacks.json: "
            "venvstacks.json was changed after it was signed, or the signature belongs "
            "to other data"
        )
        assert not _ssh_keygen_verifies(ssh_keygen, allowed, signature, altered, tmp_path)


def test_line_ending_conversion_is_named_but_still_fails(our_keys: dict[str, KeyFile]) -> None:
    key = our_keys["ecdsa256"]
    signers = AllowedSigners.parse(key.allowed_line(PRINCIPAL), "allowed")
    crlf = DATA.replace(b"\n", b"\r\n")
    error = _refusal(crlf, sign(DATA, key.key), signers, data_name="venvstacks.json")
    assert error.problem == SignatureProblem.MISMATCH
    assert "signed with LF line endings and venvstacks.json now has CRLF" in str(error)
    error = _refusal(DATA, sign(crlf, key.key), signers, data_name="venvstacks.json")
    assert "signed with CRLF line endings and venvstacks.json now has LF" in str(error)
    # a signature over CRLF bytes verifies those bytes: nothing is normalised
    assert verify(crlf, sign(crlf, key.key), signers).principals == (PRINCIPAL,)


def test_crlf_signature_and_allowed_signers_files_verify(
    our_keys: dict[str, KeyFile], ssh_keygen: SshKeygen, tmp_path: Path
) -> None:
    key = our_keys["rsa"]
    signature = sign(DATA, key.key)
    allowed = _write(tmp_path, "allowed", f"# trusted\r\n{key.allowed_line(PRINCIPAL)}\r\n")
    signers = AllowedSigners.load(allowed)
    # the armor is not signed, so a copy that converted it to CRLF still verifies here
    # (ssh-keygen 9.2 refuses such a file: "missing header"); the CRLF allowed_signers
    # file works in both
    assert verify(DATA, signature.replace(b"\n", b"\r\n"), signers).key_type == "ssh-rsa"
    assert _ssh_keygen_verifies(ssh_keygen, allowed, signature, DATA, tmp_path)


def test_expired_key_says_when(
    our_keys: dict[str, KeyFile], ssh_keygen: SshKeygen, tmp_path: Path
) -> None:
    key = our_keys["ed25519"]
    allowed = _write(tmp_path, "allowed", key.allowed_line(PRINCIPAL, 'valid-before="20200101Z"'))
    signature = sign(DATA, key.key)
    error = _refusal(
        DATA, signature, AllowedSigners.load(allowed), now=datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    )
    assert error.problem == SignatureProblem.EXPIRED
    assert str(error) == (
        f"signature: signed by {key.key.public_key.describe()}, but {allowed}:1 says it "
        'expired at 2020-01-01 00:00:00 UTC (valid-before="20200101Z"), and it is now '
        "2026-03-04 05:06:07 UTC"
    )
    assert not _ssh_keygen_verifies(ssh_keygen, allowed, signature, DATA, tmp_path)


def test_not_yet_valid_key_says_when(
    our_keys: dict[str, KeyFile], ssh_keygen: SshKeygen, tmp_path: Path
) -> None:
    key = our_keys["ecdsa384"]
    allowed = _write(
        tmp_path, "allowed", key.allowed_line(PRINCIPAL, 'valid-after="209901011230Z"')
    )
    signature = sign(DATA, key.key)
    error = _refusal(DATA, signature, AllowedSigners.load(allowed))
    assert error.problem == SignatureProblem.NOT_YET_VALID
    assert "valid only from 2099-01-01 12:30:00 UTC" in str(error)
    assert not _ssh_keygen_verifies(ssh_keygen, allowed, signature, DATA, tmp_path)


@pytest.mark.parametrize(
    ("moment", "ok"),
    [
        ("20231231235959Z", False),
        ("20240101000000Z", True),
        ("20240615120000Z", True),
        ("20250101000000Z", True),
        ("20250101000001Z", False),
    ],
)
def test_validity_bounds_are_inclusive_as_in_ssh_keygen(
    moment: str, ok: bool, our_keys: dict[str, KeyFile], ssh_keygen: SshKeygen, tmp_path: Path
) -> None:
    key = our_keys["ed25519"]
    allowed = _write(
        tmp_path,
        "allowed",
        key.allowed_line(PRINCIPAL, 'valid-after="20240101Z",valid-before="20250101Z"'),
    )
    signature = sign(DATA, key.key)
    now = datetime.strptime(moment, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
    signers = AllowedSigners.load(allowed)
    if ok:
        verify(DATA, signature, signers, now=now)
    else:
        assert _refusal(DATA, signature, signers, now=now).problem in {
            SignatureProblem.EXPIRED,
            SignatureProblem.NOT_YET_VALID,
        }
    assert (
        _ssh_keygen_verifies(
            ssh_keygen, allowed, signature, DATA, tmp_path, PRINCIPAL, f"-Overify-time={moment}"
        )
        is ok
    )


def test_wrong_namespace(ssh_keys: dict[str, Path], ssh_keygen: SshKeygen, tmp_path: Path) -> None:
    data = _write(tmp_path, "commit", DATA)
    assert ssh_keygen("-Y", "sign", "-f", ssh_keys["ed25519"], "-n", "git", data).returncode == 0
    signers = AllowedSigners.parse(
        f"{PRINCIPAL} {_pub_line(ssh_keys['ed25519'].with_name('ed25519.pub'))}", "allowed"
    )
    error = _refusal(DATA, data.with_name("commit.sig").read_bytes(), signers)
    assert error.problem == SignatureProblem.WRONG_NAMESPACE
    assert str(error) == (
        "signature: made for namespace 'git' (a git commit signature?), not 'venvlayers'; "
        "sign with namespace 'venvlayers' (ssh-keygen -Y sign -n venvlayers)"
    )
    # a caller verifying another namespace gets it
    assert (
        verify(DATA, data.with_name("commit.sig").read_bytes(), signers, "git").namespace == "git"
    )


def test_signature_by_another_key(our_keys: dict[str, KeyFile], other_key: KeyFile) -> None:
    signers = AllowedSigners.parse(our_keys["ed25519"].allowed_line(PRINCIPAL), "trusted")
    error = _refusal(DATA, sign(DATA, other_key.key), signers)
    assert error.problem == SignatureProblem.UNKNOWN_KEY
    assert str(error) == (
        f"signature: signed by ED25519 {other_key.key.fingerprint}, which trusted does "
        f"not list; if you trust that key, add the line "
        f"'PRINCIPAL {other_key.key.public_key.openssh}' to it"
    )


def test_key_listed_only_as_cert_authority(our_keys: dict[str, KeyFile]) -> None:
    key = our_keys["ed25519"]
    signers = AllowedSigners.parse(key.allowed_line("*@example.com", "cert-authority"), "ca")
    error = _refusal(DATA, sign(DATA, key.key), signers)
    assert error.problem == SignatureProblem.UNKNOWN_KEY
    assert "lists only as a cert-authority (ca:1)" in str(error)


def test_certificate_signatures_are_refused_clearly(ssh_keygen: SshKeygen, tmp_path: Path) -> None:
    for name in ("ca", "user"):
        assert ssh_keygen("-q", "-t", "ed25519", "-N", "", "-f", tmp_path / name).returncode == 0
    done = ssh_keygen(
        "-q", "-s", tmp_path / "ca", "-I", "id", "-n", PRINCIPAL, tmp_path / "user.pub"
    )
    assert done.returncode == 0, done.stderr
    data = _write(tmp_path, "data", DATA)
    done = ssh_keygen("-Y", "sign", "-f", tmp_path / "user-cert.pub", "-n", "venvlayers", data)
    assert done.returncode == 0, done.stderr
    signers = AllowedSigners.parse(
        f"{PRINCIPAL} cert-authority {_pub_line(tmp_path / 'ca.pub')}", "allowed"
    )
    error = _refusal(DATA, (tmp_path / "data.sig").read_bytes(), signers)
    assert error.problem == SignatureProblem.UNSUPPORTED
    assert "made with an OpenSSH certificate (ssh-ed25519-cert-v01@openssh.com)" in str(error)


def test_namespaces_option(
    our_keys: dict[str, KeyFile], ssh_keygen: SshKeygen, tmp_path: Path
) -> None:
    key = our_keys["ecdsa521"]
    signature = sign(DATA, key.key)
    for option, ok in (
        ('namespaces="venvlayers"', True),
        ('namespaces="file,venv*"', True),
        ('NAMESPACES="git,file"', False),
        ('namespaces="*,!venvlayers"', False),
    ):
        allowed = _write(tmp_path, "allowed", key.allowed_line(PRINCIPAL, option))
        signers = AllowedSigners.load(allowed)
        if ok:
            assert verify(DATA, signature, signers).entry.namespaces is not None
        else:
            error = _refusal(DATA, signature, signers)
            assert error.problem == SignatureProblem.NAMESPACE_NOT_ALLOWED
            assert f"{allowed}:1 allows it only for namespaces=" in str(error)
        assert _ssh_keygen_verifies(ssh_keygen, allowed, signature, DATA, tmp_path) is ok


@pytest.mark.parametrize(
    ("principal", "ok"),
    [
        ("alice@example.com", True),
        ("bob@ci.example.com", True),
        ("mallory@example.com", False),
        ("alice@example.org", False),
        ("build-7", True),
        ("build-77", False),
    ],
)
def test_principal_patterns(
    principal: str, ok: bool, our_keys: dict[str, KeyFile], ssh_keygen: SshKeygen, tmp_path: Path
) -> None:
    key = our_keys["ed25519"]
    allowed = _write(
        tmp_path,
        "allowed",
        key.allowed_line("*@example.com,*@*.example.com,!mallory@example.com,build-?"),
    )
    signature = sign(DATA, key.key)
    signers = AllowedSigners.load(allowed)
    if ok:
        assert (
            verify(DATA, signature, signers, principal=principal).principals[0] == "*@example.com"
        )
    else:
        error = _refusal(DATA, signature, signers, principal=principal)
        assert error.problem == SignatureProblem.WRONG_PRINCIPAL
        assert f"not for principal {principal!r}" in str(error)
    assert _ssh_keygen_verifies(ssh_keygen, allowed, signature, DATA, tmp_path, principal) is ok


def test_the_first_line_that_admits_the_key_wins(our_keys: dict[str, KeyFile]) -> None:
    key = our_keys["rsa"]
    text = "\n".join(
        [
            key.allowed_line("old@example.com", 'valid-before="20200101Z"'),
            key.allowed_line("git@example.com", 'namespaces="git"'),
            key.allowed_line("release@example.com") + " current",
        ]
    )
    signers = AllowedSigners.parse(text, "allowed")
    signer = verify(DATA, sign(DATA, key.key), signers)
    assert (signer.principals, signer.comment, signer.entry.line) == (
        ("release@example.com",),
        "current",
        3,
    )
    # without the admitting line, every refusal is named, the first one's problem kept
    error = _refusal(
        DATA, sign(DATA, key.key), AllowedSigners.parse(text.rsplit("\n", 1)[0], "allowed")
    )
    assert error.problem == SignatureProblem.EXPIRED
    assert "allowed:1 says it expired" in str(error)
    assert 'allowed:2 allows it only for namespaces="git"' in str(error)


@pytest.mark.parametrize(
    "signature",
    [b"", b"\n", b"hello", b"-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\n"],
    ids=["empty", "newline", "text", "pgp"],
)
def test_garbage_signature_files(signature: bytes, our_keys: dict[str, KeyFile]) -> None:
    signers = AllowedSigners.parse(our_keys["ed25519"].allowed_line(PRINCIPAL), "allowed")
    error = _refusal(DATA, signature, signers, signature_name="venvstacks.json.sig")
    assert error.problem == SignatureProblem.MALFORMED
    assert str(error).startswith("venvstacks.json.sig: not a valid SSH signature: ")


def test_truncated_signature_files(our_keys: dict[str, KeyFile]) -> None:
    key = our_keys["ecdsa256"]
    signers = AllowedSigners.parse(key.allowed_line(PRINCIPAL), "allowed")
    signature = sign(DATA, key.key)
    for cut in range(1, len(signature) - 1):
        error = _refusal(DATA, signature[:cut], signers)
        assert error.problem == SignatureProblem.MALFORMED, (cut, str(error))
    # a short body that still has its END line: the wire data runs out
    lines = signature.splitlines(keepends=True)
    for keep in range(1, len(lines) - 1):
        shortened = b"".join(lines[:keep] + lines[-1:])
        error = _refusal(DATA, shortened, signers)
        assert error.problem == SignatureProblem.MALFORMED
        assert (
            "truncated" in str(error) or "base64" in str(error) or "nothing between" in str(error)
        )
