"""OCI image layouts on disk and over http, and interop with skopeo."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.plugins.registry import Registry
from tests.support.httpd import files_handler, serving
from tests.support.published import archives, default_layers, publish_fake, tree_files
from venvlayers.distribution import INDEX_TYPE, TransferOptions, open_stack, pull, push
from venvlayers.distribution.artifact import OCI_PLATFORMS
from venvlayers.errors import DistributionError
from venvlayers.platforms import build_platform

FAST = TransferOptions(backoff=0.01, retries=2)
PLATFORM = str(build_platform())
SKOPEO = shutil.which("skopeo")
needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    assert SKOPEO is not None
    proc = subprocess.run(
        [SKOPEO, *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
        check=False,
        timeout=120,
    )
    if proc.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed: {proc.stderr}")
    return proc


def test_a_layout_is_written_as_the_spec_says(tmp_path: Path) -> None:
    out = publish_fake(tmp_path / "out", default_layers("layout-shape"))
    layout = tmp_path / "layout"
    result = push(out, f"oci-layout:{layout}:1.0")
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"] == [
        {
            "mediaType": INDEX_TYPE,
            "digest": result.digest,
            "size": (layout / "blobs/sha256" / result.digest[7:]).stat().st_size,
            "annotations": {"org.opencontainers.image.ref.name": "1.0"},
        }
    ]
    for name, entry in archives(out).items():
        blob = layout / "blobs/sha256" / entry["archive_hashes"]["sha256"]
        assert blob.read_bytes() == (out / name).read_bytes()
        assert blob.stat().st_ino == (out / name).stat().st_ino  # hard-linked, not copied
    assert result.count("linked") == len(result.blobs)
    assert not list(layout.rglob("*.partial"))


def test_layout_tags_are_kept_apart_and_moved_only_with_force(tmp_path: Path) -> None:
    one = publish_fake(tmp_path / "one", default_layers("layout-one"))
    two = publish_fake(tmp_path / "two", default_layers("layout-two"))
    layout = tmp_path / "layout"
    first = push(one, f"oci-layout:{layout}:one")
    assert push(one, f"oci-layout:{layout}:one").unchanged
    push(two, f"oci-layout:{layout}:two")
    with pytest.raises(DistributionError, match="pass --force"):
        push(two, f"oci-layout:{layout}:one")
    moved = push(two, f"oci-layout:{layout}:one", force=True)
    assert moved.previous == first.digest
    assert moved.count("skipped") == len(moved.blobs)
    with pytest.raises(DistributionError, match=r"has no tag 'latest' \(its tags: one, two\)"):
        pull(f"oci-layout:{layout}", tmp_path / "m")
    pull(f"oci-layout:{layout}:two", tmp_path / "m")
    assert tree_files(tmp_path / "m") == tree_files(two)


def test_a_layout_is_not_written_into_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    out = publish_fake(tmp_path / "out", default_layers("layout-foreign"))
    with pytest.raises(DistributionError, match="is not an OCI image layout"):
        push(out, f"oci-layout:{tmp_path / 'notes'}")


def test_pull_from_a_layout_links_verified_blobs(tmp_path: Path) -> None:
    out = publish_fake(tmp_path / "out", default_layers("layout-pull"))
    push(out, f"oci-layout:{tmp_path / 'layout'}")
    result = pull(f"oci-layout:{tmp_path / 'layout'}", tmp_path / "mirror")
    assert tree_files(tmp_path / "mirror") == tree_files(out)
    assert {b.action for b in result.blobs} <= {"linked", "downloaded"}


def test_a_tampered_layout_blob_is_refused(tmp_path: Path) -> None:
    out = publish_fake(tmp_path / "out", default_layers("layout-tampered"))
    layout = tmp_path / "layout"
    # copy instead of linking, so that tampering does not change `out` too
    shutil.copytree(out, tmp_path / "copy")
    push(tmp_path / "copy", f"oci-layout:{layout}")
    blob = layout / "blobs/sha256" / archives(out)["app-one.tar.zst"]["archive_hashes"]["sha256"]
    data = bytearray(blob.read_bytes())
    data[-5] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(DistributionError, match=r"app-one\.tar\.zst does not match its digest"):
        pull(f"oci-layout:{layout}", tmp_path / "mirror")
    assert not (tmp_path / "mirror").exists()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over http on a loopback port, like a bucket or file server."""
    root = tmp_path / "www"
    root.mkdir()
    with serving(files_handler(root)) as url:
        yield root, url


def test_a_layout_served_over_http_can_be_pulled(tmp_path: Path, served: tuple[Path, str]) -> None:
    root, url = served
    out = publish_fake(tmp_path / "out", default_layers("layout-http"))
    push(out, f"oci-layout:{root / 'stacks'}:v3")
    pulled = pull(f"oci-layout:{url}/stacks:v3", tmp_path / "mirror", options=FAST)
    assert tree_files(tmp_path / "mirror") == tree_files(out)
    assert pulled.count("downloaded") == len(pulled.blobs)
    with open_stack(f"oci-layout:{url}/stacks:v3", FAST) as reader:
        assert reader.resolve().metadata == (out / "__venvstacks__/venvstacks.json").read_bytes()
    with pytest.raises(DistributionError, match="read-only"):
        push(out, f"oci-layout:{url}/stacks:v4")


@needs_skopeo
def test_skopeo_copies_our_layout_into_a_registry(registry: Registry, tmp_path: Path) -> None:
    out = publish_fake(tmp_path / "out", default_layers("skopeo-up"))
    ours = push(out, f"oci-layout:{tmp_path / 'layout'}:v1")
    target = f"{registry.host}/skopeo/up:v1"
    skopeo(
        "copy",
        "--all",
        "--dest-tls-verify=false",
        f"oci:{tmp_path / 'layout'}:v1",
        f"docker://{target}",
    )
    # skopeo 1.9 re-serializes the index (dropping artifactType and annotations) even
    # with --preserve-digests; the platform manifest and all it names stay as they were
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{target}").stdout
    (entry,) = json.loads(raw)["manifests"]
    assert entry["digest"] == ours.manifests[PLATFORM]
    assert (entry["platform"]["os"], entry["platform"]["architecture"]) == OCI_PLATFORMS[PLATFORM]
    config = skopeo("inspect", "--config", "--raw", "--tls-verify=false", f"docker://{target}")
    assert config.stdout.encode() == (out / "__venvstacks__/venvstacks.json").read_bytes()
    with open_stack(f"oci://{target}", FAST) as reader:
        assert reader.resolve().manifest_digest == ours.manifests[PLATFORM]
    pull(f"oci://{target}", tmp_path / "mirror", options=FAST)
    assert tree_files(tmp_path / "mirror") == tree_files(out)


@needs_skopeo
def test_we_pull_what_skopeo_copied_out_of_a_registry(registry: Registry, tmp_path: Path) -> None:
    out = publish_fake(tmp_path / "out", default_layers("skopeo-down"))
    ours = push(out, registry.ref("skopeo/down"), options=FAST)
    skopeo(
        "copy",
        "--all",
        "--src-tls-verify=false",
        f"docker://{registry.host}/skopeo/down:v1",
        f"oci:{tmp_path / 'copied'}:v1",
    )
    with open_stack(f"oci-layout:{tmp_path / 'copied'}:v1") as reader:
        assert reader.resolve().manifest_digest == ours.manifests[PLATFORM]
    pull(f"oci-layout:{tmp_path / 'copied'}:v1", tmp_path / "mirror")
    assert tree_files(tmp_path / "mirror") == tree_files(out)
