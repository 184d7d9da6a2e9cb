"""The shape of a stack as an OCI artifact, built from published directories and read back.

One image manifest per target platform:

- `config`: the exact bytes of that directory's `__venvstacks__/venvstacks.json`
  (`CONFIG_TYPE`), so its digest is the digest of the metadata file;
- `layers`, in metadata order: every layer archive of the platform (one blob each, its
  digest the `archive_sha256` the metadata records), then the metadata files:
  `venvstacks.json` again (same blob as the config), the `env_metadata/<layer>.json` of
  those layers, and `venvstacks.json.sig` when the directory has one. Every descriptor
  carries `org.opencontainers.image.title`, its path in a published directory, so generic
  clients (`oras pull`) recreate the directory.

An image index over the manifests, each entry with its OCI `platform` and our
`target_platform` annotation. Manifests are serialized canonically (sorted keys, no
whitespace) and carry no time stamps: the same stack always has the same digests.
See docs/distribution.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..archives import ArchiveFormat
from ..errors import DistributionError, VenvLayersError

# the one import of the metadata reader: re-exported for the rest of this package
from ..layout import MANIFEST, METADATA_DIR
from ..published import PublishedLayer, parse_layers

__all__ = [
    "ARTIFACT_TYPE",
    "CONFIG_TYPE",
    "ENV_METADATA_TYPE",
    "INDEX_TYPE",
    "MANIFEST_TYPE",
    "METADATA_TYPE",
    "SIGNATURE_TYPE",
    "Artifact",
    "Blob",
    "PlatformManifest",
    "PublishedLayer",
    "build_artifact",
    "digest_of",
    "encode",
    "parse_index",
    "parse_manifest",
]

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
ARTIFACT_TYPE = "application/vnd.venvlayers.stack.v1"
CONFIG_TYPE = "application/vnd.venvlayers.stack.config.v1+json"
METADATA_TYPE = "application/vnd.venvlayers.stack.metadata.v1+json"
ENV_METADATA_TYPE = "application/vnd.venvlayers.layer.metadata.v1+json"
SIGNATURE_TYPE = "application/vnd.venvlayers.stack.signature.v1+sshsig"
LAYER_TYPES = {
    ArchiveFormat.TAR_ZST: "application/vnd.venvlayers.layer.v1.tar+zstd",
    ArchiveFormat.TAR_XZ: "application/vnd.venvlayers.layer.v1.tar+xz",
    ArchiveFormat.TAR_GZ: "application/vnd.venvlayers.layer.v1.tar+gzip",
    ArchiveFormat.ZIP: "application/vnd.venvlayers.layer.v1.zip",
}

TITLE = "org.opencontainers.image.title"
PLATFORM_KEY = "org.venvlayers.target_platform"
INSTALL_TARGET_KEY = "org.venvlayers.install_target"

METADATA_PATH = f"{METADATA_DIR}/{MANIFEST}"
SIGNATURE_PATH = f"{METADATA_PATH}.sig"
ENV_METADATA_DIR = f"{METADATA_DIR}/env_metadata"

MAX_MANIFEST = 4 << 20  # the distribution spec's suggested limit for manifests
MAX_METADATA = 64 << 20

# our platform names -> OCI `platform` (os, architecture as Go spells them)
OCI_PLATFORMS = {
    "linux_x86_64": ("linux", "amd64"),
    "linux_aarch64": ("linux", "arm64"),
    "macosx_arm64": ("darwin", "arm64"),
    "macosx_x86_64": ("darwin", "amd64"),
    "win_amd64": ("windows", "amd64"),
    "win_arm64": ("windows", "arm64"),
}


def encode(document: Mapping[str, Any]) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    """A descriptor: one blob of the artifact, with the file it is (or becomes)."""

    digest: str
    size: int
    media_type: str
    name: str
    """Its path in a published directory (`org.opencontainers.image.title`)."""
    annotations: Mapping[str, str] = field(default_factory=dict, compare=False)
    source: Path | None = field(default=None, compare=False)
    """The local file holding it, when pushing."""

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    def descriptor(self) -> dict[str, Any]:
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
            "annotations": {TITLE: self.name, **self.annotations},
        }


@dataclass(frozen=True)
class PlatformManifest:
    """One platform's image manifest, its bytes and what it holds."""

    platform: str
    config: Blob
    files: tuple[Blob, ...]
    """Layer archives first, then metadata files."""
    body: bytes
    digest: str
    layers: tuple[PublishedLayer, ...] = ()
    """The metadata's layers for this platform (when read back: after checking)."""

    def blob_named(self, name: str) -> Blob | None:
        return next((b for b in self.files if b.name == name), None)


