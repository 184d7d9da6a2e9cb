"""Published stacks as `deploy` reads them: where they are, what they hold, what to take.

A source is one of:

- the folder `venvlayers publish` wrote (a local path or a `file://` URL): archives
  beside `__venvstacks__/venvstacks.json`;
- an `http(s)://` URL of such a folder (any static file server or bucket);
- an OCI registry reference, `oci://HOST[:PORT]/REPO[:TAG|@sha256:DIGEST]`, or an OCI
  image layout, `oci-layout:DIR[:TAG]` / `oci-layout:https://...` (see `distribution`):
  the reference is resolved once, and layers are fetched as blobs by digest.

Everything here only reads; the metadata is checked in full, and the selection resolved,
before a deploy touches its target, so that a bad source changes nothing. Remote files
are fetched with the one HTTP client (`_util.http`): verified while they stream, resumed
with `Range` after an interruption, plain http only to loopback hosts unless `insecure`.
"""

from __future__ import annotations

import json
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from urllib.request import url2pathname

from .. import distribution
from .._util.http import HttpClient
from ..errors import DeployError, DistributionError
from ..layout import MANIFEST, METADATA_DIR, METADATA_PATH, SIGNATURE_PATH
from ..names import LayerCategory
from ..platforms import TargetPlatform, build_platform
from ..progress import Reporter
from ..published import PublishedLayer, PublishedStack, join_problems, parse_layers
from ..selection import CycleError, Selection, select

__all__ = ["StackSource", "select_published"]

_MAX_METADATA = 64 << 20  # a manifest of thousands of layers is still far smaller
_HINT = f"is SOURCE the folder holding {METADATA_DIR}/?"


# -- sources ----------------------------------------------------------------------------


class StackSource(ABC):
    """Where a published stack is; a context manager (remote sources hold connections)."""

    is_local = False

    def __init__(self, text: str) -> None:
        self.text = text

    @staticmethod
    def parse(source: str | Path, *, insecure: bool = False) -> StackSource:
        """A directory or its `venvstacks.json`, a `file://`/`http(s)://` URL of either,
        an `oci://` reference or an `oci-layout:` reference."""
        text = str(source)
        if isinstance(source, str) and distribution.is_reference(text):
            return OciSource(text, insecure=insecure)
        scheme = urllib.parse.urlsplit(text).scheme if isinstance(source, str) else ""
        if scheme in ("http", "https"):
            base = text.rstrip("/").removesuffix(f"/{METADATA_PATH}").rstrip("/")
            return HttpSource(text, base, insecure=insecure)
        if scheme == "file":
            parts = urllib.parse.urlsplit(text)
            if parts.netloc not in ("", "localhost"):
                raise DeployError(f"cannot deploy from {text}: only local file:// URLs work")
            path = Path(url2pathname(parts.path))
        elif scheme and len(scheme) > 1:
            raise DeployError(
                f"cannot deploy from {text}: unsupported URL scheme {scheme!r} (use a "
                "directory, file://, http://, https://, oci:// or oci-layout:)"
            )
        else:
            path = Path(source)
        if path.name == MANIFEST and path.parent.name == METADATA_DIR:
            path = path.parent.parent
        return DirectorySource(text, path.absolute())

    @abstractmethod
    def load(self, platform: TargetPlatform | None = None) -> PublishedStack:
        """Read and check the stack's metadata (and its signature, if there is one).

        `platform` picks the manifest of an OCI index (default: this machine's).
        """

    def local_archive(self, layer: PublishedLayer) -> Path:
        """The archive of `layer`, where it already is (local sources only)."""
        raise NotImplementedError

    @abstractmethod
    def download(self, layer: PublishedLayer, dest: Path, reporter: Reporter) -> int:
        """Fetch the layer's archive into `dest`, checking size and sha256 as it streams.

        An interrupted download leaves `dest.partial`, which the next call resumes.
        Returns the bytes fetched (without those a resumed `.partial` already held).
        """

    def close(self) -> None:  # noqa: B027 (most sources hold nothing to release)
        """Release connections."""

    def __enter__(self) -> StackSource:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _parse_metadata(
    raw: bytes, where: str, signature: bytes | None, signature_where: str
) -> PublishedStack:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DeployError(f"{where}: not valid JSON ({exc})") from None
    return PublishedStack(where, parse_layers(data, where), raw, signature, signature_where)


