"""Published stacks as `deploy` reads them: where they are, what they hold, what to take.

A source is the folder `venvlayers publish` wrote (a local path, a `file://` URL or an
`http(s)://` URL of it): archives beside `__venvstacks__/venvstacks.json`. Everything
here only reads; the metadata is checked in full, and the selection resolved, before a
deploy touches its target, so that a bad source changes nothing.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

from ..errors import DeployError
from ..layout import MANIFEST, METADATA_DIR, METADATA_PATH, SIGNATURE_PATH
from ..names import LayerCategory
from ..platforms import TargetPlatform
from ..progress import Reporter
from ..published import PublishedLayer, PublishedStack, join_problems, parse_layers
from ..selection import CycleError, Selection, select

__all__ = ["StackSource", "select_published"]

_MAX_METADATA = 64 << 20  # a manifest of thousands of layers is still far smaller
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
