"""OpenSSH allowed_signers files (ssh-keygen(1), ALLOWED SIGNERS): who may sign, and for what.

One entry a line: `principals [options] keytype base64 [comment]`. Principals and the
`namespaces=` option are OpenSSH pattern-lists: comma-separated globs (`*`, `?`), where a
`!pattern` that matches vetoes the whole list. Options: `cert-authority`,
`namespaces="list"`, `valid-after="time"`, `valid-before="time"` (YYYYMMDD[Z] or
YYYYMMDDHHMM[SS][Z], local time unless Z or UTC follows). Option names are
case-insensitive; an unknown option, a repeated one or a stray quote is an error here
as in ssh-keygen, but we check every line up front and name `file:line`, where
ssh-keygen only notices lines whose principal it is looking for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from .keys import OPENSSH_KEY_TYPES, PublicKey, UnsupportedError, decode_public_key
from .problems import SignatureProblem, fail
from .wire import WireError, WireReader

__all__ = ["AllowedSigner", "AllowedSigners", "match_pattern_list"]

_TIME = re.compile(r"(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?(z|utc)?", re.IGNORECASE)
_FIELD_SEPARATOR: Final = re.compile(r"[ \t]+")
_FINGERPRINT_TAG: Final = "venvlayers allowed_signers v1\n"


def _glob(text: str, pattern: str) -> bool:
    """OpenSSH's match_pattern: `*` is any run, `?` any one character, all else literal."""
    t = p = 0
    star, resume = -1, 0
    while t < len(text):
        if p < len(pattern) and pattern[p] == "*":
            star, resume = p, t
            p += 1
        elif p < len(pattern) and (pattern[p] == "?" or pattern[p] == text[t]):
            t += 1
            p += 1
        elif star >= 0:
            # let the last `*` swallow one more character and retry from there
            p, resume = star + 1, resume + 1
            t = resume
        else:
            return False
    return pattern[p:].strip("*") == ""


def match_pattern_list(text: str, patterns: str) -> bool:
    """Whether `text` matches the comma-separated OpenSSH pattern-list `patterns`.

    As in OpenSSH's match_pattern_list: true if some positive pattern matches and no
    `!negated` one does, whatever their order.
    """
    matched = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        if _glob(text, pattern[1:] if negated else pattern):
            if negated:
                return False
            matched = True
    return matched


@dataclass(frozen=True)
class AllowedSigner:
    """One line of an allowed_signers file."""

    principals: tuple[str, ...]
    """The principal patterns as written (e.g. `alice@example.com`, `*@ci.example.com`)."""
    key: PublicKey
    namespaces: str | None
    """The `namespaces=` pattern-list, or None when the key may sign in any namespace."""
    valid_after: datetime | None
    """From `valid-after=`, in UTC; the key signs nothing before it."""
    valid_before: datetime | None
    """From `valid-before=`, in UTC; the key has expired after it."""
    cert_authority: bool
    """`cert-authority`: the key vouches for certificates, it does not sign itself."""
    comment: str
    """Text after the key on its line."""
    source: str
    line: int
    raw_valid_after: str | None = None
    raw_valid_before: str | None = None

    @property
    def location(self) -> str:
        return f"{self.source}:{self.line}"

    def matches_principal(self, principal: str) -> bool:
        return match_pattern_list(principal, ",".join(self.principals))

    def allows_namespace(self, namespace: str) -> bool:
        return self.namespaces is None or match_pattern_list(namespace, self.namespaces)

    def describe(self) -> str:
        """One line for a person: principals, key, restrictions and comment."""
        parts = [",".join(self.principals), self.key.describe()]
        if self.cert_authority:
            parts.append("cert-authority")
        if self.namespaces is not None:
            parts.append(f"namespaces {self.namespaces}")
        if self.valid_after is not None:
            parts.append(f"valid after {_show(self.valid_after)}")
        if self.valid_before is not None:
            parts.append(f"valid before {_show(self.valid_before)}")
        if self.comment:
            parts.append(f"({self.comment})")
        return "  ".join(parts)

    def _canonical(self) -> str:
        return json.dumps(
            [
                list(self.principals),
                self.cert_authority,
                self.namespaces,
                self.raw_valid_after,
                self.raw_valid_before,
                self.key.openssh,
            ]
        )


