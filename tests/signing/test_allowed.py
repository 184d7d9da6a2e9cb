"""allowed_signers files: the format as ssh-keygen reads it, errors naming file:line."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from venvlayers.signing import (
    AllowedSigners,
    SignatureError,
    SignatureProblem,
    match_pattern_list,
    sign,
    verify,
)

from .conftest import KeyFile, SshKeygen


@pytest.fixture
def ed(our_keys: dict[str, KeyFile]) -> str:
    return our_keys["ed25519"].key.public_key.openssh


@pytest.fixture
def rsa(our_keys: dict[str, KeyFile]) -> str:
    return our_keys["rsa"].key.public_key.openssh


def _problems(text: str, source: str = "allowed_signers") -> list[str]:
    with pytest.raises(SignatureError) as caught:
        AllowedSigners.parse(text, source)
    assert caught.value.problem == SignatureProblem.BAD_ALLOWED_SIGNERS
    return str(caught.value).split("\n")


def test_comments_blank_lines_crlf_bom_and_trailing_comments(ed: str, rsa: str) -> None:
    text = (
        "\ufeff# release keys\r\n"
        "\r\n"
        f"   alice@example.com {ed} alice's laptop key\r\n"
        "\t# indented comment\n"
        f'"bob@example.com,ci@example.com" cert-authority {rsa}\n'
        "\n"
    )
    signers = AllowedSigners.parse(text, "trusted")
    alice, bob = signers.entries
    assert (alice.principals, alice.comment, alice.location) == (
        ("alice@example.com",),
        "alice's laptop key",
        "trusted:3",
    )
    assert (bob.principals, bob.cert_authority, bob.line) == (
        ("bob@example.com", "ci@example.com"),
        True,
        5,
    )
    assert bob.key.key_type == "ssh-rsa" and bob.key.bits == 2048


def test_options_are_case_insensitive_and_quoted(ed: str) -> None:
    options = (
        'Namespaces="venv layers,x\\"y",VALID-AFTER="20240101Z",valid-before="20250601123045Z"'
    )
    line = f"a@b {options} {ed}"
    (entry,) = AllowedSigners.parse(line, "f").entries
    assert entry.namespaces == 'venv layers,x"y'
    assert entry.valid_after == datetime(2024, 1, 1, tzinfo=UTC)
    assert entry.valid_before == datetime(2025, 6, 1, 12, 30, 45, tzinfo=UTC)
    assert entry.allows_namespace("venv layers") and entry.allows_namespace('x"y')
    assert not entry.allows_namespace("venvlayers")
    assert entry.raw_valid_after == "20240101Z"


def test_empty_options_are_skipped_as_in_ssh_keygen(ed: str) -> None:
    (entry,) = AllowedSigners.parse(f'a ,namespaces="x",,cert-authority {ed}', "f").entries
    assert (entry.namespaces, entry.cert_authority) == ("x", True)
    assert _problems(f"a ,, {ed}") == ["allowed_signers:1: the options end with a comma"]


@pytest.fixture
def eastern_time() -> Iterator[None]:
    """This process in a fixed UTC-5 zone (a POSIX TZ string: no tz database needed)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "EST+5")
        time.tzset()
        yield
    time.tzset()


@pytest.mark.usefixtures("eastern_time")
def test_times_without_z_are_local_like_ssh_keygen(ed: str) -> None:
    line = f'a valid-after="202401010000",valid-before="20240102UTC" {ed}'
    (entry,) = AllowedSigners.parse(line, "f").entries
    assert entry.valid_after == datetime(2024, 1, 1, 5, 0, tzinfo=UTC)
    assert entry.valid_before == datetime(2024, 1, 2, tzinfo=UTC)


