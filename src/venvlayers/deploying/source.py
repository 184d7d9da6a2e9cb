"""Published stacks as `deploy` reads them: where they are, what they hold, what to take.

A source is the folder `venvlayers publish` wrote (a local path, a `file://` URL or an
`http(s)://` URL of it): archives beside `__venvstacks__/venvstacks.json`. Everything
here only reads; the metadata is checked in full, and the selection resolved, before a
deploy touches its target, so that a bad source changes nothing.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from ..archives.common import ArchiveFormat
from ..errors import DeployError
from ..layout import MANIFEST, METADATA_DIR, METADATA_PATH, SIGNATURE_PATH
from ..names import BuildName, DeployName, LayerCategory
from ..platforms import TargetPlatform
from ..progress import Reporter
from ..selection import CycleError, Selection, select

__all__ = [
    "PublishedLayer",
    "PublishedStack",
    "StackSource",
    "check_dir_name",
    "select_published",
]

_MAX_METADATA = 64 << 20  # a manifest of thousands of layers is still far smaller
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MAX_PROBLEMS = 5


def check_dir_name(name: object) -> str:
    """`name` if it can be a layer directory in a target, else raise `ValueError(reason)`.

    Names come from metadata we did not necessarily write; one that is not a plain
    file name could make a deploy write outside its target. Names starting with a dot
    are ours (`.venvlayers`, staging directories).
    """
    if not isinstance(name, str) or not name:
        raise ValueError("must be a non-empty string")
    if name in (".", "..") or any(c in name for c in "/\\\x00:"):
        raise ValueError(f"{name!r} is not a plain directory name")
    if name.startswith("."):
        raise ValueError(f"{name!r} starts with a dot")
    if len(name.encode("utf-8")) > 200:
        raise ValueError(f"{name[:20]!r}... is too long")
    return name


@dataclass(frozen=True)
class PublishedLayer:
    """One layer of `venvstacks.json`, checked: enough to fetch, verify and install it."""

    category: LayerCategory
    layer_name: BuildName
    install_target: DeployName
    runtime_layer: DeployName
    required_layers: tuple[DeployName, ...]
    target_platform: str
    archive_name: str
    archive_size: int
    archive_sha256: str
    lock_version: int
    launch_module: str | None
    metadata: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def short_name(self) -> str:
        """The spec's name for the layer (`one` for `app-one`)."""
        return self.layer_name.removeprefix(self.category.prefix)

    @property
    def lower(self) -> tuple[DeployName, ...]:
        """install_targets of every layer this one needs beside it, runtime last."""
        if self.category is LayerCategory.RUNTIMES:
            return ()
        return (*self.required_layers, self.runtime_layer)

    def describe(self) -> str:
        return str(self.install_target)


@dataclass(frozen=True)
class PublishedStack:
    """Every layer a source's `venvstacks.json` lists, in file order."""

    where: str
    layers: tuple[PublishedLayer, ...]
    raw: bytes = field(default=b"", repr=False)
    """The exact bytes of `venvstacks.json`, which a signature covers."""
    signature: bytes | None = field(default=None, repr=False)
    """`venvstacks.json.sig` beside it, if there is one."""
    signature_where: str = ""