@dataclass(frozen=True)
class Artifact:
    """A whole stack: per-platform manifests and the index over them."""

    manifests: tuple[PlatformManifest, ...]
    index: bytes
    digest: str

    def blobs(self) -> tuple[Blob, ...]:
        """Every distinct blob (configs and files), archives first, largest first."""
        seen: dict[str, Blob] = {}
        for manifest in self.manifests:
            for blob in (*manifest.files, manifest.config):
                seen.setdefault(blob.digest, blob)
        return tuple(sorted(seen.values(), key=lambda b: -b.size))


# -- building ---------------------------------------------------------------------------


def build_artifact(output_dirs: Sequence[Path]) -> Artifact:
    """The artifact for one or more published directories (platforms may not repeat)."""
    if not output_dirs:
        raise DistributionError("nothing to push: no output directory given")
    manifests: dict[str, PlatformManifest] = {}
    origin: dict[str, Path] = {}
    for directory in output_dirs:
        for manifest in _directory_manifests(directory):
            if manifest.platform in manifests:
                raise DistributionError(
                    f"{directory} and {origin[manifest.platform]} both hold layers for "
                    f"{manifest.platform}; push one directory per platform"
                )
            manifests[manifest.platform] = manifest
            origin[manifest.platform] = directory
    ordered = [manifests[p] for p in sorted(manifests)]
    index = encode(
        {
            "schemaVersion": 2,
            "mediaType": INDEX_TYPE,
            "artifactType": ARTIFACT_TYPE,
            "manifests": [
                {
                    "mediaType": MANIFEST_TYPE,
                    "artifactType": ARTIFACT_TYPE,
                    "digest": m.digest,
                    "size": len(m.body),
                    "platform": _oci_platform(m.platform),
                    "annotations": {PLATFORM_KEY: m.platform},
                }
                for m in ordered
            ],
        }
    )
    return Artifact(tuple(ordered), index, digest_of(index))


def _directory_manifests(directory: Path) -> list[PlatformManifest]:
    meta_path = directory / METADATA_PATH
    where = str(meta_path)
    try:
        raw = meta_path.read_bytes()
    except FileNotFoundError:
        raise DistributionError(
            f"{directory} is not a published stack: it has no {METADATA_PATH} "
            "(run `venvlayers publish`)"
        ) from None
    except OSError as exc:
        raise DistributionError(f"cannot read {meta_path}: {exc.strerror}") from None
    layers = _parse(raw, where)
    config = Blob(digest_of(raw), len(raw), CONFIG_TYPE, METADATA_PATH, source=meta_path)
    signature = _small_blob(directory, SIGNATURE_PATH, SIGNATURE_TYPE)
    platforms = sorted({layer.target_platform for layer in layers})
    if not platforms:
        raise DistributionError(f"{where} lists no layers; nothing to push")
    problems: list[str] = []
    result = []
    for platform in platforms:
        here = [layer for layer in layers if layer.target_platform == platform]
        files: list[Blob] = []
        for layer in here:
            try:
                files.append(_archive_blob(directory, layer))
            except DistributionError as exc:
                problems.append(str(exc))
        files.append(
            Blob(config.digest, config.size, METADATA_TYPE, METADATA_PATH, source=meta_path)
        )
        for layer in here:
            name = f"{ENV_METADATA_DIR}/{layer.layer_name}.json"
            env_blob = _small_blob(directory, name, ENV_METADATA_TYPE)
            if env_blob is not None:
                files.append(env_blob)
        if signature is not None:
            files.append(signature)
        body = encode(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "artifactType": ARTIFACT_TYPE,
                "config": {
                    "mediaType": config.media_type,
                    "digest": config.digest,
                    "size": config.size,
                },
                "layers": [b.descriptor() for b in files],
                "annotations": {PLATFORM_KEY: platform},
            }
        )
        result.append(PlatformManifest(platform, config, tuple(files), body, digest_of(body)))
    if problems:
        raise DistributionError("; ".join(problems[:5]) + _more(problems))
    return result