@pytest.mark.usefixtures("eastern_time")
@pytest.mark.parametrize(("moment", "ok"), [("20240101050000Z", True), ("20240101050001Z", False)])
def test_local_times_agree_with_ssh_keygen(
    moment: str, ok: bool, our_keys: dict[str, KeyFile], ssh_keygen: SshKeygen, tmp_path: Path
) -> None:
    key = our_keys["ed25519"]
    allowed = tmp_path / "allowed"
    allowed.write_text(key.allowed_line("a", 'valid-before="202401010000"') + "\n")
    data = b"data"
    (tmp_path / "data.sig").write_bytes(sign(data, key.key))
    now = datetime.strptime(moment, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
    try:
        verify(data, sign(data, key.key), AllowedSigners.load(allowed), now=now)
        ours = True
    except SignatureError as exc:
        assert exc.problem == SignatureProblem.EXPIRED
        ours = False
    done = ssh_keygen(
        "-Y",
        "verify",
        "-f",
        allowed,
        "-I",
        "a",
        "-n",
        "venvlayers",
        "-s",
        tmp_path / "data.sig",
        f"-Overify-time={moment}",
        stdin=data,
        tz="EST+5",
    )
    assert ours is ok and (done.returncode == 0) is ok, done.stderr


def test_only_spaces_and_tabs_separate_fields(ed: str) -> None:
    (entry,) = AllowedSigners.parse(f"al\u00a0ice\t {ed}", "f").entries
    assert entry.principals == ("al\u00a0ice",)


def test_every_malformed_line_is_named(ed: str, rsa: str) -> None:
    ed_type, ed_b64 = ed.split()
    rsa_b64 = rsa.split()[1]
    bad = [
        ("alice", "no key after the principals"),
        (f'"alice {ed}', "unterminated quote in the principals"),
        (f'"alice"x {ed}', "a space must follow the quoted principals"),
        (f'al"ice {ed}', "quote the whole principals field"),
        ("alice ssh-ed25519", "no base64 key after ssh-ed25519"),
        ("alice ssh-ed25519 !!!!", "the ssh-ed25519 key is not valid base64"),
        (
            f"alice ssh-ed25519 {rsa_b64}",
            "the key says it is 'ssh-rsa', the line says 'ssh-ed25519'",
        ),
        (f"alice ssh-ed25519 {ed_b64[:-8]}", "invalid ssh-ed25519 key"),
        (f"alice ssh-ed448 {ed_b64}", "unknown key type 'ssh-ed448'"),
        (f"alice foo=bar {ed}", "unknown option 'foo=bar'"),
        (f"alice cert-authorityX {ed}", "unexpected 'X' after the cert-authority option"),
        (f"alice namespaces=venvlayers {ed}", "must be in double quotes"),
        (f'alice namespaces="venvlayers {ed}', "unterminated quote in the options"),
        (f'alice namespaces="a",namespaces="b" {ed}', "namespaces given twice"),
        (f"alice cert-authority, {ed}", "the options end with a comma"),
        (f'alice valid-after="2024" {ed}', "valid-after='2024' is not YYYYMMDD"),
        (f'alice valid-after="20241301" {ed}', "valid-after='20241301': month must be in 1..12"),
        (
            f'alice valid-after="20250101Z",valid-before="20240101Z" {ed}',
            "valid-before is not later than valid-after",
        ),
        ('alice namespaces="x"', "no key after the options"),
        (f"alice {ed_type}", "no base64 key after ssh-ed25519"),
        (f"alice {ed_b64}", "no key type (e.g. ssh-ed25519) before the base64 key"),
    ]
    text = "\n".join(["# a good line first", f"ok {ed}", *(line for line, _ in bad)])
    problems = _problems(text, "keys/allowed_signers")
    assert len(problems) == len(bad)
    for number, (problem, (_, expected)) in enumerate(zip(problems, bad, strict=True), start=3):
        assert problem.startswith(f"keys/allowed_signers:{number}: "), problem
        assert expected in problem, problem


def test_a_file_without_keys_is_refused() -> None:
    assert _problems("# nothing here\n\n", "trusted") == [
        "trusted: lists no keys; add lines 'PRINCIPAL ssh-ed25519 AAAA...'"
    ]


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(SignatureError, match="cannot read the allowed signers file"):
        AllowedSigners.load(tmp_path / "missing")
    binary = tmp_path / "binary"
    binary.write_bytes(b"alice \xff\xfe")
    with pytest.raises(SignatureError, match=f"{binary}: not an allowed_signers file"):
        AllowedSigners.load(binary)


def test_opaque_key_types_parse_but_are_kept_apart(our_keys: dict[str, KeyFile]) -> None:
    # a file that also lists a security key is valid; only signing with it is refused
    sk_blob = b"\0\0\0\x1ask-ssh-ed25519@openssh.com\0\0\0\x20" + b"k" * 32 + b"\0\0\0\x04ssh:"
    line = f"hw@example.com sk-ssh-ed25519@openssh.com {base64.b64encode(sk_blob).decode()}"
    signers = AllowedSigners.parse(line + "\n" + our_keys["ed25519"].allowed_line("a"), "f")
    assert signers.entries[0].key.bits is None
    assert signers.entries[0].key.fingerprint.startswith("SHA256:")
    assert signers.entries[0].describe().startswith("hw@example.com  ED25519-SK SHA256:")


def test_fingerprint_follows_meaning_not_bytes(ed: str, rsa: str) -> None:
    base = AllowedSigners.parse(f'a@x {ed}\nb@x namespaces="venvlayers" {rsa}\n', "one")
    assert base.fingerprint.startswith("sha256:") and len(base.fingerprint) == 7 + 64
    same = AllowedSigners.parse(
        f'# reordered, commented, respaced\n  b@x   NAMESPACES="venvlayers"  {rsa}  rsa key\r\n\n'
        f"a@x {ed} comment\na@x {ed}\n",
        "two",
    )
    assert same.fingerprint == base.fingerprint
    for changed in (
        f'a@y {ed}\nb@x namespaces="venvlayers" {rsa}',
        f'a@x {ed}\nb@x namespaces="venv*" {rsa}',
        f"a@x {ed}\nb@x {rsa}",
        f'a@x {ed}\nb@x,c@x namespaces="venvlayers" {rsa}',
        f'a@x valid-before="20300101" {ed}\nb@x namespaces="venvlayers" {rsa}',
        f'a@x cert-authority {ed}\nb@x namespaces="venvlayers" {rsa}',
        f"a@x {ed}",
    ):
        assert AllowedSigners.parse(changed, "x").fingerprint != base.fingerprint, changed


def test_describe_lists_principals_keys_and_restrictions(our_keys: dict[str, KeyFile]) -> None:
    key = our_keys["ed25519"]
    line = key.allowed_line(
        "ci@example.com,*@release.example.com",
        'namespaces="venvlayers",valid-after="20240101Z",valid-before="20300101Z"',
    )
    (entry,) = AllowedSigners.parse(line + " the CI key", "f").entries
    assert entry.describe() == (
        f"ci@example.com,*@release.example.com  ED25519 {key.key.fingerprint}  "
        "namespaces venvlayers  valid after 2024-01-01 00:00:00 UTC  "
        "valid before 2030-01-01 00:00:00 UTC  (the CI key)"
    )


def test_for_key(our_keys: dict[str, KeyFile], other_key: KeyFile) -> None:
    ed = our_keys["ed25519"]
    signers = AllowedSigners.parse(
        "\n".join([ed.allowed_line("a"), our_keys["rsa"].allowed_line("b"), ed.allowed_line("c")]),
        "f",
    )
    assert [entry.principals for entry in signers.for_key(ed.key.public_key)] == [("a",), ("c",)]
    assert signers.for_key(other_key.key.public_key) == ()


@pytest.mark.parametrize(
    ("text", "patterns", "expected"),
    [
        ("alice@example.com", "alice@example.com", True),
        ("alice@example.com", "*@example.com", True),
        ("alice@example.com", "*", True),
        ("", "*", True),
        ("", "", True),
        ("alice@example.com", "?lice@example.com", True),
        ("alice@example.com", "a*e*e*m", True),
        ("alice@example.com", "a*e*e*x", False),
        ("alice@example.com", "Alice@example.com", False),
        ("alice@example.com", "bob@x,*@example.com", True),
        ("alice@example.com", "*@example.com,!alice@example.com", False),
        ("alice@example.com", "!alice@example.com,*", False),
        ("bob@example.com", "*@example.com,!alice@example.com", True),
        ("bob@example.com", "!alice@example.com", False),
        ("a*b", "a*b", True),
        ("axxb", "a?b", False),
        ("a,b", "a,b", False),
    ],
)
def test_match_pattern_list(text: str, patterns: str, expected: bool) -> None:
    assert match_pattern_list(text, patterns) is expected


_PRINCIPAL_CHARS = "ab@.-"


@settings(max_examples=40, deadline=None)
@given(
    principal=st.text(alphabet=_PRINCIPAL_CHARS, min_size=1, max_size=6),
    patterns=st.lists(
        st.text(alphabet=_PRINCIPAL_CHARS + "*?!", min_size=1, max_size=5).filter(
            lambda p: p != "!" and "!" not in p[1:]
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_principal_matching_agrees_with_ssh_keygen(
    principal: str,
    patterns: list[str],
    ssh_keygen: SshKeygen,
    tmp_path_factory: pytest.TempPathFactory,
    our_keys: dict[str, KeyFile],
) -> None:
    pattern_list = ",".join(patterns)
    path = tmp_path_factory.mktemp("match") / "allowed"
    path.write_text(our_keys["ed25519"].allowed_line(pattern_list) + "\n")
    done = ssh_keygen("-Y", "match-principals", "-I", principal, "-f", path)
    assert done.returncode in (0, 210) or b"No principal matched" in done.stderr, done.stderr
    theirs = done.returncode == 0
    ours = AllowedSigners.load(path).entries[0].matches_principal(principal)
    assert ours is theirs, (principal, pattern_list)


_OPTION_FRAGMENTS = [
    "cert-authority",
    "Cert-Authority",
    "cert-authorityx",
    'namespaces="venvlayers"',
    'NameSpaces="a b,c"',
    'namespaces="x\\"y"',
    "namespaces=venvlayers",
    'namespaces="open',
    'valid-after="20200101"',
    'valid-after="20200101Z"',
    'valid-after="202001011230z"',
    'valid-after="20200101123059UTC"',
    'valid-after="2020010112"',
    'valid-after="19700101Z"',
    'valid-after="20201301"',
    'valid-before="20990101"',
    'valid-before="209901010000Z"',
    'valid-before="2099"',
    "foo",
    'foo="bar"',
    "",
]


@settings(max_examples=60, deadline=None)
@given(fragments=st.lists(st.sampled_from(_OPTION_FRAGMENTS), min_size=1, max_size=3))
def test_options_are_accepted_exactly_when_ssh_keygen_accepts_them(
    fragments: list[str],
    ssh_keygen: SshKeygen,
    our_keys: dict[str, KeyFile],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # ssh-keygen's find-principals parses the whole line of the signing key and prints
    # its principals when the line is valid (every time window above includes now)
    work = tmp_path_factory.mktemp("options")
    key = our_keys["ed25519"]
    options = ",".join(fragments)
    (work / "allowed").write_text(key.allowed_line("me@example.com", options) + "\n")
    (work / "data.sig").write_bytes(sign(b"data", key.key))
    done = ssh_keygen("-Y", "find-principals", "-s", work / "data.sig", "-f", work / "allowed")
    theirs = done.returncode == 0
    try:
        (entry,) = AllowedSigners.load(work / "allowed").entries
        ours = not entry.cert_authority  # a cert-authority line admits no plain key there
    except SignatureError:
        ours = False
    assert ours is theirs, (options, done.stderr)
