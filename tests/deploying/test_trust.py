"""Signed stacks at deploy time: `deploy --trusted-keys`, the target's memory, refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.support.fakestack import FakeStack, snapshot
from tests.support.httpd import files_handler, serving
from tests.support.keys import write_key
from venvlayers import deploying, publishing
from venvlayers.cli import main
from venvlayers.errors import SignatureError
from venvlayers.layout import METADATA_PATH, SIGNATURE_PATH
from venvlayers.signing import SignatureProblem, SigningKey, load_signing_key


def _key(directory: Path, name: str) -> SigningKey:
    directory.mkdir(parents=True, exist_ok=True)
    return load_signing_key(write_key(directory, name, ed25519.Ed25519PrivateKey.generate()))


def _allowed(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    return _key(tmp_path / "keys", "release")


@pytest.fixture
def other(tmp_path: Path) -> SigningKey:
    return _key(tmp_path / "keys", "intruder")


@pytest.fixture
def trusted(tmp_path: Path, key: SigningKey) -> Path:
    return _allowed(tmp_path / "allowed_signers", key.allowed_signers_line("release@example.com"))


@pytest.fixture
def signed(tmp_path: Path, key: SigningKey) -> Path:
    out = FakeStack(tmp_path / "stack").publish(tmp_path / "out")
    publishing.sign_stack(out, key)
    return out


def _refused(source: Path | str, target: Path, problem: str, **kwargs: object) -> str:
    before = snapshot(target)
    with pytest.raises(SignatureError) as info:
        deploying.deploy(source, target, **kwargs)  # type: ignore[arg-type]
    assert info.value.problem == problem
    assert "\n" not in str(info.value)
    assert snapshot(target) == before  # byte for byte, inodes included
    return str(info.value)


def test_a_signed_stack_deploys_and_the_target_remembers(
    signed: Path, trusted: Path, tmp_path: Path, key: SigningKey
) -> None:
    target = tmp_path / "target"
    result = deploying.deploy(signed, target, trusted_keys=trusted)
    assert result.signed_by is not None
    assert result.signed_by.principals == ("release@example.com",)
    assert result.signed_by.fingerprint == key.fingerprint
    status = deploying.status(target)
    assert status.signed_by == result.signed_by
    assert status.trusted_keys is not None and status.trusted_keys.source == str(trusted)
    # without the option, a later deploy still needs a valid signature from those keys
    again = deploying.deploy(signed, target, force=True)
    assert again.signed_by == result.signed_by


def test_an_unsigned_stack_is_refused_by_a_trusting_target(
    signed: Path, trusted: Path, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    deploying.deploy(signed, target, trusted_keys=trusted)
    unsigned = FakeStack(tmp_path / "stack2").publish(tmp_path / "out2")
    message = _refused(unsigned, target, SignatureProblem.UNSIGNED)
    assert "is not signed" in message and str(trusted) in message
    # and a fresh target given the keys refuses it before creating anything
    _refused(unsigned, tmp_path / "fresh", SignatureProblem.UNSIGNED, trusted_keys=trusted)
    assert not (tmp_path / "fresh").exists()


def test_a_stack_signed_by_another_key_is_refused(
    signed: Path, trusted: Path, tmp_path: Path, other: SigningKey
) -> None:
    target = tmp_path / "target"
    deploying.deploy(signed, target, trusted_keys=trusted)
    publishing.sign_stack(signed, other)
    _refused(signed, target, SignatureProblem.UNKNOWN_KEY)


def test_metadata_altered_after_signing_is_refused(
    signed: Path, trusted: Path, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    deploying.deploy(signed, target, trusted_keys=trusted)
    manifest = signed / METADATA_PATH
    # only white space differs: the same JSON, other bytes
    manifest.write_bytes(manifest.read_bytes().replace(b"\n", b"\n ", 1))
    assert json.loads(manifest.read_bytes())
    _refused(signed, target, SignatureProblem.MISMATCH)


def test_an_expired_key_is_refused(signed: Path, key: SigningKey, tmp_path: Path) -> None:
    expired = _allowed(
        tmp_path / "expired",
        key.allowed_signers_line("release@example.com").replace(
            'namespaces="venvlayers"', 'namespaces="venvlayers",valid-before="20200101"'
        ),
    )
    message = _refused(signed, tmp_path / "t", SignatureProblem.EXPIRED, trusted_keys=expired)
    assert "2020" in message


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_signature_file_is_refused(
    signed: Path, trusted: Path, tmp_path: Path, damage: str
) -> None:
    sig = signed / SIGNATURE_PATH
    text = sig.read_bytes()
    sig.write_bytes(
        {"truncated": text[: len(text) // 2], "garbage": b"\x00\xffnot a signature", "empty": b""}[
            damage
        ]
    )
    _refused(signed, tmp_path / "t", SignatureProblem.MALFORMED, trusted_keys=trusted)


def test_a_new_trusted_keys_file_replaces_the_old_one(
    signed: Path, trusted: Path, tmp_path: Path, other: SigningKey
) -> None:
    target = tmp_path / "target"
    deploying.deploy(signed, target, trusted_keys=trusted)
    rotated = _allowed(tmp_path / "rotated", other.allowed_signers_line("new@example.com"))
    publishing.sign_stack(signed, other)
    result = deploying.deploy(signed, target, trusted_keys=rotated)
    assert result.signed_by is not None and result.signed_by.principals == ("new@example.com",)
    # the old key is no longer trusted
    old = FakeStack(tmp_path / "stack2").publish(tmp_path / "out2")
    publishing.sign_stack(old, load_signing_key(tmp_path / "keys" / "release"))
    _refused(old, target, SignatureProblem.UNKNOWN_KEY)


def test_a_bad_trusted_keys_file_is_one_line(signed: Path, tmp_path: Path) -> None:
    bad = _allowed(tmp_path / "bad", "someone ssh-ed25519 not-base64!")
    with pytest.raises(SignatureError) as info:
        deploying.deploy(signed, tmp_path / "t", trusted_keys=bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "t").exists()


@pytest.fixture
def server(signed: Path) -> Iterator[tuple[str, list[str]]]:
    requested: list[str] = []
    with serving(files_handler(signed, requested)) as url:
        yield url, requested


def test_over_http_a_refusal_fetches_nothing_beyond_the_metadata(
    server: tuple[str, list[str]], signed: Path, tmp_path: Path, other: SigningKey
) -> None:
    url, requested = server
    stranger = _allowed(tmp_path / "stranger", other.allowed_signers_line("x@example.com"))
    _refused(url, tmp_path / "t", SignatureProblem.UNKNOWN_KEY, trusted_keys=stranger)
    assert sorted(requested) == sorted([f"/{METADATA_PATH}", f"/{SIGNATURE_PATH}"])


def test_over_http_a_signed_stack_deploys(
    server: tuple[str, list[str]], trusted: Path, tmp_path: Path
) -> None:
    url, _ = server
    result = deploying.deploy(url, tmp_path / "t", trusted_keys=trusted)
    assert result.signed_by is not None


@pytest.fixture
def ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        pytest.skip("ssh-keygen is not installed")
    return found


def test_interop_with_ssh_keygen_both_ways(
    signed: Path, key: SigningKey, trusted: Path, tmp_path: Path, ssh_keygen: str
) -> None:
    manifest = signed / METADATA_PATH
    # our signature, checked by ssh-keygen
    subprocess.run(
        [
            *(ssh_keygen, "-Y", "verify", "-f", str(trusted), "-I", "release@example.com"),
            *("-n", "venvlayers", "-s", str(signed / SIGNATURE_PATH)),
        ],
        stdin=manifest.open("rb"),
        check=True,
        capture_output=True,
    )
    # ssh-keygen's signature, checked by our deploy
    (signed / SIGNATURE_PATH).unlink()
    subprocess.run(
        [ssh_keygen, "-Y", "sign", "-f", str(key.path), "-n", "venvlayers", str(manifest)],
        check=True,
        capture_output=True,
    )
    assert (signed / SIGNATURE_PATH).is_file()
    result = deploying.deploy(signed, tmp_path / "t", trusted_keys=trusted)
    assert result.signed_by is not None


def test_cli_sign_deploy_status(
    tmp_path: Path, key: SigningKey, trusted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = FakeStack(tmp_path / "stack").publish(tmp_path / "out")
    assert main(["sign", str(out), "--key", str(key.path)]) == 0
    said = capsys.readouterr().out
    assert "signed" in said and key.fingerprint in said
    target = tmp_path / "target"
    assert main(["deploy", str(out), "--target", str(target), "--trusted-keys", str(trusted)]) == 0
    assert "signed by release@example.com" in capsys.readouterr().out
    assert main(["status", "--target", str(target)]) == 0
    shown = capsys.readouterr().out
    assert "signed by release@example.com" in shown and str(trusted) in shown
    (out / SIGNATURE_PATH).unlink()
    assert main(["deploy", str(out), "--target", str(target), "--force"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "is not signed" in err[0]


def test_cli_sign_refuses_what_is_not_a_publish(
    tmp_path: Path, key: SigningKey, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sign", str(tmp_path), "--key", str(key.path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a published stack" in err[0]
    assert main(["sign", str(tmp_path), "--key", str(tmp_path / "nope")]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_cli_sign_with_an_encrypted_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = FakeStack(tmp_path / "stack").publish(tmp_path / "out")
    (tmp_path / "keys").mkdir()
    path = write_key(tmp_path / "keys", "locked", ed25519.Ed25519PrivateKey.generate(), "s3cret")
    monkeypatch.delenv("VENVLAYERS_SIGN_PASSPHRASE", raising=False)
    assert main(["sign", str(out), "--key", str(path)]) == 1  # no terminal to ask on
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "passphrase" in err[0] and str(path) in err[0]
    monkeypatch.setenv("VENVLAYERS_SIGN_PASSPHRASE", "wrong")
    assert main(["sign", str(out), "--key", str(path)]) == 1
    assert "passphrase" in capsys.readouterr().err
    assert not (out / SIGNATURE_PATH).exists()
    monkeypatch.setenv("VENVLAYERS_SIGN_PASSPHRASE", "s3cret")
    assert main(["sign", str(out), "--key", str(path)]) == 0
    assert (out / SIGNATURE_PATH).is_file()
