"""Where a stack lives outside a published directory: registry and layout references.

    oci://HOST[:PORT]/REPO[:TAG][@sha256:DIGEST]    a repository in an OCI registry
    oci-layout:DIR[:TAG]                            an OCI image layout on disk
    oci-layout:https://HOST/PATH[:TAG]              the same layout served over http(s)

Names follow the distribution spec: repository components are lowercase
`[a-z0-9]+` joined by `.`, `_`, `__` or dashes; a tag is `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from urllib.request import url2pathname

from ..errors import DistributionError

__all__ = [
    "DEFAULT_TAG",
    "LayoutReference",
    "Reference",
    "RegistryReference",
    "is_reference",
    "parse_reference",
]

DEFAULT_TAG = "latest"
REGISTRY_SCHEME = "oci://"
LAYOUT_SCHEME = "oci-layout:"

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST = re.compile(
    r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::\d{1,5})?$"
)


@dataclass(frozen=True)
class RegistryReference:
    """`oci://HOST/REPO:TAG` or `...@sha256:DIGEST` (both: the digest decides)."""

    host: str
    """`HOST` or `HOST:PORT`, as in the reference."""
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes after `/manifests/`: the digest if given, else the tag (or latest)."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def hostname(self) -> str:
        return urllib.parse.urlsplit(f"//{self.host}").hostname or self.host

    def with_repository(self, repository: str) -> RegistryReference:
        return RegistryReference(self.host, repository)

    def __str__(self) -> str:
        text = f"{REGISTRY_SCHEME}{self.host}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True)
class LayoutReference:
    """`oci-layout:DIR[:TAG]`: an OCI image layout, a local `path` or a base `url`."""

    path: Path | None = None
    url: str | None = None
    tag: str | None = None

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else str(self.url)

    def __str__(self) -> str:
        return f"{LAYOUT_SCHEME}{self.where}" + (f":{self.tag}" if self.tag else "")


Reference = RegistryReference | LayoutReference


def is_reference(text: str) -> bool:
    """True when `text` is meant as a registry or layout reference (by its scheme)."""
    return text.startswith((REGISTRY_SCHEME, LAYOUT_SCHEME))


def parse_reference(text: str) -> Reference:
    """Parse `oci://...` or `oci-layout:...`; raise `DistributionError` saying what is wrong."""
    if text.startswith(REGISTRY_SCHEME):
        return _parse_registry(text)
    if text.startswith(LAYOUT_SCHEME):
        return _parse_layout(text)
    raise DistributionError(
        f"{text!r} is not a stack reference: use oci://HOST/REPO[:TAG] or oci-layout:DIR[:TAG]"
    )


def _parse_registry(text: str) -> RegistryReference:
    rest = text[len(REGISTRY_SCHEME) :]
    host, slash, path = rest.partition("/")
    usage = "expected oci://HOST[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST]"
    if not slash or not path:
        raise DistributionError(f"{text!r} names no repository ({usage})")
    if not _HOST.match(host):
        raise DistributionError(f"{text!r}: {host!r} is not a host name ({usage})")
    digest = None
    if "@" in path:
        path, _, digest = path.partition("@")
        if not _DIGEST.match(digest):
            raise DistributionError(
                f"{text!r}: {digest!r} is not a digest (expected sha256: and 64 lowercase hex)"
            )
    tag = None
    last = path.rpartition("/")[2]
    if ":" in last:
        path, _, tag = path.rpartition(":")
        if not _TAG.match(tag):
            raise DistributionError(
                f"{text!r}: {tag!r} is not a tag (letters, digits, '_', '.', '-'; at most 128)"
            )
    if not _REPOSITORY.match(path):
        raise DistributionError(
            f"{text!r}: {path!r} is not a repository name (lowercase letters and digits, "
            "separated by '/', '.', '_' or '-')"
        )
    return RegistryReference(host, path, tag, digest)


def _parse_layout(text: str) -> LayoutReference:
    rest = text[len(LAYOUT_SCHEME) :]
    if not rest:
        raise DistributionError(f"{text!r} names no directory (expected oci-layout:DIR[:TAG])")
    parts = urllib.parse.urlsplit(rest)
    if parts.scheme in ("http", "https") and parts.netloc:
        # a tag is what follows a ':' in the last segment of the URL's path
        path, tag = _split_tag(parts.path)
        base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        return LayoutReference(url=base.rstrip("/"), tag=_checked_tag(text, tag))
    if parts.scheme == "file":
        path, tag = _split_tag(parts.path)
        return LayoutReference(path=Path(url2pathname(path)), tag=_checked_tag(text, tag))
    location, tag = _split_tag(rest)
    if len(location) == 1 and tag is not None:  # `C:dir`, a Windows drive
        location, tag = rest, None
    return LayoutReference(path=Path(location), tag=_checked_tag(text, tag))


def _split_tag(location: str) -> tuple[str, str | None]:
    head, colon, tail = location.rpartition(":")
    if not colon or not head or any(c in tail for c in "/\\"):
        return location, None
    return head, tail


def _checked_tag(text: str, tag: str | None) -> str | None:
    if tag is not None and not _TAG.match(tag):
        raise DistributionError(
            f"{text!r}: {tag!r} is not a tag (letters, digits, '_', '.', '-'; at most 128)"
        )
    return tag