# -- sources ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StackSource:
    """Where a published stack is: a local directory or a base URL."""

    text: str
    directory: Path | None = None
    base_url: str | None = None

    @classmethod
    def parse(cls, source: str | Path) -> StackSource:
        """Accept a directory, its `venvstacks.json`, or a `file://`/`http(s)://` URL of either."""
        text = str(source)
        scheme = urllib.parse.urlsplit(text).scheme if isinstance(source, str) else ""
        if scheme in ("http", "https"):
            base = text.rstrip("/")
            base = base.removesuffix(f"/{METADATA_PATH}").rstrip("/")
            return cls(text, base_url=base)
        if scheme == "file":
            parts = urllib.parse.urlsplit(text)
            if parts.netloc not in ("", "localhost"):
                raise DeployError(f"cannot deploy from {text}: only local file:// URLs work")
            from urllib.request import url2pathname

            path = Path(url2pathname(parts.path))
        elif scheme and len(scheme) > 1:
            raise DeployError(
                f"cannot deploy from {text}: unsupported URL scheme {scheme!r} "
                "(use a directory, file://, http:// or https://)"
            )
        else:
            path = Path(source)
        if path.name == MANIFEST and path.parent.name == METADATA_DIR:
            path = path.parent.parent
        return cls(text, directory=path.absolute())

    @property
    def is_local(self) -> bool:
        return self.directory is not None

    def load(self) -> PublishedStack:
        """Read and check `__venvstacks__/venvstacks.json`."""
        if self.directory is not None:
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
            where = str(path)
            sig_where = str(self.directory / SIGNATURE_PATH)
            signature = _read_if_present(self.directory / SIGNATURE_PATH)
        else:
            assert self.base_url is not None
            where = f"{self.base_url}/{METADATA_PATH}"
            raw = _fetch_small(where)
            sig_where = f"{self.base_url}/{SIGNATURE_PATH}"
            signature = _fetch_small(sig_where, missing_ok=True)
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DeployError(f"{where}: not valid JSON ({exc})") from None
        return PublishedStack(where, parse_layers(data, where), raw, signature, sig_where)

    def local_archive(self, layer: PublishedLayer) -> Path:
        assert self.directory is not None
        return self.directory / layer.archive_name

    def archive_url(self, layer: PublishedLayer) -> str:
        assert self.base_url is not None
        return f"{self.base_url}/{urllib.parse.quote(layer.archive_name)}"

    def download(self, layer: PublishedLayer, dest: Path, reporter: Reporter) -> None:
        """Fetch the layer's archive into the new file `dest`, checking size and sha256."""
        from ..runtimes.pbs import download_file

        download_file(
            self.archive_url(layer),
            dest,
            sha256=layer.archive_sha256,
            size=layer.archive_size,
            expected=f"{layer.archive_name}, {layer.archive_size} bytes, "
            f"sha256 {layer.archive_sha256[:16]}...",
            advice="check that SOURCE is the complete output of `venvlayers publish`",
            reporter=reporter,
            error=DeployError,
        )