class DirectorySource(StackSource):
    """A published directory on this machine."""

    is_local = True

    def __init__(self, text: str, directory: Path) -> None:
        super().__init__(text)
        self.directory = directory

    def load(self, platform: TargetPlatform | None = None) -> PublishedStack:
        path = self.directory / METADATA_PATH
        if not self.directory.is_dir():
            raise DeployError(f"cannot deploy from {self.text}: no such directory")
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise DeployError(
                f"{self.text} is not a published stack: it has no {METADATA_PATH}"
            ) from None
        except OSError as exc:
            raise DeployError(f"cannot read {path}: {exc.strerror}") from None
        sig = self.directory / SIGNATURE_PATH
        return _parse_metadata(raw, str(path), _read_if_present(sig), str(sig))

    def local_archive(self, layer: PublishedLayer) -> Path:
        return self.directory / layer.archive_name

    def download(self, layer: PublishedLayer, dest: Path, reporter: Reporter) -> int:
        raise AssertionError("local archives are used where they are")


class HttpSource(StackSource):
    """A published directory served over http(s)."""

    def __init__(self, text: str, base_url: str, *, insecure: bool) -> None:
        super().__init__(text)
        self.base_url = base_url
        self.http = HttpClient(error=DeployError, insecure=insecure)

    def load(self, platform: TargetPlatform | None = None) -> PublishedStack:
        where = f"{self.base_url}/{METADATA_PATH}"
        raw = self.http.request(
            "GET", where, expect=(200,), max_size=_MAX_METADATA, action=f"read {where}", hint=_HINT
        ).content
        sig_where = f"{self.base_url}/{SIGNATURE_PATH}"
        reply = self.http.request(
            "GET", sig_where, expect=(200, 404, 410), action=f"read {sig_where}", hint=_HINT
        )
        signature = reply.content if reply.status == 200 else None
        return _parse_metadata(raw, where, signature, sig_where)

    def download(self, layer: PublishedLayer, dest: Path, reporter: Reporter) -> int:
        done = self.http.download(
            f"{self.base_url}/{urllib.parse.quote(layer.archive_name)}",
            dest,
            sha256=layer.archive_sha256,
            size=layer.archive_size,
            reporter=reporter,
            hint=f"expected {layer.archive_name}, {layer.archive_size} bytes, sha256 "
            f"{layer.archive_sha256[:16]}...; check that SOURCE is the complete output of "
            "`venvlayers publish`",
        )
        return done.received

    def close(self) -> None:
        self.http.close()


class OciSource(StackSource):
    """A stack pushed to an OCI registry, or written as an OCI image layout."""

    def __init__(self, text: str, *, insecure: bool) -> None:
        super().__init__(text)
        options = distribution.TransferOptions(insecure=insecure)
        try:
            self.reader = distribution.open_stack(text, options)
        except DistributionError as exc:  # it names the reference (or the layout's path)
            raise DeployError(str(exc)) from None
        self.resolved: distribution.ResolvedStack | None = None

    def load(self, platform: TargetPlatform | None = None) -> PublishedStack:
        self.resolved = resolved = self.reader.resolve(str(platform or build_platform()))
        where = f"{self.text} ({resolved.manifest_digest[:19]}) {METADATA_PATH}"
        sig_where = f"{self.text} ({resolved.manifest_digest[:19]}) {SIGNATURE_PATH}"
        return _parse_metadata(resolved.metadata, where, resolved.signature, sig_where)

    def download(self, layer: PublishedLayer, dest: Path, reporter: Reporter) -> int:
        assert self.resolved is not None, "load() first"
        return self.reader.fetch(self.resolved.layer_blob(layer), dest, reporter).bytes

    def close(self) -> None:
        self.reader.close()