def _more(problems: Sequence[str]) -> str:
    return f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""


def _archive_blob(directory: Path, layer: PublishedLayer) -> Blob:
    path = directory / layer.archive_name
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DistributionError(
            f"{path} is missing ({layer.install_target} lists it in {METADATA_PATH})"
        ) from None
    if size != layer.archive_size:
        raise DistributionError(
            f"{path} has {size} bytes, {METADATA_PATH} says {layer.archive_size}; republish it"
        )
    fmt = ArchiveFormat.from_path(path)
    media = LAYER_TYPES.get(fmt) if fmt is not None else None
    if media is None:
        raise DistributionError(f"{path}: not an archive format venvlayers writes")
    return Blob(
        "sha256:" + layer.archive_sha256,
        size,
        media,
        layer.archive_name,
        annotations={
            INSTALL_TARGET_KEY: layer.install_target,
            PLATFORM_KEY: layer.target_platform,
        },
        source=path,
    )


def _small_blob(directory: Path, name: str, media_type: str) -> Blob | None:
    path = directory / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DistributionError(f"cannot read {path}: {exc.strerror}") from None
    return Blob(digest_of(data), len(data), media_type, name, source=path)


def _oci_platform(platform: str) -> dict[str, str]:
    os_name, arch = OCI_PLATFORMS.get(platform, ("unknown", "unknown"))
    return {"os": os_name, "architecture": arch}


def _parse(raw: bytes, where: str) -> tuple[PublishedLayer, ...]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DistributionError(f"{where}: not valid JSON ({exc})") from None
    try:
        return parse_layers(data, where)
    except VenvLayersError as exc:
        raise DistributionError(str(exc)) from None


# -- reading back -----------------------------------------------------------------------


@dataclass(frozen=True)
class IndexEntry:
    digest: str
    size: int
    media_type: str
    platform: str | None


def parse_index(body: bytes, where: str) -> tuple[IndexEntry, ...]:
    """The entries of an image index (ours or anyone's), checked field by field."""
    document = _json_object(body, where)
    entries = document.get("manifests")
    if not isinstance(entries, list):
        raise DistributionError(f"{where}: not an image index ('manifests' is not a list)")
    result = []
    for i, entry in enumerate(entries):
        label = f"{where}: manifests[{i}]"
        descriptor = _descriptor(entry, label)
        annotations = entry.get("annotations") if isinstance(entry, dict) else None
        platform = annotations.get(PLATFORM_KEY) if isinstance(annotations, dict) else None
        if not isinstance(platform, str):
            # tools that rewrite indexes (skopeo 1.9 does, even with --preserve-digests)
            # drop our annotations: fall back on the OCI platform
            platform = _from_oci_platform(entry.get("platform"))
        result.append(
            IndexEntry(
                descriptor.digest,
                descriptor.size,
                descriptor.media_type,
                platform if isinstance(platform, str) else None,
            )
        )
    return tuple(result)


def _from_oci_platform(value: object) -> str | None:
    if not isinstance(value, dict):
        return None
    wanted = (value.get("os"), value.get("architecture"))
    return next((ours for ours, oci in OCI_PLATFORMS.items() if oci == wanted), None)


