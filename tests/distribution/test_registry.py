"""Push, pull and fetch against a real registry (docker-registry), counted at a proxy."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.plugins.registry import CountingProxy, Registry
from tests.support.published import (
    FakeLayer,
    archives,
    default_layers,
    publish_fake,
    tree_files,
)
from tests.support.reporting import RecordingReporter
from venvlayers.distribution import (
    INDEX_TYPE,
    MANIFEST_TYPE,
    TransferOptions,
    open_stack,
    pull,
    push,
)
from venvlayers.errors import DistributionError
from venvlayers.platforms import build_platform

FAST = TransferOptions(backoff=0.01, retries=2)
SIGNATURE = b"-----BEGIN SSH SIGNATURE-----\nnot checked here\n-----END SSH SIGNATURE-----\n"


def stack(tmp_path: Path, name: str, tag: str, **kwargs: object) -> Path:
    return publish_fake(tmp_path / name, default_layers(tag, **kwargs))  # type: ignore[arg-type]


def archive_gets(proxy: CountingProxy, out: Path) -> set[str]:
    """Archive names whose blobs were downloaded through `proxy`."""
    by_digest = {"sha256:" + e["archive_hashes"]["sha256"]: n for n, e in archives(out).items()}
    return {
        by_digest[h.path.rpartition("/")[2]]
        for h in proxy.blob_gets()
        if h.path.rpartition("/")[2] in by_digest
    }


def test_push_then_pull_gives_back_the_published_directory(
    registry: Registry, tmp_path: Path
) -> None:
    out = publish_fake(tmp_path / "out", default_layers("roundtrip"), signature=SIGNATURE)
    pushed = push(out, registry.ref("round/trip"), options=FAST)
    # 4 archives, venvstacks.json (config and file: one blob), 4 env_metadata, signature
    assert pushed.count("sent") == 10 and pushed.count("skipped") == 0
    assert pushed.bytes_sent == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert list(pushed.manifests) == [str(build_platform())]
    pulled = pull(registry.ref("round/trip"), tmp_path / "mirror", options=FAST)
    assert tree_files(tmp_path / "mirror") == tree_files(out)
    assert pulled.digest == pushed.digest
    assert pulled.count("downloaded") == 10
    assert not (tmp_path / ".mirror.pull").exists()


def test_the_same_stack_always_has_the_same_digest(registry: Registry, tmp_path: Path) -> None:
    first = push(stack(tmp_path, "a", "same"), registry.ref("same/one"), options=FAST)
    again = push(stack(tmp_path, "b", "same"), registry.ref("same/two"), options=FAST)
    assert first.digest == again.digest
    assert first.manifests == again.manifests


def test_an_unchanged_push_sends_nothing(
    registry: Registry, proxy: CountingProxy, tmp_path: Path
) -> None:
    out = stack(tmp_path, "out", "unchanged")
    first = push(out, proxy.ref("unchanged/stack"), options=FAST)
    proxy.clear()
    again = push(out, proxy.ref("unchanged/stack"), options=FAST)
    assert again.unchanged and again.digest == first.digest and again.bytes_sent == 0
    assert [(h.method, h.sent) for h in proxy.hits if h.status != 401] == [("HEAD", 0)]


def test_a_second_stack_sends_only_its_new_blobs(
    registry: Registry, proxy: CountingProxy, tmp_path: Path
) -> None:
    """Two stacks sharing a runtime and a framework: those blobs go up (and sit) once."""
    shared = [
        FakeLayer("runtimes", "cpython-3.11", "shared runtime", bulk=200_000),
        FakeLayer("frameworks", "framework-fw", "shared framework", bulk=300_000),
    ]
    one = publish_fake(
        tmp_path / "one",
        [
            *shared,
            FakeLayer("applications", "app-a", "app a", required=["framework-fw"], launch="a"),
        ],
    )
    two = publish_fake(
        tmp_path / "two",
        [
            *shared,
            FakeLayer("applications", "app-b", "app b", required=["framework-fw"], launch="b"),
        ],
    )
    push(one, proxy.ref("fleet/stack", "one"), options=FAST)
    proxy.clear()
    second = push(two, proxy.ref("fleet/stack", "two"), options=FAST)
    big = {n for n, e in archives(two).items() if e["archive_size"] > 100_000}
    assert {b.name for b in second.blobs if b.action == "skipped"} >= big
    sent = {b.name for b in second.blobs if b.action == "sent"}
    assert sent == {
        "app-b.tar.zst",
        "__venvstacks__/venvstacks.json",
        "__venvstacks__/env_metadata/app-b.json",
    }
    uploaded = sum(h.sent for h in proxy.uploads())
    assert uploaded == second.bytes_sent < 50_000
    for name in big:
        digest = "sha256:" + archives(two)[name]["archive_hashes"]["sha256"]
        assert registry.blob_file(digest).exists()
    stored = list((registry.root / "docker/registry/v2/blobs/sha256").glob("*/*/data"))
    digests = [p.parent.name for p in stored]
    assert len(digests) == len(set(digests))


def test_an_app_only_update_downloads_only_that_app(
    registry: Registry, proxy: CountingProxy, tmp_path: Path
) -> None:
    v1 = publish_fake(tmp_path / "v1", default_layers("update", bulk=100_000))
    v2 = publish_fake(tmp_path / "v2", default_layers("update", app_content="app v2", bulk=100_000))
    push(v1, proxy.ref("update/stack", "v1"), options=FAST)
    push(v2, proxy.ref("update/stack", "v2"), options=FAST)
    mirror = tmp_path / "mirror"
    pull(proxy.ref("update/stack", "v1"), mirror, options=FAST)
    proxy.clear()
    result = pull(proxy.ref("update/stack", "v2"), mirror, options=FAST)
    assert tree_files(mirror) == tree_files(v2)
    assert archive_gets(proxy, v2) == {"app-one.tar.zst"}
    fetched = {b.name for b in result.blobs if b.action == "downloaded"}
    assert fetched == {
        "app-one.tar.zst",
        "__venvstacks__/venvstacks.json",
        "__venvstacks__/env_metadata/app-one.json",
    }
    assert result.count("reused") == 6  # 3 archives, 3 env_metadata files
    again = pull(proxy.ref("update/stack", "v2"), mirror, options=FAST)
    assert again.unchanged


def test_the_fetch_api_resolves_once_and_fetches_by_digest(
    registry: Registry, proxy: CountingProxy, tmp_path: Path
) -> None:
    out = publish_fake(tmp_path / "out", default_layers("fetch"), signature=SIGNATURE)
    pushed = push(out, proxy.ref("fetch/stack"), options=FAST)
    with open_stack(proxy.ref("fetch/stack"), FAST) as reader:
        resolved = reader.resolve()
        assert resolved.digest == pushed.digest
        assert resolved.manifest_digest == pushed.manifests[str(build_platform())]
        assert resolved.metadata == (out / "__venvstacks__/venvstacks.json").read_bytes()
        assert resolved.signature == SIGNATURE
        assert sorted(layer.archive_name for layer in resolved.layers) == sorted(archives(out))
        # the tag moves on; the resolved stack still fetches what it resolved
        push(stack(tmp_path, "other", "fetch-other"), proxy.ref("fetch/stack"), force=True)
        proxy.clear()
        app = next(layer for layer in resolved.layers if layer.install_target == "app-one")
        blob = resolved.layer_blob(app)
        done = reader.fetch(blob, tmp_path / "app.tar.zst")
        assert done.action == "downloaded" and done.bytes == app.archive_size
        assert (tmp_path / "app.tar.zst").read_bytes() == (out / app.archive_name).read_bytes()
        assert [h.method for h in proxy.hits if h.status == 200] == ["GET"]
        with pytest.raises(DistributionError, match="not macosx_arm64"):
            reader.resolve("macosx_arm64")


def test_moving_a_tag_needs_force(registry: Registry, tmp_path: Path) -> None:
    ref = registry.ref("moving/stack")
    first = push(stack(tmp_path, "a", "move-a"), ref, options=FAST)
    other = stack(tmp_path, "b", "move-b")
    with pytest.raises(DistributionError, match=r"already names another stack .*--force"):
        push(other, ref, options=FAST)
    moved = push(other, ref, force=True, options=FAST)
    assert moved.previous == first.digest and moved.digest != first.digest
    with open_stack(ref, FAST) as reader:
        assert reader.resolve().digest == moved.digest


def test_push_by_digest(registry: Registry, tmp_path: Path) -> None:
    out = stack(tmp_path, "out", "by-digest")
    digest = push(out, registry.ref("digest/stack"), options=FAST).digest
    again = push(out, f"oci://{registry.host}/digest/copy@{digest}", options=FAST)
    assert again.digest == digest and again.count("sent") > 0
    with pytest.raises(DistributionError, match="push to a tag instead"):
        push(out, f"oci://{registry.host}/digest/copy@sha256:{'0' * 64}", options=FAST)
    mirror = pull(f"oci://{registry.host}/digest/copy@{digest}", tmp_path / "m", options=FAST)
    assert mirror.digest == digest


def test_blobs_are_mounted_from_another_repository(registry: Registry, tmp_path: Path) -> None:
    out = stack(tmp_path, "out", "mount")
    push(out, registry.ref("mount/source"), options=FAST)
    mounted = push(out, registry.ref("mount/target"), mount_from="mount/source", options=FAST)
    assert mounted.count("mounted") == len(mounted.blobs) and mounted.bytes_sent == 0
    pull(registry.ref("mount/target"), tmp_path / "m", options=FAST)
    assert tree_files(tmp_path / "m") == tree_files(out)


def test_a_byte_flipped_in_a_stored_blob_is_refused(registry: Registry, tmp_path: Path) -> None:
    out = stack(tmp_path, "out", "flipped")
    push(out, registry.ref("flipped/stack"), options=FAST)
    entry = archives(out)["framework-fw.tar.zst"]
    stored = registry.blob_file("sha256:" + entry["archive_hashes"]["sha256"])
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    with pytest.raises(
        DistributionError,
        match=r"download of framework-fw\.tar\.zst from oci://.* does not match its sha256",
    ):
        pull(registry.ref("flipped/stack"), tmp_path / "mirror", options=FAST)
    assert not (tmp_path / "mirror").exists()
    with open_stack(registry.ref("flipped/stack"), FAST) as reader:
        resolved = reader.resolve()
        layer = next(x for x in resolved.layers if x.install_target == "framework-fw")
        with pytest.raises(DistributionError, match="does not match"):
            reader.fetch(resolved.layer_blob(layer), tmp_path / "fw.tar.zst")
    assert not (tmp_path / "fw.tar.zst").exists()
    assert not (tmp_path / "fw.tar.zst.partial").exists()


def test_a_tampered_manifest_is_refused(registry: Registry, tmp_path: Path) -> None:
    out = stack(tmp_path, "out", "tampered")
    pushed = push(out, registry.ref("tampered/stack"), options=FAST)
    stored = registry.blob_file(pushed.digest)
    stored.write_bytes(stored.read_bytes().replace(b"amd64", b"arm64"))
    with pytest.raises(DistributionError, match="does not match the digest"):
        pull(registry.ref("tampered/stack"), tmp_path / "mirror", options=FAST)
    assert not (tmp_path / "mirror").exists()


def test_a_swapped_config_is_refused(registry: Registry, tmp_path: Path) -> None:
    out = stack(tmp_path, "out", "swapped")
    push(out, registry.ref("swapped/stack"), options=FAST)
    metadata = (out / "__venvstacks__/venvstacks.json").read_bytes()
    config = registry.blob_file("sha256:" + hashlib.sha256(metadata).hexdigest())
    config.write_bytes(metadata.replace(b"app-two", b"app-xyz"))
    with (
        open_stack(registry.ref("swapped/stack"), FAST) as reader,
        pytest.raises(DistributionError, match=r"venvstacks\.json does not match its digest"),
    ):
        reader.resolve()


def test_an_archive_that_does_not_match_its_metadata_is_not_pushed(
    registry: Registry, tmp_path: Path
) -> None:
    out = stack(tmp_path, "out", "mismatch")
    archive = out / "app-two.tar.zst"
    archive.write_bytes(bytes(archive.stat().st_size))  # same size, other bytes
    with pytest.raises(DistributionError, match=r"app-two\.tar\.zst does not match the sha256"):
        push(out, registry.ref("mismatch/stack"), options=FAST)
    with (
        open_stack(registry.ref("mismatch/stack"), FAST) as reader,
        pytest.raises(DistributionError, match="does not exist"),
    ):
        reader.resolve()


def test_several_platforms_make_one_index(registry: Registry, tmp_path: Path) -> None:
    linux = publish_fake(
        tmp_path / "linux",
        [
            FakeLayer("runtimes", "cpython-3.11", "rt linux", platform="linux_x86_64"),
            FakeLayer("applications", "app-a", "a linux", launch="a", platform="linux_x86_64"),
        ],
    )
    mac = publish_fake(
        tmp_path / "mac",
        [
            FakeLayer("runtimes", "cpython-3.11", "rt mac", platform="macosx_arm64"),
            FakeLayer("applications", "app-a", "a mac", launch="a", platform="macosx_arm64"),
        ],
    )
    ref = registry.ref("multi/stack")
    pushed = push([linux, mac], ref, options=FAST)
    assert sorted(pushed.manifests) == ["linux_x86_64", "macosx_arm64"]
    with open_stack(ref, FAST) as reader:
        media, body, _ = reader.top()
        index = json.loads(body)
        assert media == INDEX_TYPE
        assert [m["platform"] for m in index["manifests"]] == [
            {"architecture": "amd64", "os": "linux"},
            {"architecture": "arm64", "os": "darwin"},
        ]
        assert {m["mediaType"] for m in index["manifests"]} == {MANIFEST_TYPE}
        mac_stack = reader.resolve("macosx_arm64")
        assert mac_stack.metadata == (mac / "__venvstacks__/venvstacks.json").read_bytes()
    with pytest.raises(DistributionError, match="pull one platform at a time"):
        pull(ref, tmp_path / "both", options=FAST)
    pull(ref, tmp_path / "mac-mirror", platforms=["macosx_arm64"], options=FAST)
    assert tree_files(tmp_path / "mac-mirror") == tree_files(mac)
    with pytest.raises(DistributionError, match="both hold layers for linux_x86_64"):
        push([linux, linux], registry.ref("multi/bad"), options=FAST)


def test_chunked_uploads_for_registries_that_cap_bodies(
    registry: Registry, proxy: CountingProxy, tmp_path: Path
) -> None:
    out = stack(tmp_path, "out", "chunked", bulk=300_000)
    proxy.max_body = 100_000
    with pytest.raises(DistributionError, match="HTTP 413"):
        push(out, proxy.ref("chunked/refused"), options=FAST)
    proxy.clear()
    chunked = TransferOptions(backoff=0.01, retries=2, max_chunk=100_000)
    push(out, proxy.ref("chunked/stack"), options=chunked)
    patches = [h for h in proxy.hits if h.method == "PATCH"]
    assert len(patches) >= 8  # two 300 KB archives in at least 4 parts each
    assert all(h.sent <= 100_000 and h.status == 202 for h in patches)
    pull(proxy.ref("chunked/stack"), tmp_path / "mirror", options=FAST)
    assert tree_files(tmp_path / "mirror") == tree_files(out)


def test_the_minimum_chunk_length_is_honoured(
    registry: Registry, proxy: CountingProxy, tmp_path: Path
) -> None:
    out = stack(tmp_path, "out", "minchunk", bulk=300_000)
    proxy.chunk_min = 120_000
    small = TransferOptions(backoff=0.01, retries=2, max_chunk=50_000)
    with pytest.raises(DistributionError, match="at least 120000 bytes"):
        push(out, proxy.ref("minchunk/refused"), options=small)
    proxy.clear()
    push(out, proxy.ref("minchunk/stack"), options=TransferOptions(max_chunk=150_000))
    patches = [h for h in proxy.hits if h.method == "PATCH"]
    assert patches and all(h.sent == 150_000 or h.query for h in patches[:1])
    by_upload: dict[str, list[int]] = {}
    for h in patches:
        by_upload.setdefault(h.path, []).append(h.sent)
    for sizes in by_upload.values():
        assert all(s >= 120_000 for s in sizes[:-1])


@pytest.mark.parametrize("failing", [1, 3])
def test_a_failed_chunk_is_resent_from_where_the_registry_stands(
    registry: Registry, proxy: CountingProxy, tmp_path: Path, failing: int
) -> None:
    """The 1st: the registry holds nothing yet and says `Range: 0-0`, as it also does
    for one byte; the 3rd: it holds two chunks."""
    out = stack(tmp_path, "out", f"chunk-retry-{failing}", bulk=300_000)
    patches: list[str] = []

    def one_patch_fails(method: str, path: str) -> int | None:
        if method == "PATCH":
            patches.append(path)
            if len(patches) == failing:
                return 502
        return None

    proxy.fail = one_patch_fails
    ref = proxy.ref(f"chunkretry{failing}/stack")
    push(out, ref, options=TransferOptions(max_chunk=100_000, parallel=1))
    statuses = [h.status for h in proxy.hits if h.method in ("PATCH", "GET")]
    assert 502 in statuses
    # after the failure: the upload's status (GET, 204 with its Range), then the chunk again
    (broken,) = [h.path for h in proxy.hits if h.status == 502]
    after = [(h.method, h.status) for h in proxy.hits if h.path == broken]
    failed = after.index(("PATCH", 502))
    assert after[failed + 1] == ("GET", 204) and after[failed + 2] == ("PATCH", 202)
    proxy.fail = None
    pull(ref, tmp_path / "mirror", options=FAST)
    assert tree_files(tmp_path / "mirror") == tree_files(out)


def test_push_reports_progress_per_blob(registry: Registry, tmp_path: Path) -> None:
    out = stack(tmp_path, "out", "progress")
    first = RecordingReporter()
    push(out, registry.ref("progress/one"), reporter=first, options=FAST)
    ends = {key: v for kind, key, v in first.events if kind == "end"}
    assert set(ends.values()) == {"done"} and len(ends) == 9
    sent = [
        v for kind, key, v in first.events if (kind, key) == ("advance", "upload:app-one.tar.zst")
    ]
    assert sum(sent) == (out / "app-one.tar.zst").stat().st_size  # type: ignore[arg-type]
    second = RecordingReporter()
    push(out, registry.ref("progress/two"), reporter=second, mount_from="progress/one")
    assert {v for kind, _, v in second.events if kind == "end"} == {"mounted"}


def test_server_errors_during_a_push_are_retried(
    registry: Registry, proxy: CountingProxy, tmp_path: Path
) -> None:
    failures = {"index": 2, "upload": 1}

    def flaky(method: str, path: str) -> int | None:
        if method == "PUT" and "/manifests/v1" in path and failures["index"]:
            failures["index"] -= 1
            return 503
        if method == "PUT" and "/blobs/uploads/" in path and failures["upload"]:
            failures["upload"] -= 1
            return 500
        return None

    proxy.fail = flaky
    out = stack(tmp_path, "out", "flaky")
    push(out, proxy.ref("flaky/stack"), options=FAST)
    assert failures == {"index": 0, "upload": 0}
    proxy.fail = None
    pull(proxy.ref("flaky/stack"), tmp_path / "mirror", options=FAST)
    assert tree_files(tmp_path / "mirror") == tree_files(out)


def test_pull_refuses_a_directory_that_is_not_a_stack(registry: Registry, tmp_path: Path) -> None:
    push(stack(tmp_path, "out", "notastack"), registry.ref("nas/stack"), options=FAST)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(DistributionError, match="neither empty nor a published stack"):
        pull(registry.ref("nas/stack"), tmp_path / "mine", options=FAST)
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"


def test_missing_tags_and_repositories_are_clear(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(DistributionError, match="does not exist"):
        pull(registry.ref("nothing/here"), tmp_path / "m", options=FAST)


# -- interruptions ----------------------------------------------------------------------

_SCRIPT = """
import sys
from pathlib import Path
from venvlayers.distribution import TransferOptions, pull, push
options = TransferOptions(parallel=1, backoff=0.01, retries=1)
if sys.argv[1] == "push":
    push(Path(sys.argv[2]), sys.argv[3], options=options)