def _read_if_present(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DeployError(f"cannot read {path}: {exc.strerror}") from None


# -- selection --------------------------------------------------------------------------


def select_published(
    stack: PublishedStack, names: Sequence[str], platform: TargetPlatform
) -> Selection[PublishedLayer]:
    """The layers to deploy for `platform`: the named ones (all if none) and all they need.

    A name is an app's short name (`one`), any layer's build name (`app-one`) or
    install target (`app-two@2`). Raises before anything is fetched when a name is
    unknown, a needed layer is missing, or nothing is published for `platform`.
    `matched` are the layers the target is to keep (its roots): with no names, every
    app plus every layer no app needs.
    """
    here = [layer for layer in stack.layers if layer.target_platform == str(platform)]
    if not here:
        found = sorted({layer.target_platform for layer in stack.layers})
        if not found:
            raise DeployError(f"{stack.where} lists no layers")
        raise DeployError(
            f"{stack.where} holds layers for {', '.join(found)}, not {platform}; "
            f"deploy it on a {found[0]} machine (or pass --platform {found[0]})"
        )
    by_target: dict[str, PublishedLayer] = {}
    for layer in here:
        if layer.install_target in by_target:
            raise DeployError(
                f"{stack.where}: two layers install into {layer.install_target!r} on {platform}"
            )
        by_target[layer.install_target] = layer
    if names:
        roots = _dedup(_find(stack, here, name, platform) for name in names)
    else:
        apps = [x for x in here if x.category is LayerCategory.APPLICATIONS]
        needed_by_apps = {low for app in apps for low in app.lower}
        roots = [x for x in here if x in apps or x.install_target not in needed_by_apps]
    problems: list[str] = []

    def lower(layer: PublishedLayer) -> list[PublishedLayer]:
        found = []
        for low in layer.lower:
            below = by_target.get(low)
            if below is None:
                problems.append(
                    f"{layer.install_target} requires layer {low!r}, which it does not list"
                )
            elif low == layer.runtime_layer and below.category is not LayerCategory.RUNTIMES:
                problems.append(f"{layer.install_target}: runtime_layer {low!r} is not a runtime")
            else:
                found.append(below)
        return found

    rank = {c: i for i, c in enumerate(LayerCategory)}
    in_order = sorted(here, key=lambda x: rank[x.category])  # stable: file order within
    try:
        selection = select(in_order, roots, lower, _target, full=not names)
    except CycleError as exc:
        raise DeployError(f"the stack metadata has a dependency cycle: {exc}") from None
    if problems:
        raise DeployError(f"{stack.where}: {join_problems(sorted(set(problems)))}")
    return selection


def _target(layer: PublishedLayer) -> str:
    return layer.install_target


def _find(
    stack: PublishedStack, here: Sequence[PublishedLayer], name: str, platform: TargetPlatform
) -> PublishedLayer:
    def matches(layer: PublishedLayer) -> bool:
        if name in (layer.layer_name, layer.install_target):
            return True
        return layer.category is LayerCategory.APPLICATIONS and name == layer.short_name

    found = [layer for layer in here if matches(layer)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:  # `x` as the short name of app-x and the build name of a runtime
        apps = [layer for layer in found if layer.category is LayerCategory.APPLICATIONS]
        if len(apps) == 1:
            return apps[0]
        raise DeployError(f"{name!r} names several layers in {stack.where}; use its install target")
    elsewhere = sorted({layer.target_platform for layer in stack.layers if matches(layer)})
    if elsewhere:
        raise DeployError(
            f"{name!r} is published for {', '.join(elsewhere)} only, not for {platform}"
        )
    short = [layer.short_name for layer in here if layer.category is LayerCategory.APPLICATIONS]
    known = f"applications: {', '.join(short)}" if short else "it has no applications"
    raise DeployError(f"no layer named {name!r} in {stack.where} ({known})")


def _dedup(layers: Iterable[PublishedLayer]) -> list[PublishedLayer]:
    seen: dict[str, PublishedLayer] = {}
    for layer in layers:
        seen.setdefault(layer.install_target, layer)
    return list(seen.values())