def parse_manifest(body: bytes, digest: str, where: str) -> PlatformManifest:
    """One of our platform manifests: config and file descriptors, checked."""
    document = _json_object(body, where)
    config = document.get("config")
    if not isinstance(config, dict):
        raise DistributionError(f"{where}: not an image manifest (no 'config')")
    config_blob = _descriptor(config, f"{where}: config", default_name=METADATA_PATH)
    if config_blob.media_type != CONFIG_TYPE:
        kind = document.get("artifactType") or config_blob.media_type
        raise DistributionError(
            f"{where} is not a venvlayers stack (its config is {kind!r}, not {CONFIG_TYPE!r})"
        )
    layers = document.get("layers")
    if not isinstance(layers, list):
        raise DistributionError(f"{where}: 'layers' is not a list")
    files = tuple(_descriptor(d, f"{where}: layers[{i}]") for i, d in enumerate(layers))
    names = [b.name for b in files]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DistributionError(f"{where}: several blobs are titled {duplicates[0]!r}")
    annotations = document.get("annotations")
    platform = annotations.get(PLATFORM_KEY) if isinstance(annotations, dict) else None
    return PlatformManifest(
        platform if isinstance(platform, str) else "", config_blob, files, body, digest
    )


def check_against_metadata(
    manifest: PlatformManifest, metadata: bytes, where: str
) -> PlatformManifest:
    """`manifest` with its platform's layers, once every archive is listed with its hash.

    The metadata decides what a layer is; the manifest must hold exactly those archives
    (same name, digest and size), or a registry could swap one without us noticing.
    """
    layers = _parse(metadata, where)
    platforms = sorted({layer.target_platform for layer in layers})
    platform = manifest.platform
    if not platform:
        if len(platforms) != 1:
            raise DistributionError(f"{where}: the manifest names no target platform")
        platform = platforms[0]
    here = tuple(layer for layer in layers if layer.target_platform == platform)
    problems = []
    for layer in here:
        blob = manifest.blob_named(layer.archive_name)
        if blob is None:
            problems.append(f"{layer.archive_name} is not in the manifest")
        elif blob.digest != "sha256:" + layer.archive_sha256 or blob.size != layer.archive_size:
            problems.append(f"{layer.archive_name}: the manifest and venvstacks.json disagree")
    if not here:
        problems.append(f"venvstacks.json lists no layer for {platform}")
    if problems:
        raise DistributionError(f"{where}: " + "; ".join(problems[:5]) + _more(problems))
    return PlatformManifest(
        platform, manifest.config, manifest.files, manifest.body, manifest.digest, here
    )


def _json_object(body: bytes, where: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DistributionError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise DistributionError(f"{where}: not a JSON object")
    return document


def _descriptor(entry: object, label: str, default_name: str = "") -> Blob:
    if not isinstance(entry, dict):
        raise DistributionError(f"{label}: not an object")
    digest, size, media = entry.get("digest"), entry.get("size"), entry.get("mediaType")
    if not isinstance(digest, str) or not _is_digest(digest):
        raise DistributionError(f"{label}: 'digest' {digest!r} is not a sha256 digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise DistributionError(f"{label}: 'size' must be a non-negative integer")
    if not isinstance(media, str):
        raise DistributionError(f"{label}: 'mediaType' is missing")
    annotations = entry.get("annotations")
    annotations = annotations if isinstance(annotations, dict) else {}
    name = annotations.get(TITLE, default_name)
    if not isinstance(name, str):
        name = default_name
    extra = {k: v for k, v in annotations.items() if k != TITLE and isinstance(v, str)}
    return Blob(digest, size, media, name, annotations=extra)


def _is_digest(text: str) -> bool:
    algorithm, _, hexdigest = text.partition(":")
    return (
        algorithm == "sha256"
        and len(hexdigest) == 64
        and all(c in "0123456789abcdef" for c in hexdigest)
    )


def safe_relative(name: str) -> bool:
    """True for a relative POSIX path without `..`, empty or hidden-dot segments."""
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def check_names(files: Iterable[Blob], where: str) -> None:
    for blob in files:
        if not safe_relative(blob.name):
            raise DistributionError(f"{where}: blob title {blob.name!r} is not a safe path")