else:
    pull(sys.argv[2], Path(sys.argv[3]), options=options)
"""


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {"PATH": os.defpath, "HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "none")}
    return subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for(condition: object, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():  # type: ignore[operator]
        if process.poll() is not None:
            raise AssertionError(f"finished before {what}: {process.stderr.read()!r}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_push_killed_midway_is_completed_by_the_next(
    registry: Registry, proxy: CountingProxy, tmp_path: Path
) -> None:
    out = stack(tmp_path, "out", "killpush", bulk=200_000)
    ref = proxy.ref("killed/push")
    uploads_seen = []

    def hold_second_upload(method: str, path: str) -> float:
        if method == "PUT" and "/blobs/uploads/" in path:
            uploads_seen.append(path)
            if len(uploads_seen) >= 2:
                return 30.0  # the process is killed while this request hangs
        return 0.0

    proxy.delay = hold_second_upload
    process = _start(tmp_path, "push", str(out), ref)
    _wait_for(lambda: len(uploads_seen) >= 2, process, "the second upload")
    process.send_signal(signal.SIGKILL)
    process.wait()
    proxy.delay = None
    with open_stack(ref, FAST) as reader, pytest.raises(DistributionError, match="does not exist"):
        reader.resolve()  # the tag was never written
    finished = push(out, ref, options=FAST)
    assert finished.count("skipped") >= 1
    assert finished.count("sent") == len(finished.blobs) - finished.count("skipped")
    pull(ref, tmp_path / "mirror", options=FAST)
    assert tree_files(tmp_path / "mirror") == tree_files(out)


def test_a_pull_killed_midway_resumes_where_it_stopped(
    registry: Registry, proxy: CountingProxy, tmp_path: Path
) -> None:
    out = stack(tmp_path, "out", "killpull", bulk=1_500_000)
    ref = proxy.ref("killed/pull")
    push(out, ref, options=FAST)
    mirror = tmp_path / "mirror"
    staging = tmp_path / ".mirror.pull" / "blobs"
    proxy.slow_blobs = 0.02

    def partial_started() -> bool:
        return any(p.stat().st_size > 100_000 for p in staging.glob("*.partial"))

    process = _start(tmp_path, "pull", ref, str(mirror))
    _wait_for(partial_started, process, "a partial blob")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not mirror.exists()
    kept = sum(p.stat().st_size for p in staging.glob("*.partial"))
    proxy.slow_blobs = 0.0
    proxy.clear()
    result = pull(ref, mirror, options=FAST)
    assert tree_files(mirror) == tree_files(out)
    assert result.count("resumed") == 1
    total = sum(b.size for b in result.blobs)
    assert result.bytes_received <= total - kept
    assert any(h.headers.get("Range") for h in proxy.blob_gets())
    assert not (tmp_path / ".mirror.pull").exists()


def test_https_registries_are_verified_against_the_trust_store(
    tls_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = stack(tmp_path, "out", "tls")
    with pytest.raises(DistributionError) as caught:
        push(out, tls_registry.ref("tls/stack"), options=FAST)
    assert "its TLS certificate is not trusted" in str(caught.value)
    assert "SSL_CERT_FILE" in str(caught.value)
    assert tls_registry.ca is not None
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_registry.ca))
    push(out, tls_registry.ref("tls/stack"), options=FAST)
    with open_stack(tls_registry.ref("tls/stack"), FAST) as reader:
        assert reader.store.base().startswith("https://")  # type: ignore[union-attr]
    pull(tls_registry.ref("tls/stack"), tmp_path / "mirror", options=FAST)
    assert tree_files(tmp_path / "mirror") == tree_files(out)