def _read_if_present(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DeployError(f"cannot read {path}: {exc.strerror}") from None


@overload
def _fetch_small(url: str) -> bytes: ...
@overload
def _fetch_small(url: str, *, missing_ok: bool) -> bytes | None: ...
def _fetch_small(url: str, *, missing_ok: bool = False) -> bytes | None:
    """The whole (small) file at `url`: metadata, whose hash nothing records.

    With `missing_ok`, None when the server says it has no such file (404/410).
    """
    # network modules only for remote sources: `venvlayers run` imports this module
    import http.client
    import urllib.error
    import urllib.request

    from ..runtimes.pbs import download_timeout

    seconds = download_timeout()
    request = urllib.request.Request(url, headers={"User-Agent": "venvlayers"})
    hint = f"is SOURCE the folder holding {METADATA_DIR}/?"
    try:
        with urllib.request.urlopen(request, timeout=seconds) as response:
            data: bytes = response.read(_MAX_METADATA + 1)
    except urllib.error.HTTPError as exc:
        if missing_ok and exc.code in (404, 410):
            return None
        raise DeployError(f"cannot read {url}: HTTP {exc.code} {exc.reason} ({hint})") from None
    except urllib.error.URLError as exc:
        raise DeployError(f"cannot read {url}: {_reason(exc.reason)}") from None
    except TimeoutError:
        raise DeployError(f"cannot read {url}: no response within {seconds:g}s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise DeployError(f"cannot read {url}: {_reason(exc)}") from None
    if len(data) > _MAX_METADATA:
        raise DeployError(f"{url} is larger than {_MAX_METADATA >> 20} MiB; not stack metadata")
    return data


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


# -- metadata ---------------------------------------------------------------------------


class _Bad(Exception):
    """A field of one layer entry is missing or wrong."""


def parse_layers(data: object, where: str) -> tuple[PublishedLayer, ...]:
    """Every layer entry of a `venvstacks.json` document; all problems reported together."""
    if not isinstance(data, dict) or not isinstance(data.get("layers"), dict):
        raise DeployError(f"{where}: not a stack manifest (no 'layers' object)")
    layers: list[PublishedLayer] = []
    problems: list[str] = []
    for category in LayerCategory:
        entries = data["layers"].get(category.value, [])
        if not isinstance(entries, list):
            problems.append(f"layers.{category.value} is not a list")
            continue
        for index, entry in enumerate(entries):
            label = f"layers.{category.value}[{index}]"
            if isinstance(entry, dict) and isinstance(entry.get("layer_name"), str):
                label += f" ({entry['layer_name']})"
            try:
                layers.append(_parse_layer(category, entry))
            except _Bad as exc:
                problems.append(f"{label}: {exc}")
    if problems:
        raise DeployError(f"{where}: {_join(problems)}")
    return tuple(layers)


def _join(problems: Sequence[str]) -> str:
    shown = "; ".join(problems[:_MAX_PROBLEMS])
    more = len(problems) - _MAX_PROBLEMS
    return f"{shown} (and {more} more)" if more > 0 else shown


def _parse_layer(category: LayerCategory, entry: object) -> PublishedLayer:
    if not isinstance(entry, dict):
        raise _Bad("not an object")
    if "archive_name" not in entry:
        raise _Bad(
            "has no archive fields (an export directory?); deploy needs the output of "
            "`venvlayers publish`"
        )
    sha = _get(entry, "archive_hashes", dict).get("sha256")
    if not isinstance(sha, str) or not _SHA256.match(sha):
        raise _Bad("'archive_hashes.sha256' must be 64 lowercase hex digits")
    archive_name = _get(entry, "archive_name", str)
    if check_archive_name(archive_name) is None:
        raise _Bad(f"'archive_name' {archive_name!r} is not a plain archive file name")
    size = _get(entry, "archive_size", int)
    if size < 0:
        raise _Bad("'archive_size' is negative")
    platform = _get(entry, "target_platform", str)
    if platform not in {str(p) for p in TargetPlatform}:
        raise _Bad(f"unknown 'target_platform' {platform!r}")
    required = entry.get("required_layers", [])
    if not isinstance(required, list):
        raise _Bad("'required_layers' is not a list")
    launch = entry.get("app_launch_module")
    if category is LayerCategory.APPLICATIONS:
        if not isinstance(launch, str) or not all(p.isidentifier() for p in launch.split(".")):
            raise _Bad(f"'app_launch_module' {launch!r} is not a module name")
    else:
        launch = None
    version = entry.get("lock_version", 1)
    return PublishedLayer(
        category=category,
        layer_name=BuildName(_get(entry, "layer_name", str)),
        install_target=DeployName(_dir_name(entry, "install_target")),
        runtime_layer=DeployName(_dir_name(entry, "runtime_layer")),
        required_layers=tuple(DeployName(_checked(n, "required_layers")) for n in required),
        target_platform=platform,
        archive_name=archive_name,
        archive_size=size,
        archive_sha256=sha,
        lock_version=version if isinstance(version, int) and not isinstance(version, bool) else 1,
        launch_module=launch,
        metadata=dict(entry),
    )


def check_archive_name(name: str) -> ArchiveFormat | None:
    """The format of a plain archive file name from metadata, or None if it is unsafe."""
    try:
        check_dir_name(name)
    except ValueError:
        return None
    return ArchiveFormat.from_path(Path(name))


def _get(entry: Mapping[str, Any], key: str, kind: type[Any]) -> Any:
    value = entry.get(key)
    if value is None:
        raise _Bad(f"{key!r} is missing")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Bad(f"{key!r} must be a {kind.__name__}, not {type(value).__name__}")
    return value


def _dir_name(entry: Mapping[str, Any], key: str) -> str:
    return _checked(_get(entry, key, str), key)


def _checked(value: object, key: str) -> str:
    try:
        return check_dir_name(value)
    except ValueError as exc:
        raise _Bad(f"{key!r}: {exc}") from None


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
        raise DeployError(f"{stack.where}: {_join(sorted(set(problems)))}")
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