def _show(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class AllowedSigners:
    """A parsed allowed_signers file: the keys trusted to sign, and what for."""

    source: str
    """The file the entries came from, as errors and `location` name it."""
    entries: tuple[AllowedSigner, ...]
    fingerprint: str
    """`sha256:HEX` of what the file means (principals, options, keys), not of its bytes:
    comments, blank lines, spacing and line order do not change it; any change in who
    may sign what does. A deploy target can record it to notice a changed trust file."""

    @classmethod
    def parse(cls, text: str, source: str) -> AllowedSigners:
        """Parse allowed_signers text; `source` names it in errors as `source:line`.

        Raises `SignatureError` (BAD_ALLOWED_SIGNERS) listing every malformed line, or
        when the file lists no key at all (trusting nobody is never what was meant).
        """
        entries: list[AllowedSigner] = []
        problems: list[str] = []
        for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
            line = raw.strip(" \t\r")
            if not line or line.startswith("#"):
                continue
            try:
                entries.append(_parse_line(line, source, number))
            except _LineError as exc:
                problems.append(f"{source}:{number}: {exc}")
        if problems:
            raise fail(SignatureProblem.BAD_ALLOWED_SIGNERS, "\n".join(problems))
        if not entries:
            raise fail(
                SignatureProblem.BAD_ALLOWED_SIGNERS,
                f"{source}: lists no keys; add lines 'PRINCIPAL ssh-ed25519 AAAA...'",
            )
        canonical = sorted({entry._canonical() for entry in entries})
        digest = hashlib.sha256(_FINGERPRINT_TAG.encode() + "\n".join(canonical).encode())
        return cls(source, tuple(entries), f"sha256:{digest.hexdigest()}")

    @classmethod
    def load(cls, path: Path | str) -> AllowedSigners:
        """Read and parse an allowed_signers file (UTF-8)."""
        path = Path(path).expanduser()
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            raise fail(
                SignatureProblem.BAD_ALLOWED_SIGNERS,
                f"{path}: cannot read the allowed signers file: {exc.strerror or exc}",
            ) from None
        except UnicodeDecodeError as exc:
            raise fail(
                SignatureProblem.BAD_ALLOWED_SIGNERS,
                f"{path}: not an allowed_signers file (not UTF-8 text at byte {exc.start})",
            ) from None
        return cls.parse(text, str(path))

    def for_key(self, key: PublicKey) -> tuple[AllowedSigner, ...]:
        """The entries that list `key` (the same key, whatever their comments)."""
        return tuple(entry for entry in self.entries if entry.key.blob == key.blob)


class _LineError(ValueError):
    """One line's problem, without its location (the caller adds `source:line`)."""


def _split_token(text: str) -> tuple[str, str]:
    """The first token of `text` and what follows, left-stripped; only spaces and tabs
    separate fields, as in OpenSSH (a no-break space is part of a principal)."""
    parts = _FIELD_SEPARATOR.split(text.lstrip(" \t"), maxsplit=1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def _split_options(text: str) -> tuple[str, str]:
    """The options field (which may hold quoted spaces) and what follows it."""
    quoted = False
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and quoted and text[index + 1 : index + 2] == '"':
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char in " \t" and not quoted:
            return text[:index], text[index:].lstrip(" \t")
        index += 1
    if quoted:
        raise _LineError("unterminated quote in the options")
    return text, ""


def _parse_line(line: str, source: str, number: int) -> AllowedSigner:
    if line.startswith('"'):
        end = line.find('"', 1)
        if end < 0:
            raise _LineError("unterminated quote in the principals")
        principals_text, rest = line[1:end], line[end + 1 :]
        if rest and rest[0] not in " \t":
            raise _LineError("a space must follow the quoted principals")
        rest = rest.lstrip(" \t")
    else:
        principals_text, rest = _split_token(line)
        if '"' in principals_text:
            raise _LineError("quote the whole principals field, or none of it")
    if not principals_text:
        raise _LineError("empty principals field")
    if not rest:
        raise _LineError("no key after the principals (expected 'PRINCIPALS [OPTIONS] KEY')")

    first, _ = _split_token(rest)
    options: dict[str, str | bool] = {}
    if first not in OPENSSH_KEY_TYPES:
        options_text, rest = _split_options(rest)
        try:
            options = _parse_options(options_text)
        except _LineError:
            if options_text.startswith("AAAA"):
                raise _LineError("no key type (e.g. ssh-ed25519) before the base64 key") from None
            if "=" not in options_text and rest[:4] == "AAAA":
                raise _LineError(f"unknown key type {options_text!r}") from None
            raise
        if not rest:
            raise _LineError("no key after the options")
    key, comment = _parse_key(rest)

    valid_after = _parse_time(options, "valid-after")
    valid_before = _parse_time(options, "valid-before")
    if valid_after and valid_before and valid_before[0] <= valid_after[0]:
        raise _LineError("valid-before is not later than valid-after")
    namespaces = options.get("namespaces")
    return AllowedSigner(
        principals=tuple(principals_text.split(",")),
        key=key,
        namespaces=namespaces if isinstance(namespaces, str) else None,
        valid_after=valid_after[0] if valid_after else None,
        valid_before=valid_before[0] if valid_before else None,
        cert_authority=bool(options.get("cert-authority")),
        comment=comment,
        source=source,
        line=number,
        raw_valid_after=valid_after[1] if valid_after else None,
        raw_valid_before=valid_before[1] if valid_before else None,
    )


def _dequote(text: str, start: int, name: str) -> tuple[str, int]:
    if text[start : start + 1] != '"':
        raise _LineError(f'the value of {name} must be in double quotes ({name}="...")')
    value: list[str] = []
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == '"':
            return "".join(value), index + 1
        if char == "\\" and text[index + 1 : index + 2] == '"':
            index += 1
            char = '"'
        value.append(char)
        index += 1
    raise _LineError(f"unterminated quote in {name}")


def _parse_options(text: str) -> dict[str, str | bool]:
    options: dict[str, str | bool] = {}
    index = 0
    while True:
        if text.startswith(",", index):
            # OpenSSH skips empty options (a leading comma, ",,"); only a trailing one fails
            index += 1
            if index == len(text):
                raise _LineError("the options end with a comma")
            continue
        lowered = text[index:].lower()
        if lowered.startswith("cert-authority"):
            name, index = "cert-authority", index + len("cert-authority")
            value: str | bool = True
        else:
            for name in ("namespaces", "valid-after", "valid-before"):
                if lowered.startswith(name + "="):
                    value, index = _dequote(text, index + len(name) + 1, name)
                    break
            else:
                unknown = text[index:].split(",", 1)[0]
                raise _LineError(
                    f"unknown option {unknown!r} (known: cert-authority, namespaces, "
                    "valid-after, valid-before)"
                )
        if name in options:
            raise _LineError(f"{name} given twice")
        options[name] = value
        if index == len(text):
            return options
        if text[index] != ",":
            unexpected = text[index:].split(",", 1)[0]
            raise _LineError(f"unexpected {unexpected!r} after the {name} option")
        index += 1
        if index == len(text):
            raise _LineError("the options end with a comma")


def _parse_key(text: str) -> tuple[PublicKey, str]:
    key_type, rest = _split_token(text)
    if key_type not in OPENSSH_KEY_TYPES:
        raise _LineError(f"unknown key type {key_type!r}")
    encoded, comment = _split_token(rest)
    if not encoded:
        raise _LineError(f"no base64 key after {key_type}")
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _LineError(f"the {key_type} key is not valid base64") from None
    try:
        inner_type = WireReader(blob, "the key").text("the key type")
        if inner_type != key_type:
            raise _LineError(f"the key says it is {inner_type!r}, the line says {key_type!r}")
        key = decode_public_key(blob, "the key", opaque_ok=True)
    except (WireError, UnsupportedError) as exc:
        raise _LineError(f"invalid {key_type} key: {exc}") from None
    return key, comment.strip()


def _parse_time(options: dict[str, str | bool], name: str) -> tuple[datetime, str] | None:
    """(moment in UTC, text as written) of a valid-after/valid-before option, if given."""
    raw = options.get(name)
    if not isinstance(raw, str):
        return None
    match = _TIME.fullmatch(raw)
    if match is None:
        raise _LineError(f"{name}={raw!r} is not YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z]")
    year, month, day, hour, minute, second, zone = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0)
        )
    except ValueError as exc:
        raise _LineError(f"{name}={raw!r}: {exc}") from None
    # as OpenSSH's parse_absolute_time: UTC with Z/UTC, else this machine's local time
    aware = (moment.replace(tzinfo=UTC) if zone else moment.astimezone()).astimezone(UTC)
    if aware.timestamp() <= 0:
        # OpenSSH reads 0 as "not set" and refuses it; so do we, and anything before
        raise _LineError(f"{name}={raw!r} is not after 1970-01-01 00:00:00 UTC")
    return aware, raw
