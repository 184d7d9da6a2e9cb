"""Keys for the signing tests, generated once a session in a temporary directory.

Two sets: keys written by `cryptography` (the tests of our own logic need nothing else)
and keys written by the real `ssh-keygen` (the interop tests, skipped without it).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.support.keys import write_key
from venvlayers.signing import SigningKey, load_signing_key

PASSPHRASE = "correct horse battery staple"

# name -> ssh-keygen -t/-b arguments; the three key families and every ECDSA curve
KEY_KINDS: dict[str, list[str]] = {
    "ed25519": ["-t", "ed25519"],
    "ecdsa256": ["-t", "ecdsa", "-b", "256"],
    "ecdsa384": ["-t", "ecdsa", "-b", "384"],
    "ecdsa521": ["-t", "ecdsa", "-b", "521"],
    "rsa": ["-t", "rsa", "-b", "2048"],
}


@dataclass(frozen=True)
class KeyFile:
    """A private key on disk with its `.pub` and what loading it gives."""

    path: Path
    pub: Path
    key: SigningKey

    def allowed_line(self, principal: str, options: str = "") -> str:
        return f"{principal} {options + ' ' if options else ''}{self.key.public_key.openssh}"


def _private_key(
    kind: str,
) -> ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind.startswith("ecdsa"):
        curve = {"256": ec.SECP256R1(), "384": ec.SECP384R1(), "521": ec.SECP521R1()}
        return ec.generate_private_key(curve[kind.removeprefix("ecdsa")])
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def our_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyFile]:
    """One unencrypted key of each kind, written by `cryptography`."""
    directory = tmp_path_factory.mktemp("our-keys")
    keys = {}
    for kind in KEY_KINDS:
        path = write_key(directory, kind, _private_key(kind))
        keys[kind] = KeyFile(path, path.with_name(f"{kind}.pub"), load_signing_key(path))
    return keys


@pytest.fixture(scope="session")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> KeyFile:
    """An ed25519 key that no allowed_signers file of the tests lists."""
    path = write_key(tmp_path_factory.mktemp("other-key"), "other", _private_key("ed25519"))
    return KeyFile(path, path.with_name("other.pub"), load_signing_key(path))


@pytest.fixture(scope="session")
def ssh_keygen_path() -> Path:
    found = shutil.which("ssh-keygen")
    if found is None:
        pytest.skip("ssh-keygen is not installed: the OpenSSH interop tests need it")
    return Path(found)


SshKeygen = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.fixture(scope="session")
def ssh_keygen(ssh_keygen_path: Path, tmp_path_factory: pytest.TempPathFactory) -> SshKeygen:
    """Run ssh-keygen with a clean environment (no agent, no user config); never raises."""
    home = tmp_path_factory.mktemp("ssh-home")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LC_ALL": "C"}

    def run(
        *args: str | Path, stdin: bytes = b"", tz: str | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(ssh_keygen_path), *map(str, args)],
            input=stdin,
            capture_output=True,
            env=env if tz is None else {**env, "TZ": tz},
            timeout=120,
            check=False,
        )

    return run


@pytest.fixture(scope="session")
def ssh_keys(ssh_keygen: SshKeygen, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Keys written by ssh-keygen: each kind plain (`NAME`) and encrypted (`NAME-enc`)."""
    directory = tmp_path_factory.mktemp("ssh-keys")
    keys = {}
    for kind, args in KEY_KINDS.items():
        for name, passphrase in ((kind, ""), (f"{kind}-enc", PASSPHRASE)):
            path = directory / name
            done = ssh_keygen("-q", *args, "-N", passphrase, "-C", f"{name}@test", "-f", path)
            assert done.returncode == 0, done.stderr
            keys[name] = path
    return keys
